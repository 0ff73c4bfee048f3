import Foundation

/// The parts of a sentencepiece `ModelProto` (spiece.model) a Unigram tokenizer needs, read with
/// a minimal protobuf decoder. Field numbers are from sentencepiece_model.proto:
/// ModelProto { 1: pieces, 2: trainer_spec, 3: normalizer_spec }
/// SentencePiece { 1: piece, 2: score (float), 3: type }
/// TrainerSpec { 3: model_type, 40: unk_id }
/// NormalizerSpec { 2: precompiled_charsmap }
struct SentencePieceModel {
    enum PieceType: Int {
        case normal = 1, unknown, control, userDefined, unused, byte
    }

    struct Piece {
        var text = ""
        var score: Float = 0
        var type = PieceType.normal
    }

    private(set) var pieces: [Piece] = []
    /// TrainerSpec.ModelType: 1 is Unigram (the default when absent).
    private(set) var modelType = 1
    private(set) var unknownID = 0
    private(set) var precompiledCharsmap = Data()

    init(file: URL) throws {
        let data = try TokenizerFiles.readData(file)
        do {
            var reader = ProtobufReader(Array(data))
            while let (field, value) = try reader.next() {
                switch (field, value) {
                case let (1, .bytes(bytes)):
                    pieces.append(try Self.piece(bytes))
                case let (2, .bytes(bytes)):
                    var trainer = ProtobufReader(bytes)
                    while let (field, value) = try trainer.next() {
                        if case let .varint(number) = value {
                            if field == 3 { modelType = Int(truncatingIfNeeded: number) }
                            if field == 40 { unknownID = Int(truncatingIfNeeded: number) }
                        }
                    }
                case let (3, .bytes(bytes)):
                    var normalizer = ProtobufReader(bytes)
                    while let (field, value) = try normalizer.next() {
                        if field == 2, case let .bytes(charsmap) = value { precompiledCharsmap = Data(charsmap) }
                    }
                default:
                    continue
                }
            }
        } catch let error as ProtobufReader.Failure {
            throw TokenizerError.badSentencePieceModel(file, reason: error.reason)
        }
        guard !pieces.isEmpty else {
            throw TokenizerError.badSentencePieceModel(file, reason: "no pieces")
        }
    }

    private static func piece(_ bytes: [UInt8]) throws -> Piece {
        var piece = Piece()
        var reader = ProtobufReader(bytes)
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case let (1, .bytes(text)): piece.text = String(decoding: text, as: UTF8.self)
            case let (2, .fixed32(bits)): piece.score = Float(bitPattern: bits)
            case let (3, .varint(type)): piece.type = PieceType(rawValue: Int(truncatingIfNeeded: type)) ?? .normal
            default: continue
            }
        }
        return piece
    }
}

/// Protocol buffer wire format: a key varint (field << 3 | wire type), then the value.
struct ProtobufReader {
    struct Failure: Error {
        let reason: String
    }

    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case bytes([UInt8])
        case fixed32(UInt32)
    }

    private let bytes: [UInt8]
    private var position = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    mutating func next() throws -> (field: Int, value: Value)? {
        guard position < bytes.count else { return nil }
        let key = try varint()
        let field = Int(truncatingIfNeeded: key >> 3)
        switch key & 7 {
        case 0:
            return (field, .varint(try varint()))
        case 1:
            return (field, .fixed64(try littleEndian(byteCount: 8)))
        case 2:
            let length = try varint()
            guard length <= UInt64(bytes.count - position) else {
                throw Failure(reason: "field \(field) runs past the end of the file")
            }
            let end = position + Int(length)
            defer { position = end }
            return (field, .bytes(Array(bytes[position..<end])))
        case 5:
            return (field, .fixed32(UInt32(truncatingIfNeeded: try littleEndian(byteCount: 4))))
        default:
            throw Failure(reason: "field \(field) has unsupported wire type \(key & 7)")
        }
    }

    private mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while position < bytes.count && shift < 64 {
            let byte = bytes[position]
            position += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        throw Failure(reason: "truncated varint at byte \(position)")
    }

    private mutating func littleEndian(byteCount: Int) throws -> UInt64 {
        guard bytes.count - position >= byteCount else {
            throw Failure(reason: "truncated fixed-width value at byte \(position)")
        }
        var value: UInt64 = 0
        for index in 0..<byteCount {
            value |= UInt64(bytes[position + index]) << (8 * UInt64(index))
        }
        position += byteCount
        return value
    }
}
