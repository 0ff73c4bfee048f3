/// Checks a JPEG file's marker structure before libjpeg sees it.
///
/// libjpeg reports fatal errors through `error_exit`, which must not return, and Swift cannot
/// setjmp. So every condition under which libjpeg-turbo 2.1's decompressor calls `error_exit`
/// for a structural reason is refused here first (often more strictly than libjpeg): bad or
/// truncated segments, unsupported frame types (lossless, hierarchical, arithmetic, 12-bit),
/// component counts other than 1 or 3, fractional sampling ratios, bad Huffman or quantisation
/// tables, tables used before they are defined, and bad progression parameters. Damage inside
/// entropy-coded data makes libjpeg warn, not fail, and the decoder turns warnings into errors.
enum JPEGStructure {
    private struct Component {
        let id: UInt8
        let horizontalSampling: Int
        let verticalSampling: Int
        let quantTable: Int
        var scanned = false
    }

    private struct HuffmanTable {
        let counts: [Int]  // codes of length 1...16
        let symbols: [UInt8]
    }

    struct Frame {
        let width: Int
        let height: Int
        let components: Int
    }

    static func validate(_ bytes: [UInt8]) throws -> Frame {
        var reader = SegmentReader(bytes: bytes)
        guard bytes.count >= 4, bytes[0] == 0xFF, bytes[1] == 0xD8 else {
            throw ImageIOError("JPEG data does not start with SOI")
        }
        reader.position = 2
        var frame: Frame?
        var components: [Component] = []
        var progressive = false
        var quantDefined = [Bool](repeating: false, count: 4)
        var dcTables = [HuffmanTable?](repeating: nil, count: 4)
        var acTables = [HuffmanTable?](repeating: nil, count: 4)
        var quantLatched = Set<Int>()
        var scanCount = 0
        var hasMultipleScans = false

        while true {
            let marker = try reader.nextMarker()
            switch marker {
            case 0xC0, 0xC1, 0xC2:
                guard frame == nil else { throw ImageIOError("JPEG has more than one frame header") }
                let payload = try reader.segment()
                guard payload.count >= 6, payload[0] == 8 else {
                    throw ImageIOError("JPEG sample precision is not 8 bits")
                }
                let height = Int(payload[1]) << 8 | Int(payload[2])
                let width = Int(payload[3]) << 8 | Int(payload[4])
                let count = Int(payload[5])
                try Image8.checkSize(width: width, height: height)
                guard count == 1 || count == 3 else {
                    throw ImageIOError("JPEG has \(count) colour components; only grayscale and 3-component colour are supported")
                }
                guard payload.count == 6 + 3 * count else { throw ImageIOError("JPEG frame header has a bad length") }
                for index in 0..<count {
                    let base = 6 + 3 * index
                    let component = Component(id: payload[base], horizontalSampling: Int(payload[base + 1] >> 4),
                                              verticalSampling: Int(payload[base + 1] & 15), quantTable: Int(payload[base + 2]))
                    guard (1...4).contains(component.horizontalSampling), (1...4).contains(component.verticalSampling),
                          component.quantTable < 4, !components.contains(where: { $0.id == component.id }) else {
                        throw ImageIOError("JPEG frame header has a bad component")
                    }
                    components.append(component)
                }
                let maxH = components.map(\.horizontalSampling).max() ?? 1
                let maxV = components.map(\.verticalSampling).max() ?? 1
                guard components.allSatisfy({ maxH % $0.horizontalSampling == 0 && maxV % $0.verticalSampling == 0 }) else {
                    throw ImageIOError("JPEG uses fractional chroma sampling ratios, which are not supported")
                }
                progressive = marker == 0xC2
                frame = Frame(width: width, height: height, components: count)
            case 0xC3, 0xC5...0xC7, 0xC8, 0xC9...0xCB, 0xCC, 0xCD...0xCF:
                throw ImageIOError("JPEG coding process (marker 0x\(String(marker, radix: 16))) is not supported: only baseline, extended and progressive Huffman")
            case 0xC4:
                var payload = try reader.segment()[...]
                while !payload.isEmpty {
                    guard payload.count >= 17 else { throw ImageIOError("JPEG Huffman table is truncated") }
                    let tableClass = Int(payload[payload.startIndex] >> 4)
                    let index = Int(payload[payload.startIndex] & 15)
                    let counts = payload.dropFirst().prefix(16).map(Int.init)
                    let total = counts.reduce(0, +)
                    guard tableClass <= 1, index < 4, total <= 256, payload.count >= 17 + total else {
                        throw ImageIOError("JPEG Huffman table is invalid")
                    }
                    let table = HuffmanTable(counts: counts, symbols: Array(payload.dropFirst(17).prefix(total)))
                    if tableClass == 0 { dcTables[index] = table } else { acTables[index] = table }
                    payload = payload.dropFirst(17 + total)
                }
            case 0xDB:
                var payload = try reader.segment()[...]
                while !payload.isEmpty {
                    let precision = Int(payload[payload.startIndex] >> 4)
                    let index = Int(payload[payload.startIndex] & 15)
                    guard precision <= 1, index < 4, payload.count >= 1 + 64 * (precision + 1) else {
                        throw ImageIOError("JPEG quantisation table is invalid")
                    }
                    quantDefined[index] = true
                    payload = payload.dropFirst(1 + 64 * (precision + 1))
                }
            case 0xDD:
                guard try reader.segment().count == 2 else { throw ImageIOError("JPEG restart interval has a bad length") }
            case 0xDA:
                guard frame != nil else { throw ImageIOError("JPEG scan comes before the frame header") }
                let payload = try reader.segment()
                let count = payload.isEmpty ? 0 : Int(payload[0])
                guard (1...4).contains(count), payload.count == 4 + 2 * count else {
                    throw ImageIOError("JPEG scan header has a bad length")
                }
                let spectralStart = Int(payload[1 + 2 * count])
                let spectralEnd = Int(payload[2 + 2 * count])
                let approximationHigh = Int(payload[3 + 2 * count] >> 4)
                let approximationLow = Int(payload[3 + 2 * count] & 15)
                var scanComponents: [Int] = []
                for index in 0..<count {
                    let id = payload[1 + 2 * index]
                    let tables = payload[2 + 2 * index]
                    guard let component = components.firstIndex(where: { $0.id == id }), !scanComponents.contains(component) else {
                        throw ImageIOError("JPEG scan names an unknown or repeated component")
                    }
                    scanComponents.append(component)
                    let dc = Int(tables >> 4)
                    let ac = Int(tables & 15)
                    let needsDC = spectralStart == 0 && (!progressive || approximationHigh == 0)
                    let needsAC = !progressive || spectralStart != 0
                    guard !needsDC || (dc < 4 && dcTables[dc].map { isUsable($0, isDC: true) } == true),
                          !needsAC || (ac < 4 && acTables[ac].map { isUsable($0, isDC: false) } == true) else {
                        throw ImageIOError("JPEG scan uses a missing or invalid Huffman table")
                    }
                    let quant = components[component].quantTable
                    if !quantLatched.contains(component) {
                        guard quantDefined[quant] else { throw ImageIOError("JPEG scan uses an undefined quantisation table") }
                        quantLatched.insert(component)
                    }
                    components[component].scanned = true
                }
                if count > 1 {
                    let blocks = scanComponents.map { components[$0].horizontalSampling * components[$0].verticalSampling }
                    guard blocks.reduce(0, +) <= 10 else { throw ImageIOError("JPEG scan has more than 10 blocks per MCU") }
                }
                if progressive {
                    let isDCBand = spectralStart == 0
                    let badBand = isDCBand ? spectralEnd != 0 : (spectralStart > spectralEnd || spectralEnd > 63 || count != 1)
                    let badApproximation = (approximationHigh != 0 && approximationLow != approximationHigh - 1) || approximationLow > 13
                    guard !badBand, !badApproximation else { throw ImageIOError("JPEG progressive scan parameters are invalid") }
                } else {
                    guard spectralStart == 0, spectralEnd == 63, approximationHigh == 0, approximationLow == 0 else {
                        throw ImageIOError("JPEG sequential scan parameters are invalid")
                    }
                }
                if scanCount == 0 {
                    hasMultipleScans = progressive || count < components.count
                } else if !hasMultipleScans {
                    throw ImageIOError("JPEG has a second scan after a complete single scan")
                }
                scanCount += 1
                try reader.skipEntropyCodedData()
            case 0xD9:
                guard let frame, scanCount > 0, components.allSatisfy(\.scanned) else {
                    throw ImageIOError("JPEG ends before every component has image data")
                }
                return frame
            case 0xD0...0xD7, 0x01:
                continue
            case 0xDC, 0xE0...0xEF, 0xFE:
                _ = try reader.segment()
            case 0xD8:
                throw ImageIOError("JPEG has a second SOI marker")
            default:
                throw ImageIOError("JPEG has an unknown marker 0x\(String(marker, radix: 16))")
            }
        }
    }

