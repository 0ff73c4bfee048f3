import Foundation
@testable import Schnell
import SchnellImageIO
@testable import SchnellServer
import XCTest

/// LoRA adapters on the server: `--lora-dir`'s catalog, a request's `loras` reaching the
/// generator with their scales, the listing in `/v1/models`, the echo in responses, streams,
/// tasks and PNG text, and a 400 naming `loras` for every bad value. The adapters are made here
/// (their reading and applying are tested in SchnellTests); the generator is `FakeGenerator`.
final class LoRATests: XCTestCase {
    /// An adapter with `layers` rank-1 updates of a 2x2 layer; nothing reads its deltas here.
    static func adapter(_ name: String, format: LoRAFormat = .diffusers, layers: Int = 1,
                        skippedKeys: [String] = []) -> LoRAAdapter {
        let delta = LowRankDelta(down: [0, 0], up: [0, 0], rank: 1, inFeatures: 2, rows: 0..<2, scale: 1)
        let deltas = Dictionary(uniqueKeysWithValues: (0..<layers).map { ("double.\($0).img_qkv", [delta]) })
        return LoRAAdapter(name: name, path: "/loras/\(name).safetensors", format: format, transformerDeltas: deltas,
                           clipDeltas: [:], skippedKeys: skippedKeys)
    }

    let style = LoRATests.adapter("style", format: .kohya, layers: 2)
    let detail = LoRATests.adapter("detail")

    func generate(_ test: TestServer, _ extra: [String: Any]) throws -> RawResponse {
        var body: [String: Any] = ["prompt": "a lighthouse", "size": "64x64", "seed": 2]
        body.merge(extra) { $1 }
        return try test.client.postJSON("/v1/images/generations", body)
    }

    func testRequestLoRAsReachTheGeneratorWithTheirScales() throws {
        let generator = FakeGenerator(loras: [style, detail])
        let test = try TestServer(generator: generator)
        let response = try generate(test, ["loras": [["name": "detail", "scale": 0.8], ["name": "style"]]])
        XCTAssertEqual(response.status, 200, String(decoding: response.body, as: UTF8.self))
        XCTAssertEqual(try XCTUnwrap(generator.requests.last).loras, [AppliedLoRA(detail, scale: 0.8), AppliedLoRA(style, scale: 1)],
                       "the request's order and scales")
        let echoed = try XCTUnwrap(response.json["loras"] as? [[String: Any]])
        XCTAssertEqual(echoed.map { $0["name"] as? String }, ["detail", "style"])
        XCTAssertEqual(echoed.map { $0["scale"] as? Double }, [0.8, 1], "the scales as sent, not as Float")
        let png = try XCTUnwrap(Data(base64Encoded: (response.json["data"] as? [[String: Any]])?.first?["b64_json"] as? String ?? ""))
        let text = String(decoding: png, as: UTF8.self)
        XCTAssertTrue(text.contains("loras\u{0}detail:0.8, style:1"), "a loras text chunk")
        XCTAssertTrue(text.contains("steps: 4, size: 64x64, loras: detail:0.8, style:1"), "and in parameters")

        // Switching: none, then the first pair again; each request gets exactly its own.
        let plain = try generate(test, [:])
        XCTAssertEqual(plain.status, 200)
        XCTAssertNil(plain.json["loras"], "no loras, nothing echoed")
        XCTAssertFalse(String(decoding: plain.body, as: UTF8.self).contains("loras"))
        XCTAssertEqual(try XCTUnwrap(generator.requests.last).loras, [])
        for empty in [[], NSNull()] as [Any] {
            XCTAssertEqual(try generate(test, ["loras": empty]).status, 200)
            XCTAssertEqual(try XCTUnwrap(generator.requests.last).loras, [])
        }
        XCTAssertEqual(try generate(test, ["loras": [["name": "style", "scale": -1.5]]]).status, 200)
        XCTAssertEqual(try XCTUnwrap(generator.requests.last).loras, [AppliedLoRA(style, scale: -1.5)])
        XCTAssertEqual(try generate(test, ["loras": [["name": "detail", "scale": 0.8], ["name": "style"]]]).status, 200)
        XCTAssertEqual(try XCTUnwrap(generator.requests.last).loras, [AppliedLoRA(detail, scale: 0.8), AppliedLoRA(style, scale: 1)])
    }

