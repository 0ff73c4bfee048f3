import Foundation
import XCTest
@testable import Schnell

/// T5Tokenizer against transformers' T5TokenizerFast as FluxPipeline calls it, on a small
/// sentencepiece Unigram model trained like T5's (nmt_nfkc, pad 0, eos 1, unk 2).
/// Tolerance: exact equality of every id.
final class T5TokenizerTests: XCTestCase {
    func testSpieceModelMatchesTransformers() throws {
        let expected = try TokenizerFixtures.expected()
        let tokenizer = try T5Tokenizer(folder: TokenizerFixtures.folder.appendingPathComponent("t5-spiece"))
        TokenizerFixtures.assertIDs({ tokenizer.encode($0, maxLength: $1) }, expected: expected.t5,
                                    prompts: expected.prompts, variant: "spiece.model")
    }

    func testTokenizerJSONMatchesTransformers() throws {
        let expected = try TokenizerFixtures.expected()
        let tokenizer = try T5Tokenizer(folder: TokenizerFixtures.folder.appendingPathComponent("t5-tokenizer-json"))
        TokenizerFixtures.assertIDs({ tokenizer.encode($0, maxLength: $1) }, expected: expected.t5,
                                    prompts: expected.prompts, variant: "tokenizer.json")
    }

    func testEmptyPromptIsEOSThenPadding() throws {
        let tokenizer = try T5Tokenizer(folder: TokenizerFixtures.folder.appendingPathComponent("t5-spiece"))
        XCTAssertEqual(tokenizer.encode("", maxLength: 4), [1, 0, 0, 0])
        XCTAssertEqual(tokenizer.encode("  \t\n", maxLength: 4), [1, 0, 0, 0])
    }

    func testTruncationKeepsEOSLast() throws {
        let tokenizer = try T5Tokenizer(folder: TokenizerFixtures.folder.appendingPathComponent("t5-spiece"))
        let ids = tokenizer.encode(String(repeating: "word ", count: 50), maxLength: 8)
        XCTAssertEqual(ids.count, 8)
        XCTAssertEqual(ids.last, 1)
        XCTAssertFalse(ids.dropLast().contains(0))
    }

    func testMissingFolderNamesTheFiles() {
        XCTAssertThrowsError(try T5Tokenizer(folder: URL(fileURLWithPath: "/nonexistent/tokenizer_2"))) { error in
            let message = String(describing: error)
            XCTAssertTrue(message.contains("/nonexistent/tokenizer_2"), message)
            XCTAssertTrue(message.contains("spiece.model"), message)
        }
    }

    func testBPETokenizerJSONIsRefused() {
        XCTAssertThrowsError(try T5Tokenizer(folder: TokenizerFixtures.folder.appendingPathComponent("clip-tokenizer-json"))) { error in
            XCTAssertTrue(String(describing: error).contains("BPE"), String(describing: error))
        }
    }

    func testTruncatedSpieceModelIsRefused() throws {
        let source = TokenizerFixtures.folder.appendingPathComponent("t5-spiece/spiece.model")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("t5-truncated-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = try Data(contentsOf: source)
        try data.prefix(data.count / 2).write(to: folder.appendingPathComponent("spiece.model"))
        XCTAssertThrowsError(try T5Tokenizer(folder: folder)) { error in
            XCTAssertTrue(String(describing: error).contains("spiece.model"), String(describing: error))
        }
    }
}
