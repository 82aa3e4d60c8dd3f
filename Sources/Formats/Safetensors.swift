// Safetensors: the tensor container Hugging Face uses for model weights.
//
// Layout (https://github.com/huggingface/safetensors, "Format"):
//   8 bytes   N, the header length, unsigned little-endian
//   N bytes   a UTF-8 JSON object: for each tensor name {"dtype", "shape", "data_offsets":
//             [begin, end]} (offsets relative to the byte buffer), plus an optional
//             "__metadata__" object of string to string
//   rest      the byte buffer; tensors are little-endian, row-major, and exactly tile it
//             (no gaps, no overlaps, nothing after the last tensor)
//
// Untrusted files (docs/architecture.md, "Files"). `SafetensorsFile(path:)` reads the 8-byte
// length, checks it against `maxHeaderBytes` and the file size, reads and parses the header
// and checks every entry (known dtype, non-negative dims, element and byte counts computed
// with overflow checks, byte length = elements x dtype size, offsets inside the buffer,
// tiling exact, names unique) before a single tensor byte is allocated. The only allocation
// before that is the header itself, bounded by the file size and `maxHeaderBytes`.
// Tensor bytes are read with `pread` straight into the destination tensor (F32) or through
// a small conversion buffer (F16, BF16, F64), never as a whole-file copy.
//
// Writing produces what the Python and Rust libraries produce: a compact header padded
// with spaces to a multiple of 8 bytes, tensors in the order given, F32 (or F16 on
// request). Files are written to a temporary name in the same directory, synced and renamed.

import Core
import Foundation
import JSON
import Platform

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// MARK: - Types

/// Element types of the safetensors format. distill converts F32, F16, BF16 and F64 to
/// Float32 when reading; the others are recognised (so their layout is validated) but
/// refused when read as a tensor.
package enum SafetensorsDType: String, Sendable, CaseIterable {
    case bool = "BOOL"
    case u8 = "U8", i8 = "I8", f8e5m2 = "F8_E5M2", f8e4m3 = "F8_E4M3"
    case i16 = "I16", u16 = "U16", f16 = "F16", bf16 = "BF16"
    case i32 = "I32", u32 = "U32", f32 = "F32"
    case f64 = "F64", i64 = "I64", u64 = "U64"

    /// Bytes per element.
    package var size: Int {
        switch self {
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .f64, .i64, .u64: return 8
        }
    }

    /// Whether `SafetensorsFile.read` converts this type to Float32.
    package var isReadable: Bool { [.f32, .f16, .bf16, .f64].contains(self) }
}

/// One tensor described by a safetensors header.
package struct SafetensorsEntry: Sendable, Equatable {
    package var name: String
    package var dtype: SafetensorsDType
    package var shape: [Int]
    /// Byte range inside the data buffer (which starts after the header).
    package var byteRange: Range<Int>

    package var elementCount: Int { shape.reduce(1, *) }
}

/// A refused or unreadable safetensors file, naming the file, the tensor and a hint.
package struct SafetensorsError: Error, CustomStringConvertible, Sendable {
    package enum Kind: Sendable, Hashable {
        /// open, read, write, sync or rename failed.
        case io
        /// Fewer than 8 bytes: no header length.
        case truncated
        /// The declared header length exceeds `maxHeaderBytes`.
        case headerTooLarge
        /// The declared header length runs past the end of the file.
        case headerBeyondFile
        /// The header is not a JSON object of the expected structure.
        case malformedHeader
        case unknownDType
        case negativeDimension
        /// The element or byte count overflows Int.
        case sizeOverflow
        /// data_offsets span a different number of bytes than shape x dtype needs.
        case sizeMismatch
        /// data_offsets reach outside the data buffer, or begin > end.
        case offsetsOutOfBounds
        /// Two tensors share bytes.
        case overlap
        /// Bytes between tensors, before the first or after the last belong to none.
        case gap
        case duplicateName
        /// The file has no tensor of that name.
        case tensorNotFound
        /// A valid dtype that distill does not convert to Float32 (integers, FP8, ...).
        case unsupportedDType
        /// A write request that cannot be stored (empty or reserved name, duplicate, ...).
        case invalidArgument
    }

    package var kind: Kind
    package var file: String
    package var tensor: String?
    package var hint: String

    package init(_ kind: Kind, file: String, tensor: String? = nil, hint: String) {
        self.kind = kind
        self.file = file
        self.tensor = tensor
        self.hint = hint
    }

    package var description: String {
        var text = file.isEmpty ? "safetensors" : file
        if let tensor { text += ", tensor '\(tensor)'" }
        return text + ": " + hint
    }
}

