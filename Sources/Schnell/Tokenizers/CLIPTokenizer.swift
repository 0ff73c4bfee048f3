import Foundation

/// CLIP's byte-level BPE tokenizer, giving the ids that transformers' `CLIPTokenizer` gives when
/// FluxPipeline calls it (`padding="max_length", truncation=True`): BOS, the text's tokens, EOS,
/// then the pad token up to `maxLength`.
///
/// The text goes through NFC, every whitespace run becomes one space, then lower-casing; it is
/// split into words, letter runs, single digits and punctuation runs; each word's UTF-8 bytes are
/// spelled in GPT-2's byte alphabet, `</w>` marks the word's last symbol, and BPE merges apply.
public struct CLIPTokenizer: Sendable {
    /// `model_max_length` from tokenizer_config.json (77 for CLIP-L) when the folder gives one.
    public let modelMaxLength: Int?
    /// The file the vocabulary was read from, and the largest id `encode` can give: a text
    /// encoder must have at least `largestID + 1` embeddings to take this tokenizer's ids.
    public let vocabularyFile: URL
    public let largestID: Int32

    /// (left id << 32 | right id) -> the merge's rank and the id of the merged symbol.
    private let merges: [UInt64: (rank: Int32, merged: Int32)]
    private let bosID: Int32
    private let eosID: Int32
    private let padID: Int32
    private let unknownID: Int32
    private let specialTokens: SpecialTokenSplitter
    /// The byte alphabet: byte -> its symbol, alone and as a word's last symbol.
    private let byteSymbols: [(plain: Int32?, wordEnd: Int32?)]

    private static let wordEnd = "</w>"

    /// Loads `tokenizer.json` when the folder has one (transformers prefers it), otherwise
    /// `vocab.json` + `merges.txt` as in FLUX.1's `tokenizer/` folder.
    public init(folder: URL) throws {
        let settings = try TokenizerSettings(folder: folder)
        let tokenizerJSON = folder.appendingPathComponent("tokenizer.json")
        let vocabFile = folder.appendingPathComponent("vocab.json")
        let mergesFile = folder.appendingPathComponent("merges.txt")
        let vocab: [String: Int32]
        let mergePairs: [(String, String)]
        let source: URL
        var addedTokens = settings.addedTokens
        if TokenizerFiles.exists(tokenizerJSON) {
            source = tokenizerJSON
            let json = try TokenizerFiles.readJSONObject(tokenizerJSON)
            guard let model = json["model"] as? [String: Any] else {
                throw TokenizerError.badJSON(tokenizerJSON, reason: "no \"model\" object")
            }
            let type = model["type"] as? String ?? "unnamed"
            guard type == "BPE" else {
                throw TokenizerError.unsupportedModel(tokenizerJSON, found: type, expected: "BPE")
            }
            vocab = try Self.vocabulary(model["vocab"], file: tokenizerJSON)
            mergePairs = try Self.mergePairs(model["merges"], file: tokenizerJSON)
            addedTokens += try TokenizerFiles.addedTokens(json, file: tokenizerJSON)
        } else if TokenizerFiles.exists(vocabFile) && TokenizerFiles.exists(mergesFile) {
            source = vocabFile
            vocab = try Self.vocabulary(TokenizerFiles.readJSONObject(vocabFile), file: vocabFile)
            mergePairs = try Self.mergePairs(text: TokenizerFiles.readData(mergesFile), file: mergesFile)
        } else {
            throw TokenizerError.missingFile(folder: folder, expected: ["tokenizer.json", "vocab.json + merges.txt"])
        }

        var merges: [UInt64: (rank: Int32, merged: Int32)] = [:]
        for (rank, (left, right)) in mergePairs.enumerated() {
            guard let leftID = vocab[left], let rightID = vocab[right] else {
                throw TokenizerError.unknownToken(source, token: vocab[left] == nil ? left : right)
            }
            guard let mergedID = vocab[left + right] else {
                throw TokenizerError.unknownToken(source, token: left + right)
            }
            merges[Self.pairKey(leftID, rightID)] = (Int32(rank), mergedID)
        }
        self.merges = merges

        let special = try settings.specialTokenIDs(
            added: addedTokens, vocabulary: vocab,
            roles: [("bos_token", "<|startoftext|>"), ("eos_token", "<|endoftext|>"),
                    ("pad_token", "<|endoftext|>"), ("unk_token", "<|endoftext|>")], source: source)
        (bosID, eosID, padID, unknownID) = (special.roles[0], special.roles[1], special.roles[2], special.roles[3])
        modelMaxLength = settings.modelMaxLength
        specialTokens = SpecialTokenSplitter(special.cutOut)
        vocabularyFile = source
        largestID = max(vocab.values.max() ?? 0, special.cutOut.values.max() ?? 0)

        byteSymbols = ByteAlphabet.symbols.map { symbol in (vocab[symbol], vocab[symbol + Self.wordEnd]) }
    }

