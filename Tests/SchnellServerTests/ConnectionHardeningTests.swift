import Foundation
import SchnellImageIO
import SchnellServer
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP front against clients that lie about framing, trickle bytes, skip the key or come from
/// another web origin: each is answered (or cut off) on its request head, before its body.
final class ConnectionHardeningTests: XCTestCase {
    /// Every HTTP status line in what the server sent back, in order.
    private func statusLines(_ bytes: [UInt8]) -> [String] {
        String(decoding: bytes, as: UTF8.self).components(separatedBy: "\r\n").filter { $0.hasPrefix("HTTP/1.1 ") }
    }

    /// Sends `raw` on a fresh connection and reads until the server closes it; throws if it does
    /// not close within `timeoutSeconds`.
    private func exchange(_ client: RawClient, _ raw: String, timeoutSeconds: Double = 5) throws -> [UInt8] {
        let fd = try client.connect(timeoutSeconds: timeoutSeconds)
        defer { close(fd) }
        RawClient.send(fd, Array(raw.utf8))
        return try RawClient.readAll(fd)
    }

    func testSmugglingFramingsAreRefusedWithOneAnswerAndAClosedConnection() throws {
        let test = try TestServer()
        let smuggled = "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        let post = "POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        let cases: [(String, String, Int, String)] = [
            ("duplicate Content-Length", post + "Content-Length: 2\r\nContent-Length: \(2 + smuggled.utf8.count)\r\n\r\n{}" + smuggled, 400, "invalid_framing"),
            ("Content-Length with Transfer-Encoding",
             post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, "invalid_framing"),
            ("space before the colon", post + "Content-Length : \(2 + smuggled.utf8.count)\r\n\r\n{}" + smuggled, 400, "invalid_framing"),
            ("unknown transfer coding", post + "Transfer-Encoding: identity, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" + smuggled, 400, "invalid_framing"),
            ("two Transfer-Encoding headers", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "invalid_framing"),
            ("two Host headers", "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n", 400, "invalid_framing"),
            ("no Host header", "GET /v1/models HTTP/1.1\r\n\r\n", 400, "invalid_framing"),
            ("chunked body", post + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" + smuggled, 411, "length_required"),
        ]
        for (name, raw, status, code) in cases {
            let started = Date()
            let received = try exchange(test.client, raw)
            // Bound: the answer comes on the head, not after an idle timeout (30 s here).
            XCTAssertLessThan(Date().timeIntervalSince(started), 2, name)
            XCTAssertEqual(statusLines(received).count, 1, "\(name): the smuggled request must not be answered")
            assertError(try RawClient.parse(received), status: status, code: code)
        }
        XCTAssertEqual(try test.client.get("/health").status, 200)
    }

    func testKeyRouteMethodAndContentTypeAreCheckedBeforeTheBody() throws {
        let test = try TestServer { $0.apiKeys = ["sk-test"] }
        let announced = 32 * 1024 * 1024
        let cases: [(String, Int, String)] = [
            ("POST /v1/images/edits HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=b\r\n", 401, "invalid_api_key"),
            ("POST /v1/nowhere HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer sk-test\r\n", 404, "not_found"),
            ("PUT /v1/images/generations HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer sk-test\r\n", 405, "method_not_allowed"),
            ("POST /v1/images/generations HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer sk-test\r\nContent-Type: text/plain\r\n", 415, "unsupported_media_type"),
            ("POST /v1/images/generations HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer sk-test\r\nContent-Type: application/json\r\n", 413, "request_too_large"),
        ]
        for (head, status, code) in cases {
            let started = Date()
            // Not one body byte is sent: the answer must come from the head alone.
            let received = try exchange(test.client, head + "Content-Length: \(announced + 1)\r\n\r\n")
            XCTAssertLessThan(Date().timeIntervalSince(started), 2, head)
            assertError(try RawClient.parse(received), status: status, code: code)
        }
    }

    func testBodiesOverTheSharedMemoryBudgetAreRefusedBeforeTheyAreRead() throws {
        let test = try TestServer { options in
            options.maxBodyBytes = 1024
            options.maxBodyMemoryBytes = 1500
        }
        let head = "POST /v1/images/generations HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        let holder = try test.client.connect()
        defer { close(holder) }
        RawClient.send(holder, Array((head + "{\"prompt\": \"").utf8))
        Thread.sleep(forTimeInterval: 0.2)
        // 1000 bytes are reserved by the first body; a second 1000 would go over 1500.
        assertError(try RawClient.parse(exchange(test.client, head)), status: 503, code: "server_busy")
        RawClient.send(holder, Array((String(repeating: "a", count: 1000 - 14) + "\"}").utf8))
        XCTAssertEqual(try RawClient.parse(RawClient.readAll(holder)).status, 200)
        XCTAssertEqual(try test.client.postJSON("/v1/images/generations", ["prompt": "after"]).status, 200, "the reservation was given back")
    }

    func testATricklingHeadIsCutAtItsDeadlineWhileOthersAreServed() throws {
        let test = try TestServer { $0.headTimeoutSeconds = 1 }
        let fd = try test.client.connect(timeoutSeconds: 10)
        defer { close(fd) }
        RawClient.send(fd, Array("GET /health HTTP/1.1\r\nHost: h\r\n".utf8))
        let closedAfter = try secondsUntilClosed(fd, polls: 40) { index in
            // One byte every 0.1 s keeps an idle timeout from ever firing.
            RawClient.send(fd, Array("X-\(index): 1\r\n".utf8.prefix(1)))
            if index == 3 { XCTAssertEqual(try test.client.get("/health").status, 200) }
        }
        // Deadline 1 s, checked every 0.25 s.
        let after = try XCTUnwrap(closedAfter, "the trickling connection was never closed")
        XCTAssertGreaterThanOrEqual(after, 0.9)
        XCTAssertLessThan(after, 2.5)
    }

    func testASlowBodyIsCutAtTheMinimumRate() throws {
        let test = try TestServer { options in
            options.headTimeoutSeconds = 1
            options.minBodyBytesPerSecond = 100
        }
        let fd = try test.client.connect(timeoutSeconds: 10)
        defer { close(fd) }
        RawClient.send(fd, Array("POST /v1/images/generations HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n".utf8))
        let closedAfter = try secondsUntilClosed(fd, polls: 60) { _ in RawClient.send(fd, [UInt8(ascii: " ")]) }
        // 100 bytes at 100 B/s after a 1 s grace: due at 2 s; 10 B/s arrive, so it is cut then.
        let after = try XCTUnwrap(closedAfter, "the slow body was never cut off")
        XCTAssertGreaterThanOrEqual(after, 1.9)
        XCTAssertLessThan(after, 3.5)
        XCTAssertEqual(try test.client.get("/health").status, 200)
    }

    /// Polls `fd` every 0.1 s, calling `trickle` with the poll's index while it stays open: the
    /// seconds from the first poll until the server closed it, nil if it never did.
    private func secondsUntilClosed(_ fd: Int32, polls: Int, trickle: (Int) throws -> Void) rethrows -> Double? {
        let started = Date()
        for index in 0..<polls {
            Thread.sleep(forTimeInterval: 0.1)
            var byte: UInt8 = 0
            if recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) == 0 { return Date().timeIntervalSince(started) }
            try trickle(index)
        }
        return nil
    }

