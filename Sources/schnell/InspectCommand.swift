import Foundation
import Schnell

/// `schnell inspect PATH`: prints what a weight file or folder holds; exits 2 for a damaged
/// or unrecognised file, 1 when tensors are missing or unexpected.
enum InspectCommand {
    static func run(_ arguments: [String]) -> Int32 {
        let listTensors = arguments.first == "--tensors"
        let rest = listTensors ? Array(arguments.dropFirst()) : arguments
        guard rest.count == 1, let path = rest.first, !path.hasPrefix("-") else {
            FileHandle.standardError.write(Data("schnell inspect: expected [--tensors] PATH\n".utf8))
            return 2
        }
        do {
            let report = try ModelInspector.inspect(path: path)
            print(format(report, indent: "", listTensors: listTensors), terminator: "")
            let incomplete = ([report] + report.components).contains { !$0.missing.isEmpty || !$0.unexpected.isEmpty }
            return incomplete ? 1 : 0
        } catch {
            FileHandle.standardError.write(Data("schnell inspect: \(error)\n".utf8))
            return 2
        }
    }

    static func format(_ report: ModelReport, indent: String, listTensors: Bool = false) -> String {
        var lines = ["\(indent)\(report.path)", "\(indent)  kind: \(report.kind.name)"]
        lines += report.details.map { "\(indent)  \($0.0): \($0.1)" }
        let dtypes = report.dtypeCounts.sorted { $0.key < $1.key }.map { "\($0.key) x\($0.value)" }.joined(separator: ", ")
        lines.append("\(indent)  parameters: \(formatCount(report.parameterCount)) (\(dtypes))")
        lines.append("\(indent)  size: \(String(format: "%.2f", Double(report.sizeBytes) / 1e9)) GB (\(report.sizeBytes) bytes as stored)")
        if listTensors {
            lines += report.tensors.map { "\(indent)    \($0.name) \($0.dtype) \($0.shape)" }
        }
        if !report.missing.isEmpty { lines.append("\(indent)  MISSING: \(listed(report.missing))") }
        if !report.unexpected.isEmpty { lines.append("\(indent)  UNEXPECTED: \(listed(report.unexpected))") }
        var text = lines.joined(separator: "\n") + "\n"
        for component in report.components { text += format(component, indent: indent + "  ", listTensors: listTensors) }
        return text
    }

    /// The first ten names, then how many more (a config that does not fit lists every tensor).
    static func listed(_ names: [String]) -> String {
        let shown = names.prefix(10).joined(separator: ", ")
        return names.count > 10 ? "\(shown) and \(names.count - 10) more" : shown
    }

    static func formatCount(_ count: Int) -> String {
        var digits = String(count)
        var grouped = ""
        while digits.count > 3 {
            grouped = "," + digits.suffix(3) + grouped
            digits.removeLast(3)
        }
        grouped = digits + grouped
        return count >= 1_000_000 ? "\(grouped) (\(String(format: "%.2f", Double(count) / 1e9)) B)" : grouped
    }
}
