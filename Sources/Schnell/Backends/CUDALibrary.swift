import CSchnellCUDA
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Compute capability of a CUDA device, e.g. 9.0 for an H100.
public struct ComputeCapability: Equatable, Sendable, CustomStringConvertible {
    public var major: Int
    public var minor: Int

    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }

    public var description: String { "\(major).\(minor)" }
}

/// A usable CUDA device, as libschnell_cuda reports it.
public struct CUDADevice: Equatable, Sendable, CustomStringConvertible {
    public var index: Int
    public var name: String
    public var computeCapability: ComputeCapability
    public var multiprocessorCount: Int
    public var freeMemoryBytes: UInt64
    public var totalMemoryBytes: UInt64
    /// The libschnell_cuda.so that was loaded.
    public var libraryPath: String

    public var description: String {
        let gibibyte = 1024.0 * 1024.0 * 1024.0
        let free = String(format: "%.1f", Double(freeMemoryBytes) / gibibyte)
        let total = String(format: "%.1f", Double(totalMemoryBytes) / gibibyte)
        return "CUDA device \(index): \(name), compute capability \(computeCapability), "
            + "\(free) of \(total) GiB free"
    }
}

/// What probing for the CUDA backend found.
public enum CUDAAvailability: Equatable, Sendable {
    case available(CUDADevice)
    case unavailable(reason: String)
}

/// Why libschnell_cuda.so could not be used.
public enum CUDALibraryError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No candidate loaded; each tried path with dlopen's reason.
    case notLoaded(attempts: [String])
    case missingEntryPoint(path: String)
    case apiVersionMismatch(path: String, found: UInt32, expected: UInt32)
    case truncatedTable(path: String, sizeBytes: UInt32)

    public var description: String {
        switch self {
        case .notLoaded(let attempts):
            return "libschnell_cuda.so could not be loaded (build it with "
                + "`bash Kernels/cuda/build.sh`, or set SCHNELL_CUDA_LIBRARY): "
                + attempts.joined(separator: "; ")
        case .missingEntryPoint(let path):
            return "\(path) does not export schnell_cuda_get_api"
        case .apiVersionMismatch(let path, let found, let expected):
            return "\(path) has CUDA API version \(found) but this build of Schnell expects "
                + "\(expected); rebuild it with `bash Kernels/cuda/build.sh`"
        case .truncatedTable(let path, let sizeBytes):
            return "\(path) reports a function table of \(sizeBytes) bytes, too small to use"
        }
    }
}

/// libschnell_cuda.so, loaded at run time with dlopen so the package builds and runs with no
/// CUDA anywhere. The library exports one versioned function table, declared in
/// Kernels/cuda/schnell_cuda.h and read here through that header (module CSchnellCUDA), so the
/// Swift side and the library cannot disagree on its layout.
///
/// A loaded library stays loaded for the life of the process: the CUDA runtime inside it keeps
/// state (contexts, registered kernels) that cannot be torn down safely by dlclose.
public struct CUDALibrary: @unchecked Sendable {
    /// SCHNELL_CUDA_API_VERSION of the header this build was compiled against.
    public static let expectedAPIVersion: UInt32 = SCHNELL_CUDA_API_VERSION
    public static let fileName = "libschnell_cuda.so"
    public static let environmentVariable = "SCHNELL_CUDA_LIBRARY"

    private typealias GetAPI = @convention(c) () -> UnsafePointer<schnell_cuda_api>?

    public let path: String
    private let table: UnsafePointer<schnell_cuda_api>

    /// Where to look, in order: $SCHNELL_CUDA_LIBRARY alone when it is set (an explicit choice is
    /// not second-guessed); else Kernels/cuda/build/ under the current directory and beside the
    /// executable, then the bare file name (dlopen's default search: LD_LIBRARY_PATH, ld.so.cache).
    public static func candidatePaths(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        currentDirectory: String = FileManager.default.currentDirectoryPath,
        executableDirectory: String? = Bundle.main.executableURL?.deletingLastPathComponent().path
    ) -> [String] {
        if let explicit = environment[environmentVariable], !explicit.isEmpty {
            return [explicit]
        }
        var paths = [currentDirectory + "/Kernels/cuda/build/" + fileName]
        if let executableDirectory {
            paths.append(executableDirectory + "/Kernels/cuda/build/" + fileName)
        }
        paths.append(fileName)
        return paths
    }

