import Foundation
@testable import SchnellServer
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The output folder is private and checked at start; files there are never reached through links;
/// finished async tasks live on disk, not in memory.
final class StorageTests: XCTestCase {
    /// A path under the temporary folder, removed after the test.
    private func freshDirectory() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-storage-\(UUID().uuidString)").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    private func mode(_ path: String) -> mode_t {
        var info = stat()
        XCTAssertEqual(lstat(path, &info), 0, path)
        return info.st_mode & 0o7777
    }

    private func assertRefused(_ directory: String, mentioning reason: String, file: StaticString = #filePath, line: UInt = #line) {
        var options = ServerOptions()
        options.outputDirectory = directory
        XCTAssertThrowsError(try ImageServer(options: options), file: file, line: line) { error in
            // ServeCommand exits 2 for a ParseError, as for any bad flag.
            XCTAssertTrue(error is ServerOptions.ParseError, "\(error)", file: file, line: line)
            let message = "\(error)"
            XCTAssertTrue(message.contains("--output-dir '\(directory)'") && message.contains(reason), message, file: file, line: line)
        }
    }

    func testDefaultFolderIsTheUsersOwnAndEverythingIsCreatedPrivate() throws {
        let environment = ProcessInfo.processInfo.environment
        let expected = environment["XDG_RUNTIME_DIR"].map { "\($0)/schnell-server" }
            ?? "\(environment["XDG_CACHE_HOME"] ?? NSHomeDirectory() + "/.cache")/schnell/server"
        XCTAssertEqual(ServerOptions().outputDirectory, expected)
        XCTAssertFalse(ServerOptions().outputDirectory.hasPrefix("/tmp/"))

        let directory = freshDirectory()
        let test = try TestServer(outputDirectory: directory)
        for path in [directory, directory + "/images", directory + "/tasks"] { XCTAssertEqual(mode(path), 0o700, path) }
        let response = try test.client.postJSON("/v1/images/generations", ["prompt": "a", "response_format": "url"])
        let url = try XCTUnwrap((response.json["data"] as? [[String: Any]])?.first?["url"] as? String)
        let name = try XCTUnwrap(url.split(separator: "/").last)
        XCTAssertEqual(mode("\(directory)/images/\(name)"), 0o600)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory + "/images"), [String(name)],
                       "the start-up write check leaves nothing behind")
    }

    func testFoldersOthersCanWriteOrOwnAreRefusedAtStart() throws {
        let shared = freshDirectory()
        XCTAssertEqual(mkdir(shared, 0o700), 0)
        XCTAssertEqual(chmod(shared, 0o777), 0)
        assertRefused(shared, mentioning: "can be written by other users (mode 777)")
        XCTAssertEqual(chmod(shared, 0o775), 0)
        assertRefused(shared, mentioning: "mode 775")
        if geteuid() == 0 {
            XCTAssertEqual(chmod(shared, 0o700), 0)
            XCTAssertEqual(chown(shared, 65534, 65534), 0)
            assertRefused(shared, mentioning: "is owned by uid 65534")
        } else {
            assertRefused("/usr", mentioning: "is owned by uid 0")
        }
        let withLink = freshDirectory()
        XCTAssertEqual(mkdir(withLink, 0o700), 0)
        XCTAssertEqual(symlink(NSTemporaryDirectory(), withLink + "/images"), 0)
        assertRefused(withLink, mentioning: "images is a symbolic link")
    }

    func testUnwritableFoldersAreRefusedAtStart() throws {
        let file = freshDirectory()
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data([1])))
        assertRefused(file, mentioning: "is not a folder")
        assertRefused(file + "/below", mentioning: "Not a directory")
        // Root may write anywhere a mode allows nothing, but not in /proc.
        if geteuid() == 0 {
            assertRefused("/proc/1", mentioning: "failed")
        } else {
            let readOnly = freshDirectory()
            XCTAssertEqual(mkdir(readOnly, 0o500), 0)
            assertRefused(readOnly, mentioning: "Permission denied")
        }
    }

    func testLinksPlantedInTheFolderAreNeverFollowed() throws {
        let directory = freshDirectory()
        let test = try TestServer(outputDirectory: directory)
        let secret = freshDirectory()
        XCTAssertTrue(FileManager.default.createFile(atPath: secret, contents: Data("secret".utf8), attributes: [.posixPermissions: 0o600]))
        let planted = "0123456789abcdef0123456789abcdef.png"
        XCTAssertEqual(symlink(secret, "\(directory)/images/\(planted)"), 0)
        assertError(try test.client.get("/v1/images/files/\(planted)"), status: 404, code: "not_found")

        // A task record written where a link was planted replaces the link, never its target.
        let id = "task_0123456789abcdef0123456789abcdef"
        XCTAssertEqual(symlink(secret, "\(directory)/tasks/\(id).json"), 0)
        try test.server.store.saveTask(id: id, record: ["status": "completed"])
        XCTAssertEqual(try String(contentsOfFile: secret, encoding: .utf8), "secret")
        XCTAssertEqual(mode("\(directory)/tasks/\(id).json"), 0o600, "a regular file now")
        XCTAssertEqual(try test.client.get("/v1/tasks/\(id)").json["status"] as? String, "completed")

        // A FIFO named like an image is refused at once rather than blocking the reader.
        let fifo = "fedcba9876543210fedcba9876543210.png"
        XCTAssertEqual(mkfifo("\(directory)/images/\(fifo)", 0o600), 0)
        assertError(try test.client.get("/v1/images/files/\(fifo)"), status: 404, code: "not_found")
    }

    func testFinishedTasksAreReadFromDiskNotKeptInMemory() throws {
        let directory = freshDirectory()
        let test = try TestServer(outputDirectory: directory)
        let created = try test.client.postJSON("/v1/images/generations", ["prompt": "a", "async": true, "response_format": "b64_json"])
        let id = try XCTUnwrap(created.json["id"] as? String)
        var task: [String: Any] = [:]
        for _ in 0..<250 where task["status"] as? String != "completed" {
            Thread.sleep(forTimeInterval: 0.02)
            task = try test.client.get("/v1/tasks/\(id)").json
        }
        XCTAssertNotNil((task["data"] as? [[String: Any]])?.first?["b64_json"] as? String)
        XCTAssertTrue(test.server.lock.withLock { test.server.liveTasks.isEmpty && test.server.unsavedTasks.isEmpty })
        XCTAssertEqual(unlink("\(directory)/tasks/\(id).json"), 0)
        assertError(try test.client.get("/v1/tasks/\(id)"), status: 404, code: "not_found")
    }

    func testARecordThatCannotBeWrittenFailsTheTaskWithAMessage() throws {
        let directory = freshDirectory()
        let test = try TestServer(generator: FakeGenerator(stepSeconds: 0.1), outputDirectory: directory)
        let created = try test.client.postJSON("/v1/images/generations", ["prompt": "a", "async": true])
        let id = try XCTUnwrap(created.json["id"] as? String)
        // The folder goes away while the task runs: a regular file now stands where it was.
        try FileManager.default.removeItem(atPath: directory + "/tasks")
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/tasks", contents: Data()))
        var task: [String: Any] = [:]
        for _ in 0..<250 where task["status"] as? String != "failed" {
            Thread.sleep(forTimeInterval: 0.02)
            task = try test.client.get("/v1/tasks/\(id)").json
        }
        XCTAssertEqual(task["status"] as? String, "failed")
        let error = try XCTUnwrap(task["error"] as? [String: Any])
        XCTAssertEqual(error["code"] as? String, "task_record_unwritable")
        XCTAssertTrue((error["message"] as? String)?.contains("Not a directory") == true, "\(error)")
    }
}
