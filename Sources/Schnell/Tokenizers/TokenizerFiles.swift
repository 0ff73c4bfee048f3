import Foundation

/// Reading the JSON files that sit beside a tokenizer's vocabulary.
enum TokenizerFiles {
    /// The whole file; a FIFO or device is refused rather than read (see `ModelFile`).
    static func readData(_ file: URL) throws -> Data {
        do {
            return try ModelFile.contents(of: file.path)
        } catch let WeightsError.cannotOpen(_, reason) {
            throw TokenizerError.unreadableFile(file, reason: reason)
        }
    }

    static func readJSONObject(_ file: URL) throws -> [String: Any] {
        let data = try readData(file)
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw TokenizerError.badJSON(file, reason: "not valid JSON")
        }
        guard let dictionary = object as? [String: Any] else {
            throw TokenizerError.badJSON(file, reason: "top level is not an object")
        }
        return dictionary
    }

    static func exists(_ file: URL) -> Bool {
        FileManager.default.fileExists(atPath: file.path)
    }

    /// A token is written either as its text or as an AddedToken object with a "content" field.
    static func tokenContent(_ value: Any?) -> String? {
        if let text = value as? String { return text }
        if let object = value as? [String: Any] { return object["content"] as? String }
        return nil
    }

    /// A JSON integer or a decimal string of one; nil for anything else (a boolean, a fraction,
    /// a number past Int's range), never a truncated value.
    static func integer(_ value: Any?) -> Int? {
        if let number = value as? NSNumber {
            // On Linux JSON true and false also cast to Int; a boolean's NSNumber has type code "c".
            guard String(cString: number.objCType) != "c" else { return nil }
            return value as? Int
        }
        if let text = value as? String { return Int(text) }
        return nil
    }

    /// A token id: an integer in 0...Int32.max (ids are Int32 in the engine).
    static func tokenID(_ value: Any?) -> Int32? {
        integer(value).flatMap { Int32(exactly: $0) }.flatMap { $0 >= 0 ? $0 : nil }
    }

    /// tokenizer.json's "added_tokens": {"content", "id"} objects; an id, when given, must be a token id.
    static func addedTokens(_ json: [String: Any], file: URL) throws -> [(content: String, id: Int32?)] {
        guard let list = json["added_tokens"], !(list is NSNull) else { return [] }
        guard let tokens = list as? [Any] else {
            throw TokenizerError.badJSON(file, reason: "added_tokens is not a list")
        }
        return try tokens.enumerated().map { index, entry in
            guard let token = entry as? [String: Any], let content = token["content"] as? String else {
                throw TokenizerError.badJSON(file, reason: "added_tokens[\(index)] has no \"content\" string")
            }
            guard let value = token["id"], !(value is NSNull) else { return (content, nil) }
            guard let id = tokenID(value) else {
                throw TokenizerError.badJSON(file, reason: "added_tokens[\(index)] has id \(value), not one in 0...\(Int32.max)")
            }
            return (content, id)
        }
    }

    static func double(_ value: Any?) -> Double? {
        (value as? NSNumber)?.doubleValue
    }
}

/// What transformers takes from tokenizer_config.json and special_tokens_map.json: the special
/// tokens by role, the model's maximum length, and tokens added on top of the vocabulary.
/// tokenizer_config.json wins where both files name a role, as in transformers.
struct TokenizerSettings {
    var specialTokens: [String: String] = [:]
    var modelMaxLength: Int?
    /// Tokens matched in the text before the model sees it, with the id the file gives, if any.
    var addedTokens: [(content: String, id: Int32?)] = []
    var extraIDs: Int?
    /// T5 has 100 sentinels; a count far past that is a damaged file, not a tokenizer.
    static let maxExtraIDs = 10_000

    init(folder: URL) throws {
        let specialMap = folder.appendingPathComponent("special_tokens_map.json")
        if TokenizerFiles.exists(specialMap) {
            try read(TokenizerFiles.readJSONObject(specialMap))
        }
        let config = folder.appendingPathComponent("tokenizer_config.json")
        if TokenizerFiles.exists(config) {
            let object = try TokenizerFiles.readJSONObject(config)
            try read(object)
            // transformers writes a huge sentinel (1e30) when a model has no limit.
            if let value = object["model_max_length"], !(value is NSNull) {
                guard let length = TokenizerFiles.double(value), length >= 1 else {
                    throw TokenizerError.badJSON(config, reason: "model_max_length \(value) is not a positive number")
                }
                if length < 1e9 { modelMaxLength = Int(length) }
            }
            if let value = object["extra_ids"], !(value is NSNull) {
                guard let count = TokenizerFiles.integer(value), (0...Self.maxExtraIDs).contains(count) else {
                    throw TokenizerError.badJSON(config, reason: "extra_ids \(value) is not a count in 0...\(Self.maxExtraIDs)")
                }
                extraIDs = count
            }
            if let decoder = object["added_tokens_decoder"] as? [String: Any] {
                for (key, value) in decoder {
                    guard let content = TokenizerFiles.tokenContent(value), let id = TokenizerFiles.tokenID(key) else {
                        throw TokenizerError.badJSON(config, reason: "added_tokens_decoder entry \"\(key)\" is not a token id with a content")
                    }
                    addedTokens.append((content, id))
                }
            }
        }
    }

    private mutating func read(_ object: [String: Any]) throws {
        for role in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            if let content = TokenizerFiles.tokenContent(object[role]) {
                specialTokens[role] = content
            }
        }
        for key in ["additional_special_tokens", "extra_special_tokens"] {
            for value in object[key] as? [Any] ?? [] {
                if let content = TokenizerFiles.tokenContent(value) {
                    addedTokens.append((content, nil))
                }
            }
        }
    }

    func token(_ role: String, default fallback: String) -> String {
        specialTokens[role] ?? fallback
    }

    /// Resolves the added tokens and the special-token roles against a vocabulary: the ids of
    /// every token to cut out of text, and the id of each role in the order given (the token the
    /// config names, else `fallback`). A role whose token the vocabulary lacks is an error
    /// naming `source`.
    func specialTokenIDs(added: [(content: String, id: Int32?)], vocabulary: [String: Int32],
                         roles: [(role: String, fallback: String)], source: URL) throws
        -> (cutOut: [String: Int32], roles: [Int32]) {
        var cutOut: [String: Int32] = [:]
        for (content, id) in added {
            if let id = id ?? vocabulary[content] { cutOut[content] = id }
        }
        let roleIDs = try roles.map { role, fallback in
            let token = token(role, default: fallback)
            guard let id = vocabulary[token] else { throw TokenizerError.unknownToken(source, token: token) }
            cutOut[token] = id
            return id
        }
        return (cutOut, roleIDs)
    }
}
