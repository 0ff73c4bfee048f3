/// Token ids a text encoder cannot take. The tokenizers produce valid ids, so these mean a
/// tokenizer and an encoder that do not belong together.
public enum TextEncoderError: Error, CustomStringConvertible, Equatable {
    case emptySequence
    case sequenceTooLong(count: Int, maximum: Int)
    case tokenOutOfRange(id: Int32, position: Int, vocabularySize: Int)

    public var description: String {
        switch self {
        case .emptySequence:
            return "the token sequence is empty"
        case let .sequenceTooLong(count, maximum):
            return "\(count) tokens exceed the encoder's \(maximum) positions"
        case let .tokenOutOfRange(id, position, vocabularySize):
            return "token id \(id) at position \(position) is outside the vocabulary of \(vocabularySize)"
        }
    }

    static func check(_ ids: [Int32], vocabularySize: Int, maximumLength: Int?) throws {
        guard !ids.isEmpty else { throw emptySequence }
        if let maximumLength, ids.count > maximumLength {
            throw sequenceTooLong(count: ids.count, maximum: maximumLength)
        }
        if let position = ids.firstIndex(where: { $0 < 0 || Int($0) >= vocabularySize }) {
            throw tokenOutOfRange(id: ids[position], position: position, vocabularySize: vocabularySize)
        }
    }
}
