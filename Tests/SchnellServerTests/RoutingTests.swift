import Foundation
import SchnellServer
import XCTest

final class RoutingTests: XCTestCase {
    func testHealthReportsLoadingUntilAGeneratorIsSet() throws {
        let test = try TestServer(generator: nil)
        let loading = try test.client.get("/health")
        XCTAssertEqual(loading.status, 503)
        XCTAssertEqual(loading.json["status"] as? String, "loading")
        assertError(try test.client.postJSON("/v1/images/generations", ["prompt": "a fox"]), status: 503, code: "model_loading")
        XCTAssertEqual((try test.client.get("/v1/models").json["data"] as? [Any])?.count, 0)
        test.server.setGenerator(FakeGenerator())
        let ready = try test.client.get("/health")
        XCTAssertEqual(ready.status, 200)
        XCTAssertEqual(ready.json["status"] as? String, "ok")
        XCTAssertEqual(ready.json["model"] as? String, "flux.1-schnell")
        XCTAssertNotNil(ready.headers["x-request-id"])
    }

    func testModelsListAndLookup() throws {
        let test = try TestServer()
        let list = try test.client.get("/v1/models")
        XCTAssertEqual(list.status, 200)
        XCTAssertEqual(list.json["object"] as? String, "list")
        let models = try XCTUnwrap(list.json["data"] as? [[String: Any]])
        XCTAssertEqual(models.count, 1)
        XCTAssertEqual(models[0]["id"] as? String, "flux.1-schnell")
        XCTAssertEqual(models[0]["object"] as? String, "model")
        XCTAssertEqual(models[0]["modality"] as? String, "image")
        XCTAssertEqual(models[0]["created"] as? Int, 1_722_470_400)
        let allowed = try XCTUnwrap(models[0]["allowedParams"] as? [String: Any])
        XCTAssertEqual(allowed["guidance"] as? Bool, false)
        XCTAssertEqual((allowed["steps"] as? [String: Int])?["max"], 8)
        XCTAssertTrue((allowed["supported_sizes"] as? [String])?.contains("1024x1024") ?? false)
        XCTAssertFalse((allowed["supported_sizes"] as? [String])?.contains("4096x4096") ?? true)

        XCTAssertEqual(try test.client.get("/v1/models/flux.1-schnell").json["id"] as? String, "flux.1-schnell")
        XCTAssertEqual(try test.client.get("/v1/models/flux-1-schnell").json["id"] as? String, "flux.1-schnell")
        XCTAssertEqual(try test.client.get("/v1/models/black-forest-labs/FLUX.1-schnell").json["id"] as? String, "flux.1-schnell")
        assertError(try test.client.get("/v1/models/dall-e-3"), status: 404, code: "model_not_found", param: "model")
    }

    func testUnknownRouteAndWrongMethod() throws {
        let test = try TestServer()
        assertError(try test.client.get("/v1/chat/completions"), status: 404, code: "not_found")
        assertError(try test.client.get("/index.html"), status: 404, code: "not_found")
        let wrongMethod = try test.client.get("/v1/images/generations")
        assertError(wrongMethod, status: 405, code: "method_not_allowed")
        XCTAssertEqual(wrongMethod.headers["allow"], "POST")
        assertError(try test.client.request("DELETE", "/v1/models"), status: 405, code: "method_not_allowed")
    }

    func testBodyErrors() throws {
        let test = try TestServer { $0.maxBodyBytes = 1024 }
        let client = test.client
        assertError(try client.request("POST", "/v1/images/generations", headers: ["Content-Type": "application/json"],
                                       body: Array("{\"prompt\": ".utf8)), status: 400, code: "invalid_request")
        assertError(try client.request("POST", "/v1/images/generations", headers: ["Content-Type": "application/json"],
                                       body: Array("[1, 2]".utf8)), status: 400, code: "invalid_request")
        assertError(try client.request("POST", "/v1/images/generations", headers: ["Content-Type": "text/plain"],
                                       body: Array("{\"prompt\": \"a\"}".utf8)), status: 415, code: "unsupported_media_type")
        assertError(try client.request("POST", "/v1/images/generations", headers: ["Content-Type": "application/x-www-form-urlencoded"],
                                       body: Array("prompt=a".utf8)), status: 415, code: "unsupported_media_type")
        let big = Array("{\"prompt\": \"\(String(repeating: "a", count: 2000))\"}".utf8)
        assertError(try client.request("POST", "/v1/images/generations", headers: ["Content-Type": "application/json"], body: big),
                    status: 413, code: "request_too_large")
        // Chunked: no length is announced, so the body could not be budgeted before it is read.
        let fd = try client.connect()
        defer { close(fd) }
        var chunked = "POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunked += String(big.count, radix: 16) + "\r\n" + String(decoding: big, as: UTF8.self) + "\r\n0\r\n\r\n"
        RawClient.send(fd, Array(chunked.utf8))
        assertError(try RawClient.parse(RawClient.readAll(fd)), status: 411, code: "length_required")
        XCTAssertEqual(try client.get("/health").status, 200)
    }

    func testSlowBodyIsCutOffAndServerKeepsServing() throws {
        let test = try TestServer { $0.connectionTimeoutSeconds = 1 }
        let fd = try test.client.connect(timeoutSeconds: 10)
        defer { close(fd) }
        let started = Date()
        RawClient.send(fd, Array("POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"pro".utf8))
        let received = try RawClient.readAll(fd)
        XCTAssertTrue(received.isEmpty, "a half-sent body gets no answer, only a closed connection")
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        XCTAssertEqual(try test.client.get("/health").status, 200)
    }

    func testAPIKeys() throws {
        let test = try TestServer { $0.apiKeys = ["sk-one", "sk-two"] }
        let client = test.client
        assertError(try client.get("/v1/models"), status: 401, code: "invalid_api_key")
        assertError(try client.get("/v1/models", headers: ["Authorization": "Bearer sk-on"]), status: 401, code: "invalid_api_key")
        assertError(try client.get("/v1/models", headers: ["Authorization": "Bearer sk-one1"]), status: 401, code: "invalid_api_key")
        assertError(try client.get("/metrics"), status: 401, code: "invalid_api_key")
        assertError(try client.postJSON("/v1/images/generations", ["prompt": "a"]), status: 401, code: "invalid_api_key")
        XCTAssertEqual(try client.get("/v1/models", headers: ["Authorization": "Bearer sk-one"]).status, 200)
        XCTAssertEqual(try client.get("/v1/models", headers: ["x-api-key": "sk-two"]).status, 200)
        XCTAssertEqual(try client.get("/health").status, 200)
    }

    func testMetrics() throws {
        let generator = FakeGenerator()
        let test = try TestServer(generator: generator)
        XCTAssertEqual(try test.client.postJSON("/v1/images/generations", ["prompt": "a fox", "n": 2]).status, 200)
        _ = try test.client.get("/nowhere")
        let metrics = try test.client.get("/metrics")
        XCTAssertEqual(metrics.status, 200)
        XCTAssertTrue(metrics.headers["content-type"]?.hasPrefix("text/plain") ?? false)
        let text = String(decoding: metrics.body, as: UTF8.self)
        for line in ["schnell_http_requests_total{status=\"200\"} 1", "schnell_http_requests_total{status=\"404\"} 1",
                     "schnell_queue_depth 0", "schnell_images_generated_total 2", "schnell_generation_seconds_count 1",
                     "schnell_generation_seconds_bucket{le=\"+Inf\"} 1", "schnell_model_loaded 1"] {
            XCTAssertTrue(text.contains(line + "\n"), "missing \(line) in\n\(text)")
        }
    }
}
