// GGUF: the single-file container llama.cpp (ggml) loads models and LoRA adapters from.
//
// Layout, version 3, little-endian (ggml's docs/gguf.md and gguf-py):
//   u32 magic "GGUF" (bytes 47 47 55 46)   u32 version (3; 2 has the same layout)
//   u64 tensor_count                        u64 metadata_kv_count
//   metadata_kv_count x { string key, u32 value_type, value }
//   tensor_count x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
//   padding to `general.alignment` (a u32 power of two, default 32)
//   tensor data: each tensor at data_start + offset, offsets multiples of the alignment
// A string is u64 byte length + UTF-8 bytes (no terminator). An array value is u32 element
// type + u64 count + the elements (arrays may nest). ne[0] is the fastest-varying
// dimension: a row-major [out, in] matrix is stored with ne = [in, out].
//
// Untrusted files (docs/architecture.md, "Files"). `GGUFFile(path:)` reads the header through
// a small pread window and checks, before allocating anything in proportion to a count:
// magic and version; tensor and key counts against the bytes left (every entry needs a
// minimum number of bytes); every string and array length against the bytes left; array
// nesting depth; value and tensor type ids; bool bytes; UTF-8; duplicate keys and names;
// tensor name length (ggml's 63 bytes), 1...4 dims, element and byte counts with overflow
// checks (byte size = elements / block size x type size, rows a whole number of blocks);
// the alignment; and offsets that are aligned, inside the file and non-overlapping. Values
// are stored compactly (typed arrays), so memory stays within a small multiple of the
// header's size. Tensor bytes are read with `pread`: F32 straight into the destination
// tensor, other types in chunks of whole blocks that GGUFQuants.swift decodes, so memory
// stays bounded; a type without a decoder is refused before anything is allocated.
//
// Writing produces what gguf-py's GGUFWriter produces: metadata in the order given, tensor
// infos, padding, each tensor padded to the alignment; F32 or F16 tensors. Files are written
// to a temporary name in the same directory, synced and renamed.

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

/// Metadata value types (gguf `gguf_type`).
package enum GGUFValueType: UInt32, Sendable, CaseIterable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Bytes of one value, nil for strings and arrays.
    package var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64: return 8
        case .string, .array: return nil
        }
    }

    /// The fewest bytes a value of this type occupies in a file.
    var minimumSize: Int { fixedSize ?? (self == .string ? 8 : 12) }
}

/// A metadata value.
package enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
    case array(GGUFArray)

    package var type: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }

    /// Any integer value as Int (nil for other types or a UInt64 above Int.max).
    package var int: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(v)
        default: return nil
        }
    }

    package var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }
}

/// A metadata array: its elements, all of one type, stored compactly. Nested arrays are
/// arrays of `GGUFArray`.
package indirect enum GGUFArray: Sendable, Equatable {
    case uint8([UInt8]), int8([Int8]), uint16([UInt16]), int16([Int16]), uint32([UInt32]), int32([Int32])
    case uint64([UInt64]), int64([Int64]), float32([Float]), float64([Double]), bool([Bool]), string([String])
    case array([GGUFArray])

    package var elementType: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }

    package var count: Int {
        switch self {
        case .uint8(let a): return a.count
        case .int8(let a): return a.count
        case .uint16(let a): return a.count
        case .int16(let a): return a.count
        case .uint32(let a): return a.count
        case .int32(let a): return a.count
        case .uint64(let a): return a.count
        case .int64(let a): return a.count
        case .float32(let a): return a.count
        case .float64(let a): return a.count
        case .bool(let a): return a.count
        case .string(let a): return a.count
        case .array(let a): return a.count
        }
    }
}

