import Foundation
import XCTest

@testable import Schnell

/// The CUDA loader. Fake libraries built here with the C compiler stand in for
/// libschnell_cuda.so, so version and table checks run on machines with no CUDA; the real
/// library and its op harness (Kernels/cuda/test_cuda_ops, tolerance rel L2 < 1e-2 vs float32
/// CPU loops) run only when built and a GPU is present.
final class CUDALibraryTests: XCTestCase {
    private static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    private static let cudaDirectory = packageRoot.appendingPathComponent("Kernels/cuda")
    private static let builtLibrary = cudaDirectory.appendingPathComponent("build/libschnell_cuda.so")
    private static let fakeLibraryDirectory = FileManager.default.temporaryDirectory
        .appendingPathComponent("schnell-cuda-tests-\(ProcessInfo.processInfo.processIdentifier)")

    override class func tearDown() {
        try? FileManager.default.removeItem(at: fakeLibraryDirectory)
    }

    // MARK: loader

    func testSearchOrder() {
        let explicit = CUDALibrary.candidatePaths(environment: ["SCHNELL_CUDA_LIBRARY": "/opt/x.so"],
                                                  currentDirectory: "/work", executableDirectory: "/bin")
        XCTAssertEqual(explicit, ["/opt/x.so"])
        let searched = CUDALibrary.candidatePaths(environment: [:], currentDirectory: "/work",
                                                  executableDirectory: "/bin")
        XCTAssertEqual(searched, ["/work/Kernels/cuda/build/libschnell_cuda.so",
                                  "/bin/Kernels/cuda/build/libschnell_cuda.so",
                                  "libschnell_cuda.so"])
    }

    func testMissingLibraryIsUnavailable() {
        let missing = "/nonexistent/libschnell_cuda.so"
        guard case .unavailable(let reason) = CUDALibrary.probe(paths: [missing]) else {
            return XCTFail("a missing library must be reported as unavailable")
        }
        XCTAssertTrue(reason.contains(missing), reason)
        XCTAssertTrue(reason.contains("Kernels/cuda/build.sh"), reason)
    }

    func testWrongAPIVersionIsRefused() throws {
        let library = try buildFakeLibrary(named: "wrong_version", source: """
            #include <stdint.h>
            static const struct { uint32_t api_version, table_size; } table = { 999u, 8u };
            const void *schnell_cuda_get_api(void) { return &table; }
            """)
        guard case .failure(let error) = CUDALibrary.load(paths: [library]) else {
            return XCTFail("a library with api_version 999 must be refused")
        }
        XCTAssertEqual(error, .apiVersionMismatch(path: library, found: 999,
                                                  expected: CUDALibrary.expectedAPIVersion))
    }

    func testLibraryWithoutEntryPointIsRefused() throws {
        let library = try buildFakeLibrary(named: "no_entry", source: "int schnell_unrelated(void) { return 1; }")
        XCTAssertEqual(CUDALibrary.load(paths: [library]).failureValue, .missingEntryPoint(path: library))
    }

    func testTableShorterThanTheHeaderIsRefused() throws {
        let library = try buildFakeLibrary(named: "short_table", source: """
            #include "schnell_cuda.h"
            static _Alignas(8) const uint32_t table[2] = { SCHNELL_CUDA_API_VERSION, 8u };
            const schnell_cuda_api *schnell_cuda_get_api(void) { return (const schnell_cuda_api *)table; }
            """)
        XCTAssertEqual(CUDALibrary.load(paths: [library]).failureValue,
                       .truncatedTable(path: library, sizeBytes: 8))
    }

    /// A fake with the real header's table: checks the Swift side reads schnell_cuda_device_info
    /// field by field, and passes the library's reason through when it has no device.
    func testReadsDeviceInfoThroughTheTable() throws {
        let library = try buildFakeLibrary(named: "fake_device", source: """
            #include <string.h>
            #include "schnell_cuda.h"
            static int query(int index, schnell_cuda_device_info *info) {
                memset(info, 0, sizeof *info);
                info->device_count = 1;
                if (index != 0) { strcpy(info->error, "no CUDA device 1 (the driver sees 1)"); return -1; }
                info->compute_major = 8; info->compute_minor = 6; info->multiprocessor_count = 84;
                info->free_bytes = 20ull << 30; info->total_bytes = 24ull << 30;
                strcpy(info->name, "Fake RTX");
                return 0;
            }
            static schnell_cuda_api table;
            const schnell_cuda_api *schnell_cuda_get_api(void) {
                table.api_version = SCHNELL_CUDA_API_VERSION;
                table.table_size = sizeof table;
                table.query_device = query;
                return &table;
            }
            """)
        let expected = CUDADevice(index: 0, name: "Fake RTX", computeCapability: ComputeCapability(major: 8, minor: 6),
                                  multiprocessorCount: 84, freeMemoryBytes: 20 << 30, totalMemoryBytes: 24 << 30,
                                  libraryPath: library)
        XCTAssertEqual(CUDALibrary.probe(deviceIndex: 0, paths: [library]), .available(expected))
        XCTAssertEqual(CUDALibrary.probe(deviceIndex: 1, paths: [library]),
                       .unavailable(reason: "no CUDA device 1 (the driver sees 1)"))
    }

