import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// An image a request supplied, with the field it came from (for error messages).
struct SuppliedImage: Sendable {
    var param: String
    var bytes: [UInt8]
}

/// A generation or edit body, JSON or multipart, read into its fields and the images it carries.
///
/// Images may come as multipart files (`image`, `image[]`, `mask`), or in JSON as `image` (a data
/// URL or plain base64), `image_url` (a string or `{"url": ...}`), `image_urls` (strings),
/// `images` (`[{"image_url": ...}]`, as OpenAI's JSON edits) and `mask` (a string or
/// `{"image_url": ...}`). A multipart form may also carry `image_url` as a text field. FLUX.1
/// starts from one picture: a second one, from any field, is refused naming that field, as are
/// `reference_image_urls` and `file_id` references (this server keeps no files). http(s) URLs
/// are fetched only from the hosts the operator allowed (`ServerOptions.fetchHosts`).
struct RequestBody {
    var fields: RequestFields
    var image: SuppliedImage?
    var mask: SuppliedImage?

    init(_ request: HTTPRequest, options: ServerOptions) throws {
        let mediaType = (request.header("content-type") ?? "").split(separator: ";").first
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        var references: [(param: String, source: ImageSource)] = []
        var masks: [(param: String, source: ImageSource)] = []
        if mediaType == "multipart/form-data" {
            guard let boundary = MultipartForm.boundary(contentType: request.header("content-type") ?? "") else {
                throw APIError.invalid("The multipart Content-Type has no usable boundary", param: nil)
            }
            let form = try MultipartForm(body: request.body, boundary: boundary)
            var values: [String: JSONValue] = [:]
            for part in form.parts where part.filename == nil {
                guard values.updateValue(.string(String(decoding: part.body, as: UTF8.self)), forKey: part.name) == nil else {
                    throw APIError.invalid("The form has the field '\(part.name)' more than once; send each field once", param: part.name)
                }
            }
            fields = RequestFields(values: values, fromForm: true)
            references = form.files(["image", "image[]"]).map { ("image", .bytes($0.body)) }
            masks = form.files(["mask"]).map { ("mask", .bytes($0.body)) }
            if let link = try fields.string("image_url") { references.append(("image_url", try ImageSource(link, param: "image_url"))) }
        } else {
            let document: JSONValue
            do {
                document = try JSONValue.parse(request.body)
            } catch let error as JSONParseError {
                if case .duplicateKey(let key) = error.reason {
                    throw APIError.invalid("The body has the key '\(key)' more than once; send each field once", param: key)
                }
                throw APIError.invalid("The body is not valid JSON: \(error)", param: nil)
            }
            guard case .object(let members) = document else { throw APIError.invalid("The body must be a JSON object", param: nil) }
            fields = RequestFields(values: members)
            references = try RequestBody.jsonImages(members)
            if let mask = members["mask"], mask != .null {
                masks = [("mask", try ImageSource(RequestBody.link(mask, param: "mask"), param: "mask"))]
            }
        }
        if let extra = fields.values["reference_image_urls"], extra != .null, extra != .array([]) {
            throw APIError.invalid("FLUX.1 starts from one image; 'reference_image_urls' is not supported (send one image as 'image_url')",
                                   param: "reference_image_urls")
        }
        if references.count > 1 {
            throw APIError.invalid("FLUX.1 starts from one image, but \(references.count) were sent ('\(references[1].param)' is one too many)",
                                   param: references[1].param)
        }
        guard masks.count <= 1 else { throw APIError.invalid("Only one 'mask' is supported", param: "mask") }
        let fetcher = ImageFetcher(options: options)
        image = try references.first.map { SuppliedImage(param: $0.param, bytes: try $0.source.bytes(param: $0.param, fetcher: fetcher)) }
        mask = try masks.first.map { SuppliedImage(param: $0.param, bytes: try $0.source.bytes(param: $0.param, fetcher: fetcher)) }
    }

