import Foundation
import Schnell
import SchnellImageIO
import SchnellServer

/// `schnell generate "prompt" [options]`: one or more images to PNG/JPEG/WebP files, with a
/// progress line on stderr and per-stage timings at the end.
enum GenerateCommand {
    static let usage = """
        usage: schnell generate PROMPT [--model DIR | --transformer F --vae F --clip F --t5 F --tokenizers DIR]
                                [--seed S] [--size WxH] [--steps N] [--guidance G] [-n N] [-o out.png]
                                [--max-sequence-length L] [--threads N] [--precision f32|bf16] [--weights TYPE]
                                [--lora FILE[:SCALE]]... [--lora-skip-unknown] [--lora-mode M] [--timings-json FILE] [--allow-large] [--quiet]
          --model DIR        a diffusers FLUX pipeline folder (default: the bundled tiny model,
                             Weights/tiny-flux-schnell, a smoke test whose pictures are noise)
          --transformer F, --vae F, --clip F, --t5 F
                             single files (flux1-schnell.safetensors or a GGUF such as flux1-schnell-Q8_0.gguf,
                             ae.safetensors, clip_l.safetensors, t5xxl_fp16.safetensors or t5-v1_1-xxl-encoder-Q8_0.gguf;
                             fp8 files, scaled or not, too); each overrides the --model folder's part
          --tokenizers DIR   a folder with tokenizer/ and tokenizer_2/ (a FLUX pipeline folder), needed with
                             single files; its component configs are used where it has them
          --size WxH         multiples of 16 (default 1024x1024), each side in \(cli.minSide)...\(cli.maxSide)
          --steps N, -n N    at most \(cli.maxSteps) steps and \(cli.maxImages) images (the server's defaults)
          --allow-large      lift those bounds to the pipeline's: sides \(pipeline.minSide)...\(pipeline.maxSide), \(pipeline.maxSteps) steps,
                             \(pipeline.maxImages) images
          --guidance G       for models with a guidance embedding (dev); 0 on schnell means none
          --precision P      f32 (default: float32 math on any stored dtype) or bf16, for bf16-stored weights:
                             with AVX512-BF16, native bf16 dot products on bf16-rounded activations;
                             with AVX2 or AVX-512 alone, the weights are widened to float32 as the GEMM
                             packs them (float32 math, half the weight memory and traffic). Here: tier
                             \(CPUTier.current), \(CPUTier.current.bf16Meaning)
                             (SCHNELL_CPU=generic|avx2|avx512|avx512bf16 forces a lower tier)
        \(CommandLineOptions.weightsHelp)
          --lora FILE[:SCALE]
                             apply a LoRA adapter (diffusers/PEFT, kohya, XLabs or BFL keys) at SCALE (a finite
                             number, default 1); repeatable. The scale is read only from a final ':NUMBER', so
                             paths may hold colons. The files are checked before the model loads and read after
                             it; one that does not fit the model is refused naming the file and key (exit 2)
          --lora-skip-unknown
                             skip keys a LoRA file has that the engine does not know, listing them on stderr
                             (default: such a file is refused)
        \(CommandLineOptions.loraModeHelp)
          --seed S           image i uses S + i (default: random, printed)
          -o FILE            .png (with the generation parameters and LoRAs in text chunks), .jpg or .webp;
                             n > 1 writes FILE, FILE-1, FILE-2, ...; its folder must exist and be writable
                             (checked before the model loads)
          --timings-json FILE
                             also write the load time, per-stage and image-encode seconds and the
                             process's peak resident memory as JSON, for benchmark scripts
        """
    /// Without --allow-large, the server's default bounds; the pipeline's own always apply.
    private static let cli = ServerOptions().limits, pipeline = GenerationLimits.pipeline

    /// Where the images go (-o) cannot be written: found before the model loads.
    struct OutputError: Error, CustomStringConvertible { let description: String }
    /// A file could not be written at the end (images, --timings-json), with the system's reason.
    struct WriteError: Error, CustomStringConvertible { let description: String }