// MARK: - Reading

/// An open safetensors file whose header has been validated. Tensors are read on demand.
/// Not `Sendable`: it owns a file descriptor; use it from one task at a time.
package final class SafetensorsFile {
    /// The Rust reference implementation's limit; real headers are a few hundred KB.
    package static let maxHeaderBytes = 100_000_000

    package let path: String
    /// Entries in header order.
    package let entries: [SafetensorsEntry]
    /// The "__metadata__" map (empty when absent).
    package let metadata: [String: String]
    /// Absolute offset of the data buffer (8 + header length).
    package let dataOffset: Int
    private let fd: Int32
    private let indexByName: [String: Int]

    package init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw SafetensorsError(.io, file: path, hint: "cannot open (\(String(cString: strerror(errno))))")
        }
        do {
            var info = stat()
            guard fstat(fd, &info) == 0 else {
                throw SafetensorsError(.io, file: path, hint: "cannot stat (\(String(cString: strerror(errno))))")
            }
            guard (info.st_mode & S_IFMT) == S_IFREG else {
                throw SafetensorsError(.io, file: path, hint: "not a regular file")
            }
            let fileSize = Int(info.st_size)
            guard fileSize >= 8 else {
                throw SafetensorsError(
                    .truncated, file: path, hint: "file has \(fileSize) bytes, fewer than the 8-byte header length")
            }
            var lengthBytes = [UInt8](repeating: 0, count: 8)
            try Self.preadFully(fd, into: &lengthBytes, at: 0, path: path)
            let declared = lengthBytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            guard declared <= UInt64(Self.maxHeaderBytes) else {
                throw SafetensorsError(
                    .headerTooLarge, file: path,
                    hint:
                        "header length \(declared) exceeds the \(Self.maxHeaderBytes)-byte limit; not a safetensors file?"
                )
            }
            let headerLength = Int(declared)
            guard headerLength <= fileSize - 8 else {
                throw SafetensorsError(
                    .headerBeyondFile, file: path,
                    hint:
                        "header length \(headerLength) runs past the end of the \(fileSize)-byte file (truncated download?)"
                )
            }
            var header = [UInt8](repeating: 0, count: headerLength)
            try Self.preadFully(fd, into: &header, at: 8, path: path)
            let parsed = try Self.parseHeader(header, bufferSize: fileSize - 8 - headerLength, path: path)
            self.fd = fd
            self.path = path
            self.entries = parsed.entries
            self.metadata = parsed.metadata
            self.dataOffset = 8 + headerLength
            self.indexByName = Dictionary(uniqueKeysWithValues: parsed.entries.enumerated().map { ($1.name, $0) })
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    package func entry(_ name: String) -> SafetensorsEntry? { indexByName[name].map { entries[$0] } }

    /// Reads one tensor as Float32, into `arena` when given (a model's weights), else the pool.
    package func read(_ name: String, in arena: HugePageArena? = nil) throws -> Tensor {
        guard let entry = entry(name) else {
            throw SafetensorsError(
                .tensorNotFound, file: path, tensor: name, hint: "no tensor of that name in the file")
        }
        return try read(entry, in: arena)
    }

    /// Reads every tensor as Float32, by name.
    package func readAll() throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for entry in entries { out[entry.name] = try read(entry) }
        return out
    }

    private func read(_ entry: SafetensorsEntry, in arena: HugePageArena? = nil) throws -> Tensor {
        guard entry.dtype.isReadable else {
            throw SafetensorsError(
                .unsupportedDType, file: path, tensor: entry.name,
                hint: "dtype \(entry.dtype.rawValue) is not converted to Float32 (distill reads F32, F16, BF16, F64)")
        }
        let tensor = Tensor.empty(entry.shape, in: arena)
        let count = entry.elementCount
        let start = dataOffset + entry.byteRange.lowerBound
        switch entry.dtype {
        case .f32:
            try Self.preadFully(
                fd, into: UnsafeMutableRawBufferPointer(start: tensor.data, count: count * 4), at: start, path: path)
            #if _endian(big)
                for i in 0..<count {
                    tensor.data[i] = Float(bitPattern: UInt32(littleEndian: tensor.data[i].bitPattern))
                }
            #endif
        case .f16, .bf16, .f64:
            let size = entry.dtype.size
            let chunk = 1 << 16  // elements per pread
            var buffer = [UInt8](repeating: 0, count: min(count, chunk) * size)
            var done = 0
            while done < count {
                let n = min(chunk, count - done)
                try buffer.withUnsafeMutableBytes { raw in
                    try Self.preadFully(
                        fd, into: UnsafeMutableRawBufferPointer(rebasing: raw[..<(n * size)]), at: start + done * size,
                        path: path)
                    let out = tensor.data + done
                    switch entry.dtype {
                    case .f16:
                        for i in 0..<n {
                            out[i] = HalfPrecision.float(
                                fromBits:
                                    UInt16(littleEndian: raw.load(fromByteOffset: 2 * i, as: UInt16.self)))
                        }
                    case .bf16:
                        for i in 0..<n {
                            out[i] = Float(
                                bitPattern: UInt32(
                                    UInt16(littleEndian: raw.load(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
                        }
                    default:
                        for i in 0..<n {
                            out[i] = Float(
                                Double(
                                    bitPattern: UInt64(littleEndian: raw.load(fromByteOffset: 8 * i, as: UInt64.self))))
                        }
                    }
                }
                done += n
            }
        default:
            preconditionFailure("isReadable covers exactly the converted dtypes")
        }
        tensor.name = entry.name
        return tensor
    }

    // MARK: Header validation

    /// Parses and validates a header. `bufferSize` is the number of bytes after it.
    package static func parseHeader(_ header: [UInt8], bufferSize: Int, path: String) throws -> (
        entries: [SafetensorsEntry], metadata: [String: String]
    ) {
        func malformed(_ hint: String, tensor: String? = nil) -> SafetensorsError {
            SafetensorsError(.malformedHeader, file: path, tensor: tensor, hint: hint)
        }
        guard header.first == UInt8(ascii: "{") else {
            throw malformed("the header does not start with '{' (not a safetensors file?)")
        }
        guard String(bytes: header, encoding: .utf8) != nil else { throw malformed("the header is not valid UTF-8") }
        let json: JSONValue
        do {
            json = try JSONValue.parse(header)
        } catch {
            throw malformed("the header is not valid JSON: \(error)")
        }
        guard case .object(let root) = json else { throw malformed("the header is \(json.typeName), not an object") }

        var entries: [SafetensorsEntry] = []
        var metadata: [String: String] = [:]
        var seen = Set<String>()
        for (name, value) in root.entries {
            guard seen.insert(name).inserted else {
                throw SafetensorsError(
                    .duplicateName, file: path, tensor: name, hint: "the header lists this name twice")
            }
            if name == "__metadata__" {
                guard case .object(let map) = value else {
                    throw malformed("__metadata__ is \(value.typeName), expected an object of strings")
                }
                for (key, item) in map.entries {
                    guard case .string(let text) = item else {
                        throw malformed("__metadata__[\"\(key)\"] is \(item.typeName), expected a string")
                    }
                    guard metadata.updateValue(text, forKey: key) == nil else {
                        throw malformed("__metadata__ lists the key \"\(key)\" twice")
                    }
                }
                continue
            }
            entries.append(try parseEntry(name: name, value, bufferSize: bufferSize, path: path))
        }

        // The tensors must tile the buffer exactly: sorted by offsets, each begins where the
        // previous one ended, the first at 0 and the last at the buffer's end.
        let sorted = entries.sorted {
            ($0.byteRange.lowerBound, $0.byteRange.upperBound) < ($1.byteRange.lowerBound, $1.byteRange.upperBound)
        }
        var position = 0
        var previous: String?
        for entry in sorted {
            if entry.byteRange.lowerBound < position {
                throw SafetensorsError(
                    .overlap, file: path, tensor: entry.name,
                    hint:
                        "bytes \(entry.byteRange.lowerBound)..<\(entry.byteRange.upperBound) overlap '\(previous ?? "")' (which ends at \(position))"
                )
            }
            if entry.byteRange.lowerBound > position {
                let after = previous.map { "after '\($0)'" } ?? "before the first tensor"
                throw SafetensorsError(
                    .gap, file: path, tensor: entry.name,
                    hint: "bytes \(position)..<\(entry.byteRange.lowerBound) \(after) belong to no tensor")
            }
            position = entry.byteRange.upperBound
            previous = entry.name
        }
        if position != bufferSize {
            throw SafetensorsError(
                .gap, file: path, tensor: previous,
                hint:
                    "the tensors end at byte \(position) of a \(bufferSize)-byte data buffer; \(bufferSize - position) trailing bytes belong to no tensor"
            )
        }
        return (entries, metadata)
    }

    private static func parseEntry(name: String, _ value: JSONValue, bufferSize: Int, path: String) throws
        -> SafetensorsEntry
    {
        func fail(_ kind: SafetensorsError.Kind, _ hint: String) -> SafetensorsError {
            SafetensorsError(kind, file: path, tensor: name, hint: hint)
        }
        guard !name.isEmpty else { throw fail(.malformedHeader, "empty tensor name") }
        guard case .object(let fields) = value else {
            throw fail(.malformedHeader, "entry is \(value.typeName), expected {dtype, shape, data_offsets}")
        }
        guard case .string(let dtypeName)? = fields["dtype"] else {
            throw fail(.malformedHeader, "missing or non-string \"dtype\"")
        }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            let known = SafetensorsDType.allCases.map(\.rawValue).joined(separator: ", ")
            throw fail(.unknownDType, "unknown dtype \"\(dtypeName)\" (known: \(known))")
        }
        guard case .array(let dims)? = fields["shape"] else {
            throw fail(.malformedHeader, "missing or non-array \"shape\"")
        }
        var shape: [Int] = []
        for dim in dims {
            switch dim {
            case .int(let d) where d >= 0: shape.append(d)
            case .int(let d): throw fail(.negativeDimension, "shape has the negative dimension \(d)")
            case .double(let d) where d == d.rounded() && d > 0:
                throw fail(.sizeOverflow, "shape dimension \(d) does not fit in a 64-bit integer")
            case .double(let d) where d < 0: throw fail(.negativeDimension, "shape has the negative dimension \(d)")
            default: throw fail(.malformedHeader, "shape entries must be integers, found \(dim.typeName) (\(dim))")
            }
        }
        guard case .array(let offsets)? = fields["data_offsets"], offsets.count == 2 else {
            throw fail(.malformedHeader, "missing \"data_offsets\" or not a [begin, end] pair")
        }
        var bounds: [Int] = []
        for offset in offsets {
            switch offset {
            case .int(let o) where o >= 0: bounds.append(o)
            case .int, .double:
                throw fail(.offsetsOutOfBounds, "data_offsets \(offsets.map { "\($0)" }) are outside 0..<\(bufferSize)")
            default: throw fail(.malformedHeader, "data_offsets must be integers")
            }
        }
        let (begin, end) = (bounds[0], bounds[1])
        guard begin <= end, end <= bufferSize else {
            throw fail(
                .offsetsOutOfBounds,
                "data_offsets [\(begin), \(end)] are outside the \(bufferSize)-byte data buffer (or begin > end)")
        }
        var elements = 1
        for d in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow else { throw fail(.sizeOverflow, "shape \(shape) has more elements than fit in Int") }
            elements = product
        }
        let (bytes, overflow) = elements.multipliedReportingOverflow(by: dtype.size)
        guard !overflow else {
            throw fail(.sizeOverflow, "shape \(shape) of \(dtype.rawValue) needs more bytes than fit in Int")
        }
        guard bytes == end - begin else {
            throw fail(
                .sizeMismatch,
                "shape \(shape) of \(dtype.rawValue) needs \(bytes) bytes but data_offsets [\(begin), \(end)] span \(end - begin)"
            )
        }
        return SafetensorsEntry(name: name, dtype: dtype, shape: shape, byteRange: begin..<end)
    }

    // MARK: I/O

    private static func preadFully(_ fd: Int32, into bytes: inout [UInt8], at offset: Int, path: String) throws {
        try bytes.withUnsafeMutableBytes { try preadFully(fd, into: $0, at: offset, path: path) }
    }

    private static func preadFully(
        _ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String
    )
        throws
    {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let reason =
                    n == 0
                    ? "unexpected end of file (the file shrank while reading?)" : String(cString: strerror(errno))
                throw SafetensorsError(
                    .io, file: path, hint: "read of \(buffer.count) bytes at \(offset) failed: \(reason)")
            }
            done += n
        }
    }
}

