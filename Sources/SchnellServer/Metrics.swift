import Foundation

/// Counters for `GET /metrics` in Prometheus' text format.
final class Metrics: @unchecked Sendable {
    /// Upper bounds of the generation-time histogram, in seconds.
    static let generationBuckets: [Double] = [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300]

    private let lock = NSLock()
    // Guarded by `lock`.
    private var requestsByStatus: [Int: Int] = [:]
    private var queueDepth = 0
    private var bucketCounts = [Int](repeating: 0, count: Metrics.generationBuckets.count)
    private var generationCount = 0
    private var generationSecondsSum = 0.0
    private var imagesGenerated = 0

    func countRequest(status: Int) {
        lock.withLock { requestsByStatus[status, default: 0] += 1 }
    }

    func setQueueDepth(_ depth: Int) {
        lock.withLock { queueDepth = depth }
    }

    func observeGeneration(seconds: Double, images: Int) {
        lock.withLock {
            for (index, bound) in Metrics.generationBuckets.enumerated() where seconds <= bound { bucketCounts[index] += 1 }
            generationCount += 1
            generationSecondsSum += seconds
            imagesGenerated += images
        }
    }

    func render(modelLoaded: Bool) -> String {
        lock.withLock {
            var lines = [
                "# HELP schnell_http_requests_total HTTP requests answered, by status code.",
                "# TYPE schnell_http_requests_total counter",
            ]
            for status in requestsByStatus.keys.sorted() {
                lines.append("schnell_http_requests_total{status=\"\(status)\"} \(requestsByStatus[status] ?? 0)")
            }
            lines += [
                "# HELP schnell_queue_depth Generations waiting behind the running one.",
                "# TYPE schnell_queue_depth gauge",
                "schnell_queue_depth \(queueDepth)",
                "# HELP schnell_model_loaded 1 when a model is loaded and generations are accepted.",
                "# TYPE schnell_model_loaded gauge",
                "schnell_model_loaded \(modelLoaded ? 1 : 0)",
                "# HELP schnell_generation_seconds Time spent in the model per generation job.",
                "# TYPE schnell_generation_seconds histogram",
            ]
            for (index, bound) in Metrics.generationBuckets.enumerated() {
                lines.append("schnell_generation_seconds_bucket{le=\"\(bound)\"} \(bucketCounts[index])")
            }
            lines += [
                "schnell_generation_seconds_bucket{le=\"+Inf\"} \(generationCount)",
                "schnell_generation_seconds_sum \(generationSecondsSum)",
                "schnell_generation_seconds_count \(generationCount)",
                "# HELP schnell_images_generated_total Images returned by the model.",
                "# TYPE schnell_images_generated_total counter",
                "schnell_images_generated_total \(imagesGenerated)",
            ]
            return lines.joined(separator: "\n") + "\n"
        }
    }
}