    static func run(_ arguments: [String]) -> Int32 {
        let options: CommandLineOptions
        do {
            options = try CommandLineOptions(arguments, valued: ["--model", "--transformer", "--vae", "--clip", "--t5",
                                                                 "--tokenizers", "--seed", "--size", "--steps", "--guidance",
                                                                 "-n", "-o", "--output", "--max-sequence-length", "--threads", "--precision", "--weights",
                                                                 "--timings-json", "--lora", "--lora-mode"],
                                             boolean: ["--quiet", "-q", "-h", "--help", "--allow-large", "--lora-skip-unknown"])
        } catch {
            return fail("\(error)\n\(usage)", code: 2)
        }
        if options.flags.contains("-h") || options.flags.contains("--help") {
            print(usage)
            return 0
        }
        do {
            guard options.positionals.count == 1, let prompt = options.positionals.first else {
                throw CommandLineOptions.UsageError(description: "expected exactly one PROMPT (quote it)")
            }
            var request = GenerationRequest(prompt: prompt)
            if let size = options.string("--size") { (request.width, request.height) = try parseSize(size) }
            if let seed = options.string("--seed") {
                guard let value = UInt64(seed) else {
                    throw CommandLineOptions.UsageError(description: "--seed must be a whole number in 0...\(UInt64.max), not '\(seed)'")
                }
                request.seed = value
            }
            let limits = GenerationLimits.pipeline
            request.steps = try options.integer("--steps", in: 1...limits.maxSteps)
            request.guidance = try options.number("--guidance", in: 0...limits.maxGuidance)
            request.count = try options.integer("-n", in: 1...limits.maxImages) ?? 1
            request.maxSequenceLength = try options.integer("--max-sequence-length", in: 1...limits.maxSequenceLength)
            if !options.flags.contains("--allow-large") { try checkDefaultLimits(request) }
            let output = options.string("-o") ?? options.string("--output") ?? "out.png"
            let format = try imageFormat(of: output)
            try checkOutput(output, count: request.count)
            let loraOptions = try options.all("--lora").map(LoRAOption.init)
            try loraOptions.forEach { try $0.checkReadable() }
            let skipUnknown = options.flags.contains("--lora-skip-unknown")
            request.loraMode = try options.loraMode()
            let threads = try options.integer("--threads", in: 1...1024) ?? 0
            let quiet = options.flags.contains("--quiet") || options.flags.contains("-q")
            let files = try pipelineFiles(options)

            let progress = ProgressLine(enabled: !quiet)
            progress.show("loading \(files.model ?? files.transformer ?? "")")
            let loadStart = Date()
            let pipeline = try FluxPipeline.load(files, backend: CPUBackend(threads: threads, precision: options.precision()),
                                                 quantization: options.weights())
            for option in loraOptions {
                progress.show("loading LoRA \(option.path)")
                let applied = try option.load(for: pipeline, skipUnknown: skipUnknown)
                if let warning = LoRACatalog.skippedKeysWarning(applied.adapter) { progress.note("schnell generate: \(warning)") }
                request.loras.append(applied)
            }
            // diffusers documents schnell's call with guidance_scale=0.0: no guidance, as leaving it out.
            if !pipeline.hasGuidance, request.guidance == 0 { request.guidance = nil }
            try pipeline.validate(request)
            let loadSeconds = Date().timeIntervalSince(loadStart)
            let result = try pipeline.generate(request) { update in
                progress.show(update.stage == .denoising
                    ? "image \(update.image + 1)/\(update.imageCount) step \(update.step + 1)/\(update.stepCount)"
                    : "image \(update.image + 1)/\(update.imageCount) \(update.stage.rawValue)")
                return true
            }
            progress.finish()
            let encodeStart = Date()
            for (index, image) in result.images.enumerated() {
                let path = outputPath(output, index: index)
                let metadata = [("prompt", prompt), ("seed", "\(image.seed)"), ("steps", "\(result.steps)"),
                                ("size", "\(image.width)x\(image.height)"),
                                ("guidance", result.guidance.map { "\($0)" } ?? "none"),
                                ("model", pipeline.modelID), ("software", "Schnell")]
                    + (request.loras.isEmpty ? [] : [("loras", LoRACatalog.summary(request.loras.map { ($0.adapter.name, Double($0.scale)) }))])
                let bytes = try ImageEncoder.encode(Image8(width: image.width, height: image.height, channels: 3, pixels: image.rgb),
                                                    as: format, quality: 95, text: metadata.map { (key: $0.0, value: $0.1) })
                try writeAtomically(bytes, to: path)
                print("\(path)  seed \(image.seed)")
            }
            let encodeSeconds = Date().timeIntervalSince(encodeStart)
            if let timingsPath = options.string("--timings-json") {
                try writeTimings(to: timingsPath, load: loadSeconds, stages: result.timings, imageEncode: encodeSeconds)
            }
            if !quiet {
                var lines = ["  " + CPUTier.summary, String(format: "  %-22@ %8.3f s", "load" as NSString, loadSeconds)]
                lines += result.timings.map { String(format: "  %-22@ %8.3f s", $0.stage as NSString, $0.seconds) }
                let total = loadSeconds + result.timings.reduce(0) { $0 + $1.seconds }
                lines.append(String(format: "  %-22@ %8.3f s", "total" as NSString, total))
                FileHandle.standardError.write(Data(("timings:\n" + lines.joined(separator: "\n") + "\n").utf8))
            }
            return 0
        } catch let error as CommandLineOptions.UsageError {
            return fail("\(error)\n\(usage)", code: 2)
        } catch let error as PipelineError {
            if case .cancelled = error { return fail("\(error)", code: 1) }
            return fail("\(error)", code: 2)
        } catch let error where error is WeightsError || error is TokenizerError || error is OutputError || error is LoRAOption.FileError {
            return fail("\(error)", code: 2)
        } catch {
            return fail("\(error)", code: 1)
        }
    }