    /// A connection from `source` (any 127/8 address reaches a loopback server on Linux).
    private func connect(from source: String, port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr(source)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = UInt16(port).bigEndian
        remote.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let connected = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, connected == 0 else { close(fd); throw ClientError.connect }
        return fd
    }

    func testOneAddressCannotTakeEveryConnection() throws {
        let test = try TestServer { options in
            options.maxConnections = 64
            options.maxConnectionsPerIP = 4
        }
        let sockets = try (0..<12).map { _ in try connect(from: "127.0.0.2", port: test.server.boundPort) }
        defer { sockets.forEach { close($0) } }
        Thread.sleep(forTimeInterval: 0.3)
        let closedByServer = sockets.filter { fd in
            var byte: UInt8 = 0
            return recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) == 0
        }.count
        XCTAssertEqual(closedByServer, 8, "4 of 12 connections from one address are kept")
        XCTAssertEqual(try test.client.get("/health").status, 200, "another address is still served")
    }

    func testCrossOriginRequestsAreRefusedUnlessAllowed() throws {
        let generator = FakeGenerator()
        let test = try TestServer(generator: generator) { $0.corsOrigins = ["https://app.example.com"] }
        let png = try ImageEncoder.encode(Image8(width: 64, height: 64, channels: 3, pixels: [UInt8](repeating: 9, count: 64 * 64 * 3)), as: .png)
        // A plain HTML form can POST multipart to any site without a preflight.
        let form = try test.client.request("POST", "/v1/images/edits",
                                           headers: ["Content-Type": "multipart/form-data; boundary=XyZ-boundary", "Origin": "https://evil.example"],
                                           body: multipart([("prompt", "x")], files: [("image", png)]))
        assertError(form, status: 403, code: "origin_not_allowed")
        assertError(try test.client.get("/v1/models", headers: ["Origin": "null"]), status: 403, code: "origin_not_allowed")
        assertError(try test.client.postJSON("/v1/images/generations", ["prompt": "x"], headers: ["Origin": "http://127.0.0.1:1"]),
                    status: 403, code: "origin_not_allowed")
        XCTAssertEqual(generator.requests.count, 0)

        let preflight = try test.client.request("OPTIONS", "/v1/images/generations",
                                                headers: ["Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
                                                          "Access-Control-Request-Headers": "authorization, content-type"])
        XCTAssertEqual(preflight.status, 204)
        XCTAssertEqual(preflight.headers["access-control-allow-origin"], "https://app.example.com")
        XCTAssertEqual(preflight.headers["access-control-allow-methods"], "GET, HEAD, POST, DELETE")
        let allowed = try test.client.postJSON("/v1/images/generations", ["prompt": "x"], headers: ["Origin": "https://app.example.com"])
        XCTAssertEqual(allowed.status, 200)
        XCTAssertEqual(allowed.headers["access-control-allow-origin"], "https://app.example.com")
        XCTAssertEqual(generator.requests.count, 1)
    }

    func testImageURLsNeverComeFromTheHostHeader() throws {
        let test = try TestServer()
        let body = #"{"prompt": "a", "response_format": "url"}"#
        let received = try exchange(test.client, "POST /v1/images/generations HTTP/1.1\r\nHost: evil.example:666\r\nConnection: close\r\n"
                                    + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body)
        let response = try RawClient.parse(received)
        let url = try XCTUnwrap((response.json["data"] as? [[String: Any]])?.first?["url"] as? String)
        XCTAssertTrue(url.hasPrefix("http://127.0.0.1:\(test.server.boundPort)/v1/images/files/"), url)
    }
}
