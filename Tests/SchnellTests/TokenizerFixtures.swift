import Foundation
import XCTest

/// The tokenizer folders and expected ids written by Tests/Fixtures/generate_tokenizers.py.
enum TokenizerFixtures {
    static let folder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizers")

    struct Expected: Decodable {
        let prompts: [String]
        /// max length (as text) -> one id list per prompt
        let clip: [String: [[Int32]]]
        let t5: [String: [[Int32]]]
    }

    static func expected() throws -> Expected {
        let data = try Data(contentsOf: folder.appendingPathComponent("expected_ids.json"))
        return try JSONDecoder().decode(Expected.self, from: data)
    }

    /// Compares every prompt's ids exactly (no tolerance: one differing id fails the prompt).
    static func assertIDs(_ encode: (String, Int) -> [Int32], expected: [String: [[Int32]]], prompts: [String],
                          variant: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(expected.isEmpty, "no expected ids", file: file, line: line)
        for (maxLengthText, idsPerPrompt) in expected.sorted(by: { $0.key < $1.key }) {
            guard let maxLength = Int(maxLengthText) else {
                XCTFail("bad max length \(maxLengthText)", file: file, line: line)
                continue
            }
            XCTAssertEqual(idsPerPrompt.count, prompts.count, file: file, line: line)
            for (prompt, ids) in zip(prompts, idsPerPrompt) {
                XCTAssertEqual(encode(prompt, maxLength), ids,
                               "\(variant), max length \(maxLength), prompt \(prompt.debugDescription)",
                               file: file, line: line)
            }
        }
    }
}
