import Foundation
import Platform

// Streaming JSONL (one JSON value per line), the row format of every dataset distill reads:
// pretraining `{"text"}`, SFT `{"prompt","completion"}` and `{"messages":[...]}`, preference
// pairs `{"prompt","chosen","rejected"}`.
//
// Accepted: a UTF-8 byte order mark before the first line, LF or CRLF line ends, a last line
// without a newline, blank (whitespace-only) lines, which are skipped. Every other line must be
// one JSON object. Lines are read in 1 MiB chunks, so a file is never held in memory whole;
// a single line may be as long as `maxLineBytes`.

/// One object read from a JSONL file, with where it came from.
package struct JSONLRecord: Sendable {
    /// The file as the caller named it.
    package let file: String
    /// 1-based line number in the file.
    package let line: Int
    package let object: JSONValue.JSONObject
    /// 1-based columns of each member's key and value, in `object.entries` order.
    let columns: [(key: Int, value: Int)]

    /// The value of `key`, or nil when the line has no such field.
    package func value(_ key: String) -> JSONValue? { object[key] }

    /// The 1-based column where `key`'s value starts, or 1 when the field is absent.
    package func column(of key: String) -> Int {
        for (i, entry) in object.entries.enumerated() where entry.key == key { return columns[i].value }
        return 1
    }

    /// An error about this line, pointing at `key`'s value when given.
    package func error(_ reason: String, at key: String? = nil, hint: String = "") -> DataError {
        .malformed(file: file, line: line, column: key.map(column(of:)) ?? 1, reason: reason, hint: hint)
    }

    /// The field `key`, which must be present.
    package func require(_ key: String, hint: String = "") throws -> JSONValue {
        guard let v = object[key] else {
            let present = object.entries.map { "\"\($0.key)\"" }.joined(separator: ", ")
            throw error(
                "missing field \"\(key)\" (the object has \(present.isEmpty ? "no fields" : present))",
                hint: hint.isEmpty ? "every line needs a \"\(key)\" field" : hint)
        }
        return v
    }

    /// The string field `key`, which must be present and a string. `missingHint` replaces the
    /// default fix offered when the field is absent.
    package func string(_ key: String, missingHint: String = "") throws -> String {
        let v = try require(key, hint: missingHint)
        guard case .string(let s) = v else {
            throw error(
                "field \"\(key)\" is \(v.typeName), not a string", at: key, hint: "write the value as a JSON string")
        }
        return s
    }
}

