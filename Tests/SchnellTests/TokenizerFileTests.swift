import Foundation
import XCTest
@testable import Schnell

/// Damaged tokenizer files (Sources/Schnell/Tokenizers/TokenizerFiles.swift and the two
/// tokenizers' loaders), each a copy of a committed tokenizer fixture with one value changed:
/// every id, count and length is checked before use and refused naming the file, where an id of
/// 2^40 used to trap in Int32(_:) and a negative extra_ids in a range.
final class TokenizerFileTests: XCTestCase {
    static let tooLarge = 1 << 40

    func copy(_ fixture: String) throws -> URL {
        try DamagedCopy.folder(TokenizerFixtures.folder.appendingPathComponent(fixture).path, for: self)
    }

    func assertRefused(_ load: () throws -> Any, file path: URL, containing words: [String],
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try load(), file: file, line: line) { error in
            XCTAssertTrue(error is TokenizerError, "\(error)", file: file, line: line)
            let message = "\(error)"
            for word in words + [path.path] {
                XCTAssertTrue(message.contains(word), "'\(message)' should mention '\(word)'", file: file, line: line)
            }
        }
    }

    func testCLIPVocabularyIdsMustBeTokenIds() throws {
        for id in [Self.tooLarge, -1] {
            let folder = try copy("clip-vocab-merges")
            let vocab = folder.appendingPathComponent("vocab.json")
            try DamagedCopy.editJSON(vocab) { $0["hello</w>"] = id }
            assertRefused({ try CLIPTokenizer(folder: folder) }, file: vocab,
                          containing: ["\"hello</w>\" has id \(id), not one in 0...2147483647"])
        }
        let folder = try copy("clip-tokenizer-json")
        let json = folder.appendingPathComponent("tokenizer.json")
        try DamagedCopy.editJSON(json) { object in
            var model = object["model"] as? [String: Any] ?? [:]
            var vocab = model["vocab"] as? [String: Any] ?? [:]
            vocab["a"] = 1.5
            model["vocab"] = vocab
            object["model"] = model
        }
        assertRefused({ try CLIPTokenizer(folder: folder) }, file: json, containing: ["\"a\" has id 1.5"])
    }

    func testAddedTokenIdsMustBeTokenIds() throws {
        for (fixture, load) in [("clip-tokenizer-json", { try CLIPTokenizer(folder: $0) as Any }),
                                ("t5-tokenizer-json", { try T5Tokenizer(folder: $0) as Any })] as [(String, (URL) throws -> Any)] {
            let folder = try copy(fixture)
            let json = folder.appendingPathComponent("tokenizer.json")
            try DamagedCopy.editJSON(json) { object in
                var tokens = object["added_tokens"] as? [[String: Any]] ?? []
                tokens[0]["id"] = Self.tooLarge
                object["added_tokens"] = tokens
            }
            assertRefused({ try load(folder) }, file: json, containing: ["added_tokens[0] has id \(Self.tooLarge)"])
        }
    }

    func testT5UnknownIdMustBeAPiece() throws {
        for id in [Self.tooLarge, 5000, -3] {
            let folder = try copy("t5-tokenizer-json")
            let json = folder.appendingPathComponent("tokenizer.json")
            try DamagedCopy.editJSON(json) { object in
                var model = object["model"] as? [String: Any] ?? [:]
                model["unk_id"] = id
                object["model"] = model
            }
            assertRefused({ try T5Tokenizer(folder: folder) }, file: json, containing: ["unk_id \(id) is not one of the"])
        }
        // spiece.model: a second TrainerSpec (field 2) whose unk_id (field 40) is 2^40; the last wins.
        let folder = try copy("t5-spiece")
        let model = folder.appendingPathComponent("spiece.model")
        let trainer = Self.varint(40 << 3) + Self.varint(UInt64(Self.tooLarge))
        try (Data(contentsOf: model) + [0x12] + Self.varint(UInt64(trainer.count)) + trainer).write(to: model)
        assertRefused({ try T5Tokenizer(folder: folder) }, file: model, containing: ["unk_id \(Self.tooLarge) is not one of the"])
    }

    /// extra_ids sizes a loop of sentinels: -1 used to trap, 10^12 to allocate without end.
    func testExtraIdsAndModelMaxLengthAreBounded() throws {
        let cases: [(String, Any, String)] = [
            ("extra_ids", -1, "extra_ids -1 is not a count in 0...10000"),
            ("extra_ids", 1_000_000_000_000, "extra_ids 1000000000000 is not a count in 0...10000"),
            ("model_max_length", -1e300, "is not a positive number"),
            ("model_max_length", "long", "model_max_length long is not a positive number"),
        ]
        for (key, value, reason) in cases {
            let folder = try copy("t5-spiece")
            let config = folder.appendingPathComponent("tokenizer_config.json")
            try JSONSerialization.data(withJSONObject: [key: value]).write(to: config)
            assertRefused({ try T5Tokenizer(folder: folder) }, file: config, containing: [reason])
        }
        let folder = try copy("t5-spiece")
        try Data(#"{"extra_ids": 3, "model_max_length": 1e30}"#.utf8).write(to: folder.appendingPathComponent("tokenizer_config.json"))
        XCTAssertNil(try T5Tokenizer(folder: folder).modelMaxLength, "transformers' 1e30 sentinel means no limit")
    }

    /// Garbage where a JSON tokenizer file should be names the file and says it is not JSON.
    func testGarbageFilesAreNamed() throws {
        for (fixture, name) in [("clip-vocab-merges", "vocab.json"), ("clip-tokenizer-json", "tokenizer.json"),
                                ("t5-tokenizer-json", "tokenizer_config.json")] {
            let folder = try copy(fixture)
            let file = folder.appendingPathComponent(name)
            try Data("garbage".utf8).write(to: file)
            let load: () throws -> Any = fixture.hasPrefix("clip") ? { try CLIPTokenizer(folder: folder) } : { try T5Tokenizer(folder: folder) }
            assertRefused(load, file: file, containing: ["not valid JSON"])
        }
    }

    /// The largest id each tokenizer can give, which the pipeline checks against its encoder's
    /// table at load: the fixtures' vocabularies end at 49407 (CLIP) and 2099 (T5, its
    /// 2000 pieces and 100 sentinels); an added token beyond them raises it.
    func testLargestIDCoversVocabularyAndAddedTokens() throws {
        let clip = try CLIPTokenizer(folder: TokenizerFixtures.folder.appendingPathComponent("clip-vocab-merges"))
        XCTAssertEqual(clip.largestID, 49407)
        XCTAssertEqual(clip.vocabularyFile.lastPathComponent, "vocab.json")
        for fixture in ["t5-tokenizer-json", "t5-spiece"] {
            XCTAssertEqual(try T5Tokenizer(folder: TokenizerFixtures.folder.appendingPathComponent(fixture)).largestID, 2099, fixture)
        }
        let folder = try copy("t5-tokenizer-json")
        try DamagedCopy.editJSON(folder.appendingPathComponent("tokenizer.json")) { object in
            object["added_tokens"] = (object["added_tokens"] as? [[String: Any]] ?? []) + [["id": 5000, "content": "<far>"]]
        }
        XCTAssertEqual(try T5Tokenizer(folder: folder).largestID, 5000)
    }

    static func varint(_ value: UInt64) -> [UInt8] {
        var bytes: [UInt8] = [], rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        return bytes + [UInt8(rest)]
    }
}