    /// The JSON fields that may hold the starting image, in the order they are read.
    private static func jsonImages(_ members: [String: JSONValue]) throws -> [(param: String, source: ImageSource)] {
        var found: [(param: String, source: ImageSource)] = []
        if let image = members["image"], image != .null {
            found.append(("image", try ImageSource(link(image, param: "image"), param: "image")))
        }
        if let single = members["image_url"], single != .null {
            found.append(("image_url", try ImageSource(link(single, param: "image_url"), param: "image_url")))
        }
        if let list = members["image_urls"], list != .null {
            guard case .array(let items) = list else { throw APIError.wrongType("image_urls", expected: "an array of strings") }
            for item in items {
                guard case .string(let text) = item else { throw APIError.wrongType("image_urls", expected: "an array of strings") }
                found.append(("image_urls", try ImageSource(text, param: "image_urls")))
            }
        }
        if let list = members["images"], list != .null {
            guard case .array(let items) = list else {
                throw APIError.wrongType("images", expected: "an array of objects such as {\"image_url\": \"data:image/png;base64,...\"}")
            }
            for item in items {
                if case .object(let reference) = item, reference["file_id"] != nil {
                    throw APIError.invalid("'images[].file_id' is not supported: this server keeps no files; send the image as 'image_url'",
                                           param: "images")
                }
                found.append(("images", try ImageSource(link(item, param: "images"), param: "images")))
            }
        }
        return found
    }

    /// A string, or an object holding it as `image_url` (itself a string or `{"url": ...}`) or `url`.
    private static func link(_ value: JSONValue, param: String) throws -> String {
        switch value {
        case .string(let text):
            return text
        case .object(let members):
            if let inner = members["image_url"] { return try link(inner, param: param) }
            if case .string(let text)? = members["url"] { return text }
        default:
            break
        }
        throw APIError.wrongType(param, expected: "a data URL, base64 or http(s) URL string, or {\"image_url\": ...}")
    }
}

/// Where a supplied image's bytes are: in the request, or at a URL to fetch.
enum ImageSource {
    case bytes([UInt8])
    case remote(URL)

    /// `data:image/...;base64,...`, plain base64, or an http(s) URL.
    init(_ text: String, param: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let lowered = trimmed.prefix(8).lowercased()
        if lowered.hasPrefix("http://") || lowered.hasPrefix("https://") {
            guard let url = URL(string: trimmed), url.host != nil else {
                throw APIError.invalid("'\(param)' is not a valid URL", param: param)
            }
            self = .remote(url)
            return
        }
        var payload = Substring(trimmed)
        if lowered.hasPrefix("data:") {
            guard let comma = payload.firstIndex(of: ",") else {
                throw APIError.invalid("'\(param)' is a data URL without a comma before its data", param: param)
            }
            let header = payload[..<comma].dropFirst("data:".count).lowercased()
            guard header.hasSuffix(";base64") else {
                throw APIError.invalid("'\(param)' must be a base64 data URL (data:image/png;base64,...)", param: param)
            }
            guard header.hasPrefix("image/") else {
                throw APIError.invalid("'\(param)' is a data URL of '\(header.dropLast(7))'; send an image (image/png, image/jpeg or image/webp)",
                                       param: param)
            }
            payload = payload[payload.index(after: comma)...]
        }
        guard !payload.isEmpty, let data = Data(base64Encoded: String(payload), options: .ignoreUnknownCharacters), !data.isEmpty else {
            throw APIError.invalid("'\(param)' must be a data URL (data:image/png;base64,...), base64 image bytes or an http(s) URL", param: param)
        }
        self = .bytes([UInt8](data))
    }

    func bytes(param: String, fetcher: ImageFetcher) throws -> [UInt8] {
        switch self {
        case .bytes(let bytes): return bytes
        case .remote(let url): return try fetcher.fetch(url, param: param)
        }
    }
}

/// Fetches a reference image from an allowed host, within a size and a time limit. Redirects
/// are followed only to allowed hosts.
struct ImageFetcher: Sendable {
    let hosts: Set<String>
    let maxBytes: Int
    let timeoutSeconds: Int

