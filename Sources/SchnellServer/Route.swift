/// The server's routes, read from a request path alone so that the route, its method and its
/// body's content type are known from the request head.
enum Route: Equatable {
    case health, metrics, models
    /// Ids may contain slashes (`black-forest-labs/FLUX.1-schnell`).
    case model(String)
    case generations, edits
    case task(String)
    case file(String)
    /// The playground page: `/`, `/playground` and `/playground/{file}`; needs no key.
    case page(String)

    init?(path: String) {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        switch segments {
        case [""], ["playground"], ["playground", ""]: self = .page("index.html")
        case let path where path.count == 2 && path[0] == "playground": self = .page(path[1])
        case ["health"]: self = .health
        case ["metrics"]: self = .metrics
        case ["v1", "models"]: self = .models
        case let path where path.count >= 3 && path[0] == "v1" && path[1] == "models":
            self = .model(path[2...].joined(separator: "/"))
        case ["v1", "images", "generations"]: self = .generations
        case ["v1", "images", "edits"]: self = .edits
        case let path where path.count == 3 && path[0] == "v1" && path[1] == "tasks": self = .task(path[2])
        case let path where path.count == 4 && path[0] == "v1" && path[1] == "images" && path[2] == "files": self = .file(path[3])
        default: return nil
        }
    }

    var method: String {
        self == .generations || self == .edits ? "POST" : "GET"
    }

    /// GET routes also answer HEAD.
    func allows(_ method: String) -> Bool {
        method == self.method || (self.method == "GET" && method == "HEAD")
    }

    /// The body's media type, for routes that take one: what the client must send, and whether a
    /// `Content-Type` media type (lowercase, without parameters) is it.
    var bodyType: (expected: String, accepts: (String) -> Bool)? {
        switch self {
        case .generations, .edits:
            return ("application/json or multipart/form-data",
                    { $0 == "application/json" || $0.hasSuffix("+json") || $0 == "multipart/form-data" })
        default: return nil
        }
    }
}

extension Route {
    var isPage: Bool {
        if case .page = self { return true }
        return false
    }
}
