import Foundation

public struct SchedulerError: Error, CustomStringConvertible, Equatable {
    public let description: String
}

/// The flow-matching Euler schedule of diffusers' `FlowMatchEulerDiscreteScheduler` (0.42.1), set up
/// the way `FluxPipeline` does it:
///
///     sigmas = linspace(1, 1/steps, steps)                      float64, then rounded to float32
///     mu     = calculate_shift(imageSequenceLength, ...)        float64
///     dynamic shifting:  sigma = e^mu / (e^mu + (1/sigma - 1))  float32 (linear: mu instead of e^mu)
///     otherwise:         sigma = shift sigma / (1 + (shift - 1) sigma)   float32
///     timesteps = sigmas * num_train_timesteps; sigmas gets a final 0
///
/// FLUX.1-schnell's config has no shift (shift 1, no dynamic shifting): its 4 sigmas are 1, 0.75, 0.5, 0.25.
/// FLUX.1-dev shifts by image size (`use_dynamic_shifting`). Options neither uses (Karras, exponential or
/// beta sigmas, inverted sigmas, a terminal shift, stochastic sampling) are refused, not ignored.
public struct FlowMatchScheduler: Sendable, Equatable {
    public enum TimeShift: String, Sendable {
        case exponential, linear
    }

    public var numTrainTimesteps: Int
    public var shift: Double
    public var useDynamicShifting: Bool
    public var baseShift: Double
    public var maxShift: Double
    public var baseImageSequenceLength: Int
    public var maxImageSequenceLength: Int
    public var timeShift: TimeShift

    public init(numTrainTimesteps: Int = 1000, shift: Double = 1, useDynamicShifting: Bool = false,
                baseShift: Double = 0.5, maxShift: Double = 1.15, baseImageSequenceLength: Int = 256,
                maxImageSequenceLength: Int = 4096, timeShift: TimeShift = .exponential) {
        self.numTrainTimesteps = numTrainTimesteps
        self.shift = shift
        self.useDynamicShifting = useDynamicShifting
        self.baseShift = baseShift
        self.maxShift = maxShift
        self.baseImageSequenceLength = baseImageSequenceLength
        self.maxImageSequenceLength = maxImageSequenceLength
        self.timeShift = timeShift
    }

    /// FLUX.1-schnell's `scheduler/scheduler_config.json`.
    public static let schnellDefaults = FlowMatchScheduler()
    /// FLUX.1-dev's `scheduler/scheduler_config.json`.
    public static let devDefaults = FlowMatchScheduler(shift: 3, useDynamicShifting: true)

    /// Reads a diffusers `scheduler/scheduler_config.json`; its errors name the file.
    public init(contentsOf file: String) throws {
        let data = try ModelFile.contents(of: file)
        do {
            try self.init(configJSON: data)
        } catch let error as SchedulerError {
            throw WeightsError.invalidConfig(file: file, reason: error.description)
        }
    }