    /// Token ids for `text`, exactly `maxLength` long: BOS, tokens, EOS, pad.
    public func encode(_ text: String, maxLength: Int = 77) -> [Int32] {
        encodeCounting(text, maxLength: maxLength).ids
    }

    /// `encode`'s ids and how many of them are not padding (BOS and EOS counted, at most `maxLength`).
    public func encodeCounting(_ text: String, maxLength: Int = 77) -> (ids: [Int32], count: Int) {
        var body: [Int32] = []
        // The special tokens are marked "normalized" in CLIP's files: they match the normalized text.
        for segment in specialTokens.split(Self.normalize(text)) {
            switch segment {
            case let .token(id):
                body.append(id)
            case let .text(scalars):
                for word in Self.words(scalars) {
                    body.append(contentsOf: bytePairEncode(word))
                }
            }
        }
        return fitToLength(prefix: [bosID], body: body, suffix: [eosID], padID: padID, length: maxLength)
    }

    /// NFC, then every whitespace run as one space, then per-character (context-free) lower-casing.
    static func normalize(_ text: String) -> [Unicode.Scalar] {
        var normalized: [Unicode.Scalar] = []
        var afterWhitespace = false
        for scalar in text.precomposedStringWithCanonicalMapping.unicodeScalars {
            if scalar.properties.isWhitespace {
                if !afterWhitespace { normalized.append(" ") }
                afterWhitespace = true
                continue
            }
            afterWhitespace = false
            normalized.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
        }
        return normalized
    }

    /// CLIP's pre-tokenisation pattern `'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+`,
    /// tried in that order at each position; whitespace between matches is dropped.
    static func words(_ text: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        var words: [[Unicode.Scalar]] = []
        var position = 0
        while position < text.count {
            let scalar = text[position]
            let start = position
            if let length = contractionLength(text, at: position) {
                position += length
            } else if isLetter(scalar) {
                while position < text.count && isLetter(text[position]) { position += 1 }
            } else if isNumber(scalar) {
                position += 1
            } else if !scalar.properties.isWhitespace {
                while position < text.count && isPunctuationLike(text[position]) { position += 1 }
            } else {
                position += 1
                continue
            }
            words.append(Array(text[start..<position]))
        }
        return words
    }

    private static let contractionSuffixes: [[Unicode.Scalar]] =
        ["s", "t", "re", "ve", "m", "ll", "d"].map { Array($0.unicodeScalars) }

    private static func contractionLength(_ text: [Unicode.Scalar], at position: Int) -> Int? {
        guard text[position] == "'" else { return nil }
        for suffix in contractionSuffixes {
            let end = position + 1 + suffix.count
            if end <= text.count && Array(text[(position + 1)..<end]) == suffix {
                return suffix.count + 1
            }
        }
        return nil
    }