/// Tensor element types (ggml `ggml_type`): id, block size in elements, bytes per block.
/// distill converts F32, F16, BF16, F64 and the Q4_0 ... Q8_0 and Q2_K ... Q6_K block types to
/// Float32 (`GGUFQuants.supportedTypes`); the others are recognised, so their sizes are
/// validated, but refused when read as a tensor.
package enum GGUFTensorType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_XXS = 16, iq2_XS = 17, iq3_XXS = 18, iq1_S = 19, iq4_NL = 20, iq3_S = 21, iq2_S = 22, iq4_XS = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_M = 29, bf16 = 30, tq1_0 = 34, tq2_0 = 35
    case mxfp4 = 39

    /// (elements per block, bytes per block), as ggml's type traits (gguf-py GGML_QUANT_SIZES).
    package var blockLayout: (elements: Int, bytes: Int) {
        let k = 256
        switch self {
        case .f32: return (1, 4)
        case .f16, .bf16: return (1, 2)
        case .q4_0: return (32, 2 + 16)
        case .q4_1: return (32, 2 + 2 + 16)
        case .q5_0: return (32, 2 + 4 + 16)
        case .q5_1: return (32, 2 + 2 + 4 + 16)
        case .q8_0: return (32, 2 + 32)
        case .q8_1: return (32, 4 + 4 + 32)
        case .q2_K: return (k, 2 + 2 + k / 16 + k / 4)
        case .q3_K: return (k, 2 + k / 4 + k / 8 + 12)
        case .q4_K: return (k, 2 + 2 + k / 2 + 12)
        case .q5_K: return (k, 2 + 2 + k / 2 + k / 8 + 12)
        case .q6_K: return (k, 2 + k / 2 + k / 4 + k / 16)
        case .q8_K: return (k, 4 + k + k / 8)
        case .iq2_XXS: return (k, 2 + k / 4)
        case .iq2_XS: return (k, 2 + k / 4 + k / 32)
        case .iq3_XXS: return (k, 2 + k / 4 + k / 8)
        case .iq1_S: return (k, 2 + k / 8 + k / 16)
        case .iq4_NL: return (32, 2 + 16)
        case .iq3_S: return (k, 2 + k / 4 + k / 8 + k / 32 + 4)
        case .iq2_S: return (k, 2 + k / 4 + k / 16)
        case .iq4_XS: return (k, 2 + 2 + k / 2 + k / 64)
        case .i8: return (1, 1)
        case .i16: return (1, 2)
        case .i32: return (1, 4)
        case .i64, .f64: return (1, 8)
        case .iq1_M: return (k, k / 8 + k / 16 + k / 32)
        case .tq1_0: return (k, 2 + 4 * 13)
        case .tq2_0: return (k, 2 + 64)
        case .mxfp4: return (32, 1 + 16)
        }
    }

    /// Whether `GGUFFile.read` converts this type to Float32.
    package var isReadable: Bool { GGUFQuants.supports(self) }

    package var name: String { String(describing: self).uppercased() }
}

extension WeightFormat {
    /// The engine format a GGUF tensor type is stored in byte for byte, if any.
    package init?(ggml type: GGUFTensorType) {
        switch type {
        case .q8_0: self = .q8_0
        case .q4_0: self = .q4_0
        case .q4_1: self = .q4_1
        default: return nil
        }
    }

    /// The GGUF tensor type of this format (F32 for f32).
    package var ggml: GGUFTensorType {
        switch self {
        case .f32: .f32
        case .bf16: .bf16
        case .q8_0: .q8_0
        case .q4_0: .q4_0
        case .q4_1: .q4_1
        }
    }
}

/// One tensor described by a GGUF header.
package struct GGUFTensorInfo: Sendable, Equatable {
    package var name: String
    /// ggml order: dims[0] varies fastest.
    package var dims: [Int]
    package var type: GGUFTensorType
    /// Offset from the start of the data section.
    package var offset: Int
    package var byteCount: Int

    /// Row-major shape (the reverse of `dims`), as torch and distill's Tensor see it.
    package var shape: [Int] { dims.reversed() }
    package var elementCount: Int { dims.reduce(1, *) }
    /// Values per row: ne[0], a whole number of the type's blocks.
    package var rowLength: Int { dims[0] }
    /// Rows: the product of the other dims (0 when rows are empty).
    package var rowCount: Int { dims[0] == 0 ? 0 : elementCount / dims[0] }
    /// Bytes per row as stored.
    package var rowBytes: Int { dims[0] / type.blockLayout.elements * type.blockLayout.bytes }
}

/// A refused or unreadable GGUF file, naming the file, the field and a hint.
package struct GGUFError: Error, CustomStringConvertible, Sendable {
    package enum Kind: Sendable, Hashable {
        /// open, read, write, sync or rename failed.
        case io
        /// The file ends inside the header.
        case truncated
        case badMagic
        case unsupportedVersion
        /// tensor_count or metadata_kv_count cannot fit in the bytes that follow.
        case countTooLarge
        /// A string length runs past the end of the file.
        case stringTooLong
        case invalidUTF8
        case unknownValueType
        /// An array count cannot fit in the bytes that follow.
        case arrayTooLong
        /// Arrays nested deeper than `GGUFFile.maxArrayDepth`.
        case nestingTooDeep
        /// A bool byte other than 0 or 1.
        case invalidBool
        case duplicateKey
        /// general.alignment is not a u32 power of two.
        case invalidAlignment
        /// A tensor name empty or longer than 63 bytes (ggml's GGML_MAX_NAME - 1).
        case invalidName
        case duplicateName
        /// n_dims outside 1...4, or a negative dimension.
        case invalidDimensions
        case unknownTensorType
        /// The element or byte count overflows.
        case sizeOverflow
        /// ne[0] is not a multiple of the type's block size.
        case blockMismatch
        /// A tensor offset that is not a multiple of the alignment.
        case misalignedOffset
        /// Tensor data reaching past the end of the file.
        case offsetOutOfBounds
        /// Two tensors share bytes.
        case overlap
        case tensorNotFound
        /// A valid type that distill does not convert to Float32 (integer, IQ and other
        /// quantized types without a decoder in GGUFQuants.swift).
        case unsupportedTensorType
        /// A model or tokenizer that llama.cpp cannot represent faithfully (export).
        case unsupportedModel
        /// A write request that cannot be stored (name too long, duplicate, wrong type).
        case invalidArgument
    }

    package var kind: Kind
    package var file: String
    /// What the error concerns: "tensor_count", "key 'general.alignment'", "tensor 'output.weight'".
    package var field: String?
    package var hint: String

    package init(_ kind: Kind, file: String, field: String? = nil, hint: String) {
        self.kind = kind
        self.file = file
        self.field = field
        self.hint = hint
    }

    package var description: String {
        var text = file.isEmpty ? "gguf" : file
        if let field { text += ", \(field)" }
        return text + ": " + hint
    }
}

