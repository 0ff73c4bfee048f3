import Foundation

/// T5's sentencepiece Unigram tokenizer, giving the ids that transformers' `T5TokenizerFast`
/// gives when FluxPipeline calls it (`padding="max_length", truncation=True`): the text's tokens,
/// EOS, then the pad token up to `maxLength` (256 for FLUX.1-schnell, 512 for dev).
///
/// Special tokens (`</s>`, `<extra_id_0>`, ...) are cut out of the raw text first. The rest goes
/// through the model's precompiled normalisation rules, is split on whitespace, each word gets a
/// leading `▁` and is split before every further `▁`, and each piece is segmented by Viterbi.
public struct T5Tokenizer: Sendable {
    /// `model_max_length` from tokenizer_config.json (512 for T5) when the folder gives one.
    public let modelMaxLength: Int?
    /// The file the vocabulary was read from, and the largest id `encode` can give: a text
    /// encoder must have at least `largestID + 1` embeddings to take this tokenizer's ids.
    public let vocabularyFile: URL
    public let largestID: Int32

    private let model: UnigramModel
    private let charsmap: PrecompiledCharsmap?
    private let specialTokens: SpecialTokenSplitter
    private let eosID: Int32
    private let padID: Int32

    private static let metaspace: Unicode.Scalar = "\u{2581}"

    /// Loads `tokenizer.json` when the folder has one (transformers prefers it), otherwise
    /// `spiece.model`.
    public init(folder: URL) throws {
        let settings = try TokenizerSettings(folder: folder)
        let tokenizerJSON = folder.appendingPathComponent("tokenizer.json")
        let spieceModel = folder.appendingPathComponent("spiece.model")
        let source: URL
        var pieces: [(text: String, score: Double)]
        let unknownID: Int32
        var charsmap: PrecompiledCharsmap?
        var addedTokens = settings.addedTokens
        if TokenizerFiles.exists(tokenizerJSON) {
            source = tokenizerJSON
            let json = try TokenizerFiles.readJSONObject(tokenizerJSON)
            guard let model = json["model"] as? [String: Any] else {
                throw TokenizerError.badJSON(tokenizerJSON, reason: "no \"model\" object")
            }
            let type = model["type"] as? String ?? "unnamed"
            guard type == "Unigram" else {
                throw TokenizerError.unsupportedModel(tokenizerJSON, found: type, expected: "Unigram")
            }
            pieces = try Self.pieces(model["vocab"], file: tokenizerJSON)
            unknownID = try Self.unknownID(model["unk_id"], pieceCount: pieces.count, file: tokenizerJSON)
            let blob = try Self.precompiledCharsmap(json["normalizer"], file: tokenizerJSON)
            if !blob.isEmpty {
                guard let rules = PrecompiledCharsmap(blob) else {
                    throw TokenizerError.badJSON(tokenizerJSON, reason: "precompiled_charsmap is truncated")
                }
                charsmap = rules
            }
            addedTokens += try TokenizerFiles.addedTokens(json, file: tokenizerJSON)
        } else if TokenizerFiles.exists(spieceModel) {
            source = spieceModel
            let model = try SentencePieceModel(file: spieceModel)
            guard model.modelType == 1 else {
                let names = [2: "BPE", 3: "word", 4: "char"]
                throw TokenizerError.unsupportedModel(spieceModel, found: names[model.modelType] ?? "type \(model.modelType)",
                                                      expected: "Unigram")
            }
            pieces = model.pieces.map { ($0.text, Double($0.score)) }
            guard (0..<pieces.count).contains(model.unknownID) else {
                throw TokenizerError.badSentencePieceModel(
                    spieceModel, reason: "unk_id \(model.unknownID) is not one of the \(pieces.count) pieces' ids")
            }
            unknownID = Int32(model.unknownID)
            if !model.precompiledCharsmap.isEmpty {
                guard let rules = PrecompiledCharsmap(model.precompiledCharsmap) else {
                    throw TokenizerError.badSentencePieceModel(spieceModel, reason: "precompiled_charsmap is truncated")
                }
                charsmap = rules
            }
            for (id, piece) in model.pieces.enumerated() where piece.type == .control || piece.type == .userDefined {
                addedTokens.append((piece.text, Int32(id)))
            }
            // transformers appends T5's sentinels after the sentencepiece pieces, <extra_id_0> last.
            let extraIDs = settings.extraIDs ?? 100
            let sentinels = (0..<extraIDs).reversed().map { "<extra_id_\($0)>" }
            for sentinel in sentinels {
                addedTokens.append((sentinel, Int32(pieces.count)))
                pieces.append((sentinel, 0))
            }
        } else {
            throw TokenizerError.missingFile(folder: folder, expected: ["tokenizer.json", "spiece.model"])
        }

        var ids: [String: Int32] = [:]
        for (id, piece) in pieces.enumerated() { ids[piece.text] = Int32(id) }
        // The unknown token is only needed as text to cut out; the model file gives its id.
        let special = try settings.specialTokenIDs(
            added: addedTokens, vocabulary: ids,
            roles: [("eos_token", "</s>"), ("pad_token", "<pad>"), ("unk_token", "<unk>")], source: source)
        (eosID, padID) = (special.roles[0], special.roles[1])
        specialTokens = SpecialTokenSplitter(special.cutOut)
        vocabularyFile = source
        largestID = max(Int32(pieces.count - 1), special.cutOut.values.max() ?? 0)
        self.charsmap = charsmap
        model = UnigramModel(pieces: pieces, unknownID: unknownID)
        modelMaxLength = settings.modelMaxLength
    }

