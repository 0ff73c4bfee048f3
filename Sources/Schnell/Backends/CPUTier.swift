import Foundation
import SchnellKernels

/// The instruction-set tier the CPU kernels run at. Every fast kernel is built once per tier and
/// picked at run time: the CPU's highest tier by default, or a lower one forced with
/// `SCHNELL_CPU=generic|avx2|avx512|avx512bf16` (so an AVX-512 machine can test and measure the
/// AVX2 kernels).
public enum CPUTier: Int32, CaseIterable, CustomStringConvertible, Sendable {
    /// Baseline x86-64 (SSE2).
    case generic = 0
    /// AVX2, FMA and F16C: Intel since Haswell (desktops since Alder Lake have no AVX-512), AMD Zen 1-3.
    case avx2 = 1
    /// AVX-512 F/BW/VL/DQ.
    case avx512 = 2
    /// AVX-512 with AVX512-BF16 (Cooper Lake, Sapphire Rapids, Zen 4 and 5): native bf16 dot products.
    case avx512bf16 = 3

    public var description: String { String(cString: schnell_cpu_level_name(rawValue)) }

    public init?(name: String) {
        guard let tier = CPUTier.allCases.first(where: { $0.description == name }) else { return nil }
        self = tier
    }

    /// The tier in use.
    public static var current: CPUTier { CPUTier(rawValue: schnell_cpu_level()) ?? .generic }

    /// The highest tier this CPU supports.
    public static var supported: CPUTier { CPUTier(rawValue: schnell_cpu_supported_level()) ?? .generic }

    /// Runs the kernels at `tier` from now on.
    public static func use(_ tier: CPUTier) throws {
        guard schnell_set_cpu_level(tier.rawValue) == 0 else {
            throw CPUTierError(description: "the CPU tier \(tier) needs instructions this CPU lacks (it supports up to \(supported))")
        }
    }

    /// Throws when `SCHNELL_CPU` is set to something that is not a tier or names one this CPU
    /// lacks: the kernels would otherwise run at the CPU's highest tier instead of the one asked for.
    public static func checkEnvironment() throws {
        if let message = schnell_cpu_environment_error() { throw CPUTierError(description: String(cString: message)) }
    }

    /// What `--precision bf16` does with bf16-stored weights at this tier.
    public var bf16Meaning: String {
        switch self {
        case .avx512bf16: return "native AVX512-BF16 dot products on bf16-rounded activations"
        case .avx512, .avx2: return "weights converted to float32 as they are packed, float32 math (half the weight memory and traffic of float32 weights)"
        case .generic: return "weights converted to float32 in blocks, float32 math"
        }
    }

    /// One line for timings and benchmark output: the tier, the CPU's own highest tier when it
    /// differs, the CPU model and OpenBLAS's kernel family.
    public static var summary: String {
        let forced = current == supported ? "" : " (forced; the CPU supports \(supported))"
        return "CPU tier \(current)\(forced), \(cpuModel), OpenBLAS \(BLASKernels.coreName)"
    }

    /// The CPU's model name from /proc/cpuinfo ("unknown CPU" where there is none).
    public static var cpuModel: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
              let colon = line.firstIndex(of: ":") else { return "unknown CPU" }
        return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
}

public struct CPUTierError: Error, CustomStringConvertible {
    public let description: String
}

/// Which kernels OpenBLAS runs. It picks them once, when it loads, from the CPU or from
/// `OPENBLAS_CORETYPE`; an environment that sets `OPENBLAS_CORETYPE=Haswell` on an AVX-512
/// machine halves the sgemm rate, so benchmarks print this beside their numbers.
public enum BLASKernels {
    /// The kernel family OpenBLAS is using ("Haswell", "SkylakeX", "Cooperlake", ...).
    public static var coreName: String { String(cString: schnell_blas_core_name()) }
}
