import Schnell
import SchnellServer
import XCTest

final class ServerOptionsTests: XCTestCase {
    func testDefaultsAreLoopbackAndOpen() throws {
        let (options, remaining) = try ServerOptions.parse([])
        XCTAssertEqual(options.host, "127.0.0.1")
        XCTAssertEqual(options.port, 8080)
        XCTAssertEqual(options.apiKeys, [])
        XCTAssertEqual(options.imageTTLSeconds, 86_400)
        XCTAssertNil(options.publicURL)
        XCTAssertEqual(remaining, [])
        XCTAssertEqual([options.limits.minSide, options.limits.maxSide, options.limits.maxSteps, options.limits.maxImages], [64, 2048, 50, 10])
        XCTAssertEqual(options.limits.maxSequenceLength, GenerationLimits.pipeline.maxSequenceLength)
    }

    func testLimitFlagsNarrowThePipelinesLimitsOnly() throws {
        let (options, _) = try ServerOptions.parse(["--max-side", "1024", "--max-steps=8", "--max-images", "64"])
        XCTAssertEqual([options.limits.maxSide, options.limits.maxSteps, options.limits.maxImages], [1024, 8, 64])
        let pipeline = GenerationLimits.pipeline
        let (widest, _) = try ServerOptions.parse(["--max-side", "\(pipeline.maxSide)", "--max-steps", "\(pipeline.maxSteps)"])
        XCTAssertEqual([widest.limits.maxSide, widest.limits.maxSteps], [pipeline.maxSide, pipeline.maxSteps])
        let cases: [([String], String)] = [
            (["--max-side", "\(pipeline.maxSide + 16)"], "--max-side \(pipeline.maxSide + 16) is beyond the pipeline's limit of \(pipeline.maxSide)"),
            (["--max-steps", "1001"], "--max-steps 1001 is beyond the pipeline's limit of 1000"),
            (["--max-images", "65"], "--max-images 65 is beyond the pipeline's limit of 64"),
            (["--max-side", "32"], "--max-side must be an integer of at least 64"),
            (["--max-steps", "0"], "--max-steps must be an integer of at least 1"),
            (["--max-images", "many"], "--max-images must be an integer of at least 1"),
        ]
        for (arguments, message) in cases {
            XCTAssertThrowsError(try ServerOptions.parse(arguments), "\(arguments)") { error in
                XCTAssertTrue("\(error)".contains(message), "\(error) should say \(message)")
            }
        }
    }

    func testFlagsAreReadAndOthersKept() throws {
        let (options, remaining) = try ServerOptions.parse([
            "--model", "x", "--host", "0.0.0.0", "--port=9000", "--api-key", "k1", "--api-key", "k2",
            "--max-queue", "3", "--output-dir", "/tmp/o", "--public-url", "https://img.example.com/", "--image-ttl", "60",
        ])
        XCTAssertEqual(options.host, "0.0.0.0")
        XCTAssertEqual(options.port, 9000)
        XCTAssertEqual(options.apiKeys, ["k1", "k2"])
        XCTAssertEqual(options.maxQueue, 3)
        XCTAssertEqual(options.outputDirectory, "/tmp/o")
        XCTAssertEqual(options.publicURL, "https://img.example.com")
        XCTAssertEqual(options.imageTTLSeconds, 60)
        XCTAssertEqual(remaining, ["--model", "x"])
    }

    func testConnectionFlags() throws {
        let defaults = ServerOptions()
        XCTAssertEqual([defaults.maxConnections, defaults.maxConnectionsPerIP, defaults.headTimeoutSeconds, defaults.shutdownTimeoutSeconds],
                       [256, 32, 10, 30])
        let (options, remaining) = try ServerOptions.parse([
            "--max-connections", "100", "--max-connections-per-ip=8", "--idle-timeout", "5", "--head-timeout", "3",
            "--min-body-rate", "1000", "--max-body-size", "2048", "--max-body-memory", "4096",
            "--cors-origin", "https://App.example.com", "--cors-origin", "http://localhost:3000", "--cors-origin", "http://[::1]:8080", "--shutdown-timeout", "7",
        ])
        XCTAssertEqual(remaining, [])
        XCTAssertEqual([options.maxConnections, options.maxConnectionsPerIP, options.connectionTimeoutSeconds, options.headTimeoutSeconds],
                       [100, 8, 5, 3])
        XCTAssertEqual([options.minBodyBytesPerSecond, options.maxBodyBytes, options.maxBodyMemoryBytes, options.shutdownTimeoutSeconds],
                       [1000, 2048, 4096, 7])
        XCTAssertEqual(options.corsOrigins, ["https://app.example.com", "http://localhost:3000", "http://[::1]:8080"])
        let cases: [([String], String)] = [
            (["--max-connections", "0"], "--max-connections must be an integer in 1...10000"),
            (["--max-connections", "10", "--max-connections-per-ip", "11"], "--max-connections-per-ip 11 is more than --max-connections 10"),
            (["--head-timeout", "0"], "--head-timeout must be an integer in 1...300"),
            (["--min-body-rate", "fast"], "--min-body-rate must be an integer"),
            (["--max-body-memory", "2048"], "--max-body-memory 2048 is less than --max-body-size 33554432"),
            (["--cors-origin", "https://app.example.com/"], "--cors-origin must be an origin"),
            (["--cors-origin", "*"], "--cors-origin must be an origin"),
            (["--cors-origin", "app.example.com"], "--cors-origin must be an origin"),
            (["--shutdown-timeout", "-1"], "--shutdown-timeout must be an integer in 1...3600"),
        ]
        for (arguments, message) in cases {
            XCTAssertThrowsError(try ServerOptions.parse(arguments), "\(arguments)") { error in
                XCTAssertTrue("\(error)".contains(message), "\(error) should say \(message)")
            }
        }
    }

    func testBadValuesNameTheFlag() {
        let cases: [([String], String)] = [
            (["--port", "70000"], "--port"), (["--port", "http"], "--port"), (["--port"], "--port"),
            (["--max-queue", "-1"], "--max-queue"), (["--image-ttl", "0"], "--image-ttl"),
            (["--public-url", "ftp://x"], "--public-url"), (["--host", "a b"], "--host"), (["--api-key", ""], "--api-key"),
            (["--output-dir", ""], "--output-dir"),
        ]
        for (arguments, flag) in cases {
            XCTAssertThrowsError(try ServerOptions.parse(arguments), "\(arguments)") { error in
                XCTAssertTrue("\(error)".contains(flag), "\(error) should name \(flag)")
            }
        }
    }
}
