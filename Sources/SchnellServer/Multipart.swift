import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A `multipart/form-data` body (RFC 7578) split into its parts. The whole body is already
/// in memory and bounded by `maxBodyBytes`; the part count is bounded here.
struct MultipartForm {
    struct Part {
        var name: String
        var filename: String?
        var contentType: String?
        var body: [UInt8]
    }

    static let maxParts = 64
    var parts: [Part] = []

    /// The boundary parameter of a `multipart/form-data` Content-Type, or nil if it has none.
    static func boundary(contentType: String) -> String? {
        let pieces = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        guard pieces.first?.lowercased() == "multipart/form-data" else { return nil }
        for piece in pieces.dropFirst() where piece.lowercased().hasPrefix("boundary=") {
            var value = String(piece.dropFirst("boundary=".count))
            if value.hasPrefix("\"") && value.hasSuffix("\"") && value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            return (1...70).contains(value.utf8.count) ? value : nil
        }
        return nil
    }

    init(body: [UInt8], boundary: String) throws {
        let delimiter = Array("--\(boundary)".utf8)
        guard var position = MultipartForm.find(delimiter, in: body, from: 0) else {
            throw APIError.invalid("The multipart body has no part with the declared boundary", param: nil)
        }
        position += delimiter.count
        let separator = Array("\r\n--\(boundary)".utf8)
        while true {
            // After a delimiter: "--" ends the body, CRLF starts a part.
            if body[position...].starts(with: Array("--".utf8)) { break }
            guard body[position...].starts(with: Array("\r\n".utf8)) else { throw MultipartForm.malformed }
            position += 2
            guard let headerEnd = MultipartForm.find(Array("\r\n\r\n".utf8), in: body, from: position),
                  let end = MultipartForm.find(separator, in: body, from: headerEnd + 4) else { throw MultipartForm.malformed }
            guard parts.count < MultipartForm.maxParts else {
                throw APIError.invalid("The multipart body has more than \(MultipartForm.maxParts) parts", param: nil)
            }
            parts.append(try MultipartForm.part(headers: body[position..<headerEnd], body: Array(body[(headerEnd + 4)..<end])))
            position = end + separator.count
        }
    }

    func files(_ names: Set<String>) -> [Part] {
        parts.filter { names.contains($0.name) }
    }

    private static let malformed = APIError.invalid("The multipart body is malformed", param: nil)

    private static func part(headers: ArraySlice<UInt8>, body: [UInt8]) throws -> Part {
        var name: String?
        var filename: String?
        var contentType: String?
        for line in String(decoding: headers, as: UTF8.self).components(separatedBy: "\r\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let header = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if header == "content-type" { contentType = value }
            guard header == "content-disposition" else { continue }
            for parameter in value.split(separator: ";").dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard pair.count == 2 else { continue }
                var text = pair[1]
                if text.hasPrefix("\"") && text.hasSuffix("\"") && text.count >= 2 { text = String(text.dropFirst().dropLast()) }
                switch pair[0].lowercased() {
                case "name": name = text
                case "filename": filename = text
                default: break
                }
            }
        }
        guard let name else { throw APIError.invalid("A multipart part has no name", param: nil) }
        return Part(name: name, filename: filename, contentType: contentType, body: body)
    }

    /// The first offset of `needle` in `haystack` at or after `start`; memchr finds each candidate
    /// first byte, so a 32 MiB body parses in milliseconds even in a debug build.
    private static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard let first = needle.first, start >= 0, start <= haystack.count else { return nil }
        return haystack.withUnsafeBytes { hay in
            needle.withUnsafeBytes { pattern in
                guard let base = hay.baseAddress, let patternBase = pattern.baseAddress else { return nil }
                var offset = start
                while hay.count - offset >= pattern.count {
                    guard let candidate = memchr(base + offset, Int32(first), hay.count - offset - pattern.count + 1) else { return nil }
                    offset = base.distance(to: UnsafeRawPointer(candidate))
                    if memcmp(candidate, patternBase, pattern.count) == 0 { return offset }
                    offset += 1
                }
                return nil
            }
        }
    }
}