    func testModelsListTheLoRAs() throws {
        let test = try TestServer(generator: FakeGenerator(loras: [style, detail]))
        let listed = try XCTUnwrap((try test.client.get("/v1/models").json["data"] as? [[String: Any]])?.first)
        let single = try test.client.get("/v1/models/flux.1-schnell").json
        for model in [listed, single] {
            let loras = try XCTUnwrap(model["loras"] as? [[String: Any]])
            XCTAssertEqual(loras.map { $0["name"] as? String }, ["detail", "style"], "sorted by name")
            XCTAssertEqual(loras.map { $0["format"] as? String }, ["diffusers", "kohya"])
            XCTAssertEqual(loras.map { $0["layers"] as? Int }, [1, 2])
            XCTAssertNil(loras.first?["path"], "the server's paths stay private")
            let allowed = try XCTUnwrap(model["allowedParams"] as? [String: Any])
            XCTAssertEqual(allowed["max_loras"] as? Int, LoRACatalog.maxPerRequest)
            let scale = try XCTUnwrap(allowed["lora_scale"] as? [String: Any])
            XCTAssertEqual([scale["min"] as? Double, scale["max"] as? Double, scale["default"] as? Double], [-10, 10, 1])
        }
        let bare = try TestServer()
        let model = try XCTUnwrap((try bare.client.get("/v1/models").json["data"] as? [[String: Any]])?.first)
        XCTAssertEqual((model["loras"] as? [Any])?.count, 0)
        XCTAssertEqual((model["allowedParams"] as? [String: Any])?["max_loras"] as? Int, 0)
    }

    /// Every malformed `loras` is a 400 whose param is `loras`, with a message that says what is wrong.
    func testEveryBadLoRAsValueIsA400NamingLoRAs() throws {
        let generator = FakeGenerator(loras: [style, detail])
        let test = try TestServer(generator: generator)
        let tooMany = (0...LoRACatalog.maxPerRequest).map { _ in ["name": "style"] }
        let cases: [(Any, String)] = [
            ("style", "must be an array of objects"), (5, "must be an array of objects"), (true, "must be an array of objects"),
            (["name": "style"], "must be an array of objects"), ([5], "must be an array of objects"), (["style"], "must be an array of objects"),
            ([[:]], "needs a 'name' string"), ([["name": 5]], "needs a 'name' string"), ([["scale": 0.5]], "needs a 'name' string"),
            ([["name": "nope"]], "'nope', which this server does not have; it has 'detail', 'style'"),
            ([["name": "Style"]], "'Style', which this server does not have"),
            ([["name": "style", "scale": "high"]], "The 'scale' of 'style' in 'loras' must be a number"),
            ([["name": "style", "scale": true]], "must be a number"),
            ([["name": "style", "scale": 10.5]], "must be between -10 and 10"),
            ([["name": "style", "scale": -11]], "must be between -10 and 10"),
            ([["name": "style", "scale": 1e300]], "must be between -10 and 10"),
            ([["name": "style", "weight": 0.5]], "take 'name' and 'scale', not 'weight'"),
            ([["name": "style"], ["name": "detail"], ["name": "style", "scale": 0.5]], "names 'style' twice"),
            (tooMany, "names \(LoRACatalog.maxPerRequest + 1) adapters; at most \(LoRACatalog.maxPerRequest)"),
        ]
        for (value, message) in cases {
            let response = try generate(test, ["loras": value])
            assertError(response, status: 400, code: "invalid_request", param: "loras")
            XCTAssertTrue((response.error["message"] as? String ?? "").contains(message), "\(value): \(response.error)")
        }
        XCTAssertTrue(generator.requests.isEmpty, "nothing was generated")

        let bare = try TestServer()
        let none = try generate(bare, ["loras": [["name": "style"]]])
        assertError(none, status: 400, code: "invalid_request", param: "loras")
        XCTAssertTrue((none.error["message"] as? String ?? "").contains("it offers none (start it with --lora-dir DIR)"), "\(none.error)")
    }