package enum GGUF {
    package static let magic: [UInt8] = Array("GGUF".utf8)
    package static let version: UInt32 = 3
    package static let defaultAlignment = 32
    package static let alignmentKey = "general.alignment"
    /// ggml's GGML_MAX_NAME is 64 including the terminating zero.
    package static let maxNameBytes = 63
    package static let maxDims = 4
}

// MARK: - Reading

/// An open GGUF file whose header has been validated. Tensors are read on demand.
/// Not `Sendable`: it owns a file descriptor; use it from one task at a time.
package final class GGUFFile {
    /// Arrays of arrays of ... deeper than this are refused (gguf-py writes at most 2).
    package static let maxArrayDepth = 8

    package let path: String
    package let version: UInt32
    /// Metadata in file order.
    package let metadata: [(key: String, value: GGUFValue)]
    /// Tensor infos in file order.
    package let tensors: [GGUFTensorInfo]
    package let alignment: Int
    /// Absolute offset of the data section.
    package let dataOffset: Int
    private let fd: Int32
    private let keyIndex: [String: Int]
    private let tensorIndex: [String: Int]

    package init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw GGUFError(.io, file: path, hint: "cannot open (\(String(cString: strerror(errno))))")
        }
        do {
            var info = stat()
            guard fstat(fd, &info) == 0 else {
                throw GGUFError(.io, file: path, hint: "cannot stat (\(String(cString: strerror(errno))))")
            }
            guard (info.st_mode & S_IFMT) == S_IFREG else {
                throw GGUFError(.io, file: path, hint: "not a regular file")
            }
            var reader = HeaderReader(fd: fd, fileSize: Int(info.st_size), path: path)
            let header = try reader.parse()
            self.fd = fd
            self.path = path
            self.version = header.version
            self.metadata = header.metadata
            self.tensors = header.tensors
            self.alignment = header.alignment
            self.dataOffset = header.dataOffset
            self.keyIndex = Dictionary(uniqueKeysWithValues: header.metadata.enumerated().map { ($1.key, $0) })
            self.tensorIndex = Dictionary(uniqueKeysWithValues: header.tensors.enumerated().map { ($1.name, $0) })
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    package subscript(key: String) -> GGUFValue? { keyIndex[key].map { metadata[$0].value } }

    package func tensor(_ name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// The bytes of one tensor as stored.
    package func rawBytes(_ name: String) throws -> [UInt8] {
        let info = try require(name)
        var bytes = [UInt8](repeating: 0, count: info.byteCount)
        try bytes.withUnsafeMutableBytes {
            try preadFully(fd, into: $0, at: dataOffset + info.offset, path: path)
        }
        return bytes
    }

    /// Reads one tensor as Float32 with its row-major shape (`info.shape`), converting or
    /// dequantizing the types `GGUFQuants.supports` (GGUFQuants.swift); other types are
    /// refused before anything is allocated. `arena`: where the tensor is placed (a model's
    /// weights as they load), else the buffer pool.
    package func read(_ name: String, in arena: HugePageArena? = nil) throws -> Tensor {
        let info = try readable(name)
        let tensor = Tensor.empty(info.shape, in: arena)
        try convert(info, rows: 0..<info.rowCount, into: tensor.data)
        tensor.name = name
        return tensor
    }

    /// Reads rows `rows` of a tensor as Float32, shape [rows.count, rowLength]. A row is
    /// ne[0] values (the last row-major axis), a whole number of blocks; the rows of a
    /// tensor with more than two dims are counted over all its other axes.
    package func read(_ name: String, rows: Range<Int>) throws -> Tensor {
        let info = try readable(name)
        precondition(
            rows.lowerBound >= 0 && rows.upperBound <= info.rowCount,
            "rows \(rows) of tensor '\(name)', which has \(info.rowCount) rows of \(info.rowLength)")
        let tensor = Tensor.empty([rows.count, info.rowLength])
        try convert(info, rows: rows, into: tensor.data)
        return tensor
    }

    /// Values per pread: a multiple of every supported block size (1, 32, 256), so each
    /// chunk is whole blocks; the buffer is at most 512 KB (F64).
    private static let chunkValues = 1 << 16

    /// Streams rows of `info` through a chunk buffer into `out`. The header reader has
    /// checked that the tensor's `byteCount` (= rowCount x rowBytes) bytes lie inside the
    /// file and that a row is whole blocks, so every chunk is whole blocks inside the tensor.
    private func convert(_ info: GGUFTensorInfo, rows: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        let count = rows.count * info.rowLength
        let start = dataOffset + info.offset + rows.lowerBound * info.rowBytes
        if info.type == .f32 {
            try preadFully(fd, into: UnsafeMutableRawBufferPointer(start: out, count: count * 4), at: start, path: path)
            #if _endian(big)
                for i in 0..<count { out[i] = Float(bitPattern: UInt32(littleEndian: out[i].bitPattern)) }
            #endif
            return
        }
        let (elements, bytes) = info.type.blockLayout
        precondition(Self.chunkValues % elements == 0, "a chunk must be whole \(info.type.name) blocks")
        var buffer = [UInt8](repeating: 0, count: min(count, Self.chunkValues) / elements * bytes)
        var done = 0
        while done < count {
            let n = min(Self.chunkValues, count - done)
            try buffer.withUnsafeMutableBytes { raw in
                let chunk = UnsafeMutableRawBufferPointer(rebasing: raw[..<(n / elements * bytes)])
                try preadFully(fd, into: chunk, at: start + done / elements * bytes, path: path)
                GGUFQuants.dequantize(info.type, blocks: UnsafeRawBufferPointer(chunk), into: out + done, count: n)
            }
            done += n
        }
    }

    /// The tensor's info, or the error refusing its type.
    private func readable(_ name: String) throws -> GGUFTensorInfo {
        let info = try require(name)
        guard GGUFQuants.supports(info.type) else {
            let types = GGUFQuants.supportedTypes.map(\.name).joined(separator: ", ")
            throw GGUFError(
                .unsupportedTensorType, file: path, field: "tensor '\(name)'",
                hint: "type \(info.type.name) is not converted to Float32 (distill reads \(types))")
        }
        return info
    }

    private func require(_ name: String) throws -> GGUFTensorInfo {
        guard let info = tensor(name) else {
            throw GGUFError(.tensorNotFound, file: path, field: "tensor '\(name)'", hint: "no tensor of that name in the file")
        }
        return info
    }
}

/// Parses a header through a pread window, checking every length against the bytes left.
private struct HeaderReader {
    let fd: Int32
    let fileSize: Int
    let path: String
    /// Absolute position of the next byte to parse.
    var position = 0
    private var window: [UInt8] = []
    private var windowStart = 0
    private static let windowSize = 1 << 16

    init(fd: Int32, fileSize: Int, path: String) {
        self.fd = fd
        self.fileSize = fileSize
        self.path = path
    }

    var remaining: Int { fileSize - position }

    func fail(_ kind: GGUFError.Kind, _ field: String?, _ hint: String) -> GGUFError {
        GGUFError(kind, file: path, field: field, hint: hint)
    }

    /// Makes `n` bytes at `position` available in the window (n <= windowSize), or throws
    /// `truncated` naming `field`.
    private mutating func ensure(_ n: Int, field: String) throws {
        guard n <= remaining else {
            throw fail(
                .truncated, field,
                "needs \(n) bytes at offset \(position) but the \(fileSize)-byte file ends first (truncated download?)")
        }
        if position >= windowStart && position + n <= windowStart + window.count { return }
        let length = min(max(n, Self.windowSize), remaining)
        window = [UInt8](repeating: 0, count: length)
        try window.withUnsafeMutableBytes { try preadFully(fd, into: $0, at: position, path: path) }
        windowStart = position
    }

    mutating func bytes(_ n: Int, field: String) throws -> ArraySlice<UInt8> {
        if n > Self.windowSize {
            guard n <= remaining else {
                throw fail(.truncated, field, "needs \(n) bytes at offset \(position) but the file ends first")
            }
            var out = [UInt8](repeating: 0, count: n)
            try out.withUnsafeMutableBytes { try preadFully(fd, into: $0, at: position, path: path) }
            position += n
            return out[...]
        }
        try ensure(n, field: field)
        let start = position - windowStart
        position += n
        return window[start..<(start + n)]
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type, field: String) throws -> T {
        let size = MemoryLayout<T>.size
        try ensure(size, field: field)
        let start = position - windowStart
        var v: T = 0
        for i in 0..<size { v |= T(truncatingIfNeeded: window[start + i]) << (8 * i) }
        position += size
        return v
    }

    mutating func string(field: String) throws -> String {
        let length = try integer(UInt64.self, field: field)
        guard length <= UInt64(remaining) else {
            throw fail(
                .stringTooLong, field,
                "string length \(length) at offset \(position - 8) runs past the end of the \(fileSize)-byte file")
        }
        let raw = try bytes(Int(length), field: field)
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw fail(.invalidUTF8, field, "the string is not valid UTF-8")
        }
        return text
    }

    mutating func valueType(field: String) throws -> GGUFValueType {
        let raw = try integer(UInt32.self, field: field)
        guard let type = GGUFValueType(rawValue: raw) else {
            throw fail(.unknownValueType, field, "unknown value type id \(raw) (known: 0...12)")
        }
        return type
    }

    mutating func value(_ type: GGUFValueType, field: String, depth: Int) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try integer(UInt8.self, field: field))
        case .int8: return .int8(try integer(Int8.self, field: field))
        case .uint16: return .uint16(try integer(UInt16.self, field: field))
        case .int16: return .int16(try integer(Int16.self, field: field))
        case .uint32: return .uint32(try integer(UInt32.self, field: field))
        case .int32: return .int32(try integer(Int32.self, field: field))
        case .uint64: return .uint64(try integer(UInt64.self, field: field))
        case .int64: return .int64(try integer(Int64.self, field: field))
        case .float32: return .float32(Float(bitPattern: try integer(UInt32.self, field: field)))
        case .float64: return .float64(Double(bitPattern: try integer(UInt64.self, field: field)))
        case .bool: return .bool(try bool(field: field))
        case .string: return .string(try string(field: field))
        case .array: return .array(try array(field: field, depth: depth + 1))
        }
    }

    mutating func bool(field: String) throws -> Bool {
        let byte = try integer(UInt8.self, field: field)
        guard byte <= 1 else { throw fail(.invalidBool, field, "bool byte is \(byte), expected 0 or 1") }
        return byte == 1
    }

    mutating func array(field: String, depth: Int) throws -> GGUFArray {
        guard depth <= GGUFFile.maxArrayDepth else {
            throw fail(.nestingTooDeep, field, "arrays nested deeper than \(GGUFFile.maxArrayDepth) levels")
        }
        let type = try valueType(field: field + " element type")
        let count64 = try integer(UInt64.self, field: field)
        // Every element needs at least minimumSize bytes: refuse counts the file cannot hold
        // before reserving anything.
        guard count64 <= UInt64(remaining / type.minimumSize) else {
            throw fail(
                .arrayTooLong, field,
                "array of \(count64) \(type) elements needs at least \(count64.multipliedReportingOverflow(by: UInt64(type.minimumSize)).partialValue) bytes but only \(remaining) remain in the file"
            )
        }
        let count = Int(count64)
        func many<T>(_ read: (inout HeaderReader) throws -> T) throws -> [T] {
            var out: [T] = []
            out.reserveCapacity(count)
            for _ in 0..<count { out.append(try read(&self)) }
            return out
        }
        switch type {
        case .uint8: return .uint8(try many { try $0.integer(UInt8.self, field: field) })
        case .int8: return .int8(try many { try $0.integer(Int8.self, field: field) })
        case .uint16: return .uint16(try many { try $0.integer(UInt16.self, field: field) })
        case .int16: return .int16(try many { try $0.integer(Int16.self, field: field) })
        case .uint32: return .uint32(try many { try $0.integer(UInt32.self, field: field) })
        case .int32: return .int32(try many { try $0.integer(Int32.self, field: field) })
        case .uint64: return .uint64(try many { try $0.integer(UInt64.self, field: field) })
        case .int64: return .int64(try many { try $0.integer(Int64.self, field: field) })
        case .float32: return .float32(try many { Float(bitPattern: try $0.integer(UInt32.self, field: field)) })
        case .float64: return .float64(try many { Double(bitPattern: try $0.integer(UInt64.self, field: field)) })
        case .bool: return .bool(try many { try $0.bool(field: field) })
        case .string: return .string(try many { try $0.string(field: field) })
        case .array: return .array(try many { try $0.array(field: field, depth: depth + 1) })
        }
    }

    mutating func parse() throws -> (
        version: UInt32, metadata: [(key: String, value: GGUFValue)], tensors: [GGUFTensorInfo], alignment: Int,
        dataOffset: Int
    ) {
        guard fileSize >= 24 else {
            throw fail(.truncated, "header", "file has \(fileSize) bytes, fewer than the 24-byte GGUF header")
        }
        let magic = Array(try bytes(4, field: "magic"))
        guard magic == GGUF.magic else {
            let shown = magic.map { String(format: "%02x", $0) }.joined(separator: " ")
            throw fail(.badMagic, "magic", "the file starts with \(shown), not \"GGUF\" (47 47 55 46); not a GGUF file")
        }
        let version = try integer(UInt32.self, field: "version")
        guard version == 3 || version == 2 else {
            let hint =
                version.byteSwapped == 3 || version.byteSwapped == 2
                ? "a big-endian GGUF file; distill reads little-endian files"
                : "GGUF version \(version); distill reads version 3 (and 2, which has the same layout)"
            throw fail(.unsupportedVersion, "version", hint)
        }
        let tensorCount64 = try integer(UInt64.self, field: "tensor_count")
        let kvCount64 = try integer(UInt64.self, field: "metadata_kv_count")
        // A key-value pair needs at least 8 (key length) + 4 (type) + 1 bytes; a tensor info
        // 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset).
        guard kvCount64 <= UInt64(remaining / 13) else {
            throw fail(
                .countTooLarge, "metadata_kv_count",
                "\(kvCount64) key-value pairs cannot fit in the \(remaining) bytes after the header")
        }
        guard tensorCount64 <= UInt64((remaining - Int(kvCount64) * 13) / 32) else {
            throw fail(
                .countTooLarge, "tensor_count",
                "\(tensorCount64) tensor infos cannot fit in the \(remaining) bytes after the header")
        }
        var metadata: [(key: String, value: GGUFValue)] = []
        metadata.reserveCapacity(Int(kvCount64))
        var keys = Set<String>()
        for i in 0..<Int(kvCount64) {
            let key = try string(field: "metadata key #\(i)")
            guard keys.insert(key).inserted else {
                throw fail(.duplicateKey, "key '\(key)'", "the key appears twice")
            }
            let type = try valueType(field: "key '\(key)' type")
            metadata.append((key, try value(type, field: "key '\(key)'", depth: 0)))
        }

        var alignment = GGUF.defaultAlignment
        if let entry = metadata.first(where: { $0.key == GGUF.alignmentKey }) {
            guard case .uint32(let a) = entry.value, a > 0, a & (a - 1) == 0 else {
                throw fail(
                    .invalidAlignment, "key '\(GGUF.alignmentKey)'",
                    "must be a u32 power of two, found \(entry.value.type) \(entry.value)")
            }
            alignment = Int(a)
        }

        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(Int(tensorCount64))
        var names = Set<String>()
        for i in 0..<Int(tensorCount64) {
            let name = try string(field: "tensor #\(i) name")
            let field = "tensor '\(name)'"
            guard !name.isEmpty, name.utf8.count <= GGUF.maxNameBytes else {
                throw fail(
                    .invalidName, "tensor #\(i) name",
                    "tensor names must have 1 to \(GGUF.maxNameBytes) bytes, found \(name.utf8.count)")
            }
            guard names.insert(name).inserted else { throw fail(.duplicateName, field, "the name appears twice") }
            let nDims = try integer(UInt32.self, field: field + " n_dims")
            guard nDims >= 1 && nDims <= UInt32(GGUF.maxDims) else {
                throw fail(.invalidDimensions, field, "n_dims is \(nDims), expected 1 to \(GGUF.maxDims)")
            }
            var dims: [Int] = []
            var elements = 1
            for _ in 0..<Int(nDims) {
                let d = try integer(UInt64.self, field: field + " dims")
                guard d <= UInt64(Int64.max) else {
                    throw fail(.invalidDimensions, field, "dimension \(Int64(bitPattern: d)) is negative")
                }
                let (product, overflow) = elements.multipliedReportingOverflow(by: Int(d))
                guard !overflow else { throw fail(.sizeOverflow, field, "dims \(dims + [Int(d)]) overflow the element count") }
                dims.append(Int(d))
                elements = product
            }
            let rawType = try integer(UInt32.self, field: field + " type")
            guard let type = GGUFTensorType(rawValue: rawType) else {
                throw fail(.unknownTensorType, field, "unknown ggml type id \(rawType)")
            }
            let block = type.blockLayout
            guard dims[0] % block.elements == 0 else {
                throw fail(
                    .blockMismatch, field,
                    "ne[0] = \(dims[0]) is not a multiple of \(type.name)'s block of \(block.elements) elements")
            }
            let (byteCount, overflow) = (elements / block.elements).multipliedReportingOverflow(by: block.bytes)
            guard !overflow else { throw fail(.sizeOverflow, field, "dims \(dims) of \(type.name) overflow the byte count") }
            let offset = try integer(UInt64.self, field: field + " offset")
            guard offset % UInt64(alignment) == 0 else {
                throw fail(.misalignedOffset, field, "offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            guard offset <= UInt64(fileSize) else {
                throw fail(.offsetOutOfBounds, field, "offset \(offset) lies beyond the \(fileSize)-byte file")
            }
            tensors.append(GGUFTensorInfo(name: name, dims: dims, type: type, offset: Int(offset), byteCount: byteCount))
        }

        let (padded, overflow) = position.addingReportingOverflow(alignment - 1)
        precondition(!overflow, "positions are bounded by the file size")
        let dataOffset = padded / alignment * alignment
        let dataSize = fileSize - dataOffset
        let sorted = tensors.sorted { ($0.offset, $0.byteCount) < ($1.offset, $1.byteCount) }
        var end = 0
        var previous: String?
        for t in sorted {
            guard t.offset <= dataSize, t.byteCount <= dataSize - t.offset else {
                throw fail(
                    .offsetOutOfBounds, "tensor '\(t.name)'",
                    "bytes \(t.offset)..<\(t.offset &+ t.byteCount) of the data section reach past its end (\(max(dataSize, 0)) bytes; truncated file?)"
                )
            }
            if t.offset < end {
                throw fail(
                    .overlap, "tensor '\(t.name)'",
                    "bytes \(t.offset)..<\(t.offset + t.byteCount) overlap '\(previous ?? "")', which ends at \(end)")
            }
            end = t.offset + t.byteCount
            previous = t.name
        }
        return (version, metadata, tensors, alignment, dataOffset)
    }
}

