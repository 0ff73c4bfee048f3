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
        // 48x32 is below the default 64-pixel side: --allow-large lifts it.
        let run = try schnell(["generate", "a cat", "--size", "48x32", "--seed", "5", "-n", "2", "-o", output, "--quiet", "--allow-large"])
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
                                      : ["generate", "x", "--model", model.path, "--size", "64x64", "--quiet", "-o", output.path])
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
        let run = try schnell(["generate", "a cat", "--size", "64x64", "--seed", "1", "--steps", "2", "--quiet",
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
        let run = try schnell(["generate", "a cat", "--size", "64x64", "--seed", "1", "--steps", "1", "--quiet",
                               "-o", folder.appendingPathComponent("cat.png").path, "--timings-json", timings.path],
                              environment: ["SCHNELL_CPU": "generic"])
        XCTAssertEqual(run.status, 0, run.errors)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: timings)) as? [String: Any])
        XCTAssertEqual(report["cpu tier"] as? String, "generic")
        XCTAssertTrue(["generic", "avx2", "avx512", "avx512bf16"].contains(try XCTUnwrap(report["cpu tier supported"] as? String)))
        XCTAssertFalse(try XCTUnwrap(report["cpu model"] as? String).isEmpty)

        let bad = try schnell(["generate", "a cat", "--size", "64x64", "-o", folder.appendingPathComponent("no.png").path],
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

    /// diffusers documents FLUX.1-schnell's call with guidance_scale=0.0: --guidance 0 means no
    /// guidance on a model without a guidance embedding; any other value is refused with the reason.
    func testGuidanceZeroIsNoGuidanceOnSchnell() throws {
        let folder = try temporaryFolder()
        let zero = try schnell(["generate", "x", "--size", "64x64", "--steps", "1", "--guidance", "0", "--quiet",
                                "-o", folder.appendingPathComponent("zero.png").path])
        XCTAssertEqual(zero.status, 0, zero.errors)
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appendingPathComponent("zero.png").path))
        let other = try schnell(["generate", "x", "--size", "64x64", "--steps", "1", "--guidance", "3.5", "--quiet",
                                 "-o", folder.appendingPathComponent("other.png").path])
        XCTAssertEqual(other.status, 2)
        XCTAssertTrue(other.errors.contains("guidance: tiny-flux-schnell has no guidance embedding (schnell-like); leave it out"), other.errors)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("other.png").path))
    }

    /// Without --allow-large the server's default bounds hold (sides 64...2048, 50 steps, 10
    /// images), and the message names the flag and the way out; with it, the pipeline's own.
    func testGenerateHoldsTheServersLimitsUnlessAllowed() throws {
        let folder = try temporaryFolder()
        let output = folder.appendingPathComponent("big.png").path
        let cases: [([String], String)] = [
            (["--size", "4096x64"], "--size: 4096x64 has a side outside 64...2048; --allow-large lifts this limit (to 16...4096)"),
            (["--size", "32x32"], "--size: 32x32 has a side outside 64...2048; --allow-large lifts this limit (to 16...4096)"),
            (["--steps", "51"], "--steps: 51 is more than 50; --allow-large lifts this limit (to 1000)"),
            (["-n", "11"], "-n: 11 is more than 10; --allow-large lifts this limit (to 64)"),
        ]
        for (arguments, message) in cases {
            // A missing model shows the limit is checked before anything loads.
            let run = try schnell(["generate", "x", "--model", "/nonexistent/model", "-o", output, "--quiet"] + arguments)
            XCTAssertEqual(run.status, 2, "\(arguments): \(run.errors)")
            XCTAssertTrue(run.errors.contains(message), "\(arguments): \(run.errors)")
        }
        let beyond = try schnell(["generate", "x", "--size", "8192x64", "--allow-large", "-o", output, "--quiet"])
        XCTAssertEqual(beyond.status, 2)
        XCTAssertTrue(beyond.errors.contains("width: 8192 is outside 16...4096"), beyond.errors)
        let allowed = try schnell(["generate", "x", "--size", "32x32", "--steps", "1", "--allow-large", "-o", output, "--quiet"])
        XCTAssertEqual(allowed.status, 0, allowed.errors)
        XCTAssertEqual(try ImageDecoder.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: output)))).width, 32)
    }

    /// -o is checked before the model loads (here a missing one): its folder must exist and take
    /// a file, and no output may be a folder; each refusal exits 2 naming -o and the reason.
    func testGenerateChecksTheOutputBeforeLoading() throws {
        let folder = try temporaryFolder()
        let occupied = folder.appendingPathComponent("taken.png")
        try FileManager.default.createDirectory(at: occupied, withIntermediateDirectories: false)
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("pair-1.png"), withIntermediateDirectories: false)
        let cases: [([String], String)] = [
            (["-o", "/nonexistent-folder/x.png"], "-o /nonexistent-folder/x.png: the folder /nonexistent-folder does not exist"),
            (["-o", occupied.path], "-o \(occupied.path): \(occupied.path) is a folder; give a file name such as \(occupied.path)/out.png"),
            (["-o", folder.appendingPathComponent("pair.png").path, "-n", "2"], "pair-1.png is a folder"),
            (["-o", "/proc/x.png"], "-o /proc/x.png: cannot write in /proc: "),
        ]
        for (arguments, message) in cases {
            let run = try schnell(["generate", "x", "--model", "/nonexistent/model", "--quiet"] + arguments)
            XCTAssertEqual(run.status, 2, "\(arguments): \(run.errors)")
            XCTAssertTrue(run.errors.contains(message), "\(arguments): \(run.errors)")
            XCTAssertFalse(run.errors.contains("/nonexistent/model"), "checked before the model: \(run.errors)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted(), ["pair-1.png", "taken.png"],
                       "the probe file is removed")
    }

    /// A file that cannot be written at the end (here --timings-json into a missing folder) is
    /// reported with the path and the system's reason, not Foundation's error dump.
    func testWriteFailureAtTheEndIsReadable() throws {
        let folder = try temporaryFolder()
        let run = try schnell(["generate", "x", "--size", "64x64", "--steps", "1", "--quiet", "-o", folder.appendingPathComponent("a.png").path,
                               "--timings-json", "/nonexistent-folder/timings.json"])
        XCTAssertEqual(run.status, 1)
        XCTAssertTrue(run.errors.contains("could not write /nonexistent-folder/timings.json (creating /nonexistent-folder/timings.json.partial-"),
                      run.errors)
        XCTAssertTrue(run.errors.hasSuffix("No such file or directory\n"), run.errors)
        XCTAssertFalse(run.errors.contains("NSCocoaErrorDomain"), run.errors)
    }

    /// serve checks the model's files before it starts listening: a missing folder, and a weights
    /// file that cannot be opened (a dangling link), each exit 2 naming the path.
    func testServeRefusesAMissingModelBeforeListening() throws {
        let model = try temporaryFolder().appendingPathComponent("model")
        try FileManager.default.copyItem(at: Self.repository.appendingPathComponent("Weights/tiny-flux-schnell"), to: model)
        let weights = model.appendingPathComponent("vae/diffusion_pytorch_model.safetensors")
        try FileManager.default.removeItem(at: weights)
        try FileManager.default.createSymbolicLink(atPath: weights.path, withDestinationPath: "/nonexistent/vae.safetensors")
        let cases = [("/nonexistent/model", "/nonexistent/model (--model) does not exist"),
                     (model.path, "\(weights.path): cannot open: No such file or directory")]
        for (path, message) in cases {
            let run = try schnell(["serve", "--port", "0", "--model", path])
            XCTAssertEqual(run.status, 2, run.errors)
            XCTAssertTrue(run.errors.contains(message), run.errors)
            XCTAssertFalse(run.errors.contains("listening"), run.errors)
        }
    }

    // MARK: GGUF files and schnell quantize

    func testInspectReadsAGGUFTransformer() throws {
        let path = Self.fixtures.appendingPathComponent("quantized/tiny-schnell-Q8_0.gguf").path
        let run = try schnell(["inspect", path])
        XCTAssertEqual(run.status, 0, run.errors)
        for line in ["kind: FLUX transformer", "format: GGUF v3 (general.architecture flux)", "layout: original (BFL) names",
                     "blocks: 1 double-stream + 2 single-stream", "(F16 x8, F32 x32, Q8_0 x16)",
                     "size: 0.00 GB (1425664 bytes as stored)"] {
            XCTAssertTrue(run.output.contains(line), "'\(line)' missing from:\n\(run.output)")
        }
        XCTAssertFalse(run.output.contains("double_blocks.0.img_attn.proj.weight"), "tensors are listed only with --tensors")
        let listed = try schnell(["inspect", "--tensors", path])
        XCTAssertEqual(listed.status, 0, listed.errors)
        XCTAssertTrue(listed.output.contains("    double_blocks.0.img_attn.proj.weight Q8_0 [128, 128]"), listed.output)
        let tensorLines = listed.output.split(separator: "\n").filter { $0.hasPrefix("    ") }
        XCTAssertEqual(tensorLines.count, 8 + 32 + 16)
        XCTAssertEqual(tensorLines.filter { $0.contains(" Q8_0 ") }.count, 16)
    }

    /// A file named .gguf that is not one (here: random bytes) is refused as a damaged GGUF, not
    /// read as a safetensors file.
    func testInspectRefusesAGGUFWithoutItsMagic() throws {
        let folder = try temporaryFolder()
        let path = folder.appendingPathComponent("model.gguf").path
        var bytes = [UInt8](repeating: 0, count: 100)
        bytes[0] = 0x3c
        try Data(bytes + Array("<html>".utf8)).write(to: URL(fileURLWithPath: path))
        let run = try schnell(["inspect", path])
        XCTAssertEqual(run.status, 2)
        XCTAssertTrue(run.errors.contains(path) && run.errors.contains("no GGUF magic"), run.errors)
        // Cut inside a tensor: truncated, with the tensor named.
        let whole = try Data(contentsOf: Self.fixtures.appendingPathComponent("quantized/tiny-schnell-Q8_0.gguf"))
        let cut = folder.appendingPathComponent("cut.gguf").path
        try whole.prefix(whole.count - 100).write(to: URL(fileURLWithPath: cut))
        let truncated = try schnell(["inspect", cut])
        XCTAssertEqual(truncated.status, 2)
        XCTAssertTrue(truncated.errors.contains(cut) && truncated.errors.contains("truncated: tensor '"), truncated.errors)
    }

    func testQuantizeUsageErrorsExitTwoWithTheReason() throws {
        let folder = try temporaryFolder()
        let model = Self.repository.appendingPathComponent("Weights/tiny-flux-schnell").path
        let out = folder.appendingPathComponent("out.gguf").path
        let input = Self.fixtures.appendingPathComponent("quantized/tiny-t5-Q8_0.gguf").path
        let cases: [([String], String)] = [
            ([model, out], "--type is required"),
            ([model, out, "--type", "q9"], "--type must be one of q8_0|q6_k|q5_k|q5_1|q5_0|q4_k|q4_1|q4_0|q3_k|q2_k|f16|bf16, not 'q9'"),
            ([model, folder.appendingPathComponent("out.safetensors").path, "--type", "q8_0"], "OUT must end in .gguf"),
            ([input, input, "--type", "q8_0"], "OUT must not be IN"),
            ([model, out, "--type", "q8_0", "--component", "vae"], "--component must be transformer or t5, not 'vae'"),
            ([model + "/vae", out, "--type", "q8_0"], "only the FLUX transformer and the T5 encoder are quantized"),
            ([model], "expected IN and OUT"),
        ]
        for (arguments, reason) in cases {
            let run = try schnell(["quantize"] + arguments)
            XCTAssertEqual(run.status, 2, "\(arguments): \(run.errors)")
            XCTAssertTrue(run.errors.contains(reason), "\(arguments): \(run.errors)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), [], "a refused quantize writes nothing")
    }

    /// T5 of the bundled model as Q8_0: a GGUF that inspects as a complete T5 under llama.cpp's
    /// names, with the large matrices Q8_0.
    func testQuantizeWritesAT5GGUF() throws {
        let folder = try temporaryFolder()
        let out = folder.appendingPathComponent("t5-q8_0.gguf").path
        let run = try schnell(["quantize", Self.repository.appendingPathComponent("Weights/tiny-flux-schnell").path, out,
                               "--component", "t5", "--type", "q8_0", "--quiet"])
        XCTAssertEqual(run.status, 0, run.errors)
        XCTAssertTrue(run.output.contains("\(out): T5 encoder Q8_0"), run.output)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["t5-q8_0.gguf"], "no temporary file left")
        let inspect = try schnell(["inspect", out])
        XCTAssertEqual(inspect.status, 0, inspect.output + inspect.errors)
        XCTAssertTrue(inspect.output.contains("kind: T5 encoder") && inspect.output.contains("layout: llama.cpp names (GGUF)")
                      && inspect.output.contains("Q8_0 x"), inspect.output)
    }

    /// A quantize that fails leaves no file under OUT's name (nor a temporary one), and an OUT
    /// already there keeps its bytes, whether it fails before writing (a damaged input) or after
    /// (OUT is a folder, so the finished file cannot be renamed into place).
    func testFailedQuantizeLeavesOUTAlone() throws {
        let folder = try temporaryFolder()
        let model = Self.repository.appendingPathComponent("Weights/tiny-flux-schnell").path
        let damaged = folder.appendingPathComponent("damaged.safetensors")
        let source = try Data(contentsOf: Self.fixtures.appendingPathComponent("transformer/tiny-dev/tiny-dev.safetensors"))
        try source.prefix(source.count - 100).write(to: damaged)
        let fresh = folder.appendingPathComponent("fresh.gguf").path
        let damagedRun = try schnell(["quantize", damaged.path, fresh, "--type", "q4_0"])
        XCTAssertEqual(damagedRun.status, 2)
        XCTAssertTrue(damagedRun.errors.contains("truncated"), damagedRun.errors)
        XCTAssertFalse(FileManager.default.fileExists(atPath: fresh))

        let existing = folder.appendingPathComponent("existing.gguf")
        let earlier = Data("an earlier file".utf8)
        try earlier.write(to: existing)
        let again = try schnell(["quantize", damaged.path, existing.path, "--type", "q4_0"])
        XCTAssertEqual(again.status, 2)
        XCTAssertEqual(try Data(contentsOf: existing), earlier)

        let occupied = folder.appendingPathComponent("occupied.gguf")
        try FileManager.default.createDirectory(at: occupied, withIntermediateDirectories: false)
        let rename = try schnell(["quantize", model, occupied.path, "--component", "t5", "--type", "q8_0", "--quiet"])
        XCTAssertEqual(rename.status, 2)
        XCTAssertTrue(rename.errors.contains(occupied.path) && rename.errors.contains("cannot move the finished file into place"), rename.errors)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: occupied.path), [])
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: folder.path)),
                       ["damaged.safetensors", "existing.gguf", "occupied.gguf"], "no temporary file left")
    }

    func testGenerateRefusesAnUnknownWeightsType() throws {
        for command in ["generate", "serve"] {
            let run = try schnell(command == "generate" ? ["generate", "x", "--weights", "q9", "-o", "/tmp/never.png"]
                                                        : ["serve", "--port", "0", "--weights", "q9"])
            XCTAssertEqual(run.status, 2, "\(command): \(run.errors)")
            XCTAssertTrue(run.errors.contains("--weights must be one of q8_0|q6_k|q5_k|q5_1|q5_0|q4_k|q4_1|q4_0|q3_k|q2_k|f16|bf16, not 'q9'"),
                          "\(command): \(run.errors)")
        }
    }
}
