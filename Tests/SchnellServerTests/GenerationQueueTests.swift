import Foundation
import Schnell
@testable import SchnellServer
import XCTest

/// A model that sends one 1x1 preview per step (its step number as the red value) and can be
/// held inside its first step until `release` is signalled.
private final class PreviewingGenerator: ImageGenerating, @unchecked Sendable {
    let model = FakeGenerator.schnell
    let release = DispatchSemaphore(value: 0)
    let holdFirstStep: Bool

    init(holdFirstStep: Bool = false) { self.holdFirstStep = holdFirstStep }

    func validate(_ request: GenerationRequest) throws {}

    func generate(_ request: GenerationRequest, progress: (GenerationProgress) -> Bool,
                  preview: (PreviewImage) -> Void) throws -> GenerationResult {
        let steps = request.steps ?? 1
        for step in 0..<steps {
            guard progress(GenerationProgress(stage: .denoising, image: 0, imageCount: 1, step: step, stepCount: steps)) else {
                throw PipelineError.cancelled
            }
            if holdFirstStep && step == 0 { release.wait() }
            preview(PreviewImage(image: 0, index: step, step: step + 1, width: 1, height: 1, rgb: [UInt8(step), 0, 0]))
        }
        return GenerationResult(images: [GeneratedImage(width: 1, height: 1, rgb: [0, 0, 0], seed: 0)], steps: steps, guidance: nil,
                                timings: [])
    }
}

/// `GenerationQueue` on its own: previews reach the submitter on the worker thread, and
/// `cancel(_:)` of a waiting, running and finished job.
final class GenerationQueueTests: XCTestCase {
    private func request(steps: Int) -> GenerationRequest {
        GenerationRequest(prompt: "x", width: 16, height: 16, steps: steps, seed: 1)
    }

    func testPreviewsReachTheSubmitterOnTheWorkerThread() throws {
        let queue = GenerationQueue(capacity: 4, metrics: Metrics())
        queue.start()
        defer { queue.shutdown(timeoutSeconds: 5) }
        let seen = Locked<[(index: Int, step: Int, red: UInt8, thread: ObjectIdentifier)]>([])
        let ticket = try queue.submit(request(steps: 3), generator: PreviewingGenerator(), preview: { preview in
            seen.mutate { $0.append((preview.index, preview.step, preview.rgb[0], ObjectIdentifier(Thread.current))) }
        })
        let result = try XCTUnwrap(queue.wait(for: ticket, clientConnected: { true }))
        XCTAssertEqual(try result.get().result.images.count, 1)
        XCTAssertEqual(seen.value.map(\.index), [0, 1, 2])
        XCTAssertEqual(seen.value.map(\.step), [1, 2, 3])
        XCTAssertEqual(seen.value.map(\.red), [0, 1, 2])
        XCTAssertEqual(Set(seen.value.map(\.thread)).count, 1, "one worker thread")
        XCTAssertFalse(seen.value.map(\.thread).contains(ObjectIdentifier(Thread.current)), "not the submitting thread")
    }

    func testCancelOfWaitingRunningAndFinishedJobs() throws {
        let queue = GenerationQueue(capacity: 4, metrics: Metrics())
        queue.start()
        defer { queue.shutdown(timeoutSeconds: 5) }
        let generator = PreviewingGenerator(holdFirstStep: true)
        let finished = Locked<[Result<String, APIError>]>([])
        let running = try queue.submit(request(steps: 2), generator: generator)
        let waiting = try queue.submit(request(steps: 2), generator: generator, onFinish: { result in
            finished.mutate { $0.append(result.map { _ in "completed" }) }
        })
        let deadline = Date().addingTimeInterval(5)
        while queue.snapshot(running).status != "running" && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }

        XCTAssertEqual(queue.snapshot(waiting).position, 1)
        XCTAssertEqual(queue.cancel(waiting), .removed)
        XCTAssertEqual(finished.value, [.failure(.cancelled)], "onFinish ran before cancel returned")
        XCTAssertEqual(queue.snapshot(waiting).status, "cancelled")
        XCTAssertEqual(queue.depth, 0)
        XCTAssertEqual(queue.cancel(waiting), .alreadyFinished)

        XCTAssertEqual(queue.cancel(running), .stopping)
        XCTAssertEqual(queue.snapshot(running).status, "cancelling")
        generator.release.signal()
        let result = try XCTUnwrap(queue.wait(for: running, clientConnected: { true }))
        XCTAssertEqual(result.map { _ in "completed" }, .failure(.cancelled), "stopped before its second step")
        XCTAssertEqual(queue.snapshot(running).status, "cancelled")
        XCTAssertEqual(queue.snapshot(running).step, 1)
        XCTAssertEqual(queue.cancel(running), .alreadyFinished)
    }
}