    /// The server's default bounds on size, steps and count; the error names the flag and how to lift it.
    static func checkDefaultLimits(_ request: GenerationRequest) throws {
        let lift = "--allow-large lifts this limit"
        if ![request.width, request.height].allSatisfy((cli.minSide...cli.maxSide).contains) {
            throw PipelineError.invalidRequest(parameter: "--size", reason: "\(request.width)x\(request.height) has a side outside \(cli.minSide)...\(cli.maxSide); \(lift) (to \(pipeline.minSide)...\(pipeline.maxSide))")
        }
        if let steps = request.steps, steps > cli.maxSteps {
            throw PipelineError.invalidRequest(parameter: "--steps", reason: "\(steps) is more than \(cli.maxSteps); \(lift) (to \(pipeline.maxSteps))")
        }
        if request.count > cli.maxImages {
            throw PipelineError.invalidRequest(parameter: "-n", reason: "\(request.count) is more than \(cli.maxImages); \(lift) (to \(pipeline.maxImages))")
        }
    }

    /// Checks, before anything loads, that the images can be written: no output path is a folder,
    /// and the folder they go to exists and takes a new file (a probe file is made and removed).
    static func checkOutput(_ output: String, count: Int) throws {
        for index in 0..<count {
            let path = outputPath(output, index: index)
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
                throw OutputError(description: "-o \(output): \(path) is a folder; give a file name such as \((path as NSString).appendingPathComponent("out.png"))")
            }
        }
        let parent = (output as NSString).deletingLastPathComponent
        let folder = parent.isEmpty ? "." : parent
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) else {
            throw OutputError(description: "-o \(output): the folder \(folder) does not exist")
        }
        guard isFolder.boolValue else { throw OutputError(description: "-o \(output): \(folder) is not a folder") }
        let probe = (folder as NSString).appendingPathComponent(".schnell-write-probe-\(getpid())")
        let descriptor = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else {
            throw OutputError(description: "-o \(output): cannot write in \(folder): \(String(cString: strerror(errno)))")
        }
        close(descriptor)
        unlink(probe)
    }

    static func pipelineFiles(_ options: CommandLineOptions) throws -> PipelineFiles {
        var files = PipelineFiles(model: options.string("--model"), transformer: options.string("--transformer"),
                                  vae: options.string("--vae"), clip: options.string("--clip"), t5: options.string("--t5"),
                                  configFolder: options.string("--tokenizers"))
        let singleFiles = [files.transformer, files.vae, files.clip, files.t5].compactMap { $0 }
        if files.model == nil, singleFiles.isEmpty {
            guard let bundled = bundledModel() else {
                throw PipelineError.missingComponent("--model DIR (the bundled Weights/tiny-flux-schnell was not found from \(FileManager.default.currentDirectoryPath))")
            }
            files.model = bundled
        } else if files.model == nil, singleFiles.count < 4 {
            throw CommandLineOptions.UsageError(description: "without --model, give all of --transformer, --vae, --clip and --t5")
        }
        return files
    }

    /// The bundled tiny model: Weights/tiny-flux-schnell beside the working directory or above
    /// the executable (.build/<config>/schnell).
    static func bundledModel() -> String? {
        let relative = "Weights/tiny-flux-schnell"
        var candidates = [FileManager.default.currentDirectoryPath]
        var folder = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(folder.path)
            folder = folder.deletingLastPathComponent()
        }
        return candidates.map { ($0 as NSString).appendingPathComponent(relative) }
            .first { FileManager.default.fileExists(atPath: ($0 as NSString).appendingPathComponent("model_index.json")) }
    }

    /// {"load": s, "stages": [{"stage": name, "seconds": s}, ...], "image encode": s,
    /// "peak rss bytes": n}; the peak comes from getrusage, so it covers the whole process.
    static func writeTimings(to path: String, load: Double, stages: [(stage: String, seconds: Double)],
                             imageEncode: Double) throws {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let report: [String: Any] = [
            "load": load,
            "stages": stages.map { ["stage": $0.stage, "seconds": $0.seconds] },
            "image encode": imageEncode,
            "peak rss bytes": Int(usage.ru_maxrss) * 1024,  // Linux reports kilobytes
            "cpu tier": CPUTier.current.description,
            "cpu tier supported": CPUTier.supported.description,
            "cpu model": CPUTier.cpuModel,
            "blas kernels": BLASKernels.coreName,
        ]
        let json = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys])
        try writeAtomically([UInt8](json), to: path)
    }

    static func parseSize(_ text: String) throws -> (Int, Int) {
        let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false)
        guard parts.count == 2, let width = Int(parts[0]), let height = Int(parts[1]), width > 0, height > 0 else {
            throw CommandLineOptions.UsageError(description: "--size must look like 1024x768, not '\(text)'")
        }
        return (width, height)
    }

    static func imageFormat(of path: String) throws -> ImageFormat {
        switch (path as NSString).pathExtension.lowercased() {
        case "png": return .png
        case "jpg", "jpeg": return .jpeg
        case "webp": return .webp
        default:
            throw CommandLineOptions.UsageError(description: "-o must end in .png, .jpg, .jpeg or .webp, not '\(path)'")
        }
    }

    /// out.png, out-1.png, out-2.png, ...
    static func outputPath(_ path: String, index: Int) -> String {
        guard index > 0 else { return path }
        let stem = (path as NSString).deletingPathExtension, ext = (path as NSString).pathExtension
        return "\(stem)-\(index).\(ext)"
    }

    /// Writes beside the target and renames over it, so a failure never leaves half a file; the
    /// error gives the system's reason.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let temporary = path + ".partial-\(getpid())"
        func failure(_ step: String, _ code: Int32) -> WriteError {
            WriteError(description: "could not write \(path) (\(step)): \(String(cString: strerror(code)))")
        }
        guard let file = fopen(temporary, "wb") else { throw failure("creating \(temporary)", errno) }
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        let writeError = errno
        let closed = fclose(file) == 0
        if written != bytes.count || !closed {
            let error = failure("writing", written != bytes.count ? writeError : errno)
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let error = failure("renaming \(temporary) to it", errno)
            unlink(temporary)
            throw error
        }
    }

    static func fail(_ message: String, code: Int32) -> Int32 {
        FileHandle.standardError.write(Data("schnell generate: \(message)\n".utf8))
        return code
    }
}

/// A one-line progress display on stderr: stage and elapsed time, redrawn in place on a terminal.
final class ProgressLine {
    let enabled: Bool
    let start = Date()
    let interactive = isatty(STDERR_FILENO) != 0

    init(enabled: Bool) { self.enabled = enabled }

    func show(_ text: String) {
        guard enabled else { return }
        let line = String(format: "[%6.1fs] %@", Date().timeIntervalSince(start), text as NSString)
        FileHandle.standardError.write(Data((interactive ? "\r\u{1B}[K" + line : line + "\n").utf8))
    }

    /// A line that stays (a warning), shown even when the progress line is off.
    func note(_ text: String) {
        FileHandle.standardError.write(Data(((interactive && enabled ? "\r\u{1B}[K" : "") + text + "\n").utf8))
    }

    func finish() {
        if enabled, interactive { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
