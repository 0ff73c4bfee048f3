import SchnellKernels

/// Which kernels OpenBLAS runs. It picks them once, when it loads, from the CPU or from
/// `OPENBLAS_CORETYPE`; an environment that sets `OPENBLAS_CORETYPE=Haswell` on an AVX-512
/// machine halves the sgemm rate, so benchmarks print this beside their numbers.
public enum BLASKernels {
    /// The kernel family OpenBLAS is using ("Haswell", "SkylakeX", "Cooperlake", ...).
    public static var coreName: String { String(cString: schnell_blas_core_name()) }
}
