import Foundation
import Schnell

/// One `--lora FILE[:SCALE]` of `schnell generate`. The scale is read only from a final `:NUMBER`,
/// so a path may hold colons (`a:b/style.safetensors`, `x:1:0.5` for the file `x:1` at 0.5); it
/// must be finite and defaults to 1.
struct LoRAOption: Equatable {
    /// A LoRA file that is missing, unreadable or refused by the pipeline; the message names it.
    struct FileError: Error, CustomStringConvertible { let description: String }

    let path: String
    let scale: Float

    init(_ text: String) throws {
        let usage = "(--lora FILE[:SCALE], e.g. style.safetensors:0.8)"
        var path = text, scale: Float = 1
        if let colon = text.lastIndex(of: ":") {
            let prefix = String(text[..<colon]), suffix = String(text[text.index(after: colon)...])
            if let number = Float(suffix) {
                guard number.isFinite else {
                    throw CommandLineOptions.UsageError(description: "--lora \(text): the scale '\(suffix)' must be a finite number \(usage)")
                }
                (path, scale) = (prefix, number)
            } else if !FileManager.default.fileExists(atPath: text),
                      suffix.isEmpty || FileManager.default.fileExists(atPath: prefix)
                        || (prefix as NSString).pathExtension.lowercased() == "safetensors" {
                // The text before the colon looks like the file and the text after it is no number.
                throw CommandLineOptions.UsageError(description: "--lora \(text): the scale '\(suffix)' after the last ':' is not a number \(usage)")
            }
        }
        guard !path.isEmpty else { throw CommandLineOptions.UsageError(description: "--lora \(text): no file named \(usage)") }
        self.path = path
        self.scale = scale
    }

    /// Checks, before the model loads, that the file is there and readable.
    func checkReadable() throws {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw FileError(description: "--lora \(path): no such file")
        }
        guard !isFolder.boolValue else { throw FileError(description: "--lora \(path): is a folder, not a LoRA file") }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw FileError(description: "--lora \(path): cannot be read (permissions)")
        }
    }

    /// The adapter read for `pipeline` at this option's scale; a refusal names the file.
    func load(for pipeline: FluxPipeline, skipUnknown: Bool) throws -> AppliedLoRA {
        do {
            return AppliedLoRA(try pipeline.loadLoRA(path: path, skipUnknown: skipUnknown), scale: scale)
        } catch {
            let reason = "\(error)"
            throw FileError(description: reason.contains(path) ? "--lora: \(reason)" : "--lora \(path): \(reason)")
        }
    }
}