private func preadFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String) throws {
    var done = 0
    while done < buffer.count {
        let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else {
            let reason = n == 0 ? "unexpected end of file (the file shrank while reading?)" : String(cString: strerror(errno))
            throw GGUFError(.io, file: path, hint: "read of \(buffer.count) bytes at \(offset) failed: \(reason)")
        }
        done += n
    }
}

// MARK: - Writing

/// Collects metadata and tensors and writes a GGUF v3 file.
package struct GGUFWriter {
    /// One tensor to write: `tensor` is row-major (its shape reversed becomes the dims).
    package struct Entry {
        package var name: String
        package var tensor: Tensor
        package var type: GGUFTensorType

        /// Bytes of the tensor's data in its type.
        var byteCount: Int {
            let (elements, bytes) = type.blockLayout
            return tensor.count / elements * bytes
        }
    }

    package private(set) var metadata: [(key: String, value: GGUFValue)] = []
    package private(set) var entries: [Entry] = []
    package var alignment: Int

    /// `alignment` other than 32 is recorded as general.alignment.
    package init(alignment: Int = GGUF.defaultAlignment) {
        self.alignment = alignment
    }

    package mutating func add(_ key: String, _ value: GGUFValue) { metadata.append((key, value)) }

    /// Adds a tensor stored as `type`: `.f32`, `.f16`, or quantized by distill's quantizers
    /// (`.q8_0`, `.q4_0`, `.q4_1`; rows of whole blocks of 32, byte for byte as gguf-py's).
    package mutating func add(tensor name: String, _ tensor: Tensor, type: GGUFTensorType = .f32) {
        entries.append(Entry(name: name, tensor: tensor, type: type))
    }

    /// Checks the request and writes the file atomically (temporary name, fsync, rename).
    package func write(to path: String) throws {
        func invalid(_ field: String?, _ hint: String) -> GGUFError {
            GGUFError(.invalidArgument, file: path, field: field, hint: hint)
        }
        guard alignment > 0, alignment & (alignment - 1) == 0, alignment <= Int(UInt32.max) else {
            throw invalid("alignment", "alignment must be a power of two, got \(alignment)")
        }
        var allMetadata = metadata
        if alignment != GGUF.defaultAlignment {
            allMetadata.removeAll { $0.key == GGUF.alignmentKey }
            allMetadata.append((GGUF.alignmentKey, .uint32(UInt32(alignment))))
        } else if let given = metadata.first(where: { $0.key == GGUF.alignmentKey }), given.value != .uint32(32) {
            throw invalid("key '\(GGUF.alignmentKey)'", "set the alignment through GGUFWriter(alignment:)")
        }
        var keys = Set<String>()
        for (key, _) in allMetadata where !keys.insert(key).inserted {
            throw GGUFError(.duplicateKey, file: path, field: "key '\(key)'", hint: "the key is given twice")
        }
        var names = Set<String>()
        var header = ByteBuffer()
        header.append(GGUF.magic)
        header.append(GGUF.version)
        header.append(UInt64(entries.count))
        header.append(UInt64(allMetadata.count))
        for (key, value) in allMetadata {
            header.append(string: key)
            header.append(value.type.rawValue)
            try header.append(value: value, field: "key '\(key)'", path: path)
        }
        var offset = 0
        var offsets: [Int] = []
        for entry in entries {
            let field = "tensor '\(entry.name)'"
            guard !entry.name.isEmpty, entry.name.utf8.count <= GGUF.maxNameBytes else {
                throw GGUFError(
                    .invalidName, file: path, field: field,
                    hint: "tensor names must have 1 to \(GGUF.maxNameBytes) bytes (ggml's limit)")
            }
            guard names.insert(entry.name).inserted else {
                throw GGUFError(.duplicateName, file: path, field: field, hint: "the name is given twice")
            }
            let shape = entry.tensor.shape
            if let format = WeightFormat(ggml: entry.type) {
                guard shape.count == 2, format.fits(columns: shape[1]) else {
                    throw invalid(field, "\(entry.type.name) stores matrices whose rows are whole blocks of 32 values, not shape \(shape)")
                }
            } else if entry.type != .f32 && entry.type != .f16 {
                throw invalid(field, "distill writes F32, F16, Q8_0, Q4_0 or Q4_1 tensors, not \(entry.type.name)")
            }
            guard (1...GGUF.maxDims).contains(shape.count) else {
                throw invalid(field, "tensors need 1 to \(GGUF.maxDims) dimensions, shape is \(shape)")
            }
            header.append(string: entry.name)
            header.append(UInt32(shape.count))
            for d in shape.reversed() { header.append(UInt64(d)) }
            header.append(entry.type.rawValue)
            header.append(UInt64(offset))
            offsets.append(offset)
            offset += padded(entry.byteCount)
        }
        header.pad(to: alignment)
        let padding = [UInt8](repeating: 0, count: alignment)

        try Safetensors.writeAtomically(to: path) { sink in
            try header.bytes.withUnsafeBytes { try sink($0) }
            var scratch = [UInt8]()
            for entry in entries {
                let tensor = entry.tensor
                let bytes = entry.byteCount
                switch entry.type {
                case .q8_0, .q4_0, .q4_1:
                    let packed = PackedMatrix(tensor, format: WeightFormat(ggml: entry.type)!)
                    try withExtendedLifetime(packed) { try sink(packed.blockBytes!) }
                case .f32:
                    #if _endian(big)
                        scratch = (0..<tensor.count).flatMap { i in
                            withUnsafeBytes(of: tensor.data[i].bitPattern.littleEndian) { Array($0) }
                        }
                        try scratch.withUnsafeBytes { try sink($0) }
                    #else
                        try sink(UnsafeRawBufferPointer(start: tensor.data, count: bytes))
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
                let pad = padded(bytes) - bytes
                if pad > 0 { try padding.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[..<pad])) } }
            }
        }
    }

    private func padded(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }
}

