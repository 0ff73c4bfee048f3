import Foundation
import Schnell
import SchnellImageIO

/// The fields of a generation or edit request, from a JSON object or from multipart form
/// fields (where every value arrives as text and numbers are parsed from it).
struct RequestFields {
    var values: [String: JSONValue]
    var fromForm = false

    func string(_ key: String) throws -> String? {
        switch values[key] {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw APIError.wrongType(key, expected: "a string")
        }
    }

    func integer(_ key: String) throws -> Int64? {
        switch values[key] {
        case nil, .null?: return nil
        case .integer(let integer)?: return integer
        case .number(let number)? where number.rounded() == number && abs(number) < 9e15: return Int64(number)
        case .string(let text)? where fromForm:
            guard let integer = Int64(text.trimmingCharacters(in: .whitespaces)) else {
                throw APIError.wrongType(key, expected: "an integer")
            }
            return integer
        default: throw APIError.wrongType(key, expected: "an integer")
        }
    }

    func number(_ key: String) throws -> Double? {
        switch values[key] {
        case nil, .null?: return nil
        case .integer(let integer)?: return Double(integer)
        case .number(let number)?: return number
        case .string(let text)? where fromForm:
            guard let number = Double(text.trimmingCharacters(in: .whitespaces)), number.isFinite else {
                throw APIError.wrongType(key, expected: "a number")
            }
            return number
        default: throw APIError.wrongType(key, expected: "a number")
        }
    }

    func bool(_ key: String) throws -> Bool? {
        switch values[key] {
        case nil, .null?: return nil
        case .bool(let flag)?: return flag
        case .string(let text)? where fromForm && (text == "true" || text == "false"): return text == "true"
        default: throw APIError.wrongType(key, expected: "a boolean")
        }
    }
}

/// A validated request for `/v1/images/generations` or `/v1/images/edits`: the generation
/// parameters as the pipeline takes them, and how the answer is to be formatted.
///
/// Limits: `prompt` 1...32000 Unicode scalars, no NUL; `seed` 0...2^63-1 with `seed + n - 1` within it; `n`, `steps` and the sides within the served model's
/// `limits` (the server's, see `ServerOptions.limits`); `size` is `auto` or `WIDTHxHEIGHT`;
/// `aspect_ratio` `W:H` (between 1:4 and 4:1) with `resolution` `1k` (about 1024x1024 pixels, the
/// default) or `2k` (about 2048x2048) is used when `size` is absent or `auto`. `quality` picks steps
/// when `steps` is absent: `low` half the model's default, `auto`/`standard`/`medium` the default,
/// `high`/`hd` twice the default (clamped to the limits); `size` together with `aspect_ratio` is
/// refused. `stream: true` sends server-sent events with `partial_images` (0...3) previews per
/// image; `async: true` makes a task whose images are URLs unless `response_format` says
/// `b64_json`; the two do not mix. `compression` is the alias of `output_compression`;
/// `moderation` (`auto` or `low`) is checked and echoed, never acted on: the engine filters nothing.
/// `guidance_scale: 0` on a model without guidance means none (diffusers' schnell call).
/// `loras` picks the server's LoRA adapters with their scales (`ImageRequest.loras(_:available:)`).
struct ImageRequest {
    static let maxPromptCharacters = 32_000
    static let qualities = ["auto", "low", "medium", "high", "standard", "hd"]

    enum ResponseFormat: String { case b64Json = "b64_json", url }

    /// Edits add the init image and mask after parsing.
    var generation: GenerationRequest
    var quality: String
    var responseFormat: ResponseFormat
    var outputFormat: ImageFormat
    var compression: Int
    var isAsync: Bool
    var stream: Bool
    /// Previews per image when streaming (`generation.previews` carries the same count).
    var partialImages: Int { generation.previews }
    var moderation: String
    /// The adapters applied, as the request named them (`generation.loras` holds the same).
    var loras: [RequestedLoRA] = []
    /// Tokens of the input image (edits), counted in `usage`.
    var inputImageTokens = 0
    /// The request field each of the pipeline's parameter names came from, for error messages.
    var fieldNames = ImageRequest.defaultFieldNames

    static let defaultFieldNames = ["width": "size", "height": "size", "guidance": "guidance_scale", "previews": "partial_images"]

    var sizeText: String { "\(generation.width)x\(generation.height)" }

