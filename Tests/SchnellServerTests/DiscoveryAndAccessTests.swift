import Foundation
import Schnell
@testable import SchnellServer
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Model discovery as the gateway docs read it (`allowedParams`, `?modality=`, `created`, the
/// aliases users type), and who may call what: keyless image links, URLs never from `Host`,
/// CORS and same-origin pages, and the refused variations route.
final class DiscoveryAndAccessTests: XCTestCase {
    private func data(_ response: RawResponse) -> [[String: Any]] {
        response.json["data"] as? [[String: Any]] ?? []
    }

    // MARK: - Models

    func testModelObjectCarriesAllowedParams() throws {
        let test = try TestServer()
        let model = try XCTUnwrap(data(try test.client.get("/v1/models")).first)
        XCTAssertNil(model["allowed_params"])
        let allowed = try XCTUnwrap(model["allowedParams"] as? [String: Any])
        XCTAssertEqual(allowed.keys.sorted(), ["default_guidance", "default_size", "edits", "guidance", "lora_scale", "max_guidance",
                                               "max_images", "max_loras", "max_side", "min_side", "output_formats", "response_formats",
                                               "size_multiple", "steps", "supported_sizes"])
        XCTAssertEqual(allowed["supported_sizes"] as? [String], ["256x256", "512x512", "768x768", "1024x1024", "1024x768", "768x1024",
                                                                 "1536x1024", "1024x1536", "1792x1024", "1024x1792", "2048x2048"])
        XCTAssertEqual(allowed["steps"] as? [String: Int], ["default": 4, "min": 1, "max": 8])
        XCTAssertEqual(allowed["default_size"] as? String, "64x64")
        XCTAssertEqual(allowed["output_formats"] as? [String], ["png", "jpeg", "webp"])
        XCTAssertEqual(model["created"] as? Int, 1_722_470_400, "FakeGenerator.schnell's description")
        XCTAssertEqual(try test.client.get("/v1/models/flux.1-schnell").json["allowedParams"] as? NSDictionary, allowed as NSDictionary)
    }

    func testModalityFilter() throws {
        let test = try TestServer()
        for (query, count) in [("image", 1), ("IMAGE", 1), ("text", 0), ("video", 0), ("image&other=1", 1)] {
            let list = try test.client.get("/v1/models?modality=\(query)")
            XCTAssertEqual(list.status, 200)
            XCTAssertEqual(list.json["object"] as? String, "list")
            XCTAssertEqual(data(list).count, count, query)
        }
        assertError(try test.client.get("/v1/models?modality="), status: 400, code: "invalid_request", param: "modality")
        assertError(try test.client.get("/v1/models?modality=image&modality=text"), status: 400, code: "invalid_request", param: "modality")
    }

    func testAliasesUsersTypeReachThePipeline() throws {
        XCTAssertEqual(PipelineGenerator.aliases(dev: false),
                       ["flux-1-schnell", "flux-schnell", "flux.1-schnell", "black-forest-labs/FLUX.1-schnell"])
        XCTAssertEqual(PipelineGenerator.aliases(dev: true),
                       ["flux-1-dev", "flux-dev", "flux.1-dev", "black-forest-labs/FLUX.1-dev"])
        let pipeline = try FluxPipeline.load(PipelineFiles(model: PipelineGeneratorTests.bundled), backend: CPUBackend())
        let test = try TestServer(generator: PipelineGenerator(pipeline: pipeline, created: 1_700_000_123))
        let listed = try XCTUnwrap(data(try test.client.get("/v1/models")).first)
        XCTAssertEqual(listed["id"] as? String, "tiny-flux-schnell")
        XCTAssertEqual(listed["created"] as? Int, 1_700_000_123)
        XCTAssertEqual(listed["aliases"] as? [String], PipelineGenerator.aliases(dev: false))
        for name in PipelineGenerator.aliases(dev: false) + ["FLUX-SCHNELL", "Flux.1-Schnell", "black-forest-labs/flux.1-schnell"] {
            let model = try test.client.get("/v1/models/\(name)")
            XCTAssertEqual(model.status, 200, name)
            XCTAssertEqual(model.json["id"] as? String, "tiny-flux-schnell", name)
        }
        assertError(try test.client.get("/v1/models/flux-dev"), status: 404, code: "model_not_found", param: "model")
        let generated = try test.client.postJSON("/v1/images/generations", ["prompt": "x", "model": "flux-schnell", "size": "64x64", "steps": 1])
        XCTAssertEqual(generated.status, 200, String(decoding: generated.body, as: UTF8.self))
        XCTAssertEqual(data(generated).count, 1)
        assertError(try test.client.postJSON("/v1/images/generations", ["prompt": "x", "model": "flux-dev"]),
                    status: 404, code: "model_not_found", param: "model")
    }

    func testCreatedIsTheTransformerWeightsModificationTime() throws {
        let manager = FileManager.default
        let root = manager.temporaryDirectory.appendingPathComponent("schnell-created-\(UUID().uuidString)")
        let folder = root.appendingPathComponent("transformer")
        try manager.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? manager.removeItem(at: root) }
        let stamped = [("diffusion_pytorch_model-00001-of-00002.safetensors", 1_700_000_000),
                       ("diffusion_pytorch_model-00002-of-00002.safetensors", 1_700_000_500),
                       ("config.json", 1_800_000_000)]
        for (name, time) in stamped {
            let path = folder.appendingPathComponent(name).path
            XCTAssertTrue(manager.createFile(atPath: path, contents: Data([1])))
            try manager.setAttributes([.modificationDate: Date(timeIntervalSince1970: Double(time))], ofItemAtPath: path)
        }
        XCTAssertEqual(PipelineGenerator.created(from: PipelineFiles(model: root.path)), 1_700_000_500,
                       "the newest weights file; config.json is not weights")
        let single = folder.appendingPathComponent("diffusion_pytorch_model-00001-of-00002.safetensors").path
        XCTAssertEqual(PipelineGenerator.created(from: PipelineFiles(model: root.path, transformer: single)), 1_700_000_000)
        XCTAssertEqual(PipelineGenerator.created(from: PipelineFiles(transformer: root.appendingPathComponent("none").path)), 0)
    }

    // MARK: - Keys, URLs and origins

    func testImageFilesNeedNoKeyWhileEverythingElseDoes() throws {
        let test = try TestServer { $0.apiKeys = ["sk-test"] }
        let key = ["Authorization": "Bearer sk-test"]
        let generated = try test.client.postJSON("/v1/images/generations", ["prompt": "a", "response_format": "url"], headers: key)
        let url = try XCTUnwrap(data(generated).first?["url"] as? String)
        let file = try test.client.get(try XCTUnwrap(URLComponents(string: url)?.path))
        XCTAssertEqual(file.status, 200)
        XCTAssertEqual(Array(file.body.prefix(8)), pngSignature)
        assertError(try test.client.get("/v1/images/files/0123456789abcdef0123456789abcdef.png"), status: 404, code: "not_found")

        let task = try test.client.postJSON("/v1/images/generations", ["prompt": "a", "async": true], headers: key)
        let id = try XCTUnwrap(task.json["id"] as? String)
        for (method, path) in [("GET", "/v1/models"), ("GET", "/v1/models/flux.1-schnell"), ("GET", "/v1/tasks"), ("GET", "/v1/tasks/\(id)"),
                               ("DELETE", "/v1/tasks/\(id)"), ("POST", "/v1/tasks/\(id)/cancel"), ("POST", "/v1/images/variations"),
                               ("GET", "/metrics")] {
            assertError(try test.client.request(method, path), status: 401, code: "invalid_api_key")
        }
        // The page needs no key; a file it does not have is a plain 404.
        for path in ["/", "/playground"] {
            XCTAssertEqual(try test.client.get(path).status, 200, path)
        }
        assertError(try test.client.get("/playground/app.js"), status: 404, code: "not_found")
        XCTAssertEqual(try test.client.get("/v1/tasks", headers: key).status, 200)
    }

    func testTaskImageURLsIgnoreTheHostHeader() throws {
        let test = try TestServer()
        let body = #"{"prompt": "a", "response_format": "url", "async": true}"#
        let fd = try test.client.connect()
        defer { close(fd) }
        RawClient.send(fd, Array(("POST /v1/images/generations HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body).utf8))
        let created = try RawClient.parse(RawClient.readAll(fd))
        let id = try XCTUnwrap(created.json["id"] as? String)
        let deadline = Date().addingTimeInterval(10)
        var task: [String: Any] = [:]
        while Date() < deadline && task["status"] as? String != "completed" {
            task = try test.client.get("/v1/tasks/\(id)").json
            Thread.sleep(forTimeInterval: 0.02)
        }
        let url = try XCTUnwrap((task["data"] as? [[String: Any]])?.first?["url"] as? String)
        XCTAssertTrue(url.hasPrefix("http://127.0.0.1:\(test.server.boundPort)/v1/images/files/"), url)
    }

    func testPreflightAllowsDeleteAndTheHeadersAskedFor() throws {
        let test = try TestServer { $0.corsOrigins = ["https://app.example.com"] }
        let preflight = try test.client.request("OPTIONS", "/v1/tasks/task_0123456789abcdef0123456789abcdef",
                                                headers: ["Origin": "https://app.example.com", "Access-Control-Request-Method": "DELETE",
                                                          "Access-Control-Request-Headers": "authorization, x-stainless-os"])
        XCTAssertEqual(preflight.status, 204)
        XCTAssertEqual(preflight.headers["access-control-allow-origin"], "https://app.example.com")
        XCTAssertEqual(preflight.headers["access-control-allow-methods"], "GET, HEAD, POST, DELETE")
        XCTAssertEqual(preflight.headers["access-control-allow-headers"], "authorization, x-stainless-os")
        let odd = try test.client.request("OPTIONS", "/v1/tasks", headers: ["Origin": "https://app.example.com",
                                                                           "Access-Control-Request-Method": "GET",
                                                                           "Access-Control-Request-Headers": "x-a;b"])
        XCTAssertEqual(odd.headers["access-control-allow-headers"], "Authorization, Content-Type, X-API-Key")
        let refused = try test.client.request("OPTIONS", "/v1/tasks", headers: ["Origin": "https://evil.example",
                                                                               "Access-Control-Request-Method": "DELETE"])
        assertError(refused, status: 403, code: "origin_not_allowed")

        let cancel = try test.client.request("DELETE", "/v1/tasks/task_0123456789abcdef0123456789abcdef",
                                             headers: ["Origin": "https://app.example.com"])
        assertError(cancel, status: 404, code: "not_found")
        XCTAssertEqual(cancel.headers["access-control-allow-origin"], "https://app.example.com")
    }

    func testSameOriginPagesAreServedButForeignHostNamesAreNot() throws {
        let generator = FakeGenerator()
        let test = try TestServer(generator: generator)
        let port = test.server.boundPort
        for origin in ["http://127.0.0.1:\(port)", "http://localhost:\(port)", "http://[::1]:\(port)", "HTTP://LOCALHOST:\(port)"] {
            let response = try test.client.postJSON("/v1/images/generations", ["prompt": "x"], headers: ["Origin": origin])
            XCTAssertEqual(response.status, 200, origin)
        }
        XCTAssertEqual(generator.requests.count, 4)
        // A DNS-rebinding page reaches the bound port under its own host name.
        for origin in ["http://evil.example:\(port)", "https://127.0.0.1:\(port)", "http://127.0.0.1:\(port + 1)",
                       "http://127.0.0.1", "http://127.0.0.2:\(port)", "null"] {
            assertError(try test.client.postJSON("/v1/images/generations", ["prompt": "x"], headers: ["Origin": origin]),
                        status: 403, code: "origin_not_allowed")
        }
        XCTAssertEqual(generator.requests.count, 4)

        let proxied = try TestServer { $0.publicURL = "https://img.example.com" }
        XCTAssertEqual(try proxied.client.get("/v1/models", headers: ["Origin": "https://img.example.com"]).status, 200)
        XCTAssertEqual(try proxied.client.get("/v1/models", headers: ["Origin": "https://img.example.com:443"]).status, 200)
        assertError(try proxied.client.get("/v1/models", headers: ["Origin": "http://img.example.com"]), status: 403, code: "origin_not_allowed")
        assertError(try proxied.client.get("/v1/models", headers: ["Origin": "https://img.example.com:8443"]),
                    status: 403, code: "origin_not_allowed")
    }

    func testNewRoutesAndTheirMethods() {
        XCTAssertEqual(Route(path: "/"), .page("/"))
        XCTAssertEqual(Route(path: "/playground"), .page("/playground"))
        XCTAssertEqual(Route(path: "/playground/app.js"), .page("/playground/app.js"))
        XCTAssertEqual(Route(path: "/playground/"), .page("/playground/"))
        XCTAssertNil(Route(path: "/playground/a/b.js"))
        XCTAssertEqual(Route(path: "/v1/tasks"), .tasks)
        XCTAssertEqual(Route(path: "/v1/tasks/task_1/cancel"), .cancelTask("task_1"))
        XCTAssertEqual(Route(path: "/v1/images/variations"), .variations)
        XCTAssertEqual(Route.task("x").methods, ["GET", "HEAD", "DELETE"])
        XCTAssertEqual(Route.cancelTask("x").methods, ["POST"])
        XCTAssertEqual(Route.page("/").methods, ["GET", "HEAD"])
        XCTAssertEqual([Route.health, .file("a.png"), .page("/"), .models, .tasks, .task("x"), .variations].map(\.needsKey),
                       [false, false, false, true, true, true, true])
    }

    func testVariationsPointToEdits() throws {
        let test = try TestServer()
        let png = [UInt8](repeating: 0, count: 16)
        let response = try test.client.request("POST", "/v1/images/variations",
                                               headers: ["Content-Type": "multipart/form-data; boundary=XyZ-boundary"],
                                               body: multipart([("n", "1")], files: [("image", png)]))
        assertError(response, status: 400, code: "unsupported_operation", param: .some(nil))
        XCTAssertEqual(response.error["message"] as? String,
                       "FLUX models do not make variations of an image; send the image with a prompt to /v1/images/edits instead")
        assertError(try test.client.get("/v1/images/variations"), status: 405, code: "method_not_allowed")
    }
}