// MARK: - Writing

package enum Safetensors {
    /// Reads a whole file: every tensor as Float32, and the metadata.
    package static func read(path: String) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        let file = try SafetensorsFile(path: path)
        return (try file.readAll(), file.metadata)
    }

    /// Writes `tensors` in the order given, stored as `dtype` (`.f32` or `.f16`; F16 rounds to
    /// nearest even and overflows to infinity). The file appears atomically: it is written
    /// under a temporary name in the same directory, synced, then renamed over `path`.
    package static func write(
        _ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], dtype: SafetensorsDType = .f32,
        to path: String
    ) throws {
        guard dtype == .f32 || dtype == .f16 else {
            throw SafetensorsError(
                .invalidArgument, file: path, hint: "distill writes F32 or F16, not \(dtype.rawValue)")
        }
        var names = Set<String>()
        var header = "{"
        if !metadata.isEmpty {
            header += jsonString("__metadata__") + ":{"
            header += metadata.sorted { $0.key < $1.key }.map { jsonString($0.key) + ":" + jsonString($0.value) }
                .joined(separator: ",")
            header += "},"
        }
        var offset = 0
        for (name, tensor) in tensors {
            guard !name.isEmpty, name != "__metadata__" else {
                throw SafetensorsError(
                    .invalidArgument, file: path, tensor: name, hint: "empty or reserved tensor name")
            }
            guard names.insert(name).inserted else {
                throw SafetensorsError(.duplicateName, file: path, tensor: name, hint: "the name is given twice")
            }
            let bytes = tensor.count * dtype.size
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            header += jsonString(name) + ":{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(shape)],"
            header += "\"data_offsets\":[\(offset),\(offset + bytes)]},"
            offset += bytes
        }
        if header.hasSuffix(",") { header.removeLast() }
        header += "}"
        var headerBytes = Array(header.utf8)
        // Pad with spaces so the data buffer starts 8-byte aligned, as the reference writer does.
        while headerBytes.count % 8 != 0 { headerBytes.append(UInt8(ascii: " ")) }

        try writeAtomically(to: path) { sink in
            var length = UInt64(headerBytes.count).littleEndian
            try withUnsafeBytes(of: &length) { try sink(UnsafeRawBufferPointer($0)) }
            try headerBytes.withUnsafeBytes { try sink($0) }
            var scratch = [UInt8]()
            for (_, tensor) in tensors {
                switch dtype {
                case .f32:
                    #if _endian(big)
                        scratch = (0..<tensor.count).flatMap { i in
                            withUnsafeBytes(of: tensor.data[i].bitPattern.littleEndian) { Array($0) }
                        }
                        try scratch.withUnsafeBytes { try sink($0) }
                    #else
                        try sink(UnsafeRawBufferPointer(start: tensor.data, count: tensor.count * 4))
                    #endif
                default:
                    let chunk = 1 << 16
                    var done = 0
                    while done < tensor.count {
                        let n = min(chunk, tensor.count - done)
                        scratch.removeAll(keepingCapacity: true)
                        for i in done..<(done + n) {
                            let h = HalfPrecision.bits(from: tensor.data[i])
                            scratch.append(UInt8(truncatingIfNeeded: h))
                            scratch.append(UInt8(truncatingIfNeeded: h >> 8))
                        }
                        try scratch.withUnsafeBytes { try sink($0) }
                        done += n
                    }
                }
            }
        }
    }
}

