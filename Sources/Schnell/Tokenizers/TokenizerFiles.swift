import Foundation

/// Reading the JSON files that sit beside a tokenizer's vocabulary.
enum TokenizerFiles {
    static func readData(_ file: URL) throws -> Data {
        do {
            return try Data(contentsOf: file, options: .mappedIfSafe)
        } catch {
            throw TokenizerError.unreadableFile(file, reason: error.localizedDescription)
        }
    }

    static func readJSONObject(_ file: URL) throws -> [String: Any] {
        let data = try readData(file)
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw TokenizerError.badJSON(file, reason: error.localizedDescription)
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

    static func integer(_ value: Any?) -> Int? {
        if let number = value as? NSNumber { return number.intValue }
        if let text = value as? String { return Int(text) }
        return nil
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
            if let length = TokenizerFiles.double(object["model_max_length"]), length < 1e9 {
                modelMaxLength = Int(length)
            }
            extraIDs = TokenizerFiles.integer(object["extra_ids"])
            if let decoder = object["added_tokens_decoder"] as? [String: Any] {
                for (key, value) in decoder {
                    if let content = TokenizerFiles.tokenContent(value), let id = Int32(key) {
                        addedTokens.append((content, id))
                    }
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