    /// Decodes a diffusers `scheduler_config.json`; keys it does not set keep diffusers' defaults.
    public init(configJSON: Data) throws {
        let file: ConfigFile
        do {
            file = try JSONDecoder().decode(ConfigFile.self, from: configJSON)
        } catch {
            throw SchedulerError(description: "scheduler config is not valid: \(error)")
        }
        if let className = file.className, className != "FlowMatchEulerDiscreteScheduler" {
            throw SchedulerError(description: "scheduler \(className) is not supported; FLUX uses FlowMatchEulerDiscreteScheduler")
        }
        let unsupported: [(String, Bool)] = [
            ("use_karras_sigmas", file.useKarrasSigmas == true), ("use_exponential_sigmas", file.useExponentialSigmas == true),
            ("use_beta_sigmas", file.useBetaSigmas == true), ("invert_sigmas", file.invertSigmas == true),
            ("stochastic_sampling", file.stochasticSampling == true), ("shift_terminal", (file.shiftTerminal ?? 0) != 0),
        ]
        if let (option, _) = unsupported.first(where: \.1) {
            throw SchedulerError(description: "scheduler option \(option) is not supported")
        }
        let timeShiftName = file.timeShiftType ?? TimeShift.exponential.rawValue
        guard let timeShift = TimeShift(rawValue: timeShiftName) else {
            throw SchedulerError(description: "scheduler time_shift_type \"\(timeShiftName)\" is not exponential or linear")
        }
        self.init(numTrainTimesteps: file.numTrainTimesteps ?? 1000, shift: file.shift ?? 1,
                  useDynamicShifting: file.useDynamicShifting ?? false, baseShift: file.baseShift ?? 0.5,
                  maxShift: file.maxShift ?? 1.15, baseImageSequenceLength: file.baseImageSeqLen ?? 256,
                  maxImageSequenceLength: file.maxImageSeqLen ?? 4096, timeShift: timeShift)
        // Bounded so that mu's difference of lengths and the float conversions cannot overflow.
        let lengths = 1...(1 << 24)
        guard (1...1_000_000).contains(numTrainTimesteps), lengths.contains(baseImageSequenceLength),
              lengths.contains(maxImageSequenceLength), maxImageSequenceLength != baseImageSequenceLength else {
            throw SchedulerError(description: "scheduler config needs num_train_timesteps in 1...1000000 and different base_image_seq_len and max_image_seq_len in 1...\(lengths.upperBound)")
        }
        guard shift > 0, [shift, baseShift, maxShift].allSatisfy({ $0.isFinite && abs($0) < 1e6 }) else {
            throw SchedulerError(description: "scheduler config needs a positive shift, and shift, base_shift and max_shift below 1e6 in size")
        }
    }

    /// The keys of diffusers' config file; null and absent both mean "diffusers' default".
    private struct ConfigFile: Decodable {
        let className: String?
        let numTrainTimesteps: Int?
        let shift: Double?
        let useDynamicShifting: Bool?
        let baseShift: Double?
        let maxShift: Double?
        let baseImageSeqLen: Int?
        let maxImageSeqLen: Int?
        let timeShiftType: String?
        let invertSigmas: Bool?
        let shiftTerminal: Double?
        let useKarrasSigmas: Bool?
        let useExponentialSigmas: Bool?
        let useBetaSigmas: Bool?
        let stochasticSampling: Bool?

        enum CodingKeys: String, CodingKey {
            case className = "_class_name", numTrainTimesteps = "num_train_timesteps", shift
            case useDynamicShifting = "use_dynamic_shifting", baseShift = "base_shift", maxShift = "max_shift"
            case baseImageSeqLen = "base_image_seq_len", maxImageSeqLen = "max_image_seq_len"
            case timeShiftType = "time_shift_type", invertSigmas = "invert_sigmas", shiftTerminal = "shift_terminal"
            case useKarrasSigmas = "use_karras_sigmas", useExponentialSigmas = "use_exponential_sigmas"
            case useBetaSigmas = "use_beta_sigmas", stochasticSampling = "stochastic_sampling"
        }
    }

    /// `calculate_shift` from diffusers' FluxPipeline: mu linear in the image sequence length (float64).
    public func mu(imageSequenceLength: Int) -> Double {
        let slope = (maxShift - baseShift) / Double(maxImageSequenceLength - baseImageSequenceLength)
        let intercept = baseShift - slope * Double(baseImageSequenceLength)
        return Double(imageSequenceLength) * slope + intercept
    }