extension Safetensors {
    /// A JSON string literal (quotes and escapes) for `text`.
    static func jsonString(_ text: String) -> String {
        var out = ""
        JSONValue.writeString(text, to: &out, shortControlEscapes: false)
        return out
    }

    /// Writes a file through `body` (which receives a sink for bytes) under a temporary name in
    /// the same directory, fsyncs it, renames it to `path` and fsyncs the directory. On any
    /// failure the temporary file is removed and `path` is untouched.
    package static func writeAtomically(
        to path: String, _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        do {
            try Platform.writeAtomically(to: path, body)
        } catch let error as UserError {
            throw SafetensorsError(.io, file: path, hint: error.problem)
        }
    }
}

// MARK: - Half precision

/// IEEE binary16 conversions, written out so they do not depend on `Float16` being
/// available on the platform.
package enum HalfPrecision {
    /// IEEE binary16 bits to Float32 (exact: every half is a float).
    @inline(__always)
    package static func float(fromBits h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10) & 0x1F
        let mantissa = UInt32(h & 0x3FF)
        if exponent == 0 {
            // Zero or subnormal: mantissa x 2^-24.
            let magnitude = Float(mantissa) * 0x1p-24
            return sign != 0 ? -magnitude : magnitude
        }
        if exponent == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | mantissa << 13) }
        return Float(bitPattern: sign | (exponent + 112) << 23 | mantissa << 13)
    }

    /// Float32 to IEEE binary16 bits, rounding to nearest even; too large becomes infinity,
    /// NaN stays NaN (quiet, payload truncated).
    package static func bits(from x: Float) -> UInt16 {
        let bits = x.bitPattern
        let sign = UInt16(truncatingIfNeeded: (bits >> 16) & 0x8000)
        let exponent = Int((bits >> 23) & 0xFF)
        var mantissa = bits & 0x7F_FFFF
        if exponent == 0xFF {
            return sign | 0x7C00 | (mantissa != 0 ? 0x200 | UInt16(truncatingIfNeeded: mantissa >> 13) : 0)
        }
        let e = exponent - 127 + 15
        if e >= 31 { return sign | 0x7C00 }
        if e <= 0 {
            // Subnormal half (or zero): below half the smallest subnormal rounds to zero.
            if e < -10 { return sign }
            mantissa |= 0x80_0000
            let shift = UInt32(14 - e)
            var half = mantissa >> shift
            let remainder = mantissa & ((1 << shift) - 1)
            let halfway = UInt32(1) << (shift - 1)
            if remainder > halfway || (remainder == halfway && half & 1 == 1) { half += 1 }
            return sign | UInt16(half)
        }
        var half = UInt32(e) << 10 | mantissa >> 13
        let remainder = mantissa & 0x1FFF
        if remainder > 0x1000 || (remainder == 0x1000 && half & 1 == 1) { half += 1 }  // may carry into infinity
        return sign | UInt16(half)
    }
}

extension SafetensorsError: UserFacingError {
    package var errorKind: ErrorKind { kind == .io ? .io : .badData }
}
