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