    init(options: ServerOptions) {
        hosts = Set(options.fetchHosts)
        maxBytes = options.fetchMaxBytes
        timeoutSeconds = options.fetchTimeoutSeconds
    }

    func allows(_ url: URL) -> Bool {
        guard let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme), let host = url.host?.lowercased() else { return false }
        return hosts.contains(host)
    }

    func fetch(_ url: URL, param: String) throws -> [UInt8] {
        guard !hosts.isEmpty else {
            throw APIError.invalid("'\(param)' is an http(s) URL, but this server does not fetch images (its operator can allow hosts with --fetch-images-from); send the image as a data URL (data:image/png;base64,...) or a multipart file",
                                   param: param)
        }
        guard allows(url) else {
            throw APIError.invalid("'\(param)' names the host '\(url.host ?? "")', which this server does not fetch from; allowed: \(hosts.sorted().joined(separator: ", "))",
                                   param: param)
        }
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = Double(timeoutSeconds)
        configuration.timeoutIntervalForResource = Double(timeoutSeconds)
        let download = Download(fetcher: self)
        let session = URLSession(configuration: configuration, delegate: download, delegateQueue: nil)
        defer { session.invalidateAndCancel() }
        session.dataTask(with: url).resume()
        let (bytes, failure) = download.result(within: Double(timeoutSeconds + 1))
        if let failure {
            throw APIError.invalid("Fetching '\(param)' from \(url.host ?? "") failed: \(failure)", param: param)
        }
        return bytes
    }

    /// One fetch's bytes, or why it failed, filled in by the session's delegate queue.
    private final class Download: NSObject, URLSessionDataDelegate, @unchecked Sendable {
        let fetcher: ImageFetcher
        private let condition = NSCondition()
        // Guarded by `condition`.
        private var received: [UInt8] = []
        private var failure: String?
        private var finished = false

        init(fetcher: ImageFetcher) {
            self.fetcher = fetcher
        }

        /// The bytes or the failure, once the transfer ended or `seconds` passed.
        func result(within seconds: Double) -> (bytes: [UInt8], failure: String?) {
            condition.withLock {
                let deadline = Date(timeIntervalSinceNow: seconds)
                while !finished && condition.wait(until: deadline) {}
                if !finished && failure == nil { failure = "it took longer than \(fetcher.timeoutSeconds) s (--fetch-timeout)" }
                return (received, failure)
            }
        }

        /// Records the first failure; false when one was already recorded.
        @discardableResult
        private func fail(_ reason: String) -> Bool {
            condition.withLock {
                guard failure == nil else { return false }
                failure = reason
                received = []
                return true
            }
        }

        private var hasFailed: Bool { condition.withLock { failure != nil } }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
            // A refused redirect arrives here as the 3xx itself, with its reason already recorded.
            if let http = response as? HTTPURLResponse, http.statusCode != 200 {
                fail("the server answered HTTP \(http.statusCode)")
            } else if response.expectedContentLength > Int64(fetcher.maxBytes) {
                fail("the image is \(response.expectedContentLength) bytes; at most \(fetcher.maxBytes) are fetched (--fetch-max-bytes)")
            }
            completionHandler(hasFailed ? .cancel : .allow)
        }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
            let tooLarge = condition.withLock {
                guard failure == nil else { return false }
                received.append(contentsOf: data)
                return received.count > fetcher.maxBytes
            }
            if tooLarge {
                fail("the image is more than \(fetcher.maxBytes) bytes (--fetch-max-bytes)")
                dataTask.cancel()
            }
        }

        func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                        newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
            guard let target = request.url, fetcher.allows(target) else {
                fail("it redirects to \(request.url?.host ?? "an unknown host"), which is not allowed")
                completionHandler(nil)
                return
            }
            completionHandler(request)
        }

        func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
            if let error { fail(error.localizedDescription) }
            condition.withLock {
                finished = true
                condition.broadcast()
            }
        }
    }
}
