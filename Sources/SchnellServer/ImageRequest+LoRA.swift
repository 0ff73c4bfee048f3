import Foundation
import Schnell

/// One adapter a request applies: the server's adapter it named and the scale it asked for (kept
/// as sent, so the response echoes 0.8 rather than the nearest Float).
struct RequestedLoRA: Sendable {
    var adapter: LoRAAdapter
    var scale: Double

    var name: String { adapter.name }
}

extension ImageRequest {
    static let loraShape = "an array of objects such as [{\"name\": \"style\", \"scale\": 0.8}]"

    /// `loras`: `[{"name": NAME, "scale": S}, ...]`, each name one of `available` (exact, case
    /// included), each at most once; `scale` a number in `LoRACatalog.scaleRange`, 1 when absent;
    /// at most `LoRACatalog.maxPerRequest` entries. A form sends the same JSON as the field's text
    /// (empty text: none). Every refusal is a 400 naming `loras`.
    static func loras(_ fields: RequestFields, available: [String: LoRAAdapter]) throws -> [RequestedLoRA] {
        var value = fields.values["loras"] ?? .null
        if fields.fromForm, case .string(let text) = value {
            if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return [] }
            do {
                value = try JSONValue.parse(Array(text.utf8))
            } catch {
                throw APIError.invalid("'loras' is not valid JSON (\(error)); send \(loraShape)", param: "loras")
            }
        }
        let items: [JSONValue]
        switch value {
        case .null: return []
        case .array(let elements): items = elements
        default: throw APIError.wrongType("loras", expected: loraShape)
        }
        guard items.count <= LoRACatalog.maxPerRequest else {
            throw APIError.invalid("'loras' names \(items.count) adapters; at most \(LoRACatalog.maxPerRequest) apply at once", param: "loras")
        }
        var requested: [RequestedLoRA] = []
        for item in items {
            guard case .object(let members) = item else { throw APIError.wrongType("loras", expected: loraShape) }
            if let unknown = members.keys.sorted().first(where: { $0 != "name" && $0 != "scale" }) {
                throw APIError.invalid("'loras' entries take 'name' and 'scale', not '\(shortened(unknown))'", param: "loras")
            }
            guard case .string(let name)? = members["name"] else {
                throw APIError.invalid("Each 'loras' entry needs a 'name' string (GET /v1/models lists the adapters)", param: "loras")
            }
            guard let adapter = available[name] else {
                throw APIError.invalid("'loras' names '\(shortened(name))', which this server does not have; \(offered(available))", param: "loras")
            }
            guard !requested.contains(where: { $0.name == name }) else {
                throw APIError.invalid("'loras' names '\(name)' twice; send it once with the sum of the scales", param: "loras")
            }
            let scale: Double
            switch members["scale"] {
            case nil, .null?: scale = 1
            case .integer(let integer)?: scale = Double(integer)
            case .number(let number)?: scale = number
            default: throw APIError.invalid("The 'scale' of '\(name)' in 'loras' must be a number", param: "loras")
            }
            let range = LoRACatalog.scaleRange
            guard scale.isFinite, range.contains(scale) else {
                throw APIError.invalid("The 'scale' of '\(name)' in 'loras' must be between \(LoRACatalog.formatScale(range.lowerBound)) and \(LoRACatalog.formatScale(range.upperBound))",
                                       param: "loras")
            }
            requested.append(RequestedLoRA(adapter: adapter, scale: scale))
        }
        return requested
    }

    /// `[{"name", "scale"}]` as responses, task records and stream events echo the applied adapters.
    var lorasJSON: JSONValue {
        .array(loras.map { ["name": .string($0.name), "scale": .number($0.scale)] })
    }

    /// What a client may name instead, for the unknown-name error.
    private static func offered(_ available: [String: LoRAAdapter]) -> String {
        guard !available.isEmpty else { return "it offers none (start it with --lora-dir DIR)" }
        let names = available.keys.sorted()
        let listed = names.prefix(20).map { "'\($0)'" }.joined(separator: ", ")
        return "it has \(listed)\(names.count > 20 ? " and \(names.count - 20) more (GET /v1/models)" : "")"
    }

    /// A client's text cut to a length fit for an error message.
    private static func shortened(_ text: String) -> String {
        text.count <= 100 ? text : text.prefix(100) + "..."
    }
}