    /// Token ids for `text`, exactly `maxLength` long: tokens, EOS, pad.
    public func encode(_ text: String, maxLength: Int) -> [Int32] {
        encodeCounting(text, maxLength: maxLength).ids
    }

    /// `encode`'s ids and how many of them are not padding (EOS counted, at most `maxLength`).
    public func encodeCounting(_ text: String, maxLength: Int) -> (ids: [Int32], count: Int) {
        var body: [Int32] = []
        // T5's special tokens are not "normalized": they are matched in the raw text.
        for segment in specialTokens.split(Array(text.unicodeScalars)) {
            switch segment {
            case let .token(id):
                body.append(id)
            case let .text(scalars):
                let normalized = charsmap?.normalize(scalars) ?? scalars
                for piece in Self.pieces(normalized) {
                    body.append(contentsOf: model.encode(Array(String(String.UnicodeScalarView(piece)).utf8)))
                }
            }
        }
        return fitToLength(prefix: [], body: body, suffix: [eosID], padID: padID, length: maxLength)
    }

    /// Whitespace split, then `▁` before each word unless it has one, then a split before each
    /// further `▁` (a run of `▁` leaves all but the last on their own).
    static func pieces(_ text: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        var pieces: [[Unicode.Scalar]] = []
        for word in text.split(whereSeparator: { $0.properties.isWhitespace }) {
            var current: [Unicode.Scalar] = word.first == metaspace ? [] : [metaspace]
            for scalar in word {
                if scalar == metaspace && !current.isEmpty {
                    pieces.append(current)
                    current = []
                }
                current.append(scalar)
            }
            pieces.append(current)
        }
        return pieces
    }

    /// The unknown piece's id (`unk_id`; absent or null means T5's 2), which must be a piece.
    private static func unknownID(_ value: Any?, pieceCount: Int, file: URL) throws -> Int32 {
        let id = value == nil || value is NSNull ? 2 : TokenizerFiles.tokenID(value)
        guard let id, Int(id) < pieceCount else {
            throw TokenizerError.badJSON(file, reason: "unk_id \(value ?? "absent") is not one of the \(pieceCount) pieces' ids")
        }
        return id
    }

    /// tokenizer.json's Unigram vocabulary: a list of [piece, score] pairs in id order.
    private static func pieces(_ value: Any?, file: URL) throws -> [(text: String, score: Double)] {
        guard let list = value as? [Any] else {
            throw TokenizerError.badJSON(file, reason: "model.vocab is not a list of [piece, score]")
        }
        return try list.enumerated().map { index, entry in
            guard let pair = entry as? [Any], pair.count == 2, let text = pair[0] as? String,
                  let score = TokenizerFiles.double(pair[1]) else {
                throw TokenizerError.badJSON(file, reason: "model.vocab[\(index)] is not [piece, score]")
            }
            return (text, score)
        }
    }

    /// The base64 charsmap of a Precompiled normalizer, alone or inside a Sequence.
    private static func precompiledCharsmap(_ normalizer: Any?, file: URL) throws -> Data {
        guard let normalizer = normalizer as? [String: Any] else { return Data() }
        let candidates = normalizer["type"] as? String == "Sequence"
            ? (normalizer["normalizers"] as? [[String: Any]] ?? []) : [normalizer]
        for candidate in candidates where candidate["type"] as? String == "Precompiled" {
            guard let text = candidate["precompiled_charsmap"] as? String else { continue }
            guard let data = Data(base64Encoded: text) else {
                throw TokenizerError.badJSON(file, reason: "precompiled_charsmap is not base64")
            }
            return data
        }
        return Data()
    }
}