    /// The schedule for `steps` denoising steps on an image of `imageSequenceLength` packed latent
    /// tokens ((height / 16) * (width / 16)).
    public func schedule(steps: Int, imageSequenceLength: Int) throws -> FlowMatchSchedule {
        guard steps >= 1 else { throw SchedulerError(description: "steps must be at least 1, got \(steps)") }
        guard imageSequenceLength >= 1 else {
            throw SchedulerError(description: "image sequence length must be at least 1, got \(imageSequenceLength)")
        }
        var sigmas = Self.linspace(from: 1, to: 1 / Double(steps), count: steps).map { Float($0) }
        if useDynamicShifting {
            let mu = mu(imageSequenceLength: imageSequenceLength)
            // numpy: the Python float e^mu (or mu) meets a float32 array, so the arithmetic is float32.
            let numerator = Float(timeShift == .exponential ? exp(mu) : mu)
            sigmas = sigmas.map { numerator / (numerator + (1 / $0 - 1)) }
        } else {
            let shift = Float(self.shift)
            let shiftMinusOne = Float(self.shift - 1)
            sigmas = sigmas.map { shift * $0 / (1 + shiftMinusOne * $0) }
        }
        let trainTimesteps = Float(numTrainTimesteps)
        let timesteps = sigmas.map { $0 * trainTimesteps }
        return FlowMatchSchedule(sigmas: sigmas + [0], timesteps: timesteps)
    }

    /// `steps + 1` sigmas from 1 down to 0.
    public func sigmas(steps: Int, imageSequenceLength: Int) throws -> [Float] {
        try schedule(steps: steps, imageSequenceLength: imageSequenceLength).sigmas
    }

    /// `steps` timesteps (sigma * num_train_timesteps).
    public func timesteps(steps: Int, imageSequenceLength: Int) throws -> [Float] {
        try schedule(steps: steps, imageSequenceLength: imageSequenceLength).timesteps
    }

    /// numpy.linspace with endpoint: start + i * step in float64, the last value set to `end` exactly.
    static func linspace(from start: Double, to end: Double, count: Int) -> [Double] {
        guard count > 1 else { return [start] }
        let step = (end - start) / Double(count - 1)
        return (0..<count).map { $0 == count - 1 ? end : Double($0) * step + start }
    }
}

/// A computed schedule: step i takes the sample from `sigmas[i]` to `sigmas[i + 1]`.
public struct FlowMatchSchedule: Sendable, Equatable {
    /// steps + 1 values, the last 0.
    public let sigmas: [Float]
    /// steps values in [0, num_train_timesteps].
    public let timesteps: [Float]

    public var steps: Int { timesteps.count }

    /// What FluxPipeline passes to the transformer at step i: `timestep / 1000` in float32.
    public func transformerTimestep(at step: Int) -> Float {
        timesteps[step] / 1000
    }

    /// Step `step` of this schedule, from `sigmas[step]` to `sigmas[step + 1]`: one Euler step of
    /// the flow ODE on `backend`, as `FlowMatchEulerDiscreteScheduler.step` in float32:
    /// `sample += (sigmaNext - sigma) * velocity`, the product rounded before the sum.
    public func eulerStep(_ step: Int, sample: Tensor, velocity: Tensor, backend: any Backend) throws {
        guard (0..<steps).contains(step) else {
            throw SchedulerError(description: "step \(step) is outside 0..<\(steps)")
        }
        guard sample.count == velocity.count else {
            throw SchedulerError(description: "Euler step: sample has \(sample.count) values but velocity has \(velocity.count)")
        }
        backend.eulerStep(sample, velocity: velocity, delta: sigmas[step + 1] - sigmas[step])
    }

    /// The clean latents the model predicts after step `step` has moved `sample` to
    /// `sigmas[step + 1]` with `velocity` -> new tensor. Flow matching mixes
    /// x_sigma = (1 - sigma) x0 + sigma noise and the model predicts v = noise - x0, so
    /// x0 = x_sigma - sigma v, at the sigma the sample now has: `sample - sigmas[step + 1] * velocity`.
    /// After the last step (sigma 0) it is the sample itself.
    public func cleanEstimate(afterStep step: Int, sample: Tensor, velocity: Tensor, backend: any Backend) throws -> Tensor {
        guard (0..<steps).contains(step) else {
            throw SchedulerError(description: "step \(step) is outside 0..<\(steps)")
        }
        guard sample.count == velocity.count else {
            throw SchedulerError(description: "clean estimate: sample has \(sample.count) values but velocity has \(velocity.count)")
        }
        let estimate = backend.copy(sample)
        backend.eulerStep(estimate, velocity: velocity, delta: -sigmas[step + 1])
        return estimate
    }
}
