import Foundation
import Schnell

/// `schnell quantize IN OUT --type TYPE`: writes a FLUX transformer or T5 encoder as GGUF.
enum QuantizeCommand {
    static let usage = """
        usage: schnell quantize IN OUT.gguf --type TYPE [--quiet]
          IN          a FLUX transformer or T5 encoder: a single safetensors file (BFL or diffusers names,
                      fp8 scaled or not), a transformer/ or text_encoder_2/ folder, or a pipeline folder
                      (with --component transformer|t5 when it holds both)
          --type      \(WeightQuantization.choiceNames)
                      rounded as llama.cpp's reference quantizers; vectors and small tensors stay F32 and
                      the FLUX embedders and final layer F16, as city96's FLUX GGUFs keep them
          The transformer is written with BFL names (general.architecture flux), T5 with llama.cpp's
          (t5encoder), so stable-diffusion.cpp and ComfyUI-GGUF read the files too. OUT is written
          under a temporary name and renamed when complete; an existing OUT is only replaced then.
        """

    static func run(_ arguments: [String]) -> Int32 {
        do {
            let options = try CommandLineOptions(arguments, valued: ["--type", "--component"], boolean: ["--quiet", "-q", "-h", "--help"])
            if options.flags.contains("-h") || options.flags.contains("--help") {
                print(usage)
                return 0
            }
            guard options.positionals.count == 2 else {
                throw CommandLineOptions.UsageError(description: "expected IN and OUT")
            }
            let (input, output) = (options.positionals[0], options.positionals[1])
            guard let typeName = options.string("--type") else {
                throw CommandLineOptions.UsageError(description: "--type is required")
            }
            guard let quantization = WeightQuantization(name: typeName) else {
                throw CommandLineOptions.UsageError(description: "--type must be one of \(WeightQuantization.choiceNames), not '\(typeName)'")
            }
            guard output.hasSuffix(".gguf") else {
                throw CommandLineOptions.UsageError(description: "OUT must end in .gguf, not '\(output)'")
            }
            guard URL(fileURLWithPath: input).standardized.path != URL(fileURLWithPath: output).standardized.path else {
                throw CommandLineOptions.UsageError(description: "OUT must not be IN")
            }
            let checkpoint: Checkpoint
            switch options.string("--component") {
            case nil: checkpoint = try Checkpoint.recognise(path: input)
            case "transformer": checkpoint = try Checkpoint(path: input, family: .transformer)
            case "t5": checkpoint = try Checkpoint(path: input, family: .t5)
            case let other?:
                throw CommandLineOptions.UsageError(description: "--component must be transformer or t5, not '\(other)'")
            }
            let quiet = options.flags.contains("--quiet") || options.flags.contains("-q")
            let progress = ProgressLine(enabled: !quiet)
            let start = Date()
            try CheckpointQuantizer.write(checkpoint, to: output, quantization: quantization) { name in
                if progress.interactive { progress.show("writing \(name)") }
            }
            progress.finish()
            let bytes = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
            print(String(format: "%@: %@ %@, %.2f GB, %.1f s", output, checkpoint.family.name, quantization.type.rawValue,
                         Double(bytes) / 1e9, Date().timeIntervalSince(start)))
            return 0
        } catch let error as CommandLineOptions.UsageError {
            return fail("\(error)\n\(usage)", code: 2)
        } catch let error as WeightsError {
            return fail("\(error)", code: 2)
        } catch {
            return fail("\(error)", code: 1)
        }
    }

    static func fail(_ message: String, code: Int32) -> Int32 {
        FileHandle.standardError.write(Data("schnell quantize: \(message)\n".utf8))
        return code
    }
}