    private static func isLetter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    private static func isNumber(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    private static func isPunctuationLike(_ scalar: Unicode.Scalar) -> Bool {
        !scalar.properties.isWhitespace && !isLetter(scalar) && !isNumber(scalar)
    }

    /// BPE over one word's bytes: repeatedly merge every occurrence of the adjacent pair with the
    /// lowest rank, left to right, until no pair has a merge.
    private func bytePairEncode(_ word: [Unicode.Scalar]) -> [Int32] {
        let bytes = Array(String(String.UnicodeScalarView(word)).utf8)
        var symbols = bytes.enumerated().map { index, byte in
            let symbol = byteSymbols[Int(byte)]
            return (index == bytes.count - 1 ? symbol.wordEnd : symbol.plain) ?? unknownID
        }
        while symbols.count > 1 {
            var best: (rank: Int32, merged: Int32, left: Int32, right: Int32)?
            for index in 0..<(symbols.count - 1) {
                if let merge = merges[Self.pairKey(symbols[index], symbols[index + 1])],
                   merge.rank < best?.rank ?? .max {
                    best = (merge.rank, merge.merged, symbols[index], symbols[index + 1])
                }
            }
            guard let best else { break }
            var merged: [Int32] = []
            merged.reserveCapacity(symbols.count)
            var index = 0
            while index < symbols.count {
                if index + 1 < symbols.count && symbols[index] == best.left && symbols[index + 1] == best.right {
                    merged.append(best.merged)
                    index += 2
                } else {
                    merged.append(symbols[index])
                    index += 1
                }
            }
            symbols = merged
        }
        return symbols
    }

    private static func pairKey(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    private static func vocabulary(_ value: Any?, file: URL) throws -> [String: Int32] {
        guard let object = value as? [String: Any] else {
            throw TokenizerError.badJSON(file, reason: "vocabulary is not an object of token -> id")
        }
        var vocabulary: [String: Int32] = [:]
        vocabulary.reserveCapacity(object.count)
        for (token, id) in object {
            guard let id = TokenizerFiles.tokenID(id) else {
                throw TokenizerError.badJSON(file, reason: "token \"\(token)\" has id \(id), not one in 0...\(Int32.max)")
            }
            vocabulary[token] = id
        }
        return vocabulary
    }

    /// merges.txt: an optional `#version` line, then one "left right" pair per line, by rank.
    private static func mergePairs(text data: Data, file: URL) throws -> [(String, String)] {
        let text = String(decoding: data, as: UTF8.self)
        var pairs: [(String, String)] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.isEmpty || (index == 0 && line.hasPrefix("#version")) { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw TokenizerError.badJSON(file, reason: "line \(index + 1) is not a \"left right\" pair")
            }
            pairs.append((String(parts[0]), String(parts[1])))
        }
        return pairs
    }

    /// tokenizer.json writes merges as "left right" strings or as [left, right] arrays.
    private static func mergePairs(_ value: Any?, file: URL) throws -> [(String, String)] {
        guard let list = value as? [Any] else {
            throw TokenizerError.badJSON(file, reason: "model.merges is not a list")
        }
        return try list.enumerated().map { index, entry in
            if let text = entry as? String {
                let parts = text.split(separator: " ", omittingEmptySubsequences: false)
                if parts.count == 2 { return (String(parts[0]), String(parts[1])) }
            } else if let parts = entry as? [String], parts.count == 2 {
                return (parts[0], parts[1])
            }
            throw TokenizerError.badJSON(file, reason: "merge \(index) is not a pair")
        }
    }
}

/// GPT-2's reversible map from bytes to printable characters, in which CLIP's vocabulary is
/// written: printable Latin-1 bytes stand for themselves, the rest take U+0100 onwards in order.
enum ByteAlphabet {
    static let symbols: [String] = {
        let printable = Set(Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF))
        var next: UInt16 = 0x100
        return (0..<256).map { byte in
            if printable.contains(byte) { return String(decoding: [UInt16(byte)], as: UTF16.self) }
            defer { next += 1 }
            return String(decoding: [next], as: UTF16.self)
        }
    }()
}
