import Foundation
import Schnell

/// How `schnell serve` listens and what it allows. Defaults are safe for a single local user:
/// loopback only, no keys, one day of image retention.
public struct ServerOptions: Sendable, Equatable {
    public var host = "127.0.0.1"
    /// 0 picks a free port (see `ImageServer.boundPort`).
    public var port = 8080
    /// Accepted API keys; empty means the server is open.
    public var apiKeys: [String] = []
    /// Generations allowed to wait behind the running one; more are answered 429.
    public var maxQueue = 16
    /// Where `url` images (`images/`) and async task records (`tasks/`) are kept; private to the
    /// user (see `OutputStore.defaultRoot`), checked at start.
    public var outputDirectory = OutputStore.defaultRoot
    /// Base for absolute image URLs (e.g. `https://img.example.com`); nil: the bound address.
    /// Never taken from the request's Host header, which any client (or a rebinding page) chooses.
    public var publicURL: String?
    public var imageTTLSeconds = 86_400
    /// Largest request body; edits carry two images, so this bounds uploads too.
    public var maxBodyBytes = 32 * 1024 * 1024
    /// Request body bytes held at once across all connections; a body that would go over it is
    /// refused (503) before it is read.
    public var maxBodyMemoryBytes = 256 * 1024 * 1024
    public var maxConnections = 256
    /// Connections one client address may hold at once. Behind a reverse proxy every client
    /// shares the proxy's address: raise it to `maxConnections` there.
    public var maxConnectionsPerIP = 32
    /// Idle seconds before a connection is closed (no byte received or sent).
    public var connectionTimeoutSeconds = 30
    /// Seconds from a connection's start (or the end of its previous request) to the end of the
    /// request head, however steadily the bytes trickle in.
    public var headTimeoutSeconds = 10
    /// The slowest average body upload accepted: a body of N bytes must arrive within
    /// `headTimeoutSeconds + N / minBodyBytesPerSecond` seconds of its head.
    public var minBodyBytesPerSecond = 64 * 1024
    /// Browser origins (`https://app.example.com`) allowed to call the API besides the server's
    /// own (`ImageServer.isOwnOrigin`); requests carrying any other `Origin` are refused, so a
    /// web page cannot make a visitor's browser generate.
    public var corsOrigins: [String] = []
    /// Seconds a shutdown waits for the running generation to stop (it is asked to cancel at its
    /// next step) before the process leaves without it.
    public var shutdownTimeoutSeconds = 30
    /// Hosts (exact names, case-insensitive) that `image_url`, `image_urls` and `images[].image_url`
    /// may fetch http(s) URLs from; empty: only data URLs and base64 are accepted.
    public var fetchHosts: [String] = []
    /// The largest image fetched from a URL, and the seconds a fetch may take in all.
    public var fetchMaxBytes = 16 * 1024 * 1024
    public var fetchTimeoutSeconds = 10
    /// `postgres://…`: async tasks and `url` images go to this PostgreSQL database, shared by every
    /// replica given the same one (`PostgresTaskStore`); nil: `outputDirectory`, this process only.
    public var taskStoreURL: String?
    /// This replica's name in task leases and records (default: host, process id and a random tag).
    public var replicaName: String?
    /// Seconds a replica holds a claimed task without renewing (it renews about three times per
    /// period); a replica that dies loses its tasks after this.
    public var taskLeaseSeconds = 30
    /// Claims a task gets before it is failed as abandoned (each lost lease is one).
    public var taskAttempts = 3
    /// Write one line per request to stderr.
    public var logRequests = true
    /// What one request may ask for: the pipeline's own limits (`GenerationLimits.pipeline`)
    /// narrowed by `--max-side`, `--max-steps` and `--max-images`, never widened; sides also start
    /// at 64 pixels here rather than the pipeline's 16.
    public var limits = GenerationLimits(minSide: 64, maxSide: 2048, maxSteps: 50, maxImages: 10,
                                         maxSequenceLength: GenerationLimits.pipeline.maxSequenceLength,
                                         maxGuidance: GenerationLimits.pipeline.maxGuidance)