/// Reads a JSONL file one record at a time.
///
/// ```swift
/// var reader = try JSONLReader(path: "train.jsonl")
/// while let record = try reader.next() { let text = try record.string("text") }
/// ```
package struct JSONLReader {
    package let path: String
    /// Lines longer than this are refused before they are buffered further (untrusted input).
    package let maxLineBytes: Int
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var start = 0
    private var atEOF = false
    private var lineNumber = 0
    private static let chunk = 1 << 20

    /// Opens `path`; throws `DataError.io` when it cannot be read.
    package init(path: String, maxLineBytes: Int = 256 << 20) throws {
        self.path = path
        self.maxLineBytes = maxLineBytes
        if let problem = notARegularFile(path) { throw DataError.io(path: path, reason: problem) }
        guard let h = FileHandle(forReadingAtPath: path) else {
            var isDir: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
            throw DataError.io(
                path: path,
                reason: exists ? (isDir.boolValue ? "is a directory, not a JSONL file" : "cannot open for reading")
                    : "no such file")
        }
        handle = h
    }

    /// Reads every record, calling `body` on each in file order.
    package static func forEach(path: String, _ body: (JSONLRecord) throws -> Void) throws {
        var reader = try JSONLReader(path: path)
        while let record = try reader.next() { try body(record) }
    }

    /// The next non-blank line's object, or nil at the end of the file.
    package mutating func next() throws -> JSONLRecord? {
        while let line = try nextLine() {
            if let record = try parse(line) { return record }
        }
        try? handle.close()
        return nil
    }

    /// The bytes of the next line without its line end, or nil at the end of the file.
    private mutating func nextLine() throws -> [UInt8]? {
        var searchFrom = start
        while true {
            if let nl = buffer[searchFrom...].firstIndex(of: 0x0A) {
                var end = nl
                if end > start, buffer[end - 1] == 0x0D { end -= 1 }
                let line = Array(buffer[start..<end])
                start = nl + 1
                lineNumber += 1
                return line
            }
            if atEOF {
                guard start < buffer.count else { return nil }
                var end = buffer.count
                if buffer[end - 1] == 0x0D { end -= 1 }
                let line = Array(buffer[start..<end])
                start = buffer.count
                lineNumber += 1
                return line
            }
            if buffer.count - start > maxLineBytes {
                throw DataError.malformed(
                    file: path, line: lineNumber + 1, column: 1,
                    reason: "line is longer than \(maxLineBytes >> 20) MiB",
                    hint: "JSONL needs one record per line; check that this is a JSONL file")
            }
            // Drop consumed bytes, then read more.
            if start > 0 {
                buffer.removeSubrange(0..<start)
                start = 0
            }
            searchFrom = buffer.count
            let data: Data?
            do {
                data = try handle.read(upToCount: Self.chunk)
            } catch {
                throw DataError.io(path: path, reason: "read failed (\(error.localizedDescription))")
            }
            if let data, !data.isEmpty {
                buffer.append(contentsOf: data)
            } else {
                atEOF = true
            }
        }
    }

    private func parse(_ raw: [UInt8]) throws -> JSONLRecord? {
        var bytes = raw
        if lineNumber == 1, bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        guard let first = bytes.firstIndex(where: { !($0 == 0x20 || $0 == 0x09 || $0 == 0x0D) }) else {
            return nil  // blank line
        }
        if let bad = UTF8Text.firstInvalidOffset(bytes) {
            throw DataError.malformed(
                file: path, line: lineNumber, column: UTF8Text.column(of: bad, in: bytes),
                reason: "invalid UTF-8", hint: "re-encode the file as UTF-8")
        }
        let value: JSONValue
        let members: [(key: Int, value: Int)]
        do {
            (value, members) = try JSONValue.parseRecordingMembers(bytes)
        } catch let error as JSONSyntaxError {
            throw DataError.malformed(
                file: path, line: lineNumber, column: error.column, reason: "invalid JSON: \(error.reason)",
                hint: "each line must be one complete JSON object")
        }
        guard case .object(let object) = value else {
            throw DataError.malformed(
                file: path, line: lineNumber, column: UTF8Text.column(of: first, in: bytes),
                reason: "line is \(value.typeName), not a JSON object",
                hint: "each line must be one JSON object such as {\"text\": \"...\"}")
        }
        let columns = members.map {
            (key: UTF8Text.column(of: $0.key, in: bytes), value: UTF8Text.column(of: $0.value, in: bytes))
        }
        var seen = Set<String>()
        for (i, entry) in object.entries.enumerated() where !seen.insert(entry.key).inserted {
            throw DataError.malformed(
                file: path, line: lineNumber, column: columns[i].key,
                reason: "duplicate key \"\(entry.key)\"", hint: "keep one value per key")
        }
        return JSONLRecord(file: path, line: lineNumber, object: object, columns: columns)
    }
}

/// UTF-8 checks that report positions.
package enum UTF8Text {
    /// The byte offset of the first ill-formed sequence, or nil when `bytes` is valid UTF-8.
    package static func firstInvalidOffset(_ bytes: [UInt8]) -> Int? {
        // Fast path: pure ASCII.
        if !bytes.contains(where: { $0 >= 0x80 }) { return nil }
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded): offset += encoded.count
            case .emptyInput: return nil
            case .error: return offset
            }
        }
    }

    /// The 1-based column (in Unicode scalars) of byte `offset` within one line.
    package static func column(of offset: Int, in line: [UInt8]) -> Int {
        var column = 1
        for b in line[..<min(offset, line.count)] where b & 0xC0 != 0x80 { column += 1 }
        return column
    }

    /// Line and column (1-based) of byte `offset` within a whole text.
    package static func position(of offset: Int, in text: [UInt8]) -> (line: Int, column: Int) {
        var line = 1
        var lineStart = 0
        for i in 0..<min(offset, text.count) where text[i] == 0x0A {
            line += 1
            lineStart = i + 1
        }
        return (line, column(of: offset - lineStart, in: Array(text[lineStart..<min(offset, text.count)])))
    }
}
