import Foundation
import Schnell
import SchnellImageIO
@testable import SchnellServer
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A generator that draws a deterministic gradient per seed, sleeping `stepSeconds` per step,
/// makes flat grey previews and counts one token per prompt word, and records every request and
/// the largest number of generations it ever ran at once. It offers `loras` and ignores them.
final class FakeGenerator: ImageGenerating, @unchecked Sendable {
    let model: ModelDescription
    let loras: [String: LoRAAdapter]
    let stepSeconds: Double
    private let lock = NSLock()
    // Guarded by `lock`.
    private var recordedRequests: [GenerationRequest] = []
    private var active = 0
    private var peakActive = 0

    init(model: ModelDescription = FakeGenerator.schnell, loras: [LoRAAdapter] = [], stepSeconds: Double = 0) {
        self.model = model
        self.loras = Dictionary(loras.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.stepSeconds = stepSeconds
    }

    static let schnell: ModelDescription = {
        var limits = GenerationLimits.pipeline
        limits.maxSteps = 8
        return ModelDescription(id: "flux.1-schnell", aliases: ["flux-1-schnell", "black-forest-labs/FLUX.1-schnell"],
                                defaultSteps: 4, defaultWidth: 64, defaultHeight: 64, limits: limits,
                                supportsEdits: true, created: 1_722_470_400)
    }()

    var requests: [GenerationRequest] { lock.withLock { recordedRequests } }
    var maxConcurrent: Int { lock.withLock { peakActive } }

    func validate(_ request: GenerationRequest) throws {
        try model.limits.check(request, sizeMultiple: model.sizeMultiple)
    }

    func generate(_ request: GenerationRequest, progress: (GenerationProgress) -> Bool,
                  preview: (PreviewImage) -> Void) throws -> GenerationResult {
        lock.withLock {
            recordedRequests.append(request)
            active += 1
            peakActive = max(peakActive, active)
        }
        defer { lock.withLock { active -= 1 } }
        let steps = request.steps ?? model.defaultSteps
        for step in 0..<steps {
            guard progress(GenerationProgress(stage: .denoising, image: 0, imageCount: 1, step: step, stepCount: steps)) else {
                throw PipelineError.cancelled
            }
            if stepSeconds > 0 { Thread.sleep(forTimeInterval: stepSeconds) }
            // Previews after steps 1, 2, ... (as many as asked and as fit before the last step), a flat grey each.
            if step + 1 < steps, step < request.previews {
                for image in 0..<request.count {
                    preview(PreviewImage(image: image, index: step, step: step + 1, width: request.width, height: request.height,
                                         rgb: [UInt8](repeating: UInt8(64 * (step + 1)), count: request.width * request.height * 3)))
                }
            }
        }
        let firstSeed = request.seed ?? 0
        let images = (0..<request.count).map { index -> GeneratedImage in
            let seed = firstSeed + UInt64(index)
            var pixels = [UInt8](repeating: 0, count: request.width * request.height * 3)
            for offset in pixels.indices { pixels[offset] = UInt8(truncatingIfNeeded: UInt64(offset) &+ seed) }
            return GeneratedImage(width: request.width, height: request.height, rgb: pixels, seed: seed)
        }
        // One CLIP and one T5 token per word, plus CLIP's two and T5's one special tokens.
        let words = request.prompt.split(separator: " ").count
        return GenerationResult(images: images, steps: steps, guidance: request.guidance, timings: [("denoise", 0.01), ("vae", 0.001)],
                                textTokens: TextTokenCounts(clip: words + 2, t5: words + 1))
    }
}

struct RawResponse {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
    }

    var error: [String: Any] { json["error"] as? [String: Any] ?? [:] }
}

enum ClientError: Error { case connect, timeout, malformed }

/// A minimal HTTP/1.1 client over a blocking socket, so tests control every byte sent.
struct RawClient {
    let port: Int