    public init() {}

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public let description: String
    }

    /// Reads the server flags out of `arguments`; everything it does not know is returned in order.
    public static func parse(_ arguments: [String]) throws -> (ServerOptions, remaining: [String]) {
        var options = ServerOptions()
        var remaining: [String] = []
        var index = 0
        func value(for flag: String, inline: String?) throws -> String {
            if let inline { return inline }
            index += 1
            guard index < arguments.count else { throw ParseError(description: "\(flag) needs a value") }
            return arguments[index]
        }
        func integer(_ text: String, flag: String, range: ClosedRange<Int>) throws -> Int {
            guard let number = Int(text), range.contains(number) else {
                throw ParseError(description: "\(flag) must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
            }
            return number
        }
        /// A flag that narrows one of the pipeline's limits; it cannot widen it.
        func narrowing(_ text: String, flag: String, lowest: Int, pipelineLimit: Int) throws -> Int {
            guard let number = Int(text), number >= lowest else {
                throw ParseError(description: "\(flag) must be an integer of at least \(lowest), got '\(text)'")
            }
            guard number <= pipelineLimit else {
                throw ParseError(description: "\(flag) \(number) is beyond the pipeline's limit of \(pipelineLimit); the server can only narrow it")
            }
            return number
        }
        while index < arguments.count {
            let argument = arguments[index]
            var flag = argument
            var inline: String?
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                flag = String(argument[..<equals])
                inline = String(argument[argument.index(after: equals)...])
            }
            switch flag {
            case "--host":
                let host = try value(for: flag, inline: inline)
                guard !host.isEmpty, host.allSatisfy({ $0.isLetter || $0.isNumber || ".:-".contains($0) }) else {
                    throw ParseError(description: "--host must be an IP address or host name, got '\(host)'")
                }
                options.host = host
            case "--port":
                options.port = try integer(value(for: flag, inline: inline), flag: flag, range: 0...65_535)
            case "--api-key":
                let key = try value(for: flag, inline: inline)
                guard !key.isEmpty, key.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
                    throw ParseError(description: "--api-key must be a non-empty ASCII string without spaces")
                }
                options.apiKeys.append(key)
            case "--max-queue":
                options.maxQueue = try integer(value(for: flag, inline: inline), flag: flag, range: 0...100_000)
            case "--output-dir":
                let path = try value(for: flag, inline: inline)
                guard !path.isEmpty else { throw ParseError(description: "--output-dir must not be empty") }
                options.outputDirectory = path
            case "--public-url":
                let text = try value(for: flag, inline: inline)
                guard let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme),
                      url.host != nil else {
                    throw ParseError(description: "--public-url must be an http(s) URL such as https://images.example.com, got '\(text)'")
                }
                options.publicURL = text.hasSuffix("/") ? String(text.dropLast()) : text
            case "--max-side":
                options.limits.maxSide = try narrowing(value(for: flag, inline: inline), flag: flag, lowest: options.limits.minSide,
                                                       pipelineLimit: GenerationLimits.pipeline.maxSide)
            case "--max-steps":
                options.limits.maxSteps = try narrowing(value(for: flag, inline: inline), flag: flag, lowest: 1,
                                                        pipelineLimit: GenerationLimits.pipeline.maxSteps)
            case "--max-images":
                options.limits.maxImages = try narrowing(value(for: flag, inline: inline), flag: flag, lowest: 1,
                                                         pipelineLimit: GenerationLimits.pipeline.maxImages)
            case "--image-ttl":
                options.imageTTLSeconds = try integer(value(for: flag, inline: inline), flag: flag, range: 1...(365 * 86_400))
            case "--max-connections":
                options.maxConnections = try integer(value(for: flag, inline: inline), flag: flag, range: 1...10_000)
            case "--max-connections-per-ip":
                options.maxConnectionsPerIP = try integer(value(for: flag, inline: inline), flag: flag, range: 1...10_000)
            case "--idle-timeout":
                options.connectionTimeoutSeconds = try integer(value(for: flag, inline: inline), flag: flag, range: 1...3_600)
            case "--head-timeout":
                options.headTimeoutSeconds = try integer(value(for: flag, inline: inline), flag: flag, range: 1...300)
            case "--min-body-rate":
                options.minBodyBytesPerSecond = try integer(value(for: flag, inline: inline), flag: flag, range: 1...(1 << 30))
            case "--max-body-size":
                options.maxBodyBytes = try integer(value(for: flag, inline: inline), flag: flag, range: 1024...(1 << 30))
            case "--max-body-memory":
                options.maxBodyMemoryBytes = try integer(value(for: flag, inline: inline), flag: flag, range: 1024...(1 << 40))
            case "--cors-origin":
                options.corsOrigins.append(try origin(value(for: flag, inline: inline)))
            case "--fetch-images-from":
                let host = try value(for: flag, inline: inline).lowercased()
                guard !host.isEmpty, host.count <= 253, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-:[]".contains($0)) }) else {
                    throw ParseError(description: "--fetch-images-from must be a host name such as images.example.com (no scheme, path or wildcard), got '\(host)'")
                }
                options.fetchHosts.append(host)
            case "--fetch-max-bytes":
                options.fetchMaxBytes = try integer(value(for: flag, inline: inline), flag: flag, range: 1024...(1 << 30))
            case "--fetch-timeout":
                options.fetchTimeoutSeconds = try integer(value(for: flag, inline: inline), flag: flag, range: 1...300)
            case "--task-store":
                let url = try value(for: flag, inline: inline)
                guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else {
                    throw ParseError(description: "--task-store must be a PostgreSQL URL such as postgres://user:password@host:5432/schnell, got '\(url.prefix(40))'")
                }
                options.taskStoreURL = url
            case "--replica":
                let name = try value(for: flag, inline: inline)
                guard !name.isEmpty, name.count <= 100, name.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
                    throw ParseError(description: "--replica must be 1 to 100 ASCII characters without spaces, got '\(name.prefix(40))'")
                }
                options.replicaName = name
            case "--task-lease":
                options.taskLeaseSeconds = try integer(value(for: flag, inline: inline), flag: flag, range: 2...3_600)
            case "--task-attempts":
                options.taskAttempts = try integer(value(for: flag, inline: inline), flag: flag, range: 1...100)
            case "--shutdown-timeout":
                options.shutdownTimeoutSeconds = try integer(value(for: flag, inline: inline), flag: flag, range: 1...3_600)
            default:
                remaining.append(argument)
            }
            index += 1
        }
        guard options.maxConnectionsPerIP <= options.maxConnections else {
            throw ParseError(description: "--max-connections-per-ip \(options.maxConnectionsPerIP) is more than --max-connections \(options.maxConnections)")
        }
        guard options.maxBodyMemoryBytes >= options.maxBodyBytes else {
            throw ParseError(description: "--max-body-memory \(options.maxBodyMemoryBytes) is less than --max-body-size \(options.maxBodyBytes); no body of the largest size could ever be read")
        }
        return (options, remaining)
    }

    /// An origin as browsers send it: `scheme://host[:port]`, lowercase, no path and no trailing slash.
    private static func origin(_ text: String) throws -> String {
        let lowered = text.lowercased()
        guard let url = URL(string: lowered), let scheme = url.scheme, ["http", "https"].contains(scheme), let host = url.host,
              !host.isEmpty, url.path.isEmpty, url.query == nil, url.fragment == nil, url.user == nil,
              lowered == "\(scheme)://\(lowered.contains("[") ? "[\(host)]" : host)\(url.port.map { ":\($0)" } ?? "")" else {
            throw ParseError(description: "--cors-origin must be an origin such as https://app.example.com (scheme, host and optional port; no path), got '\(text)'")
        }
        return lowered
    }

    var isLoopback: Bool {
        host == "127.0.0.1" || host == "::1" || host == "localhost" || host.hasPrefix("127.")
    }
}
