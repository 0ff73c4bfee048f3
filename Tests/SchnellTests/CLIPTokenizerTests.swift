import Foundation
import XCTest
@testable import Schnell

/// CLIPTokenizer against transformers' CLIPTokenizer as FluxPipeline calls it, on the real CLIP-L
/// vocabulary. Tolerance: exact equality of every id.
final class CLIPTokenizerTests: XCTestCase {
    func testVocabAndMergesMatchTransformers() throws {
        let expected = try TokenizerFixtures.expected()
        let tokenizer = try CLIPTokenizer(folder: TokenizerFixtures.folder.appendingPathComponent("clip-vocab-merges"))
        XCTAssertEqual(tokenizer.modelMaxLength, 77)
        TokenizerFixtures.assertIDs({ tokenizer.encode($0, maxLength: $1) }, expected: expected.clip,
                                    prompts: expected.prompts, variant: "vocab.json + merges.txt")
    }

    func testTokenizerJSONMatchesTransformers() throws {
        let expected = try TokenizerFixtures.expected()
        let tokenizer = try CLIPTokenizer(folder: TokenizerFixtures.folder.appendingPathComponent("clip-tokenizer-json"))
        TokenizerFixtures.assertIDs({ tokenizer.encode($0, maxLength: $1) }, expected: expected.clip,
                                    prompts: expected.prompts, variant: "tokenizer.json")
    }

    func testDefaultLengthIs77WithBOSFirstAndEOSThenPadding() throws {
        let tokenizer = try CLIPTokenizer(folder: TokenizerFixtures.folder.appendingPathComponent("clip-vocab-merges"))
        let ids = tokenizer.encode("a photo of a cat")
        XCTAssertEqual(ids.count, 77)
        XCTAssertEqual(Array(ids.prefix(7)), [49406, 320, 1125, 539, 320, 2368, 49407])
        XCTAssertEqual(Set(ids.dropFirst(7)), [49407])
    }

    func testMissingFolderNamesTheFiles() {
        let folder = URL(fileURLWithPath: "/nonexistent/tokenizer")
        XCTAssertThrowsError(try CLIPTokenizer(folder: folder)) { error in
            let message = String(describing: error)
            XCTAssertTrue(message.contains("/nonexistent/tokenizer"), message)
            XCTAssertTrue(message.contains("vocab.json"), message)
        }
    }

    func testUnigramTokenizerJSONIsRefused() {
        XCTAssertThrowsError(try CLIPTokenizer(folder: TokenizerFixtures.folder.appendingPathComponent("t5-tokenizer-json"))) { error in
            XCTAssertTrue(String(describing: error).contains("Unigram"), String(describing: error))
        }
    }
}

final class CLIPTokenizerConfigTests: XCTestCase {
    /// Stable Diffusion 2's CLIP folders pad with "!" (id 0) instead of <|endoftext|>: the pad
    /// token must come from tokenizer_config.json. Tolerance: exact ids.
    func testPadTokenComesFromTokenizerConfig() throws {
        let source = TokenizerFixtures.folder.appendingPathComponent("clip-vocab-merges")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("clip-pad-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for name in ["vocab.json", "merges.txt"] {
            try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent(name),
                                                       withDestinationURL: source.appendingPathComponent(name))
        }
        try Data(#"{"pad_token": "!", "model_max_length": 77}"#.utf8)
            .write(to: folder.appendingPathComponent("tokenizer_config.json"))
        let tokenizer = try CLIPTokenizer(folder: folder)
        XCTAssertEqual(tokenizer.encode("a cat", maxLength: 6), [49406, 320, 2368, 49407, 0, 0])
    }
}