    // MARK: the real library

    /// The built library must load, pass the version check and either report a usable device
    /// or give one of the reasons schnell_cuda_query_device (arena.cu) writes; a missing driver
    /// is cross-checked by loading libcuda.so.1 here.
    func testBuiltLibraryLoadsAndReports() throws {
        let path = Self.builtLibrary.path
        guard FileManager.default.fileExists(atPath: path) else {
            throw XCTSkip("\(path) is not built (run `bash Kernels/cuda/build.sh`)")
        }
        let library = try CUDALibrary.load(paths: [path]).get()
        switch library.queryDevice(index: 0) {
        case .available(let device):
            XCTAssertEqual(device.libraryPath, path)
            XCTAssertGreaterThanOrEqual(device.computeCapability.major, 8)
            XCTAssertFalse(device.name.isEmpty)
            XCTAssertGreaterThan(device.multiprocessorCount, 0)
            XCTAssertGreaterThan(device.totalMemoryBytes, 0)
            XCTAssertLessThanOrEqual(device.freeMemoryBytes, device.totalMemoryBytes)
        case .unavailable(let reason):
            let libraryReasons = ["no NVIDIA driver: libcuda.so.1 cannot be loaded", "cudaGetDeviceCount: ",
                                  "no CUDA device 0 (the driver sees ", "cudaGetDeviceProperties: "]
            let isCapabilityReason = reason.contains("bf16 kernels need 8.0 or newer")
            XCTAssertTrue(libraryReasons.contains(where: reason.hasPrefix) || isCapabilityReason,
                          "not a reason libschnell_cuda gives: \(reason)")
            if reason.hasPrefix("no NVIDIA driver") {
                let driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL)
                defer { if let driver { dlclose(driver) } }
                XCTAssertNil(driver, "libcuda.so.1 loads here, yet the library reported no driver")
            }
        }
    }

    /// Runs every CUDA op against its float32 CPU reference (tolerances in test_cuda_ops.cu).
    func testOpHarnessPassesOnGPU() throws {
        let harness = Self.cudaDirectory.appendingPathComponent("build/test_cuda_ops")
        guard FileManager.default.isExecutableFile(atPath: harness.path) else {
            throw XCTSkip("\(harness.path) is not built (run `bash Kernels/cuda/build.sh`)")
        }
        if case .unavailable(let reason) = CUDALibrary.probe(paths: [Self.builtLibrary.path]) {
            throw XCTSkip("no usable CUDA device: \(reason)")
        }
        let (status, output) = try run(harness.path, arguments: [])
        XCTAssertEqual(status, 0, output)
        XCTAssertFalse(output.contains("FAIL"), output)
    }

    // MARK: helpers

    private func buildFakeLibrary(named name: String, source: String) throws -> String {
        guard let compiler = ["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"].first(where: {
            FileManager.default.isExecutableFile(atPath: $0)
        }) else {
            throw XCTSkip("no C compiler to build a fake libschnell_cuda.so")
        }
        let directory = Self.fakeLibraryDirectory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let sourceFile = directory.appendingPathComponent("\(name).c")
        let library = directory.appendingPathComponent("lib\(name).so")
        try source.write(to: sourceFile, atomically: true, encoding: .utf8)
        let (status, output) = try run(compiler, arguments: [
            "-shared", "-fPIC", "-std=c11", "-I", Self.cudaDirectory.path,
            "-o", library.path, sourceFile.path,
        ])
        XCTAssertEqual(status, 0, "compiling the fake library failed: \(output)")
        return library.path
    }

    private func run(_ executable: String, arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }
}

private extension Result {
    var failureValue: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