    /// `model` is the model as served: its limits are the server's; `loras` the adapters it
    /// offers. `defaultSize` replaces the model's default size (edits default to the upload's size).
    init(_ fields: RequestFields, model: ModelDescription, loras available: [String: LoRAAdapter] = [:],
         defaultSize: (Int, Int)? = nil) throws {
        guard let prompt = try fields.string("prompt") else { throw APIError.invalid("'prompt' is required", param: "prompt") }
        // Scalars, not graphemes: one grapheme can hold millions of combining marks. The byte count
        // (at most 4 per scalar) refuses a long prompt without walking it.
        guard prompt.utf8.count <= 4 * ImageRequest.maxPromptCharacters,
              prompt.unicodeScalars.count <= ImageRequest.maxPromptCharacters else {
            throw APIError.invalid("'prompt' is longer than \(ImageRequest.maxPromptCharacters) characters (Unicode scalars)", param: "prompt")
        }
        // PNG text chunks cannot hold NUL, and no tokenizer wants it: refused before anything runs.
        guard !prompt.utf8.contains(0) else {
            throw APIError.invalid("'prompt' contains a NUL character (U+0000)", param: "prompt")
        }
        guard !prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw APIError.invalid("'prompt' must not be empty", param: "prompt")
        }
        let count = try fields.integer("n") ?? 1
        let (width, height, sizeField) = try ImageRequest.size(fields, model: model,
                                                               defaultSize: defaultSize ?? (model.defaultWidth, model.defaultHeight))
        generation = GenerationRequest(prompt: prompt, width: width, height: height, count: Int(count))
        fieldNames["width"] = sizeField
        fieldNames["height"] = sizeField

        let quality = try fields.string("quality") ?? "auto"
        guard ImageRequest.qualities.contains(quality) else {
            throw APIError.invalid("'quality' must be one of \(ImageRequest.qualities.joined(separator: ", "))", param: "quality")
        }
        self.quality = quality
        if let steps = try fields.integer("steps") ?? fields.integer("num_inference_steps") {
            generation.steps = Int(steps)
            fieldNames["steps"] = fields.values["steps"] != nil ? "steps" : "num_inference_steps"
        } else {
            let steps = switch quality {
            case "low": (model.defaultSteps + 1) / 2
            case "high", "hd": model.defaultSteps * 2
            default: model.defaultSteps
            }
            generation.steps = min(max(steps, 1), model.limits.maxSteps)
        }

        if let guidance = try fields.number("guidance_scale"), guidance != 0 || model.supportsGuidance {
            guard model.supportsGuidance else {
                throw APIError.invalid("\(model.id) does not use guidance; leave 'guidance_scale' out or send 0", param: "guidance_scale")
            }
            generation.guidance = Float(guidance)
        } else {
            generation.guidance = model.supportsGuidance ? model.defaultGuidance : nil
        }

        if let seed = try fields.integer("seed") {
            guard seed >= 0 else { throw APIError.invalid("'seed' must be a non-negative integer", param: "seed") }
            // Image i uses seed + i and reports it as a JSON integer (signed 64-bit): the last one must fit.
            guard !(1...Int64(model.limits.maxImages)).contains(count) || seed <= Int64.max - (count - 1) else {
                throw APIError.invalid("'seed' \(seed) with n = \(count) would need seeds past \(Int64.max) (image i uses seed + i); use a seed of at most \(Int64.max - (count - 1))",
                                       param: "seed")
            }
            generation.seed = UInt64(seed)
        } else {
            // Below 2^32 so the reported seed survives clients that parse JSON numbers as doubles.
            generation.seed = UInt64.random(in: 0...UInt64(UInt32.max))
        }

        isAsync = try fields.bool("async") ?? false
        stream = try fields.bool("stream") ?? false
        guard !(isAsync && stream) else {
            throw APIError.invalid("'stream' and 'async' cannot both be true: a stream delivers the images on this connection, a task later", param: "stream")
        }
        if let partial = try fields.integer("partial_images") {
            guard (0...Int64(GenerationLimits.maxPreviews)).contains(partial) else {
                throw APIError.invalid("'partial_images' must be between 0 and \(GenerationLimits.maxPreviews)", param: "partial_images")
            }
            guard stream || partial == 0 else {
                throw APIError.invalid("'partial_images' needs 'stream': true; partial images are only sent as stream events", param: "partial_images")
            }
            generation.previews = Int(partial)
        }
        // Async tasks answer with URLs unless asked otherwise, as the gateways' task contract reads.
        let responseFormat = try fields.string("response_format") ?? (isAsync ? "url" : "b64_json")
        guard let format = ResponseFormat(rawValue: responseFormat) else {
            throw APIError.invalid("'response_format' must be 'b64_json' or 'url'", param: "response_format")
        }
        guard !(stream && format == .url) else {
            throw APIError.invalid("Streamed images arrive as b64_json in the events; leave 'response_format' out or send 'b64_json'", param: "response_format")
        }
        self.responseFormat = format

