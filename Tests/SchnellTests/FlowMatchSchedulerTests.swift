import Foundation
import Testing
@testable import Schnell

/// Compares with diffusers 0.42.1 FlowMatchEulerDiscreteScheduler set up as FluxPipeline does, written by
/// Tests/Fixtures/generate_sampling.py. Tolerance: none; sigmas, timesteps, mu and Euler steps must match
/// diffusers' float32/float64 values exactly.
private func loadSchedulerFixture() throws -> [String: Any] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/sampling/scheduler.json")
    return try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
}

private func floats(hex: String) -> [Float] {
    let digits = Array(hex.utf8)
    return stride(from: 0, to: digits.count, by: 8).compactMap { start in
        UInt32(String(decoding: digits[start..<(start + 8)], as: UTF8.self), radix: 16).map(Float.init(bitPattern:))
    }
}

private func scheduler(named name: String, in fixture: [String: Any]) throws -> FlowMatchScheduler {
    let configs = try #require(fixture["configs"] as? [String: Any])
    let config = try #require(configs[name])
    return try FlowMatchScheduler(configJSON: JSONSerialization.data(withJSONObject: config))
}

@Test func schedulesMatchDiffusers() throws {
    let fixture = try loadSchedulerFixture()
    let cases = try #require(fixture["cases"] as? [[String: Any]])
    #expect(cases.count == 4 * 6 * 6)
    for testCase in cases {
        let name = try #require(testCase["config"] as? String)
        let steps = try #require(testCase["steps"] as? Int)
        let sequenceLength = try #require(testCase["image_seq_len"] as? Int)
        let label = "\(name), \(steps) steps, \(sequenceLength) tokens"
        let flow = try scheduler(named: name, in: fixture)
        let schedule = try flow.schedule(steps: steps, imageSequenceLength: sequenceLength)
        #expect(flow.mu(imageSequenceLength: sequenceLength) == (testCase["mu"] as? Double), "\(label): mu")
        #expect(schedule.sigmas == floats(hex: try #require(testCase["sigmas"] as? String)), "\(label): sigmas")
        #expect(schedule.timesteps == floats(hex: try #require(testCase["timesteps"] as? String)), "\(label): timesteps")
        let transformerTimesteps = (0..<steps).map(schedule.transformerTimestep(at:))
        #expect(transformerTimesteps == floats(hex: try #require(testCase["transformer_timesteps"] as? String)), "\(label): t / 1000")
    }
}

@Test func builtInDefaultsEqualTheFluxConfigs() throws {
    let fixture = try loadSchedulerFixture()
    #expect(try scheduler(named: "schnell", in: fixture) == .schnellDefaults)
    #expect(try scheduler(named: "dev", in: fixture) == .devDefaults)
    #expect(try FlowMatchScheduler.schnellDefaults.sigmas(steps: 4, imageSequenceLength: 4096) == [1, 0.75, 0.5, 0.25, 0])
}

@Test func eulerStepsMatchDiffusers() throws {
    let fixture = try loadSchedulerFixture()
    let euler = try #require(fixture["euler"] as? [String: Any])
    let schedule = try scheduler(named: "dev", in: fixture)
        .schedule(steps: try #require(euler["steps"] as? Int), imageSequenceLength: try #require(euler["image_seq_len"] as? Int))
    let taken = try #require(euler["steps_taken"] as? [[String: Any]])
    #expect(taken.count == 4)
    let backend = CPUBackend()
    for step in taken {
        let index = try #require(step["index"] as? Int)
        let values = floats(hex: try #require(step["sample"] as? String))
        let sample = backend.upload(values, shape: [values.count])
        let velocity = floats(hex: try #require(step["velocity"] as? String))
        try schedule.eulerStep(index, sample: sample, velocity: backend.upload(velocity, shape: [velocity.count]), backend: backend)
        #expect(backend.download(sample) == floats(hex: try #require(step["prev_sample"] as? String)), "Euler step \(index)")
    }
}

@Test func unsupportedConfigsAreRefused() throws {
    let refused = [
        #"{"use_karras_sigmas": true}"#, #"{"invert_sigmas": true}"#, #"{"stochastic_sampling": true}"#,
        #"{"shift_terminal": 0.1}"#, #"{"time_shift_type": "cosine"}"#, #"{"_class_name": "EulerDiscreteScheduler"}"#,
        #"{"shift": "three"}"#, #"[1, 2]"#, #"{"base_image_seq_len": 4096}"#,
    ]
    for json in refused {
        #expect(throws: SchedulerError.self, "\(json)") { _ = try FlowMatchScheduler(configJSON: Data(json.utf8)) }
    }
    let accepted = try FlowMatchScheduler(configJSON: Data(#"{"shift_terminal": null, "use_beta_sigmas": false, "shift": 2}"#.utf8))
    #expect(accepted.shift == 2 && !accepted.useDynamicShifting)
    #expect(throws: SchedulerError.self) { _ = try FlowMatchScheduler.schnellDefaults.schedule(steps: 0, imageSequenceLength: 256) }
    let backend = CPUBackend()
    let schedule = try FlowMatchScheduler.schnellDefaults.schedule(steps: 4, imageSequenceLength: 256)
    let sample = backend.upload([1, 2], shape: [2]), velocity = backend.upload([1], shape: [1])
    #expect(throws: SchedulerError.self) { try schedule.eulerStep(0, sample: sample, velocity: velocity, backend: backend) }
    #expect(throws: SchedulerError.self) { try schedule.eulerStep(4, sample: sample, velocity: sample, backend: backend) }
}

/// Lengths and shifts a file could make overflow `mu` (max_image_seq_len - base_image_seq_len)
/// or the float conversions are refused, not trapped on.
@Test func outOfRangeNumbersAreRefused() throws {
    let refused = [
        #"{"base_image_seq_len": -4611686018427387904, "max_image_seq_len": 4611686018427387904, "use_dynamic_shifting": true}"#,
        #"{"max_image_seq_len": 9223372036854775807}"#, #"{"num_train_timesteps": 0}"#, #"{"shift": -1}"#,
        #"{"max_shift": 1e300}"#,
    ]
    for json in refused {
        #expect(throws: SchedulerError.self, "\(json)") { _ = try FlowMatchScheduler(configJSON: Data(json.utf8)) }
    }
}

/// A damaged scheduler_config.json is refused naming the file (it used to say only "scheduler
/// config is not valid"), as a model-file error the CLI maps to exit 2.
@Test func damagedConfigFileIsNamed() throws {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("scheduler_config-\(UUID().uuidString).json")
    try Data("garbage".utf8).write(to: file)
    defer { try? FileManager.default.removeItem(at: file) }
    do {
        _ = try FlowMatchScheduler(contentsOf: file.path)
        Issue.record("garbage was accepted")
    } catch let WeightsError.invalidConfig(path, reason) {
        #expect(path == file.path)
        #expect(reason.hasPrefix("scheduler config is not valid"), "\(reason)")
    }
    #expect(throws: WeightsError.cannotOpen(file: file.path + ".absent", reason: "No such file or directory")) {
        _ = try FlowMatchScheduler(contentsOf: file.path + ".absent")
    }
}
