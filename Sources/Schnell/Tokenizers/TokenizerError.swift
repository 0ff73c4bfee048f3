import Foundation

/// Why a tokenizer folder could not be loaded. Every message names the file and what is wrong
/// with it, so a user can tell a wrong folder from a damaged download.
public enum TokenizerError: Error, CustomStringConvertible {
    /// None of the files a tokenizer can be built from is in the folder.
    case missingFile(folder: URL, expected: [String])
    case unreadableFile(URL, reason: String)
    case badJSON(URL, reason: String)
    case unsupportedModel(URL, found: String, expected: String)
    /// A token the tokenizer needs (BOS, EOS, pad, a merge's parts) is not in the vocabulary.
    case unknownToken(URL, token: String)
    case badSentencePieceModel(URL, reason: String)

    public var description: String {
        switch self {
        case let .missingFile(folder, expected):
            return "\(folder.path): no tokenizer files found (expected \(expected.joined(separator: " or ")))"
        case let .unreadableFile(file, reason):
            return "\(file.path): cannot be read (\(reason))"
        case let .badJSON(file, reason):
            return "\(file.path): not a valid tokenizer file (\(reason))"
        case let .unsupportedModel(file, found, expected):
            return "\(file.path): tokenizer model is \(found), expected \(expected)"
        case let .unknownToken(file, token):
            return "\(file.path): token \"\(token)\" is not in the vocabulary"
        case let .badSentencePieceModel(file, reason):
            return "\(file.path): not a valid sentencepiece model (\(reason))"
        }
    }
}
