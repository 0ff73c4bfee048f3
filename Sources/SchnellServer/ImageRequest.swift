import Foundation
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

/// A validated request for `/v1/images/generations` or `/v1/images/edits`.
///
/// Limits: `prompt` 1...32000 characters; `n` 1...10; `size` is `auto` or `WIDTHxHEIGHT`
/// within the model's limits; `aspect_ratio` `W:H` (between 1:4 and 4:1) with `resolution`
/// `1k` (about 1024x1024 pixels, the default) or `2k` (about 2048x2048) is used when `size`
/// is absent or `auto`. `quality` picks steps when `steps` is absent: `low` half the model's
/// default, `auto`/`standard`/`medium` the default, `high`/`hd` twice the default (clamped to
/// the model's range).
struct ImageRequest {
    static let maxPromptCharacters = 32_000
    static let maxImages = 10
    static let qualities = ["auto", "low", "medium", "high", "standard", "hd"]

    enum ResponseFormat: String { case b64Json = "b64_json", url }

    var prompt: String
    var count: Int
    var width: Int
    var height: Int
    var steps: Int
    var guidance: Float?
    var seed: UInt64
    var quality: String
    var responseFormat: ResponseFormat
    var outputFormat: ImageFormat
    var compression: Int
    var strength: Float?
    var isAsync: Bool

    var sizeText: String { "\(width)x\(height)" }

    /// `defaultSize` replaces the model's default size (edits default to the upload's size).
    init(_ fields: RequestFields, model: ModelDescription, defaultSize: (Int, Int)? = nil) throws {
        guard let prompt = try fields.string("prompt") else { throw APIError.invalid("'prompt' is required", param: "prompt") }
        guard !prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw APIError.invalid("'prompt' must not be empty", param: "prompt")
        }
        guard prompt.count <= ImageRequest.maxPromptCharacters else {
            throw APIError.invalid("'prompt' is longer than \(ImageRequest.maxPromptCharacters) characters", param: "prompt")
        }
        self.prompt = prompt

        let count = try fields.integer("n") ?? 1
        guard (1...Int64(ImageRequest.maxImages)).contains(count) else {
            throw APIError.invalid("'n' must be between 1 and \(ImageRequest.maxImages)", param: "n")
        }
        self.count = Int(count)

        (width, height) = try ImageRequest.size(fields, model: model,
                                                defaultSize: defaultSize ?? (model.defaultWidth, model.defaultHeight))

        let quality = try fields.string("quality") ?? "auto"
        guard ImageRequest.qualities.contains(quality) else {
            throw APIError.invalid("'quality' must be one of \(ImageRequest.qualities.joined(separator: ", "))", param: "quality")
        }
        self.quality = quality
        let range = model.stepsRange
        if let steps = try fields.integer("steps") ?? fields.integer("num_inference_steps") {
            guard steps >= Int64(range.lowerBound) && steps <= Int64(range.upperBound) else {
                let param = fields.values["steps"] != nil ? "steps" : "num_inference_steps"
                throw APIError.invalid("'\(param)' must be between \(range.lowerBound) and \(range.upperBound) for \(model.id)", param: param)
            }
            self.steps = Int(steps)
        } else {
            let steps = switch quality {
            case "low": (model.defaultSteps + 1) / 2
            case "high", "hd": model.defaultSteps * 2
            default: model.defaultSteps
            }
            self.steps = min(max(steps, range.lowerBound), range.upperBound)
        }

        if let guidance = try fields.number("guidance_scale") {
            guard model.supportsGuidance else {
                throw APIError.invalid("\(model.id) does not use guidance; leave 'guidance_scale' out", param: "guidance_scale")
            }
            guard (0...100).contains(guidance) else {
                throw APIError.invalid("'guidance_scale' must be between 0 and 100", param: "guidance_scale")
            }
            self.guidance = Float(guidance)
        } else {
            guidance = model.supportsGuidance ? model.defaultGuidance : nil
        }

        if let seed = try fields.integer("seed") {
            guard seed >= 0 else { throw APIError.invalid("'seed' must be a non-negative integer", param: "seed") }
            self.seed = UInt64(seed)
        } else {
            // Below 2^32 so the reported seed survives clients that parse JSON numbers as doubles.
            self.seed = UInt64.random(in: 0...UInt64(UInt32.max))
        }

        let responseFormat = try fields.string("response_format") ?? "b64_json"
        guard let format = ResponseFormat(rawValue: responseFormat) else {
            throw APIError.invalid("'response_format' must be 'b64_json' or 'url'", param: "response_format")
        }
        self.responseFormat = format

        let outputFormat = try fields.string("output_format") ?? "png"
        guard let imageFormat = ImageFormat(rawValue: outputFormat == "jpg" ? "jpeg" : outputFormat) else {
            throw APIError.invalid("'output_format' must be 'png', 'jpeg' or 'webp'", param: "output_format")
        }
        self.outputFormat = imageFormat
        let compression = try fields.integer("output_compression") ?? 100
        guard (0...100).contains(compression) else {
            throw APIError.invalid("'output_compression' must be between 0 and 100", param: "output_compression")
        }
        self.compression = Int(compression)

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
            self.strength = Float(strength)
        }
        isAsync = try fields.bool("async") ?? false
        // Accepted for compatibility and ignored; only their type is checked.
        _ = try fields.string("user")
        _ = try fields.string("style")
        _ = try fields.string("model")
    }

    func job(initImage: Image8? = nil, mask: Image8? = nil) -> GenerationJob {
        GenerationJob(prompt: prompt, width: width, height: height, steps: steps, guidance: guidance, seed: seed,
                      count: count, initImage: initImage, mask: mask, strength: strength)
    }

    private static func size(_ fields: RequestFields, model: ModelDescription, defaultSize: (Int, Int)) throws -> (Int, Int) {
        if let size = try fields.string("size"), size != "auto" {
            let parts = size.split(separator: "x", omittingEmptySubsequences: false)
            guard size.count <= 16, parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
                  let width = Int(parts[0]), let height = Int(parts[1]) else {
                throw APIError.invalid("'size' must be 'auto' or WIDTHxHEIGHT such as 1024x1024 (digits and a lowercase x)", param: "size")
            }
            try check(width, height, model: model, param: "size")
            return (width, height)
        }
        let resolution = try fields.string("resolution")
        guard let ratio = try fields.string("aspect_ratio") else {
            if resolution != nil { throw APIError.invalid("'resolution' needs 'aspect_ratio'", param: "resolution") }
            return defaultSize
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
        let longest = max(width, height)
        if longest > Double(model.maxSide) {
            width = (width * Double(model.maxSide) / longest / multiple).rounded(.down) * multiple
            height = (height * Double(model.maxSide) / longest / multiple).rounded(.down) * multiple
        }
        try check(Int(width), Int(height), model: model, param: resolution == nil ? "aspect_ratio" : "resolution")
        return (Int(width), Int(height))
    }

    private static func check(_ width: Int, _ height: Int, model: ModelDescription, param: String) throws {
        let sides = model.minSide...model.maxSide
        guard width % model.sizeMultiple == 0, height % model.sizeMultiple == 0 else {
            throw APIError.invalid("Width and height must be multiples of \(model.sizeMultiple), got \(width)x\(height)", param: param)
        }
        guard sides.contains(width), sides.contains(height), width * height <= model.maxPixels else {
            throw APIError.invalid("\(width)x\(height) is outside \(model.id)'s limits: each side \(model.minSide)...\(model.maxSide), at most \(model.maxPixels) pixels",
                                   param: param)
        }
    }
}