/// Little-endian serialisation of header fields.
private struct ByteBuffer {
    var bytes: [UInt8] = []

    mutating func append(_ raw: [UInt8]) { bytes += raw }

    mutating func append<T: FixedWidthInteger>(_ v: T) {
        for i in 0..<MemoryLayout<T>.size { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * i))) }
    }

    mutating func append(string: String) {
        append(UInt64(string.utf8.count))
        bytes += string.utf8
    }

    mutating func pad(to alignment: Int) {
        while bytes.count % alignment != 0 { bytes.append(0) }
    }

    mutating func append(value: GGUFValue, field: String, path: String) throws {
        switch value {
        case .uint8(let v): append(v)
        case .int8(let v): append(v)
        case .uint16(let v): append(v)
        case .int16(let v): append(v)
        case .uint32(let v): append(v)
        case .int32(let v): append(v)
        case .uint64(let v): append(v)
        case .int64(let v): append(v)
        case .float32(let v): append(v.bitPattern)
        case .float64(let v): append(v.bitPattern)
        case .bool(let v): append(UInt8(v ? 1 : 0))
        case .string(let s): append(string: s)
        case .array(let a): try append(array: a, field: field, path: path, depth: 1)
        }
    }

    mutating func append(array: GGUFArray, field: String, path: String, depth: Int) throws {
        guard depth <= GGUFFile.maxArrayDepth else {
            throw GGUFError(
                .nestingTooDeep, file: path, field: field, hint: "arrays nested deeper than \(GGUFFile.maxArrayDepth) levels")
        }
        append(array.elementType.rawValue)
        append(UInt64(array.count))
        switch array {
        case .uint8(let a): for v in a { append(v) }
        case .int8(let a): for v in a { append(v) }
        case .uint16(let a): for v in a { append(v) }
        case .int16(let a): for v in a { append(v) }
        case .uint32(let a): for v in a { append(v) }
        case .int32(let a): for v in a { append(v) }
        case .uint64(let a): for v in a { append(v) }
        case .int64(let a): for v in a { append(v) }
        case .float32(let a): for v in a { append(v.bitPattern) }
        case .float64(let a): for v in a { append(v.bitPattern) }
        case .bool(let a): for v in a { append(UInt8(v ? 1 : 0)) }
        case .string(let a): for s in a { append(string: s) }
        case .array(let a): for inner in a { try append(array: inner, field: field, path: path, depth: depth + 1) }
        }
    }
}

extension GGUFError: UserFacingError {
    package var errorKind: ErrorKind { kind == .io ? .io : .badData }
}
