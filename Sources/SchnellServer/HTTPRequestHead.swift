import Foundation

/// The request line and header fields as they arrive, before any body byte is read: what the
/// server decides on (framing, key, route, method, content type, origin) before it accepts a body.
struct HTTPRequestHead: Sendable {
    var method: String
    var path: String
    var query: String?
    /// `HTTP/1.1` or `HTTP/1.0`, as in the request line.
    var version: String
    /// Every header line in arrival order, names as sent; duplicates are kept so that framing
    /// checks see them.
    var fields: [(name: String, value: String)]

    init(method: String, target: String, version: String, fields: [(name: String, value: String)]) {
        self.method = method
        self.version = version
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        path = String(parts.first ?? "")
        query = parts.count > 1 ? String(parts[1]) : nil
        self.fields = fields
    }

    /// The first value of a header, by case-insensitive name.
    func header(_ name: String) -> String? {
        fields.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// Header values keyed by lowercase name (the last one wins; `validatedBodyLength()` refuses the
    /// duplicates that matter for framing).
    var headers: [String: String] {
        var byName: [String: String] = [:]
        for field in fields { byName[field.name.lowercased()] = field.value }
        return byName
    }

    /// The announced body length, after refusing every head that a proxy in front of the server
    /// could read differently (request smuggling): header names that are not RFC 9110 tokens
    /// (`Content-Length :`), an HTTP/1.1 request without exactly one `Host`, more than one
    /// `Content-Length`, `Content-Length` with `Transfer-Encoding`, and any transfer coding.
    /// Chunked bodies are refused with 411: every OpenAI client sends a length, and a known
    /// length lets the body be refused or budgeted before it is read.
    func validatedBodyLength() throws -> Int {
        for field in fields where field.name.isEmpty || !field.name.utf8.allSatisfy(HTTPRequestHead.isTokenByte) {
            throw APIError.badFraming("The header name '\(field.name)' is not a valid token (no spaces before the colon)")
        }
        let hosts = fields.filter { $0.name.lowercased() == "host" }.count
        if hosts > 1 { throw APIError.badFraming("More than one Host header") }
        if hosts == 0 && version == "HTTP/1.1" { throw APIError.badFraming("An HTTP/1.1 request needs a Host header") }
        let lengths = fields.filter { $0.name.lowercased() == "content-length" }
        let codings = fields.filter { $0.name.lowercased() == "transfer-encoding" }
        if lengths.count > 1 { throw APIError.badFraming("More than one Content-Length header") }
        if !lengths.isEmpty && !codings.isEmpty { throw APIError.badFraming("Content-Length together with Transfer-Encoding") }
        if let coding = codings.first {
            let value = coding.value.trimmingCharacters(in: .whitespaces).lowercased()
            guard codings.count == 1, value == "chunked" else {
                throw APIError.badFraming("Unsupported Transfer-Encoding '\(codings.map(\.value).joined(separator: ", "))'")
            }
            throw APIError.lengthRequired
        }
        guard let length = lengths.first?.value else { return 0 }
        guard !length.isEmpty, length.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
            throw APIError.badFraming("Content-Length '\(length)' is not a decimal number")
        }
        return Int(length) ?? Int.max
    }

    /// tchar in RFC 9110 section 5.6.2.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"):
            return true
        default:
            return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }
}
