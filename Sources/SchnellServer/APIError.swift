import Schnell

/// An error answered in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
struct APIError: Error, Equatable {
    var status: Int
    var message: String
    var type: String
    var param: String?
    var code: String
    var headers: [(String, String)] = []

    static func == (lhs: APIError, rhs: APIError) -> Bool {
        lhs.status == rhs.status && lhs.message == rhs.message && lhs.param == rhs.param && lhs.code == rhs.code
    }

    static func invalid(_ message: String, param: String?) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: param, code: "invalid_request")
    }

    /// A pipeline error as the client sees it: an invalid request is a 400 naming the field the
    /// client used (`fieldNames` maps the pipeline's parameter names, e.g. `guidance` -> `guidance_scale`).
    static func rejected(_ error: PipelineError, fieldNames: [String: String]) -> APIError {
        switch error {
        case let .invalidRequest(parameter, reason):
            let field = fieldNames[parameter] ?? parameter
            return .invalid(field == parameter ? "\(field): \(reason)" : "\(field): \(parameter) \(reason)", param: field)
        case .cancelled:
            return .server("The generation was cancelled", code: "generation_cancelled")
        case .incompatibleComponents, .missingComponent:
            return .server("Generation failed: \(error)")
        }
    }

    static func wrongType(_ param: String, expected: String) -> APIError {
        .invalid("'\(param)' must be \(expected)", param: param)
    }

    static let unauthorized = APIError(status: 401, message: "Missing or invalid API key; send 'Authorization: Bearer KEY' or 'x-api-key: KEY'",
                                       type: "invalid_request_error", param: nil, code: "invalid_api_key")

    static func modelNotFound(_ name: String) -> APIError {
        APIError(status: 404, message: "The model '\(name)' does not exist on this server", type: "invalid_request_error",
                 param: "model", code: "model_not_found")
    }

    static func notFound(_ what: String) -> APIError {
        APIError(status: 404, message: what, type: "invalid_request_error", param: nil, code: "not_found")
    }

    static func methodNotAllowed(_ method: String, path: String, allowed: [String]) -> APIError {
        APIError(status: 405, message: "\(method) is not allowed on \(path); use \(allowed.joined(separator: " or "))",
                 type: "invalid_request_error", param: nil, code: "method_not_allowed",
                 headers: [("Allow", allowed.joined(separator: ", "))])
    }

    static func tooLarge(limit: Int) -> APIError {
        APIError(status: 413, message: "The request body is larger than \(limit) bytes", type: "invalid_request_error",
                 param: nil, code: "request_too_large")
    }

    /// A request whose framing could be read two ways; the connection is closed after the answer.
    static func badFraming(_ message: String) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: nil, code: "invalid_framing")
    }

    static let lengthRequired = APIError(status: 411, message: "Send the body with a Content-Length header; chunked request bodies are not accepted",
                                         type: "invalid_request_error", param: nil, code: "length_required")

    static func bodyMemoryFull(limit: Int) -> APIError {
        APIError(status: 503, message: "The server is already holding \(limit) bytes of request bodies; retry shortly",
                 type: "server_error", param: nil, code: "server_busy", headers: [("Retry-After", "1")])
    }

    static func crossOrigin(_ origin: String) -> APIError {
        APIError(status: 403, message: "Requests from the origin '\(origin)' are not allowed; start the server with --cors-origin \(origin) to allow them",
                 type: "invalid_request_error", param: nil, code: "origin_not_allowed")
    }

    static func unsupportedMediaType(expected: String) -> APIError {
        APIError(status: 415, message: "Content-Type must be \(expected)", type: "invalid_request_error",
                 param: nil, code: "unsupported_media_type")
    }

    static func queueFull(_ depth: Int) -> APIError {
        APIError(status: 429, message: "The generation queue is full (\(depth) waiting); retry later",
                 type: "rate_limit_error", param: nil, code: "rate_limit_exceeded", headers: [("Retry-After", "1")])
    }

    static func notImplemented(_ message: String) -> APIError {
        APIError(status: 501, message: message, type: "invalid_request_error", param: nil, code: "not_implemented")
    }

    static let loading = APIError(status: 503, message: "The model is still loading; retry shortly",
                                  type: "server_error", param: nil, code: "model_loading", headers: [("Retry-After", "5")])

    static let shuttingDown = APIError(status: 503, message: "The server is shutting down", type: "server_error",
                                       param: nil, code: "server_shutting_down")

    static func server(_ message: String, code: String = "server_error") -> APIError {
        APIError(status: 500, message: message, type: "server_error", param: nil, code: code)
    }

    var json: JSONValue {
        ["error": ["message": .string(message), "type": .string(type),
                   "param": param.map(JSONValue.string) ?? .null, "code": .string(code)]]
    }
}
