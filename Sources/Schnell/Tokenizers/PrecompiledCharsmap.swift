import Foundation

/// sentencepiece's precompiled normalisation rules (the `nmt_nfkc` charsmap T5 ships: NFKC plus
/// whitespace and control-character clean-up), applied the way the `tokenizers` library does.
///
/// The blob is a little-endian UInt32 byte size of a darts-clone double-array trie, the trie's
/// UInt32 units, then NUL-terminated replacement strings that trie values point into.
struct PrecompiledCharsmap: Sendable {
    private let trie: [UInt32]
    private let replacements: [UInt8]

    /// Returns nil when the blob is too short or its trie size does not fit in it.
    init?(_ blob: Data) {
        let bytes = [UInt8](blob)
        guard bytes.count >= 4 else { return nil }
        let trieByteCount = Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2]) << 16 | Int(bytes[3]) << 24
        guard trieByteCount % 4 == 0, trieByteCount > 0, 4 + trieByteCount <= bytes.count else { return nil }
        trie = stride(from: 4, to: 4 + trieByteCount, by: 4).map { offset in
            UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
                | UInt32(bytes[offset + 3]) << 24
        }
        replacements = Array(bytes[(4 + trieByteCount)...])
    }

    /// Each grapheme cluster shorter than 6 UTF-8 bytes is looked up whole; otherwise, or when it
    /// has no rule, each of its scalars is looked up on its own and kept when it has none.
    func normalize(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var normalized: [Unicode.Scalar] = []
        normalized.reserveCapacity(text.count)
        for grapheme in String(String.UnicodeScalarView(text)) {
            let utf8 = Array(String(grapheme).utf8)
            if utf8.count < 6, let replacement = transform(utf8) {
                normalized.append(contentsOf: replacement)
                continue
            }
            for scalar in grapheme.unicodeScalars {
                normalized.append(contentsOf: transform(Array(String(scalar).utf8)) ?? [scalar])
            }
        }
        return normalized
    }

    /// The replacement of the shortest trie key that is a prefix of `key`. The whole chunk is
    /// replaced even when the key is shorter: that is what sentencepiece and `tokenizers` do.
    private func transform(_ key: [UInt8]) -> [Unicode.Scalar]? {
        guard let index = firstPrefixValue(key), index < replacements.count else { return nil }
        let tail = replacements[index...]
        let end = tail.firstIndex(of: 0) ?? replacements.endIndex
        return Array(String(decoding: replacements[index..<end], as: UTF8.self).unicodeScalars)
    }

    /// darts-clone's common prefix search, stopped at the first (shortest) match.
    private func firstPrefixValue(_ key: [UInt8]) -> Int? {
        func offset(_ unit: UInt32) -> Int { Int((unit >> 10) << ((unit & (1 << 9)) >> 6)) }
        func hasLeaf(_ unit: UInt32) -> Bool { (unit >> 8) & 1 == 1 }
        func label(_ unit: UInt32) -> UInt32 { unit & ((1 << 31) | 0xFF) }

        var node = offset(trie[0])
        for byte in key {
            if byte == 0 { break }
            node ^= Int(byte)
            guard node < trie.count else { return nil }
            let unit = trie[node]
            guard label(unit) == UInt32(byte) else { return nil }
            node ^= offset(unit)
            if hasLeaf(unit) {
                guard node < trie.count else { return nil }
                return Int(trie[node] & 0x7FFF_FFFF)
            }
        }
        return nil
    }
}
