import Foundation
import CBLAS
import SchnellKernels
import Schnell

/// `swift run -c release SchnellBench [--threads N] [--repeats R] [--vae PATH [--vae-size N] [--bf16]]
///  [--quantized-only] [--preview MODEL [--preview-size N]] [--lora MODEL [--lora-size N] [--lora-rank R]]`
///
/// GEMM rates for the FLUX transformer's real linear shapes (M = 4,608 image tokens at
/// 1024x1024) through the engine's linear op, beside a direct OpenBLAS sgemm on the same
/// shapes in the same process (the reference rate), the native bf16 kernel with bf16 activations
/// (`linear bf16 native`), attention at L = 4,608, 24 heads x 128, and the VAE's 3x3
/// convolutions (`--conv-size N`: at N x N, default 128; `--conv-only` skips the rest), and the
/// linear on GGUF quantized blocks on the same shapes (`--quantized-only` skips the rest).
/// With `--vae PATH` it times only a VAE decode of random latents instead (`--bf16`: also with
/// bf16 activations, which apply to bf16 weights). With `--preview MODEL` (a pipeline folder) it
/// times only one preview against one denoising step at `--preview-size` (default 1024). With
/// `--lora MODEL` it times only a rank-`--lora-rank` (16) LoRA on every block linear: merging it
/// and one step at `--lora-size` (512) without it, merged and at run time.
/// Prints numbers only; nothing here asserts a time.
var threads = 0, repeatCount = 3, vaeSize = 512, convSize = 128, previewSize = 1024, loraSize = 512, loraRank = 16
var vaePath: String?, previewModel: String?, loraModel: String?
var vaeBF16 = false, convOnly = false, quantizedOnly = false
var iterator = CommandLine.arguments.dropFirst().makeIterator()
while let flag = iterator.next() {
    if flag == "--bf16" || flag == "--conv-only" || flag == "--quantized-only" {
        if flag == "--bf16" { vaeBF16 = true } else if flag == "--conv-only" { convOnly = true } else { quantizedOnly = true }
        continue
    }
    if flag == "--vae" || flag == "--preview" || flag == "--lora", let path = iterator.next() {
        switch flag {
        case "--vae": vaePath = path
        case "--preview": previewModel = path
        default: loraModel = path
        }
        continue
    }
    guard let value = iterator.next().flatMap(Int.init), value > 0 else {
        FileHandle.standardError.write(Data("SchnellBench: \(flag) needs a positive integer\n".utf8))
        exit(2)
    }
    switch flag {
    case "--threads": threads = value
    case "--repeats": repeatCount = value
    case "--vae-size": vaeSize = value
    case "--conv-size": convSize = value
    case "--preview-size": previewSize = value
    case "--lora-size": loraSize = value
    case "--lora-rank": loraRank = value
    default:
        FileHandle.standardError.write(Data("SchnellBench: unknown flag \(flag) (use --threads N, --repeats R, --vae PATH, --vae-size N, --bf16, --conv-size N, --conv-only, --quantized-only, --preview MODEL, --preview-size N, --lora MODEL, --lora-size N, --lora-rank R)\n".utf8))
        exit(2)
    }
}
let repeats = repeatCount
schnell_set_threads(Int32(threads))
do {
    try CPUTier.checkEnvironment()
} catch {
    FileHandle.standardError.write(Data("SchnellBench: \(error)\n".utf8))
    exit(2)
}
print("threads: \(schnell_threads()), \(CPUTier.summary)")

