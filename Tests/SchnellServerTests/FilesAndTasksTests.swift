import Foundation
import SchnellServer
import XCTest

final class FilesAndTasksTests: XCTestCase {
    private func path(of url: String) -> String {
        URLComponents(string: url)?.path ?? url
    }

    func testURLImagesAreServedAndExpire() throws {
        // A TTL of 3 s leaves a loaded machine time to serve the files before they expire; the
        // cleanup runs every TTL / 2, so 5 s later they are gone.
        let test = try TestServer { $0.imageTTLSeconds = 3 }
        let response = try test.client.postJSON("/v1/images/generations", ["prompt": "a", "response_format": "url", "n": 2])
        XCTAssertEqual(response.status, 200)
        let data = try XCTUnwrap(response.json["data"] as? [[String: Any]])
        let urls = data.compactMap { $0["url"] as? String }
        XCTAssertEqual(urls.count, 2)
        XCTAssertNil(data[0]["b64_json"])
        for url in urls {
            XCTAssertTrue(url.hasPrefix("http://127.0.0.1:\(test.server.boundPort)/v1/images/files/"), url)
            let name = try XCTUnwrap(url.split(separator: "/").last)
            XCTAssertEqual(name.count, 32 + 4, "128-bit hex id plus .png")
            let file = try test.client.get(path(of: url))
            XCTAssertEqual(file.status, 200)
            XCTAssertEqual(file.headers["content-type"], "image/png")
            XCTAssertEqual(Array(file.body.prefix(8)), pngSignature)
        }
        let jpeg = try test.client.postJSON("/v1/images/generations", ["prompt": "a", "response_format": "url", "output_format": "jpeg"])
        let jpegURL = try XCTUnwrap((jpeg.json["data"] as? [[String: Any]])?.first?["url"] as? String)
        XCTAssertTrue(jpegURL.hasSuffix(".jpeg"))
        XCTAssertEqual(try test.client.get(path(of: jpegURL)).headers["content-type"], "image/jpeg")

        assertError(try test.client.get("/v1/images/files/../../etc/passwd"), status: 404, code: "not_found")
        assertError(try test.client.get("/v1/images/files/0123456789abcdef0123456789abcdef.png"), status: 404, code: "not_found")
        Thread.sleep(forTimeInterval: 5)
        assertError(try test.client.get(path(of: urls[0])), status: 404, code: "not_found")
        let remaining = try FileManager.default.contentsOfDirectory(atPath: test.outputDirectory + "/images")
        XCTAssertEqual(remaining, [], "the periodic cleanup removed expired files")
    }

    func testPublicURLIsUsedForImageLinks() throws {
        let test = try TestServer { $0.publicURL = "https://img.example.com" }
        let response = try test.client.postJSON("/v1/images/generations", ["prompt": "a", "response_format": "url"])
        let url = try XCTUnwrap((response.json["data"] as? [[String: Any]])?.first?["url"] as? String)
        XCTAssertTrue(url.hasPrefix("https://img.example.com/v1/images/files/"), url)
    }

    private func poll(_ client: RawClient, _ pollURL: String, until done: Set<String> = ["completed", "failed"]) throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let json = try client.get(pollURL).json
            if let status = json["status"] as? String, done.contains(status) { return json }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("task did not finish")
        return [:]
    }

    func testAsyncTaskCompletesAndSurvivesRestart() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-restart-\(UUID().uuidString)").path
        var pollURL = ""
        var firstData: [[String: Any]] = []
        do {
            let test = try TestServer(generator: FakeGenerator(stepSeconds: 0.05), outputDirectory: directory)
            let created = try test.client.postJSON("/v1/images/generations", ["prompt": "a", "async": true, "seed": 5, "response_format": "url"])
            XCTAssertEqual(created.status, 202)
            let id = try XCTUnwrap(created.json["id"] as? String)
            XCTAssertEqual(created.json["task_id"] as? String, id)
            XCTAssertEqual(created.json["status"] as? String, "pending")
            pollURL = try XCTUnwrap(created.json["poll_url"] as? String)
            XCTAssertEqual(pollURL, "/v1/tasks/\(id)")
            let running = try poll(test.client, pollURL, until: ["running", "completed"])
            if running["status"] as? String == "running" {
                XCTAssertEqual((running["progress"] as? [String: Int])?["total_steps"], 4)
            }
            let done = try poll(test.client, pollURL)
            XCTAssertEqual(done["status"] as? String, "completed")
            firstData = try XCTUnwrap(done["data"] as? [[String: Any]])
            XCTAssertEqual(firstData.first?["seed"] as? Int, 5)
            let url = try XCTUnwrap(firstData.first?["url"] as? String)
            XCTAssertEqual(try test.client.get(path(of: url)).status, 200)
            XCTAssertEqual(done["size"] as? String, "64x64")
            assertError(try test.client.get("/v1/tasks/task_nope"), status: 404, code: "not_found")
            test.server.stop()
        }
        let restarted = try TestServer(outputDirectory: directory)
        let again = try restarted.client.get(pollURL)
        XCTAssertEqual(again.status, 200)
        XCTAssertEqual(again.json["status"] as? String, "completed")
        XCTAssertEqual((again.json["data"] as? [[String: Any]])?.first?["url"] as? String, firstData.first?["url"] as? String)
    }

    func testUnfinishedTaskIsFailedAfterRestart() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-restart-\(UUID().uuidString)").path
        var pollURL = ""
        do {
            let test = try TestServer(generator: FakeGenerator(stepSeconds: 0.5), outputDirectory: directory)
            let created = try test.client.postJSON("/v1/images/generations", ["prompt": "a", "async": true, "response_format": "b64_json"])
            pollURL = try XCTUnwrap(created.json["poll_url"] as? String)
            test.server.stop()
        }
        let restarted = try TestServer(outputDirectory: directory)
        let task = try restarted.client.get(pollURL).json
        XCTAssertEqual(task["status"] as? String, "failed")
        // Stopping cancels the running job; whichever record reached the disk last, the task failed.
        XCTAssertNotNil((task["error"] as? [String: Any])?["message"] as? String)
    }

    func testAsyncB64TaskReturnsImageData() throws {
        let test = try TestServer()
        let created = try test.client.postJSON("/v1/images/generations", ["prompt": "a", "async": true, "n": 2,
                                                                                   "response_format": "b64_json"])
        let done = try poll(test.client, try XCTUnwrap(created.json["poll_url"] as? String))
        let data = try XCTUnwrap(done["data"] as? [[String: Any]])
        XCTAssertEqual(data.count, 2)
        let bytes = Data(base64Encoded: data[0]["b64_json"] as? String ?? "") ?? Data()
        XCTAssertEqual(Array(bytes.prefix(8)), pngSignature)
    }
}
