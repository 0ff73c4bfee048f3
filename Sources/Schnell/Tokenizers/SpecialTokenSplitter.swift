/// Cuts special and added tokens (`<|endoftext|>`, `</s>`, `<extra_id_0>`) out of a text before the
/// model sees it, the way the `tokenizers` library does: leftmost match first, the longest token
/// where several start at the same place.
struct SpecialTokenSplitter: Sendable {
    enum Segment {
        case text([Unicode.Scalar])
        case token(Int32)
    }

    private let tokens: [(scalars: [Unicode.Scalar], id: Int32)]

    init(_ tokens: [String: Int32]) {
        self.tokens = tokens
            .filter { !$0.key.isEmpty }
            .map { (Array($0.key.unicodeScalars), $0.value) }
            .sorted { $0.scalars.count > $1.scalars.count }
    }

    func split(_ text: [Unicode.Scalar]) -> [Segment] {
        var segments: [Segment] = []
        var textStart = 0
        var position = 0
        while position < text.count {
            guard let match = tokens.first(where: { matches($0.scalars, in: text, at: position) }) else {
                position += 1
                continue
            }
            if textStart < position {
                segments.append(.text(Array(text[textStart..<position])))
            }
            segments.append(.token(match.id))
            position += match.scalars.count
            textStart = position
        }
        if textStart < text.count {
            segments.append(.text(Array(text[textStart...])))
        }
        return segments
    }

    private func matches(_ token: [Unicode.Scalar], in text: [Unicode.Scalar], at position: Int) -> Bool {
        guard position + token.count <= text.count else { return false }
        for offset in 0..<token.count where text[position + offset] != token[offset] {
            return false
        }
        return true
    }
}

/// Truncates the body so that the special tokens around it still fit, then pads to `length`:
/// transformers' `truncation=True, padding="max_length"` for one sequence. `count` is how many of
/// the ids are not padding.
func fitToLength(prefix: [Int32], body: [Int32], suffix: [Int32], padID: Int32, length: Int) -> (ids: [Int32], count: Int) {
    guard length > 0 else { return ([], 0) }
    let bodyRoom = max(0, length - prefix.count - suffix.count)
    var ids = prefix + body.prefix(bodyRoom) + suffix
    if ids.count > length {
        ids = Array(ids.prefix(length))
    }
    let count = ids.count
    ids.append(contentsOf: repeatElement(padID, count: length - ids.count))
    return (ids, count)
}
