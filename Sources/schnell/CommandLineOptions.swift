import Foundation
import Schnell

/// A small flag reader: `--name value`, `--name=value`, boolean flags, and positionals.
/// Unknown flags and missing or malformed values are usage errors naming the flag. A valued flag
/// given twice keeps its last value in `values`; `all(_:)` has every one, for repeatable flags.
struct CommandLineOptions {
    struct UsageError: Error, CustomStringConvertible { let description: String }

    private(set) var values: [String: String] = [:]
    private var repeated: [String: [String]] = [:]
    private(set) var flags: Set<String> = []
    private(set) var positionals: [String] = []

    init(_ arguments: [String], valued: Set<String>, boolean: Set<String>) throws {
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("-"), argument != "-" else { positionals.append(argument); continue }
            if argument == "--" { positionals += arguments[index...]; break }
            var name = argument, inline: String?
            if let equals = argument.firstIndex(of: "="), argument.hasPrefix("--") {
                name = String(argument[..<equals])
                inline = String(argument[argument.index(after: equals)...])
            }
            if boolean.contains(name), inline == nil {
                flags.insert(name)
            } else if valued.contains(name) {
                guard let value = inline ?? (index < arguments.count ? arguments[index] : nil) else {
                    throw UsageError(description: "\(name) needs a value")
                }
                if inline == nil { index += 1 }
                values[name] = value
                repeated[name, default: []].append(value)
            } else {
                throw UsageError(description: "unknown option \(name)")
            }
        }
    }

    func string(_ name: String) -> String? { values[name] }

    /// Every value of a repeatable flag, in the order given.
    func all(_ name: String) -> [String] { repeated[name] ?? [] }

    func integer(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = values[name] else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw UsageError(description: "\(name) must be a whole number in \(range.lowerBound)...\(range.upperBound), not '\(text)'")
        }
        return value
    }

    func number(_ name: String, in range: ClosedRange<Float>) throws -> Float? {
        guard let text = values[name] else { return nil }
        guard let value = Float(text), value.isFinite, range.contains(value) else {
            throw UsageError(description: "\(name) must be a number in \(range.lowerBound)...\(range.upperBound), not '\(text)'")
        }
        return value
    }

    /// `--weights TYPE`: the transformer's and T5's linear layers quantized as they load (nil: as stored).
    func weights() throws -> WeightQuantization? {
        guard let text = values["--weights"] else { return nil }
        guard let quantization = WeightQuantization(name: text) else {
            throw UsageError(description: "--weights must be one of \(WeightQuantization.choiceNames), not '\(text)'")
        }
        return quantization
    }

    /// `--lora-mode auto|merge|runtime` (default auto).
    func loraMode() throws -> LoRAMode {
        let text = values["--lora-mode"] ?? LoRAMode.auto.rawValue
        guard let mode = LoRAMode(rawValue: text) else {
            throw UsageError(description: "--lora-mode must be auto, merge or runtime, not '\(text)'")
        }
        return mode
    }

    /// Help text for `--lora-mode`, shared by generate and serve.
    static let loraModeHelp = """
          --lora-mode M      how LoRAs reach the layers: auto (default) merges them into copies of float32 layers
                             and adds them at run time to the others (bf16, f16, fp8, GGUF: merging into bf16 would
                             round small updates away); merge merges into every float layer in its stored dtype
                             (no cost per step; quantized layers refused); runtime adds (x A^T) B^T to every layer
        """

    /// Help text for `--weights`, shared by generate and serve.
    static let weightsHelp = """
          --weights TYPE     quantize the transformer's and T5's linear layers as they load, in memory (no file
                             is written): q8_0 (about 1.06 bytes a weight, integer kernels), q6_k, q5_k, q5_1,
                             q5_0, q4_k, q4_1, q4_0, q3_k, q2_k (smaller, less exact), f16 or bf16. q8_0 takes
                             about 20 s for FLUX.1's transformer; the _k types search scales and take minutes, so
                             write them once with `schnell quantize`. GGUF files need no flag.
        """

    /// `--precision f32|bf16`: whether linear layers, attention and convolutions with bf16 weights
    /// round activations to bf16 and run the native bf16 kernels (faster, not bit-comparable with
    /// float32 references).
    func precision() throws -> Precision {
        let text = values["--precision"] ?? Precision.f32.rawValue
        guard let precision = Precision(rawValue: text) else {
            throw UsageError(description: "--precision must be f32 or bf16, not '\(text)'")
        }
        return precision
    }
}
