// swift-tools-version:6.0
// Schnell: a local inference engine for FLUX.1-class text-to-image models.
// No Swift package dependencies; system C libraries come from Debian's -dev packages.
import PackageDescription

// The kernels are built at -O3 even in debug builds: a debug-built hot loop is 10-100x slower.
// Contraction into FMAs is on except where a file turns it off (quant.c, to match ggml bit for bit).
let kernelFlags: [CSetting] = [.unsafeFlags(["-O3", "-fno-math-errno", "-ffp-contract=fast-honor-pragmas"])]

let package = Package(
    name: "Schnell",
    products: [
        .library(name: "Schnell", targets: ["Schnell"]),
        .executable(name: "schnell", targets: ["schnell"]),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG",
                       providers: [.apt(["libjpeg-dev"])]),
        .systemLibrary(name: "CWebP", path: "Sources/CWebP",
                       providers: [.apt(["libwebp-dev"])]),
        .systemLibrary(name: "CMicroHTTPD", path: "Sources/CMicroHTTPD",
                       providers: [.apt(["libmicrohttpd-dev"])]),
        .systemLibrary(name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq",
                       providers: [.apt(["libpq-dev"])]),
        .target(name: "SchnellKernels", dependencies: ["CBLAS"], path: "Kernels/cpu",
                cSettings: kernelFlags,
                linkerSettings: [.linkedLibrary("openblas"), .linkedLibrary("m"), .linkedLibrary("pthread")]),
        // Declarations only (schnell_cuda.h); libschnell_cuda.so is loaded at run time.
        .systemLibrary(name: "CSchnellCUDA", path: "Kernels/cuda"),
        .target(name: "Schnell", dependencies: ["SchnellKernels", "CSchnellCUDA"]),
        .target(name: "SchnellImageIO", dependencies: ["CPNG", "CJPEG", "CWebP"]),
        // The playground page's files (Sources/SchnellServer/Playground/), compiled in with #embed.
        .target(name: "SchnellPlaygroundFiles"),
        .target(name: "SchnellServer", dependencies: ["Schnell", "SchnellImageIO", "CMicroHTTPD", "CLibPQ", "SchnellPlaygroundFiles"],
                exclude: ["Playground"]),
        .executableTarget(name: "schnell", dependencies: ["Schnell", "SchnellImageIO", "SchnellServer"]),
        .executableTarget(name: "SchnellBench", dependencies: ["Schnell", "SchnellKernels", "SchnellImageIO", "CBLAS"],
                          path: "Benchmarks/SchnellBench"),
        .testTarget(name: "SchnellTests", dependencies: ["Schnell", "SchnellKernels"]),
        .testTarget(name: "SchnellImageIOTests", dependencies: ["SchnellImageIO"]),
        .testTarget(name: "SchnellCLITests", dependencies: ["schnell", "SchnellImageIO"]),
        .testTarget(name: "SchnellServerTests", dependencies: ["SchnellServer", "Schnell"]),
    ]
)
