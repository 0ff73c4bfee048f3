import Foundation
import SchnellServer
import XCTest

/// Runs Tests/server/openai_client_test.py (the official `openai` Python client) against an
/// in-process server. It needs pip and network access on first use, so it only runs when
/// SCHNELL_OPENAI_CLIENT_TEST=1.
final class OpenAIClientTests: XCTestCase {
    func testOfficialPythonClient() throws {
        guard ProcessInfo.processInfo.environment["SCHNELL_OPENAI_CLIENT_TEST"] == "1" else {
            throw XCTSkip("set SCHNELL_OPENAI_CLIENT_TEST=1 to run the openai Python client against the server")
        }
        let test = try TestServer { $0.apiKeys = ["sk-test"] }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("server/openai_client_test.py").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, "http://127.0.0.1:\(test.server.boundPort)", "--api-key", "sk-test", "--size", "128x64"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus == 77 { throw XCTSkip(text) }
        XCTAssertEqual(process.terminationStatus, 0, text)
        XCTAssertTrue(text.contains("all checks passed"), text)
    }
}