    /// Loads the first candidate that opens, then checks its entry point and API version.
    public static func load(paths: [String] = candidatePaths()) -> Result<CUDALibrary, CUDALibraryError> {
        var attempts: [String] = []
        for path in paths {
            guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
                attempts.append("\(path): \(lastDynamicLoaderError())")
                continue
            }
            switch validate(handle: handle, path: path) {
            case .success(let table):
                return .success(CUDALibrary(path: path, table: table))
            case .failure(let error):
                dlclose(handle)  // nothing in it has run yet, so unloading is safe
                return .failure(error)
            }
        }
        return .failure(.notLoaded(attempts: attempts))
    }

    /// Loads the library and asks it about one device; every failure becomes a reason.
    public static func probe(deviceIndex: Int = 0, paths: [String] = candidatePaths()) -> CUDAAvailability {
        switch load(paths: paths) {
        case .success(let library):
            return library.queryDevice(index: deviceIndex)
        case .failure(let error):
            return .unavailable(reason: error.description)
        }
    }

    /// The library's availability query: safe with no driver or GPU (it reports why instead).
    public func queryDevice(index: Int) -> CUDAAvailability {
        guard let deviceIndex = Int32(exactly: index), deviceIndex >= 0 else {
            return .unavailable(reason: "CUDA device index \(index) is out of range")
        }
        guard let query = table.pointee.query_device else {
            return .unavailable(reason: "\(path) has no query_device function")
        }
        var info = schnell_cuda_device_info()
        let status = query(deviceIndex, &info)
        if status != 0 {
            let error = Self.text(info.error)
            return .unavailable(reason: error.isEmpty ? "query_device failed (status \(status))" : error)
        }
        let device = CUDADevice(
            index: index,
            name: Self.text(info.name),
            computeCapability: ComputeCapability(major: Int(info.compute_major), minor: Int(info.compute_minor)),
            multiprocessorCount: Int(info.multiprocessor_count),
            freeMemoryBytes: info.free_bytes,
            totalMemoryBytes: info.total_bytes,
            libraryPath: path)
        return .available(device)
    }

    /// Checks the version first, reading nothing else until it matches: an older table may be
    /// shorter. A table of the right version must then be the whole schnell_cuda_api.
    private static func validate(handle: UnsafeMutableRawPointer, path: String)
        -> Result<UnsafePointer<schnell_cuda_api>, CUDALibraryError>
    {
        guard let symbol = dlsym(handle, "schnell_cuda_get_api") else {
            return .failure(.missingEntryPoint(path: path))
        }
        let getAPI = unsafeBitCast(symbol, to: GetAPI.self)
        guard let table = getAPI(),
              let version = table.pointer(to: \.api_version)?.pointee,
              let sizeBytes = table.pointer(to: \.table_size)?.pointee
        else { return .failure(.missingEntryPoint(path: path)) }
        guard version == expectedAPIVersion else {
            return .failure(.apiVersionMismatch(path: path, found: version, expected: expectedAPIVersion))
        }
        guard Int(sizeBytes) >= MemoryLayout<schnell_cuda_api>.size else {
            return .failure(.truncatedTable(path: path, sizeBytes: sizeBytes))
        }
        return .success(table)
    }

    /// A NUL-terminated string in a fixed char array of schnell_cuda_device_info (never reads
    /// past the field).
    private static func text<CharArray>(_ field: CharArray) -> String {
        withUnsafeBytes(of: field) { bytes in
            let length = bytes.firstIndex(of: 0) ?? bytes.count
            return String(decoding: bytes.prefix(length), as: UTF8.self)
        }
    }

    private static func lastDynamicLoaderError() -> String {
        guard let message = dlerror() else { return "dlopen failed" }
        return String(cString: message)
    }
}
