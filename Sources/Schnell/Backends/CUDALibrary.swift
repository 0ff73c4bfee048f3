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
/// CUDA anywhere. The library exports one versioned function table (Kernels/cuda/schnell_cuda.h);
/// this type checks its version and reads it by byte offset, as no C module describes it here.
///
/// A loaded library stays loaded for the life of the process: the CUDA runtime inside it keeps
/// state (contexts, registered kernels) that cannot be torn down safely by dlclose.
public struct CUDALibrary: @unchecked Sendable {
    /// SCHNELL_CUDA_API_VERSION of the header this code was written against.
    public static let expectedAPIVersion: UInt32 = 1
    public static let fileName = "libschnell_cuda.so"
    public static let environmentVariable = "SCHNELL_CUDA_LIBRARY"

    /// Byte offsets in schnell_cuda_api and schnell_cuda_device_info (schnell_cuda.h).
    private enum Layout {
        static let apiVersion = 0
        static let tableSize = 4
        static let queryDevice = 8
        static let deviceInfoSize = 544
        static let deviceCount = 0
        static let computeMajor = 4
        static let computeMinor = 8
        static let multiprocessorCount = 12
        static let freeBytes = 16
        static let totalBytes = 24
        static let name = 32
        static let error = 288
        static let textCapacity = 256
    }

    private typealias GetAPI = @convention(c) () -> UnsafeRawPointer?
    private typealias QueryDevice = @convention(c) (Int32, UnsafeMutableRawPointer?) -> Int32

    public let path: String
    private let table: UnsafeRawPointer

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
        guard let function = table.load(fromByteOffset: Layout.queryDevice, as: UnsafeRawPointer?.self) else {
            return .unavailable(reason: "\(path) has no query_device function")
        }
        let query = unsafeBitCast(function, to: QueryDevice.self)
        let info = UnsafeMutableRawPointer.allocate(byteCount: Layout.deviceInfoSize, alignment: 8)
        defer { info.deallocate() }
        info.initializeMemory(as: UInt8.self, repeating: 0, count: Layout.deviceInfoSize)
        let status = query(deviceIndex, info)
        let error = Self.text(at: info + Layout.error)
        if status != 0 {
            return .unavailable(reason: error.isEmpty ? "query_device failed (status \(status))" : error)
        }
        let device = CUDADevice(
            index: index,
            name: Self.text(at: info + Layout.name),
            computeCapability: ComputeCapability(
                major: Int(info.load(fromByteOffset: Layout.computeMajor, as: Int32.self)),
                minor: Int(info.load(fromByteOffset: Layout.computeMinor, as: Int32.self))),
            multiprocessorCount: Int(info.load(fromByteOffset: Layout.multiprocessorCount, as: Int32.self)),
            freeMemoryBytes: info.load(fromByteOffset: Layout.freeBytes, as: UInt64.self),
            totalMemoryBytes: info.load(fromByteOffset: Layout.totalBytes, as: UInt64.self),
            libraryPath: path)
        return .available(device)
    }

    private static func validate(handle: UnsafeMutableRawPointer, path: String)
        -> Result<UnsafeRawPointer, CUDALibraryError>
    {
        guard let symbol = dlsym(handle, "schnell_cuda_get_api") else {
            return .failure(.missingEntryPoint(path: path))
        }
        let getAPI = unsafeBitCast(symbol, to: GetAPI.self)
        guard let table = getAPI() else { return .failure(.missingEntryPoint(path: path)) }
        let version = table.load(fromByteOffset: Layout.apiVersion, as: UInt32.self)
        guard version == expectedAPIVersion else {
            return .failure(.apiVersionMismatch(path: path, found: version, expected: expectedAPIVersion))
        }
        let sizeBytes = table.load(fromByteOffset: Layout.tableSize, as: UInt32.self)
        guard Int(sizeBytes) >= Layout.queryDevice + MemoryLayout<UnsafeRawPointer>.size else {
            return .failure(.truncatedTable(path: path, sizeBytes: sizeBytes))
        }
        return .success(table)
    }

    /// A NUL-terminated string of at most textCapacity bytes (never reads past the field).
    private static func text(at pointer: UnsafeMutableRawPointer) -> String {
        let bytes = UnsafeRawBufferPointer(start: pointer, count: Layout.textCapacity)
        let length = bytes.firstIndex(of: 0) ?? Layout.textCapacity
        return String(decoding: bytes.prefix(length), as: UTF8.self)
    }

    private static func lastDynamicLoaderError() -> String {
        guard let message = dlerror() else { return "dlopen failed" }
        return String(cString: message)
    }
}

/// The `--device` option: `auto` (a GPU when one is usable, else the CPU), `cpu`, or
/// `cuda[:N]` (GPU N, default 0; an error when it cannot be used, never a silent fallback).
public enum DeviceChoice: Equatable, Sendable, CustomStringConvertible {
    case auto
    case cpu
    case cuda(index: Int)

    public static func parse(_ text: String) throws -> DeviceChoice {
        let word = text.trimmingCharacters(in: .whitespaces).lowercased()
        switch word {
        case "auto": return .auto
        case "cpu": return .cpu
        case "cuda": return .cuda(index: 0)
        default:
            let prefix = "cuda:"
            let digits = word.dropFirst(prefix.count)
            guard word.hasPrefix(prefix), !digits.isEmpty, digits.allSatisfy(\.isASCII),
                  digits.allSatisfy(\.isNumber), let index = Int(digits)
            else { throw DeviceError.invalidChoice(text) }
            return .cuda(index: index)
        }
    }

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .cpu: return "cpu"
        case .cuda(let index): return "cuda:\(index)"
        }
    }

    /// Turns the choice into a device, with a message saying which and why. `probe` asks the
    /// CUDA library about a device index (injectable for tests).
    public func resolve(
        probe: (Int) -> CUDAAvailability = { CUDALibrary.probe(deviceIndex: $0) }
    ) throws -> DeviceSelection {
        switch self {
        case .cpu:
            return DeviceSelection(device: .cpu, message: "using the CPU (--device cpu)")
        case .auto:
            switch probe(0) {
            case .available(let device):
                return DeviceSelection(
                    device: .cuda(device),
                    message: "using \(device) (--device auto found \(device.libraryPath) and a GPU)")
            case .unavailable(let reason):
                return DeviceSelection(
                    device: .cpu,
                    message: "using the CPU (--device auto found no usable GPU: \(reason))")
            }
        case .cuda(let index):
            switch probe(index) {
            case .available(let device):
                return DeviceSelection(device: .cuda(device), message: "using \(device) (--device \(self))")
            case .unavailable(let reason):
                throw DeviceError.cudaUnavailable(choice: description, reason: reason)
            }
        }
    }
}

/// A concrete device to run on.
public enum ResolvedDevice: Equatable, Sendable {
    case cpu
    case cuda(CUDADevice)
}

/// The outcome of resolving a `DeviceChoice`, with the line to show the user.
public struct DeviceSelection: Equatable, Sendable {
    public let device: ResolvedDevice
    public let message: String
}

public enum DeviceError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidChoice(String)
    case cudaUnavailable(choice: String, reason: String)

    public var description: String {
        switch self {
        case .invalidChoice(let text):
            return "invalid --device '\(text)': expected auto, cpu, cuda or cuda:N (N = 0, 1, ...)"
        case .cudaUnavailable(let choice, let reason):
            return "--device \(choice) was requested but CUDA is unavailable: \(reason) "
                + "(use --device cpu, or --device auto to fall back to the CPU)"
        }
    }
}
