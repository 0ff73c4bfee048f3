import Foundation
import XCTest

/// `generate --lora FILE[:SCALE]` and `--lora-skip-unknown`: how the option is read and every
/// refusal before an image is made (exit 2, the file named). `generateWithLoRAs` and `pngText` are
/// for the end-to-end tests with a fixture LoRA file.
extension CLITests {
    /// `generate` on the bundled tiny model (64x64, seed 1, 2 steps) with one `--lora` per value
    /// and `extra` arguments, writing FOLDER/lora.png: the run, and the PNG's bytes if it was written.
    func generateWithLoRAs(_ loras: [String], extra: [String] = [], in folder: URL) throws -> (run: Run, png: [UInt8]?) {
        let output = folder.appendingPathComponent("lora.png")
        let arguments = ["generate", "a lighthouse", "--size", "64x64", "--seed", "1", "--steps", "2", "-o", output.path]
            + loras.flatMap { ["--lora", $0] } + extra
        let run = try schnell(arguments)
        return (run, FileManager.default.fileExists(atPath: output.path) ? try [UInt8](Data(contentsOf: output)) : nil)
    }

    /// A PNG's tEXt and iTXt chunks (uncompressed), key to text.
    func pngText(_ png: [UInt8]) -> [String: String] {
        var text: [String: String] = [:]
        var offset = 8
        while offset + 8 <= png.count {
            let length = png[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            let type = String(decoding: png[offset + 4..<offset + 8], as: UTF8.self)
            guard offset + 12 + length <= png.count else { break }
            let data = Array(png[offset + 8..<offset + 8 + length])
            if let nul = data.firstIndex(of: 0) {
                let key = String(decoding: data[..<nul], as: UTF8.self)
                if type == "tEXt" {
                    text[key] = String(data[(nul + 1)...].map { Character(Unicode.Scalar($0)) })
                } else if type == "iTXt", data.count > nul + 3, data[nul + 1] == 0 {
                    // key NUL, compression flag, method, language NUL, translated key NUL, text.
                    let rest = data[(nul + 3)...]
                    if let language = rest.firstIndex(of: 0), let translated = rest[(language + 1)...].firstIndex(of: 0) {
                        text[key] = String(decoding: rest[(translated + 1)...], as: UTF8.self)
                    }
                }
            }
            offset += 12 + length
        }
        return text
    }

    /// A file with `contents` at FOLDER/NAME (folders made as needed).
    func writeFile(_ name: String, in folder: URL, contents: String = "not a LoRA") throws -> URL {
        let file = folder.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(contents.utf8).write(to: file)
        return file
    }

    func testLoRAScaleMustBeAFiniteNumber() throws {
        let folder = try temporaryFolder()
        let style = try writeFile("style.safetensors", in: folder).path
        for (value, expected) in [("\(style):abc", "the scale 'abc' after the last ':' is not a number"),
                                  ("\(style):", "the scale '' after the last ':' is not a number"),
                                  ("\(style):inf", "the scale 'inf' must be a finite number"),
                                  ("\(style):nan", "the scale 'nan' must be a finite number"),
                                  ("\(style):1e39", "the scale '1e39' must be a finite number"),
                                  (":0.5", "no file named"), ("", "no file named")] {
            let (run, png) = try generateWithLoRAs([value], in: folder)
            XCTAssertEqual(run.status, 2, value)
            XCTAssertTrue(run.errors.contains("--lora \(value): \(expected)"), run.errors)
            XCTAssertFalse(run.errors.contains("loading"), "refused before the model loads: \(run.errors)")
            XCTAssertNil(png)
        }
    }

    func testMissingLoRAFileIsRefusedBeforeTheModelLoads() throws {
        let folder = try temporaryFolder()
        let present = try writeFile("present.safetensors", in: folder).path
        let missing = folder.appendingPathComponent("missing.safetensors").path
        // Every --lora is checked, not only the first.
        let (run, png) = try generateWithLoRAs([present, "\(missing):0.7"], in: folder)
        XCTAssertEqual(run.status, 2)
        XCTAssertTrue(run.errors.contains("--lora \(missing): no such file"), run.errors)
        XCTAssertFalse(run.errors.contains("loading"), run.errors)
        XCTAssertNil(png)
        let (folderRun, _) = try generateWithLoRAs([folder.path], in: folder)
        XCTAssertEqual(folderRun.status, 2)
        XCTAssertTrue(folderRun.errors.contains("--lora \(folder.path): is a folder"), folderRun.errors)
    }

    /// The scale comes only from a final `:NUMBER`: folders and file names may hold colons.
    func testLoRAPathsMayHoldColons() throws {
        let folder = try temporaryFolder()
        let missing = folder.appendingPathComponent("a:b/style.safetensors").path
        for value in [missing, "\(missing):0.5"] {
            let (run, _) = try generateWithLoRAs([value], in: folder)
            XCTAssertEqual(run.status, 2)
            XCTAssertTrue(run.errors.contains("--lora \(missing): no such file"), run.errors)
        }
        // The file `x:1` at scale 2; `x` alone would be the file at scale 1.
        let numbered = try writeFile("x:1", in: folder).path
        let (run, _) = try generateWithLoRAs(["\(numbered):2"], in: folder)
        XCTAssertEqual(run.status, 2)
        XCTAssertTrue(run.errors.contains(numbered) && !run.errors.contains("no such file"), run.errors)
    }

    /// A file the pipeline cannot read as a LoRA for this model: exit 2 with the file named, no
    /// image. With `--lora-skip-unknown` too: the flag skips unknown keys, not unreadable files.
    func testRefusedLoRAFileExitsTwoNamingIt() throws {
        let folder = try temporaryFolder()
        let junk = try writeFile("junk.safetensors", in: folder).path
        for extra in [[], ["--lora-skip-unknown"]] {
            let (run, png) = try generateWithLoRAs(["\(junk):0.8"], extra: extra + ["--quiet"], in: folder)
            XCTAssertEqual(run.status, 2, run.errors)
            XCTAssertTrue(run.errors.contains(junk) && !run.errors.contains("\(junk):0.8"), run.errors)
            XCTAssertFalse(run.errors.contains("unknown option"), run.errors)
            XCTAssertNil(png)
        }
    }

    /// serve's start-up policy: a `--lora-dir` that is not a folder stops it before it listens;
    /// a file in it that the pipeline refuses stops it once the model is loaded (exit 2 both,
    /// naming the path), rather than serving without an adapter the operator put there.
    func testServeRefusesToStartWithALoRADirItCannotUse() throws {
        let folder = try temporaryFolder()
        let output = folder.appendingPathComponent("out").path
        let missing = folder.appendingPathComponent("nonexistent").path
        let run = try schnell(["serve", "--port", "0", "--output-dir", output, "--lora-dir", missing])
        XCTAssertEqual(run.status, 2)
        XCTAssertTrue(run.errors.contains("--lora-dir: \(missing): no such folder"), run.errors)
        XCTAssertFalse(run.errors.contains("listening"), run.errors)

        let loras = folder.appendingPathComponent("loras")
        let junk = try writeFile("junk.safetensors", in: loras).path
        let refused = try schnell(["serve", "--port", "0", "--output-dir", output, "--lora-dir", loras.path, "--lora-skip-unknown"])
        XCTAssertEqual(refused.status, 2)
        XCTAssertTrue(refused.errors.contains("--lora-dir: \(junk): "), refused.errors)
        XCTAssertFalse(refused.errors.contains("ready on port"), refused.errors)

        let alone = try schnell(["serve", "--port", "0", "--output-dir", output, "--lora-skip-unknown"])
        XCTAssertEqual(alone.status, 2)
        XCTAssertTrue(alone.errors.contains("--lora-skip-unknown applies to --lora-dir's files"), alone.errors)
    }

    func testLoRAOptionsAreInTheUsage() throws {
        let run = try schnell(["generate", "--help"])
        XCTAssertEqual(run.status, 0)
        XCTAssertTrue(run.output.contains("--lora FILE[:SCALE]") && run.output.contains("--lora-skip-unknown"), run.output)
        let serve = try schnell(["serve", "--help"])
        XCTAssertTrue(serve.output.contains("--lora-dir DIR") && serve.output.contains("--lora-skip-unknown"), serve.output)
    }

    /// The helper reads what generate writes: the text chunks of a plain image.
    func testPNGTextReadsGeneratedParameters() throws {
        let folder = try temporaryFolder()
        let (run, png) = try generateWithLoRAs([], extra: ["--quiet"], in: folder)
        XCTAssertEqual(run.status, 0, run.errors)
        let text = pngText(try XCTUnwrap(png))
        XCTAssertEqual(text["prompt"], "a lighthouse")
        XCTAssertEqual(text["seed"], "1")
        XCTAssertNil(text["loras"], "no LoRA, no loras chunk")
    }

    /// Real adapters (Tests/Fixtures/lora): they change the image, their names and scales go into
    /// the PNG, every mode gives an image, and a bad mode is a usage error.
    func testFixtureLoRAsChangeTheImageAndAreRecorded() throws {
        let folder = try temporaryFolder()
        let peft = CLITests.fixtures.appendingPathComponent("lora/peft.safetensors").path
        let kohya = CLITests.fixtures.appendingPathComponent("lora/kohya.safetensors").path
        let plain = try XCTUnwrap(generateWithLoRAs([], extra: ["--quiet"], in: folder).png)
        let (run, png) = try generateWithLoRAs(["\(peft):0.8", kohya], extra: ["--quiet"], in: folder)
        XCTAssertEqual(run.status, 0, run.errors)
        let adapted = try XCTUnwrap(png)
        XCTAssertEqual(pngText(adapted)["loras"], "peft:0.8, kohya:1")
        XCTAssertNotEqual(adapted, plain)
        for mode in ["runtime", "merge"] {
            let (modeRun, modePNG) = try generateWithLoRAs(["\(peft):0.8"], extra: ["--quiet", "--lora-mode", mode], in: folder)
            XCTAssertEqual(modeRun.status, 0, "\(mode): \(modeRun.errors)")
            XCTAssertNotNil(modePNG)
        }
        let bad = try generateWithLoRAs([peft], extra: ["--lora-mode", "fused"], in: folder).run
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.errors.contains("--lora-mode must be auto, merge or runtime, not 'fused'"), bad.errors)
    }
}