    /// libjpeg's `jpeg_make_d_derived_tbl` checks: canonical codes must fit their lengths without an
    /// all-ones code, and DC symbols (bit counts) are at most 15.
    private static func isUsable(_ table: HuffmanTable, isDC: Bool) -> Bool {
        if isDC, table.symbols.contains(where: { $0 > 15 }) { return false }
        guard let first = table.counts.firstIndex(where: { $0 > 0 }),
              let last = table.counts.lastIndex(where: { $0 > 0 }) else { return true }
        var code = 0
        for length in (first + 1)...(last + 1) {
            code += table.counts[length - 1]
            if code >= 1 << length { return false }
            code <<= 1
        }
        return true
    }
}

/// Walks a JPEG byte stream the way libjpeg's marker reader does.
private struct SegmentReader {
    let bytes: [UInt8]
    var position = 0

    /// The next marker code; fill bytes (0xFF) before it are skipped, anything else is refused.
    mutating func nextMarker() throws -> UInt8 {
        guard position < bytes.count else { throw ImageIOError("JPEG data is truncated (no EOI marker)") }
        guard bytes[position] == 0xFF else { throw ImageIOError("JPEG has stray bytes where a marker should be") }
        while position < bytes.count, bytes[position] == 0xFF { position += 1 }
        guard position < bytes.count else { throw ImageIOError("JPEG data is truncated (no EOI marker)") }
        defer { position += 1 }
        guard bytes[position] != 0 else { throw ImageIOError("JPEG has stray bytes where a marker should be") }
        return bytes[position]
    }

    /// The payload of a length-prefixed segment (without the two length bytes).
    mutating func segment() throws -> [UInt8] {
        guard position + 2 <= bytes.count else { throw ImageIOError("JPEG data is truncated inside a marker segment") }
        let length = Int(bytes[position]) << 8 | Int(bytes[position + 1])
        guard length >= 2 else { throw ImageIOError("JPEG marker segment has a bad length") }
        guard position + length <= bytes.count else { throw ImageIOError("JPEG data is truncated inside a marker segment") }
        defer { position += length }
        return Array(bytes[(position + 2)..<(position + length)])
    }

    /// Moves to the first marker after entropy-coded data; stuffed 0xFF 0x00 and restart markers belong to the data.
    mutating func skipEntropyCodedData() throws {
        while position < bytes.count {
            guard bytes[position] == 0xFF else {
                position += 1
                continue
            }
            var next = position + 1
            while next < bytes.count, bytes[next] == 0xFF { next += 1 }
            guard next < bytes.count else { break }
            if bytes[next] == 0 || (0xD0...0xD7).contains(bytes[next]) {
                position = next + 1
            } else {
                return
            }
        }
        throw ImageIOError("JPEG data is truncated inside a scan (no EOI marker)")
    }
}
