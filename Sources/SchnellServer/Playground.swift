import Foundation
import SchnellPlaygroundFiles

/// The playground page: plain HTML, CSS and JavaScript from `Sources/SchnellServer/Playground/`,
/// compiled into the binary by the C target `SchnellPlaygroundFiles` (see playground_files.c for
/// why not a resource bundle). The page calls the public API like any client, so it needs no
/// key to load; the key the user types goes on its API calls.
let playgroundFiles: [String: [UInt8]] = {
    var count = 0
    guard let table = schnell_playground_files(&count) else { return [:] }
    var files: [String: [UInt8]] = [:]
    for file in UnsafeBufferPointer(start: table, count: count) {
        files[String(cString: file.name)] = Array(UnsafeRawBufferPointer(start: file.bytes, count: file.size))
    }
    return files
}()

/// Scripts and styles only from the server itself (no inline script or style), images also from
/// the `data:` and `blob:` URLs the page makes from `b64_json`, API calls only to this origin.
let playgroundContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    + "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/// A playground file, by request path (`/`, `/playground`, `/playground/`, `/playground/FILE`)
/// or by its name in the folder (`playground.js`); nil for any other path.
func playgroundResponse(path: String) -> HTTPResponse? {
    var name = path
    if name.hasPrefix("/") { name.removeFirst() }
    if name == "playground" || name.hasPrefix("playground/") { name = String(name.dropFirst("playground".count)) }
    if name.hasPrefix("/") { name.removeFirst() }
    if name.isEmpty { name = "index.html" }
    guard let bytes = playgroundFiles[name] else { return nil }
    let type: String
    switch name.split(separator: ".").last {
    case "html": type = "text/html; charset=utf-8"
    case "js": type = "text/javascript; charset=utf-8"
    case "css": type = "text/css; charset=utf-8"
    default: type = "application/octet-stream"
    }
    return HTTPResponse(status: 200, headers: [
        ("Content-Type", type),
        ("Cache-Control", "no-cache"),
        ("Content-Security-Policy", playgroundContentSecurityPolicy),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
    ], body: bytes)
}
