// Where each key and value of a JSON document was written, by JSON path, so that validation
// (of recipes, say) can point at the offending text.

/// Where a value in a (possibly overridden) document came from.
package enum ValueOrigin: Sendable, Equatable, CustomStringConvertible {
    /// 1-based line and column (in characters) in the file.
    case file(line: Int, column: Int)
    /// A command-line override (a recipe's `--set` argument), quoted as the user wrote it.
    case override(String)

    package var description: String {
        switch self {
        case .file(let line, let column): return "\(line):\(column)"
        case .override(let argument): return "--set \(argument)"
        }
    }
}

/// JSON paths in the form issues print them: `stages[0].training.lr`; the root is "".
package enum JSONPath {
    package static func child(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    package static func index(_ path: String, _ i: Int) -> String { "\(path)[\(i)]" }

    /// The enclosing path, or nil at the root.
    package static func parent(_ path: String) -> String? {
        if path.isEmpty { return nil }
        if path.hasSuffix("]"), let open = path.lastIndex(of: "[") { return String(path[..<open]) }
        if let dot = path.lastIndex(of: ".") { return String(path[..<dot]) }
        return ""
    }
}

/// The origin of every key and value of a document, by JSON path.
package struct SourceMap: Sendable {
    package var values: [String: ValueOrigin] = [:]
    package var keys: [String: ValueOrigin] = [:]

    package init() {}

    /// The origin of the value at `path`, or of its nearest ancestor that has one (values made by
    /// an override have an origin only at the overridden path).
    package func origin(ofValue path: String) -> ValueOrigin? {
        var p: String? = path
        while let current = p {
            if let o = values[current] { return o }
            p = JSONPath.parent(current)
        }
        return nil
    }

    /// The origin of the key naming `path` (where an unknown key is written).
    package func origin(ofKey path: String) -> ValueOrigin? { keys[path] ?? origin(ofValue: path) }

    /// Forgets everything at and below `path` and records `origin` for it.
    package mutating func replace(_ path: String, with origin: ValueOrigin) {
        func isUnder(_ p: String) -> Bool {
            p == path || p.hasPrefix(path + ".") || p.hasPrefix(path + "[")
        }
        values = values.filter { !isUnder($0.key) }
        keys = keys.filter { !isUnder($0.key) || $0.key == path }
        values[path] = origin
    }
}

extension JSONValue {
    /// Parses a complete JSON document and records where each key and value starts. Stricter
    /// than `parse`, as suits hand-written configuration: a repeated key is an error and nesting
    /// is limited to 64 levels.
    package static func parseWithSources(_ text: String) throws(JSONSyntaxError) -> (JSONValue, SourceMap) {
        let bytes = Array(text.utf8)
        var recorder = PathRecorder()
        let value = try JSONParser.parseDocument(bytes, recorder: &recorder, maxDepth: 64, rejectsDuplicateKeys: true)
        let lines = LineTable(bytes)
        var map = SourceMap()
        map.values = recorder.values.mapValues(lines.origin)
        map.keys = recorder.keys.mapValues(lines.origin)
        return (value, map)
    }
}

/// Records the byte offset of every key and value by JSON path.
private struct PathRecorder: JSONParseRecorder {
    var values: [String: Int] = [:]
    var keys: [String: Int] = [:]
    var root: String { "" }

    mutating func member(_ key: String, at offset: Int, in object: String, depth: Int) -> String {
        let path = JSONPath.child(object, key)
        keys[path] = offset
        return path
    }

    func element(_ index: Int, in array: String) -> String { JSONPath.index(array, index) }

    mutating func value(at offset: Int, _ location: String) { values[location] = offset }
}

/// Turns byte offsets into line:column origins with one pass over the text.
private struct LineTable {
    let bytes: [UInt8]
    /// Byte offsets at which each line starts.
    let lineStarts: [Int]

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        var starts = [0]
        for (i, b) in bytes.enumerated() where b == UInt8(ascii: "\n") { starts.append(i + 1) }
        lineStarts = starts
    }

    func origin(_ offset: Int) -> ValueOrigin {
        // The last line start <= offset.
        var lo = 0
        var hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        let column = bytes[lineStarts[lo]..<min(offset, bytes.count)].reduce(1) { $1 & 0xC0 == 0x80 ? $0 : $0 + 1 }
        return .file(line: lo + 1, column: column)
    }
}