func seconds(_ repeats: Int = repeats, _ body: () -> Void) -> Double {
    body()  // warm-up: page in weights, spin up threads
    var best = Double.infinity
    for _ in 0..<repeats {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    return best
}

/// A weight file of the given dtype in a temporary folder, memory-mapped like a checkpoint.
func weightTensor(rows: Int, columns: Int, dtype: DType) throws -> WeightTensor {
    let count = rows * columns
    var values = [Float](repeating: 0, count: count)
    var state: UInt32 = 1
    for i in 0..<count { state = state &* 1664525 &+ 1013904223; values[i] = Float(Int32(bitPattern: state)) / 2e10 }
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-bench-\(rows)x\(columns)-\(dtype.rawValue).safetensors").path
    try writeSafeTensors([("w", [rows, columns], values)], dtype: dtype, to: path)
    defer { try? FileManager.default.removeItem(atPath: path) }
    guard let tensor = try SafeTensorsFile(path: path).tensors["w"] else { throw WeightsError.missingTensor(name: "w", file: path) }
    return tensor
}

let ops = CPUBackend(threads: threads), bf16Ops = CPUBackend(threads: threads, precision: .bf16)
if let previewModel {
    try benchmarkPreview(path: previewModel, size: previewSize, repeats: repeats, threads: threads)
    exit(0)
}
if let loraModel {
    try benchmarkLoRA(path: loraModel, size: loraSize, rank: loraRank, repeats: repeats, threads: threads)
    exit(0)
}
if let vaePath {
    try benchmarkVAEDecode(path: vaePath, size: vaeSize, repeats: repeats, bf16: vaeBF16, threads: threads)
    exit(0)
}
if convOnly {
    benchmarkConvolutions(side: convSize) { seconds(repeats, $0) }
    exit(0)
}
let m = 4608
// (K, N): attention projections, fused q|k|v, MLP in/out, single-block linear1/linear2.
let shapes = [(3072, 3072), (3072, 9216), (3072, 12288), (12288, 3072), (3072, 21504), (15360, 3072)]
func benchmarkQuantized() {
    benchmarkQuantizedLinears(m: m, shapes: shapes) { seconds(repeats, $0) }
    // The modulation linears: one row (the conditioning vector), a double block's 6 x 3,072 outputs.
    benchmarkQuantizedLinears(m: 1, shapes: [(3072, 18432)]) { seconds(repeats, $0) }
}
if quantizedOnly {
    benchmarkQuantized()
    exit(0)
}
print("\nGEMM, M = \(m): GFLOP/s (best of \(repeats))")
print("   K      N   sgemm   linear f32   ratio   linear bf16   ratio   linear bf16 native   ratio")
var sgemmRates: [Double] = [], nativeRates: [Double] = []
// The packed float32 kernel (gemm_f32.c) called directly, with f32 and with bf16 weights: schnell_linear
// keeps f32 weights on sgemm and sends bf16 ones there. It needs the AVX2 tier (NaN below it).
var packedF32Rates: [Double] = [], packedBF16Rates: [Double] = []
let packedAvailable = Int(schnell_cpu_level()) >= SCHNELL_CPU_AVX2
for (k, n) in shapes {
    let values = (0..<(m * k)).map { $0 < 1 << 20 ? Float($0 % 7) * 0.1 : 0 }
    let x = ops.upload(values, shape: [m, k])
    let flops = 2.0 * Double(m) * Double(k) * Double(n)
    let f32 = try weightTensor(rows: n, columns: k, dtype: .f32)
    var output = [Float](repeating: 0, count: m * n)
    let sgemm = flops / seconds {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, values, Int32(k),
                    f32.pointer.assumingMemoryBound(to: Float.self), Int32(k), 0, &output, Int32(n))
    } / 1e9
    let layerF32 = try Linear(weight: f32, bias: nil)
    let linearF32 = flops / seconds { _ = ops.linear(x, layerF32) } / 1e9
    let bf16 = try weightTensor(rows: n, columns: k, dtype: .bf16)
    let layerBF16 = try Linear(weight: bf16, bias: nil)
    let linearBF16 = flops / seconds { _ = ops.linear(x, layerBF16) } / 1e9
    // The bf16 precision: the native AVX512-BF16 kernel (the float32 path on CPUs without it).
    let bf16Input = bf16Ops.upload(values, shape: [m, k])
    let nativeBF16 = flops / seconds { _ = bf16Ops.linear(bf16Input, layerBF16) } / 1e9
    func packedRate(_ weights: WeightTensor, _ dtype: schnell_dtype) -> Double {
        guard packedAvailable else { return .nan }
        return flops / seconds {
            _ = schnell_linear_f32(values, m, k, weights.pointer, Int32(dtype.rawValue), nil, 0, n, &output, n)
        } / 1e9
    }
    packedF32Rates.append(packedRate(f32, SCHNELL_F32))
    packedBF16Rates.append(packedRate(bf16, SCHNELL_BF16))
    sgemmRates.append(sgemm)
    nativeRates.append(nativeBF16)
    print(String(format: "%5d %6d %7.0f %12.0f %7.2f %13.0f %7.2f %20.0f %7.2f", k, n, sgemm, linearF32,
                 linearF32 / sgemm, linearBF16, linearBF16 / sgemm, nativeBF16, nativeBF16 / sgemm))
}

print("\nPacked float32 GEMM (gemm_f32.c), M = \(m): GFLOP/s (best of \(repeats)), against the sgemm above")
print("   K      N   sgemm   packed f32   ratio   packed bf16   ratio")
for (index, (k, n)) in shapes.enumerated() {
    let sgemm = sgemmRates[index], f32 = packedF32Rates[index], bf16 = packedBF16Rates[index]
    print(String(format: "%5d %6d %7.0f %12.0f %7.2f %13.0f %7.2f", k, n, sgemm, f32, f32 / sgemm, bf16, bf16 / sgemm))
}

let tokens = 4608, heads = 24, headDim = 128
let inner = heads * headDim
let qkvValues = (0..<(tokens * 3 * inner)).map { Float(($0 * 7919) % 1000) / 1000 - 0.5 }
let attentionFlops = 4.0 * Double(tokens) * Double(tokens) * Double(inner)
func attentionSeconds(_ backend: CPUBackend) -> Double {
    let qkv = backend.upload(qkvValues, shape: [tokens, 3 * inner])
    return seconds {
        _ = backend.attention(q: qkv.columns(0..<inner), k: qkv.columns(inner..<(2 * inner)),
                              v: qkv.columns((2 * inner)..<(3 * inner)), heads: heads,
                              scale: 1 / Float(headDim).squareRoot(), bias: nil, causal: false)
    }
}
// Each against the mean GEMM rate of its dtype over the shapes above.
let sgemmMean = sgemmRates.reduce(0, +) / Double(sgemmRates.count)
let nativeMean = nativeRates.reduce(0, +) / Double(nativeRates.count)
let f32Attention = attentionSeconds(ops)
let bf16Attention = attentionSeconds(bf16Ops)
print(String(format: "\nattention L = %d, %d heads x %d", tokens, heads, headDim))
print(String(format: "  float32: %.3f s, %.0f GFLOP/s, %.2f of sgemm's mean rate", f32Attention,
             attentionFlops / f32Attention / 1e9, attentionFlops / f32Attention / 1e9 / sgemmMean))
print(String(format: "  bf16:    %.3f s, %.0f GFLOP/s, %.2f of the native bf16 GEMM's mean rate", bf16Attention,
             attentionFlops / bf16Attention / 1e9, attentionFlops / bf16Attention / 1e9 / nativeMean))

benchmarkConvolutions(side: convSize) { seconds(repeats, $0) }
benchmarkQuantized()
