/// The server's routes, read from a request path alone so that the route, its method and its
/// body's content type are known from the request head.
enum Route: Equatable {
    case health, metrics, models
    /// Ids may contain slashes (`black-forest-labs/FLUX.1-schnell`).
    case model(String)
    case generations, edits, variations
    /// `GET /v1/tasks` lists tasks; `GET` or `DELETE /v1/tasks/{id}` reads or cancels one, as
    /// does `POST /v1/tasks/{id}/cancel`.
    case tasks
    case task(String)
    case cancelTask(String)
    case file(String)
    /// `/`, `/playground` and `/playground/{file}`: the browser page, served without a key.
    case page(String)

    init?(path: String) {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        switch segments {
        case ["health"]: self = .health
        case ["metrics"]: self = .metrics
        case ["v1", "models"]: self = .models
        case let path where path.count >= 3 && path[0] == "v1" && path[1] == "models":
            self = .model(path[2...].joined(separator: "/"))
        case ["v1", "images", "generations"]: self = .generations
        case ["v1", "images", "edits"]: self = .edits
        case ["v1", "images", "variations"]: self = .variations
        case ["v1", "tasks"]: self = .tasks
        case let path where path.count == 3 && path[0] == "v1" && path[1] == "tasks": self = .task(path[2])
        case let path where path.count == 4 && path[0] == "v1" && path[1] == "tasks" && path[3] == "cancel": self = .cancelTask(path[2])
        case let path where path == [""] || path == ["playground"] || (path.count == 2 && path[0] == "playground"):
            self = .page("/" + path.joined(separator: "/"))
        case let path where path.count == 4 && path[0] == "v1" && path[1] == "images" && path[2] == "files": self = .file(path[3])
        default: return nil
        }
    }

    /// The methods the route answers; every GET route also answers HEAD.
    var methods: [String] {
        switch self {
        case .generations, .edits, .variations, .cancelTask: return ["POST"]
        case .task: return ["GET", "HEAD", "DELETE"]
        default: return ["GET", "HEAD"]
        }
    }

    func allows(_ method: String) -> Bool {
        methods.contains(method)
    }

    /// Every route but these needs the API key: `/health` for probes, the page (it asks the user
    /// for the key), and image files, whose names are unguessable links (128 random bits) that
    /// expire with `--image-ttl`, so they can be handed to a browser or a downstream user.
    var needsKey: Bool {
        switch self {
        case .health, .file, .page: return false
        default: return true
        }
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
