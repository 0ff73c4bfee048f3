import Foundation
@testable import SchnellServer
import XCTest

/// `JSONParser` against RFC 8259: what it accepts, what it keeps apart, and what it refuses.
final class JSONParserTests: XCTestCase {
    private func parse(_ text: String) throws -> JSONValue {
        try JSONValue.parse(Array(text.utf8))
    }

    private func assertRefused(_ bytes: [UInt8], _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try JSONValue.parse(bytes), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(expected), "\(error)", file: file, line: line)
        }
    }

    func testValuesAndTheirKinds() throws {
        let document = try parse(#" {"a": [1, -0, 2.5, 1e2, 9223372036854775807, 9223372036854775808, true, false, null], "b": {}} "#)
        XCTAssertEqual(document["a"], [.integer(1), .integer(0), .number(2.5), .number(100), .integer(Int64.max),
                                       .number(9223372036854775808), true, false, nil])
        XCTAssertEqual(document["b"], .object([:]))
        XCTAssertEqual(try parse("[]"), .array([]))
        XCTAssertEqual(try parse(#""x""#), "x")
    }

    func testStringEscapesAndUnicode() throws {
        XCTAssertEqual(try parse(#""\"\\\/\b\f\n\r\t""#), "\"\\/\u{8}\u{C}\n\r\t")
        XCTAssertEqual(try parse(#""\u00e9\u0000\ud83d\ude00""#), .string("é\u{0}😀"))
        XCTAssertEqual(try parse("\"é😀\""), "é😀")
        let serialized = try parse(#"{"k": "\u00e9 \"q\"", "n": [1, 2.5]}"#)
        XCTAssertEqual(try JSONValue.parse(serialized.serialized()), serialized, "what the server writes, it reads back")
    }

    func testMalformedDocumentsAreRefusedWithTheirPlace() {
        assertRefused([], "the document ends where a value should start")
        assertRefused(Array("{\"a\": 1,}".utf8), "expected a quoted key (byte 8)")
        assertRefused(Array("[1 2]".utf8), "expected ',' or ']'")
        assertRefused(Array("{\"a\" 1}".utf8), "expected ':'")
        assertRefused(Array("01".utf8), "a number is malformed")
        assertRefused(Array("1 2".utf8), "unexpected data after the JSON value (byte 2)")
        assertRefused(Array("1.".utf8), "no digits after its decimal point")
        assertRefused(Array("1e".utf8), "no digits in its exponent")
        assertRefused(Array("1e400".utf8), "too large")
        assertRefused(Array("-".utf8), "a number is malformed")
        assertRefused(Array("tru".utf8), "unexpected character")
        assertRefused(Array("\"abc".utf8), "a string is not closed (byte 0)")
        assertRefused(Array("\"a\nb\"".utf8), "raw control character")
        assertRefused(Array(#""\x""#.utf8), "unknown escape")
        assertRefused(Array(#""\u12""#.utf8), "truncated")
        assertRefused(Array(#""\uZZZZ""#.utf8), "four hex digits")
        assertRefused(Array(#""\ud83d""#.utf8), "lone high surrogate")
        assertRefused(Array(#""\ude00""#.utf8), "lone low surrogate")
        assertRefused(Array(#""\ud83d\u0041""#.utf8), "without its low surrogate")
        assertRefused([0x22, 0xC3, 0x28, 0x22], "not valid UTF-8")
        assertRefused([0x22, 0xED, 0xA0, 0x80, 0x22], "not valid UTF-8")
        assertRefused([0x22, 0xFF, 0x22], "not valid UTF-8")
    }

    func testNestingIsBounded() throws {
        let allowed = String(repeating: "[", count: JSONParser.maxDepth) + String(repeating: "]", count: JSONParser.maxDepth)
        XCTAssertNoThrow(try parse(allowed))
        // A million brackets would overflow a recursive parser's stack; the bound stops it at 65.
        assertRefused(Array(repeating: UInt8(ascii: "["), count: 1_000_000), "nested more than 64 deep (byte 64)")
        assertRefused(Array(String(repeating: "{\"a\":", count: 65).utf8), "nested more than 64 deep")
    }

    func testARepeatedKeyIsRefusedNamingIt() throws {
        XCTAssertThrowsError(try parse(#"{"a": 1, "b": 2, "a": 1}"#)) { error in
            XCTAssertEqual(error as? JSONParseError, JSONParseError(reason: .duplicateKey("a"), offset: 17))
        }
        XCTAssertThrowsError(try parse(#"{"x": {"n": 1, "\u006e": 2}}"#)) { error in
            XCTAssertEqual((error as? JSONParseError)?.reason, .duplicateKey("n"))
        }
        XCTAssertEqual(try parse(#"[{"a": 1}, {"a": 2}]"#), [["a": 1], ["a": 2]])
    }
}