    func connect(timeoutSeconds: Double = 10) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError.connect }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { close(fd); throw ClientError.connect }
        var timeout = timeval(tv_sec: Int(timeoutSeconds), tv_usec: Int(timeoutSeconds.truncatingRemainder(dividingBy: 1) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { return }
            offset += sent
        }
    }

    /// Reads until the server closes the connection (requests say `Connection: close`).
    static func readAll(_ fd: Int32) throws -> [UInt8] {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count == 0 { return received }
            if count < 0 { throw ClientError.timeout }
            received += buffer[0..<count]
        }
    }

    static func parse(_ bytes: [UInt8]) throws -> RawResponse {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let end = (0...(max(0, bytes.count - 4))).first(where: { bytes[$0..<min($0 + 4, bytes.count)].elementsEqual(separator) })
        else { throw ClientError.malformed }
        let lines = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw ClientError.malformed }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return RawResponse(status: status, headers: headers, body: Array(bytes[(end + 4)...]))
    }

    func request(_ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8] = [],
                 timeoutSeconds: Double = 20) throws -> RawResponse {
        let fd = try connect(timeoutSeconds: timeoutSeconds)
        defer { close(fd) }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" { head += "Content-Length: \(body.count)\r\n" }
        RawClient.send(fd, Array((head + "\r\n").utf8) + body)
        return try RawClient.parse(RawClient.readAll(fd))
    }

    func get(_ path: String, headers: [String: String] = [:]) throws -> RawResponse {
        try request("GET", path, headers: headers)
    }

    func postJSON(_ path: String, _ object: Any, headers: [String: String] = [:]) throws -> RawResponse {
        let body = try JSONSerialization.data(withJSONObject: object)
        return try request("POST", path, headers: ["Content-Type": "application/json"].merging(headers) { $1 }, body: Array(body))
    }
}

/// A running server on an ephemeral loopback port with its own output directory.
final class TestServer {
    let server: ImageServer
    let client: RawClient
    let outputDirectory: String

    init(generator: (any ImageGenerating)? = FakeGenerator(), outputDirectory: String? = nil, shared: (any SharedTaskStore)? = nil,
         configure: (inout ServerOptions) -> Void = { _ in }) throws {
        var options = ServerOptions()
        options.port = 0
        options.logRequests = false
        options.outputDirectory = outputDirectory ?? FileManager.default.temporaryDirectory
            .appendingPathComponent("schnell-server-test-\(UUID().uuidString)").path
        configure(&options)
        self.outputDirectory = options.outputDirectory
        server = try ImageServer(options: options, generator: generator, shared: shared)
        try server.start()
        client = RawClient(port: server.boundPort)
    }

    deinit { server.stop() }
}

func assertError(_ response: RawResponse, status: Int, code: String, param: String?? = .none,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(response.status, status, String(decoding: response.body, as: UTF8.self), file: file, line: line)
    XCTAssertEqual(response.headers["content-type"], "application/json", file: file, line: line)
    let error = response.error
    XCTAssertEqual(error["code"] as? String, code, file: file, line: line)
    XCTAssertNotNil(error["message"] as? String, file: file, line: line)
    XCTAssertNotNil(error["type"] as? String, file: file, line: line)
    XCTAssertTrue(error.keys.contains("param"), file: file, line: line)
    if case .some(let expected) = param {
        XCTAssertEqual(error["param"] as? String, expected, file: file, line: line)
    }
}

/// A multipart/form-data body with text fields and PNG files, as `/v1/images/edits` takes it.
func multipart(_ fields: [(String, String)], files: [(String, [UInt8])], boundary: String = "XyZ-boundary") -> [UInt8] {
    var body: [UInt8] = []
    for (name, value) in fields {
        body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n".utf8)
    }
    for (name, bytes) in files {
        body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"; filename=\"\(name).png\"\r\nContent-Type: image/png\r\n\r\n".utf8)
        body += bytes + Array("\r\n".utf8)
    }
    return body + Array("--\(boundary)--\r\n".utf8)
}

func postEdit(_ client: RawClient, _ body: [UInt8], boundary: String = "XyZ-boundary") throws -> RawResponse {
    try client.request("POST", "/v1/images/edits", headers: ["Content-Type": "multipart/form-data; boundary=\(boundary)"], body: body)
}

let pngSignature: [UInt8] = [137, 80, 78, 71, 13, 10, 26, 10]

/// A value shared between test threads.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value

    init(_ value: Value) { stored = value }

    var value: Value { lock.withLock { stored } }

    func mutate(_ change: (inout Value) -> Void) { lock.withLock { change(&stored) } }
}