        let outputFormat = try fields.string("output_format") ?? "png"
        guard let imageFormat = ImageFormat(rawValue: outputFormat == "jpg" ? "jpeg" : outputFormat) else {
            throw APIError.invalid("'output_format' must be 'png', 'jpeg' or 'webp'", param: "output_format")
        }
        self.outputFormat = imageFormat
        let compression = try ImageRequest.compression(fields)
        self.compression = Int(compression)
        let moderation = try fields.string("moderation") ?? "auto"
        guard ["auto", "low"].contains(moderation) else {
            throw APIError.invalid("'moderation' must be 'auto' or 'low' (this engine applies no filter either way)", param: "moderation")
        }
        self.moderation = moderation

        switch try fields.string("background") {
        case nil, "auto"?, "opaque"?: break
        case "transparent"?:
            throw APIError.invalid("Transparent backgrounds are not supported; use 'opaque' or 'auto'", param: "background")
        default: throw APIError.invalid("'background' must be 'auto', 'opaque' or 'transparent'", param: "background")
        }

        if let strength = try fields.number("strength") {
            guard strength > 0 && strength <= 1 else {
                throw APIError.invalid("'strength' must be greater than 0 and at most 1", param: "strength")
            }
            generation.strength = strength
        }
        loras = try ImageRequest.loras(fields, available: available)
        generation.loras = loras.map { AppliedLoRA($0.adapter, scale: Float($0.scale)) }
        // Accepted for compatibility and ignored; only their type is checked.
        _ = try fields.string("user")
        _ = try fields.string("style")
        _ = try fields.string("model")
        try check(model.limits, sizeMultiple: model.sizeMultiple)
    }

    /// Checks the generation parameters against `limits`, naming the request's own field.
    private func check(_ limits: GenerationLimits, sizeMultiple: Int) throws {
        do {
            try limits.check(generation, sizeMultiple: sizeMultiple)
        } catch let error as PipelineError {
            throw APIError.rejected(error, fieldNames: fieldNames)
        }
    }

    /// `output_compression` or its alias `compression` (not both), 0...100; 100 when absent.
    private static func compression(_ fields: RequestFields) throws -> Int64 {
        let primary = try fields.integer("output_compression"), alias = try fields.integer("compression")
        if primary != nil && alias != nil {
            throw APIError.invalid("'compression' is another name for 'output_compression'; send one of them", param: "compression")
        }
        let name = alias != nil ? "compression" : "output_compression"
        let value = primary ?? alias ?? 100
        guard (0...100).contains(value) else { throw APIError.invalid("'\(name)' must be between 0 and 100", param: name) }
        return value
    }

    /// The requested size and the field it came from.
    private static func size(_ fields: RequestFields, model: ModelDescription,
                             defaultSize: (Int, Int)) throws -> (width: Int, height: Int, field: String) {
        if let size = try fields.string("size"), size != "auto" {
            if try fields.string("aspect_ratio") != nil {
                throw APIError.invalid("Send 'size' or 'aspect_ratio', not both: 'size' sets the exact pixels, 'aspect_ratio' (with 'resolution') derives them",
                                       param: "aspect_ratio")
            }
            let parts = size.split(separator: "x", omittingEmptySubsequences: false)
            guard size.count <= 16, parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
                  let width = Int(parts[0]), let height = Int(parts[1]) else {
                throw APIError.invalid("'size' must be 'auto' or WIDTHxHEIGHT such as 1024x1024 (digits and a lowercase x)", param: "size")
            }
            return (width, height, "size")
        }
        let resolution = try fields.string("resolution")
        guard let ratio = try fields.string("aspect_ratio") else {
            if resolution != nil { throw APIError.invalid("'resolution' needs 'aspect_ratio'", param: "resolution") }
            return (defaultSize.0, defaultSize.1, "size")
        }
        let parts = ratio.split(separator: ":", omittingEmptySubsequences: false)
        guard ratio.count <= 16, parts.count == 2, let across = Int(parts[0]), let down = Int(parts[1]), across > 0, down > 0,
              Double(across) / Double(down) <= 4, Double(down) / Double(across) <= 4 else {
            throw APIError.invalid("'aspect_ratio' must be W:H such as 16:9, between 1:4 and 4:1", param: "aspect_ratio")
        }
        let side: Double
        switch resolution?.lowercased() {
        case nil, "1k"?: side = 1024
        case "2k"?: side = 2048
        default: throw APIError.invalid("'resolution' must be '1k' or '2k'", param: "resolution")
        }
        let aspect = Double(across) / Double(down)
        let multiple = Double(model.sizeMultiple)
        var width = (side * aspect.squareRoot() / multiple).rounded() * multiple
        var height = (side / aspect.squareRoot() / multiple).rounded() * multiple
        let longest = max(width, height), maxSide = Double(model.limits.maxSide)
        if longest > maxSide {
            width = (width * maxSide / longest / multiple).rounded(.down) * multiple
            height = (height * maxSide / longest / multiple).rounded(.down) * multiple
        }
        return (Int(width), Int(height), resolution == nil ? "aspect_ratio" : "resolution")
    }
}
