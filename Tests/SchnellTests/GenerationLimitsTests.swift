import XCTest
@testable import Schnell

/// `GenerationLimits.check` is the one check of request bounds: the pipeline's `validate` and the
/// server both go through it, so each broken bound must name its parameter.
final class GenerationLimitsTests: XCTestCase {
    func parameter(_ request: GenerationRequest, _ limits: GenerationLimits = .pipeline) -> String? {
        do {
            try limits.check(request, sizeMultiple: 16)
            return nil
        } catch let PipelineError.invalidRequest(parameter, _) {
            return parameter
        } catch {
            return "\(error)"
        }
    }

    func testEachBoundNamesItsParameter() {
        let base = GenerationRequest(prompt: "p", width: 64, height: 48)
        XCTAssertNil(parameter(base))
        let cases: [(WritableKeyPath<GenerationRequest, Int>, Int, String)] = [
            (\.width, 4112, "width"), (\.width, 0, "width"), (\.width, 72, "width"), (\.height, -16, "height"),
            (\.count, 0, "n"), (\.count, 65, "n"),
        ]
        for (field, value, expected) in cases {
            var request = base
            request[keyPath: field] = value
            XCTAssertEqual(parameter(request), expected, "\(field) = \(value)")
        }
        for (steps, expected) in [(0, "steps"), (1001, "steps"), (1000, nil), (1, nil)] as [(Int, String?)] {
            var request = base
            request.steps = steps
            XCTAssertEqual(parameter(request), expected, "steps \(steps)")
        }
        for (guidance, expected) in [(-1, "guidance"), (100.5, "guidance"), (.nan, "guidance"), (.infinity, "guidance"), (0, nil), (100, nil)]
            as [(Float, String?)] {
            var request = base
            request.guidance = guidance
            XCTAssertEqual(parameter(request), expected, "guidance \(guidance)")
        }
        for (length, expected) in [(0, "max_sequence_length"), (513, "max_sequence_length"), (512, nil)] as [(Int, String?)] {
            var request = base
            request.maxSequenceLength = length
            XCTAssertEqual(parameter(request), expected, "max_sequence_length \(length)")
        }
    }

    func testTheMessageGivesTheBound() {
        var limits = GenerationLimits.pipeline
        limits.maxSide = 1024
        XCTAssertThrowsError(try limits.check(GenerationRequest(prompt: "p", width: 2048, height: 64), sizeMultiple: 16)) { error in
            XCTAssertEqual(error as? PipelineError, .invalidRequest(parameter: "width", reason: "2048 is outside 16...1024"))
        }
    }

    func testNarrowingTakesTheTighterBoundOfEach() {
        let server = GenerationLimits(minSide: 64, maxSide: 2048, maxSteps: 50, maxImages: 10, maxSequenceLength: 600, maxGuidance: 20)
        XCTAssertEqual(GenerationLimits.pipeline.narrowed(to: server),
                       GenerationLimits(minSide: 64, maxSide: 2048, maxSteps: 50, maxImages: 10, maxSequenceLength: 512, maxGuidance: 20))
        XCTAssertEqual(server.narrowed(to: .pipeline), GenerationLimits.pipeline.narrowed(to: server))
        XCTAssertEqual(parameter(GenerationRequest(prompt: "p", width: 32, height: 64), GenerationLimits.pipeline.narrowed(to: server)), "width")
    }

    func testThePipelineHoldsRequestsToItsLimits() throws {
        let pipeline = try FluxPipeline.load(PipelineFiles(model: FluxPipelineTests.bundled), backend: CPUBackend())
        XCTAssertNoThrow(try pipeline.validate(GenerationRequest(prompt: "x", width: 4096, height: 16, steps: 1000, count: 64)))
        XCTAssertThrowsError(try pipeline.validate(GenerationRequest(prompt: "x", width: 64, height: 64, count: 65))) { error in
            XCTAssertEqual(error as? PipelineError, .invalidRequest(parameter: "n", reason: "65 is outside 1...64"))
        }
        XCTAssertThrowsError(try pipeline.validate(GenerationRequest(prompt: "x", width: 64, height: 64, steps: 1001))) { error in
            XCTAssertEqual(error as? PipelineError, .invalidRequest(parameter: "steps", reason: "1001 is outside 1...1000"))
        }
    }
}