    func testEditsTakeLoRAsAsAFormField() throws {
        let generator = FakeGenerator(loras: [style, detail])
        let test = try TestServer(generator: generator)
        let image = try ImageEncoder.encode(try Image8(width: 64, height: 64, channels: 3, pixels: [UInt8](repeating: 90, count: 64 * 64 * 3)),
                                            as: .png)
        func edit(_ loras: String) throws -> RawResponse {
            try postEdit(test.client, multipart([("prompt", "a lighthouse"), ("loras", loras)], files: [("image", image)]))
        }
        let response = try edit(#"[{"name": "style", "scale": 0.5}, {"name": "detail"}]"#)
        XCTAssertEqual(response.status, 200, String(decoding: response.body, as: UTF8.self))
        XCTAssertEqual(try XCTUnwrap(generator.requests.last).loras, [AppliedLoRA(style, scale: 0.5), AppliedLoRA(detail, scale: 1)])
        XCTAssertEqual((response.json["loras"] as? [[String: Any]])?.map { $0["name"] as? String }, ["style", "detail"])
        XCTAssertEqual(try edit(" ").status, 200, "empty text: none")
        XCTAssertEqual(try XCTUnwrap(generator.requests.last).loras, [])
        for (value, message) in [(#"[{"name": "style""#, "'loras' is not valid JSON"), ("style", "'loras' is not valid JSON"),
                                 (#"{"name": "style"}"#, "must be an array of objects"),
                                 (#"[{"name": "style", "scale": "0.5"}]"#, "must be a number"),
                                 (#"[{"name": "other"}]"#, "'other', which this server does not have")] {
            let refused = try edit(value)
            assertError(refused, status: 400, code: "invalid_request", param: "loras")
            XCTAssertTrue((refused.error["message"] as? String ?? "").contains(message), "\(value): \(refused.error)")
        }
    }

    /// Streamed `completed` events and finished async tasks echo the adapters as responses do.
    func testStreamsAndTasksEchoTheLoRAs() throws {
        let test = try TestServer(generator: FakeGenerator(loras: [style]))
        let loras = [["name": "style", "scale": 0.25]]
        let streamed = try generate(test, ["loras": loras, "stream": true])
        XCTAssertEqual(streamed.status, 200)
        let completed = try XCTUnwrap(try events(streamed).first { $0.name == "image_generation.completed" })
        XCTAssertEqual((completed.data["loras"] as? [[String: Any]])?.first?["scale"] as? Double, 0.25)

        let created = try generate(test, ["loras": loras, "async": true])
        XCTAssertEqual(created.status, 202)
        XCTAssertEqual((created.json["loras"] as? [[String: Any]])?.first?["name"] as? String, "style")
        let pollURL = try XCTUnwrap(created.json["poll_url"] as? String)
        var task: [String: Any] = [:]
        for _ in 0..<250 where task["status"] as? String != "completed" {
            Thread.sleep(forTimeInterval: 0.02)
            task = try test.client.get(pollURL).json
        }
        XCTAssertEqual(task["status"] as? String, "completed")
        XCTAssertEqual((task["loras"] as? [[String: Any]])?.first?["name"] as? String, "style")
        XCTAssertNil(try generate(test, ["async": true]).json["loras"], "none asked, none echoed")
    }

    /// A task's record carries its adapters while it runs and after it is cancelled.
    func testLiveAndCancelledTasksKeepTheirLoRAs() throws {
        let test = try TestServer(generator: FakeGenerator(loras: [style], stepSeconds: 0.2))
        let created = try generate(test, ["loras": [["name": "style", "scale": 2]], "async": true, "steps": 8])
        let pollURL = try XCTUnwrap(created.json["poll_url"] as? String)
        let live = try test.client.get(pollURL).json
        XCTAssertTrue(["pending", "running"].contains(live["status"] as? String), "\(live)")
        XCTAssertEqual((live["loras"] as? [[String: Any]])?.first?["scale"] as? Double, 2)
        XCTAssertEqual(try test.client.request("DELETE", pollURL).status, 200)
        var task: [String: Any] = [:]
        for _ in 0..<250 where task["status"] as? String != "cancelled" {
            Thread.sleep(forTimeInterval: 0.02)
            task = try test.client.get(pollURL).json
        }
        XCTAssertEqual(task["status"] as? String, "cancelled")
        XCTAssertEqual((task["loras"] as? [[String: Any]])?.first?["name"] as? String, "style")
    }

    // MARK: --lora-dir

    func folder(with names: [String]) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-loras-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        for name in names {
            let path = folder.appendingPathComponent(name)
            if name.hasSuffix("/") {
                try FileManager.default.createDirectory(at: path, withIntermediateDirectories: true)
            } else {
                try FileManager.default.createDirectory(at: path.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Data("x".utf8).write(to: path)
            }
        }
        return folder
    }

    /// A stand-in for `pipeline.loadLoRA`: named by the file, as the reader names adapters.
    static func loadByName(_ path: String) throws -> LoRAAdapter {
        adapter(((path as NSString).lastPathComponent as NSString).deletingPathExtension)
    }

    func testLoRADirectoryReadsEverySafetensorsFileInIt() throws {
        let folder = try folder(with: ["b.safetensors", "a.SafeTensors", ".partial.safetensors", "notes.txt", "nested.safetensors/",
                                       "sub/c.safetensors"])
        XCTAssertEqual(try LoRACatalog.files(in: folder.path), ["a.SafeTensors", "b.safetensors"].map { folder.appendingPathComponent($0).path },
                       "sorted; not hidden files, other extensions, folders or what is in subfolders")
        let adapters = try LoRACatalog.load(folder: folder.path, using: LoRATests.loadByName)
        XCTAssertEqual(adapters.keys.sorted(), ["a", "b"])
        XCTAssertTrue(try LoRACatalog.load(folder: try self.folder(with: ["readme.md"]).path, using: LoRATests.loadByName).isEmpty)
    }

    /// The start-up policy: the first file that cannot be read stops the server from starting,
    /// naming that file and the reason.
    func testLoRADirectoryRefusesToStartWithAFileItCannotRead() throws {
        struct Refused: Error, CustomStringConvertible { var description: String { "unknown key 'x.lora_down.weight'" } }
        let folder = try folder(with: ["a.safetensors", "b.safetensors", "c.safetensors"])
        let bad = folder.appendingPathComponent("b.safetensors").path
        var read: [String] = []
        XCTAssertThrowsError(try LoRACatalog.load(folder: folder.path) { path in
            read.append(path)
            if path == bad { throw Refused() }
            return try LoRATests.loadByName(path)
        }) { error in
            XCTAssertEqual(error as? LoRACatalog.LoadError, LoRACatalog.LoadError(path: bad, reason: "unknown key 'x.lora_down.weight'"))
            XCTAssertEqual("\(error)", "--lora-dir: \(bad): unknown key 'x.lora_down.weight'")
        }
        XCTAssertEqual(read.count, 2, "stops at the first failure")

        let clash = try self.folder(with: ["a.safetensors", "a.SAFETENSORS"])
        XCTAssertThrowsError(try LoRACatalog.load(folder: clash.path, using: LoRATests.loadByName)) { error in
            XCTAssertTrue("\(error)".contains("its name 'a' is taken by"), "\(error)")
        }
        let missing = clash.appendingPathComponent("nonexistent").path
        XCTAssertThrowsError(try LoRACatalog.files(in: missing)) { error in
            XCTAssertEqual(error as? LoRACatalog.LoadError, LoRACatalog.LoadError(path: missing, reason: "no such folder"))
        }
        let file = clash.appendingPathComponent("a.safetensors").path
        XCTAssertThrowsError(try LoRACatalog.files(in: file)) { error in
            XCTAssertEqual(error as? LoRACatalog.LoadError, LoRACatalog.LoadError(path: file, reason: "not a folder"))
        }
    }

    /// With the bundled tiny pipeline: a file that is no LoRA for it stops the catalog, named.
    func testPipelineRefusalNamesTheFile() throws {
        let pipeline = try FluxPipeline.load(PipelineFiles(model: PipelineGeneratorTests.bundled), backend: CPUBackend())
        let folder = try folder(with: ["junk.safetensors"])
        let junk = folder.appendingPathComponent("junk.safetensors").path
        XCTAssertThrowsError(try LoRACatalog.load(folder: folder.path) { try pipeline.loadLoRA(path: $0) }) { error in
            XCTAssertEqual((error as? LoRACatalog.LoadError)?.path, junk)
        }
        let generator = PipelineGenerator(pipeline: pipeline, loras: ["style": style])
        XCTAssertTrue(generator.loras["style"] === style)
    }

    func testSummaryAndSkippedKeysWarning() {
        XCTAssertEqual(LoRACatalog.summary([("a", 0.8), ("b", 1), ("c", -0.25), ("d", 1e-7)]), "a:0.8, b:1, c:-0.25, d:1e-07")
        XCTAssertNil(LoRACatalog.skippedKeysWarning(style))
        let skipping = LoRATests.adapter("odd", skippedKeys: ["x.lora_down.weight", "y.alpha"])
        XCTAssertEqual(LoRACatalog.skippedKeysWarning(skipping),
                       "warning: /loras/odd.safetensors: skipped 2 keys it does not know (--lora-skip-unknown): x.lora_down.weight, y.alpha")
    }
}
