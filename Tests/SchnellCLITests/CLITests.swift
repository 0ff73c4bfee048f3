import Foundation
import SchnellImageIO
import XCTest

/// The `schnell` executable run as a user runs it: exit codes, messages and files.
final class CLITests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = repository.appendingPathComponent("Tests/Fixtures")

    /// The built `schnell` beside the test bundle.
    var executable: URL {
        var folder = Bundle.main.bundleURL
        while !FileManager.default.fileExists(atPath: folder.appendingPathComponent("schnell").path), folder.path != "/" {
            folder.deleteLastPathComponent()
        }
        return folder.appendingPathComponent("schnell")
    }

    struct Run { let status: Int32; let output: String; let errors: String }

    func schnell(_ arguments: [String], in directory: URL? = nil, environment: [String: String] = [:]) throws -> Run {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.currentDirectoryURL = directory ?? Self.repository
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, output: String(decoding: outputData, as: UTF8.self),
                   errors: String(decoding: errorData, as: UTF8.self))
    }

    func temporaryFolder() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        return folder
    }

    func testInspectReportsBothLayouts() throws {
        let folder = try schnell(["inspect", Self.fixtures.appendingPathComponent("transformer/tiny-schnell").path])
        XCTAssertEqual(folder.status, 0, folder.errors)
        XCTAssertTrue(folder.output.contains("kind: FLUX transformer"), folder.output)
        XCTAssertTrue(folder.output.contains("hidden size: 32 (2 heads x 16)"), folder.output)
        XCTAssertTrue(folder.output.contains("blocks: 2 double-stream + 3 single-stream"), folder.output)
        let single = try schnell(["inspect", Self.fixtures.appendingPathComponent("transformer/tiny-dev/tiny-dev.safetensors").path])
        XCTAssertEqual(single.status, 0, single.errors)
        XCTAssertTrue(single.output.contains("layout: original (BFL) names"), single.output)
        XCTAssertTrue(single.output.contains("dev-like (guidance embedding)"), single.output)
        XCTAssertTrue(single.output.contains("hidden size: 24 (3 heads x 8)"), single.output)
    }

    func testInspectRefusesADamagedFile() throws {
        let folder = try temporaryFolder()
        let source = Self.fixtures.appendingPathComponent("transformer/tiny-dev/tiny-dev.safetensors")
        let damaged = folder.appendingPathComponent("cut.safetensors")
        let bytes = try Data(contentsOf: source)
        try bytes.prefix(bytes.count - 100).write(to: damaged)
        let run = try schnell(["inspect", damaged.path])
        XCTAssertEqual(run.status, 2)
        XCTAssertTrue(run.errors.contains(damaged.path) && run.errors.contains("truncated"), run.errors)
    }

    func testGenerateWritesPNGsWithParameters() throws {
        let folder = try temporaryFolder()
        let output = folder.appendingPathComponent("cat.png").path
        let run = try schnell(["generate", "a cat", "--size", "48x32", "--seed", "5", "-n", "2", "-o", output, "--quiet"])
        XCTAssertEqual(run.status, 0, run.errors)
        for (path, seed) in [(output, 5), (folder.appendingPathComponent("cat-1.png").path, 6)] {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            let image = try ImageDecoder.decode(bytes)
            XCTAssertEqual([image.width, image.height], [48, 32])
            let text = String(decoding: bytes, as: UTF8.self)
            XCTAssertTrue(text.contains("seed\u{0}\(seed)") && text.contains("prompt\u{0}a cat"), "PNG text chunks of \(path)")
            XCTAssertTrue(run.output.contains("seed \(seed)"), run.output)
        }
    }

    func testGenerateRefusesBadInputWithTheFlagNamed() throws {
        let size = try schnell(["generate", "x", "--size", "100x64", "--quiet", "-o", "/tmp/never.png"])
        XCTAssertEqual(size.status, 2)
        XCTAssertTrue(size.errors.contains("width: 100 is not a multiple of 16"), size.errors)
        let steps = try schnell(["generate", "x", "--steps", "zero"])
        XCTAssertEqual(steps.status, 2)
        XCTAssertTrue(steps.errors.contains("--steps must be a whole number"), steps.errors)
        let unknown = try schnell(["generate", "x", "--colour", "red"])
        XCTAssertEqual(unknown.status, 2)
        XCTAssertTrue(unknown.errors.contains("unknown option --colour"), unknown.errors)
        let format = try schnell(["generate", "x", "-o", "out.gif"])
        XCTAssertEqual(format.status, 2)
        XCTAssertTrue(format.errors.contains(".gif") || format.errors.contains("out.gif"), format.errors)
        let missing = try schnell(["generate", "x", "--model", "/nonexistent/model"])
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.errors.contains("/nonexistent/model"), missing.errors)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/never.png"))
    }

    /// Every damaged model file exits 2 with the file named (garbage tokenizer files used to exit
    /// 1, a garbage scheduler config did not name its file, a 2^40 token id and 10^9 layers
    /// crashed, a token id past the encoder's table failed only the prompts that used it). Each case damages one file of a copy of the bundled model, then inspects or
    /// generates from it; nothing is generated.
    func testDamagedModelFilesExitTwoNamingTheFile() throws {
        let bundled = Self.repository.appendingPathComponent("Weights/tiny-flux-schnell")
        let cases: [(file: String, command: String, damage: (URL) throws -> Void, says: String)] = [
            ("tokenizer/vocab.json", "generate", { try Data("garbage".utf8).write(to: $0) }, "not valid JSON"),
            ("tokenizer_2/tokenizer.json", "generate", { try Data("garbage".utf8).write(to: $0) }, "not valid JSON"),
            ("tokenizer/vocab.json", "generate", { try Self.editJSON($0) { $0["hello</w>"] = 1 << 40 } }, "has id 1099511627776"),
            ("tokenizer_2/tokenizer.json", "generate", {
                try Self.editJSON($0) { object in
                    var model = object["model"] as? [String: Any] ?? [:]
                    model["unk_id"] = 1 << 40
                    object["model"] = model
                }
            }, "unk_id 1099511627776"),
            ("tokenizer/vocab.json", "generate", { try Self.editJSON($0) { $0["zzz</w>"] = 49408 } },
             "gives token ids up to 49408, past the CLIP text encoder's 49408 embeddings"),
            ("scheduler/scheduler_config.json", "generate", { try Data("garbage".utf8).write(to: $0) }, "scheduler config is not valid"),
            ("transformer/config.json", "inspect", { try Self.editJSON($0) { $0["num_layers"] = 1_000_000_000 } },
             "'num_layers' is 1000000000"),
            ("text_encoder_2/config.json", "generate", { try Self.editJSON($0) { $0["num_heads"] = 1 << 62 } },
             "'num_heads' is 4611686018427387904"),
        ]
        for damaged in cases {
            let model = try temporaryFolder().appendingPathComponent("model")
            try FileManager.default.copyItem(at: bundled, to: model)
            let file = model.appendingPathComponent(damaged.file)
            try damaged.damage(file)
            let output = model.appendingPathComponent("never.png")
            let run = try schnell(damaged.command == "inspect" ? ["inspect", model.appendingPathComponent("transformer").path]
                                      : ["generate", "x", "--model", model.path, "--size", "16x16", "--quiet", "-o", output.path])
            XCTAssertEqual(run.status, 2, "\(damaged.file): \(run.errors)")
            XCTAssertTrue(run.errors.contains(file.path) && run.errors.contains(damaged.says), "\(damaged.file): \(run.errors)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: output.path))
        }
    }

    static func editJSON(_ file: URL, _ edit: (inout [String: Any]) -> Void) throws {
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any] ?? [:]
        edit(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: file)
    }

    func testServeRefusesALimitBeyondThePipelines() throws {
        let run = try schnell(["serve", "--port", "0", "--max-side", "8192"])
        XCTAssertEqual(run.status, 2)
        XCTAssertTrue(run.errors.contains("--max-side 8192 is beyond the pipeline's limit of 4096"), run.errors)
    }

    func testGenerateWritesTimingsJSON() throws {
        let folder = try temporaryFolder()
        let timings = folder.appendingPathComponent("timings.json")
        let run = try schnell(["generate", "a cat", "--size", "32x32", "--seed", "1", "--steps", "2", "--quiet",
                               "-o", folder.appendingPathComponent("cat.png").path, "--timings-json", timings.path])
        XCTAssertEqual(run.status, 0, run.errors)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: timings)) as? [String: Any])
        let stages = try XCTUnwrap(report["stages"] as? [[String: Any]])
        XCTAssertEqual(stages.compactMap { $0["stage"] as? String }, ["text encoders", "step 1", "step 2", "vae decode"])
        XCTAssertTrue(stages.allSatisfy { ($0["seconds"] as? Double).map { $0 >= 0 } ?? false }, "\(stages)")
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(report["load"] as? Double), 0)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(report["image encode"] as? Double), 0)
        XCTAssertGreaterThan(try XCTUnwrap(report["peak rss bytes"] as? Int), 1 << 20)
    }

    /// SCHNELL_CPU forces a tier, named in the timings JSON beside the CPU's own; a name that is
    /// no tier stops the command before it loads anything.
    func testForcedCPUTierIsReportedAndABadOneRefused() throws {
        let folder = try temporaryFolder()
        let timings = folder.appendingPathComponent("timings.json")
        let run = try schnell(["generate", "a cat", "--size", "32x32", "--seed", "1", "--steps", "1", "--quiet",
                               "-o", folder.appendingPathComponent("cat.png").path, "--timings-json", timings.path],
                              environment: ["SCHNELL_CPU": "generic"])
        XCTAssertEqual(run.status, 0, run.errors)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: timings)) as? [String: Any])
        XCTAssertEqual(report["cpu tier"] as? String, "generic")
        XCTAssertTrue(["generic", "avx2", "avx512", "avx512bf16"].contains(try XCTUnwrap(report["cpu tier supported"] as? String)))
        XCTAssertFalse(try XCTUnwrap(report["cpu model"] as? String).isEmpty)

        let bad = try schnell(["generate", "a cat", "--size", "32x32", "-o", folder.appendingPathComponent("no.png").path],
                              environment: ["SCHNELL_CPU": "avx3"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.errors.contains("SCHNELL_CPU=avx3 is not a tier (use generic, avx2, avx512 or avx512bf16)"), bad.errors)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("no.png").path))
    }

    func testBF16PrecisionStaysCloseToFloat32() throws {
        let folder = try temporaryFolder()
        var images: [Image8] = []
        for precision in ["f32", "bf16"] {
            let path = folder.appendingPathComponent("\(precision).png").path
            let run = try schnell(["generate", "a fox", "--size", "64x64", "--seed", "3", "--precision", precision, "-o", path, "--quiet"])
            XCTAssertEqual(run.status, 0, run.errors)
            images.append(try ImageDecoder.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: path)))))
        }
        // bf16-rounded activations move pixels a little; PSNR against float32 of at least 30 dB.
        let squared = zip(images[0].pixels, images[1].pixels).reduce(0.0) { $0 + pow(Double($1.0) - Double($1.1), 2) }
        let psnr = 10 * log10(255 * 255 / max(squared / Double(images[0].pixels.count), 1e-12))
        XCTAssertGreaterThanOrEqual(psnr, 30, "PSNR \(psnr) dB")
        let bad = try schnell(["generate", "x", "--precision", "fp8"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.errors.contains("--precision must be f32 or bf16, not 'fp8'"), bad.errors)
    }
}
