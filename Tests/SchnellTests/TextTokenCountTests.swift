import Foundation
import XCTest
@testable import Schnell

/// `GenerationResult.textTokens` and the tokenizers' counts of real (not padding) tokens, on the
/// bundled tiny pipeline's tokenizers (CLIP's real BPE vocabulary; a small T5 unigram model).
final class TextTokenCountTests: XCTestCase {
    static let model = URL(fileURLWithPath: FluxPipelineTests.bundled)

    func testCountsAreTheTokensBeforePadding() throws {
        let clip = try CLIPTokenizer(folder: Self.model.appendingPathComponent("tokenizer"))
        let t5 = try T5Tokenizer(folder: Self.model.appendingPathComponent("tokenizer_2"))
        // BOS, a, photo, of, a, cat, EOS.
        let short = clip.encodeCounting("a photo of a cat")
        XCTAssertEqual(short.count, 7)
        XCTAssertEqual(short.ids, clip.encode("a photo of a cat"))
        // 100 words of one token each: BOS, 75 of them, EOS.
        let long = String(repeating: "cat ", count: 100)
        XCTAssertEqual(clip.encodeCounting(long).count, 77)
        XCTAssertEqual(clip.encodeCounting("").count, 2, "BOS and EOS")

        let shortT5 = t5.encodeCounting("a photo of a cat", maxLength: 256)
        XCTAssertEqual(shortT5.ids, t5.encode("a photo of a cat", maxLength: 256))
        XCTAssertEqual(shortT5.count, 6, "\(shortT5.ids.prefix(8))")  // ▁a, ▁photo, ▁of, ▁a, ▁cat, EOS
        XCTAssertEqual(t5.encodeCounting(long, maxLength: 256).count, 101)
        XCTAssertEqual(t5.encodeCounting(long, maxLength: 16).count, 16)
        XCTAssertEqual(t5.encodeCounting("", maxLength: 256).count, 1, "EOS")
        // Past the count only padding, and the last real token (EOS) is not the pad id.
        for (ids, count) in [shortT5, t5.encodeCounting(long, maxLength: 256)] {
            XCTAssertEqual(Set(ids[count...]).count, 1, "one pad id after the real tokens")
            XCTAssertNotEqual(ids[count - 1], ids[count], "EOS is not the pad id in T5")
        }
    }

    func testGenerationReportsTheCounts() throws {
        let pipeline = try FluxPipeline.load(PipelineFiles(model: FluxPipelineTests.bundled), backend: CPUBackend())
        let result = try pipeline.generate(GenerationRequest(prompt: "a photo of a cat", width: 32, height: 32, steps: 1,
                                                             seed: 1, maxSequenceLength: 5))
        XCTAssertEqual(result.textTokens, TextTokenCounts(clip: 7, t5: 5))
    }
}
