// Tests for Sources/Formats/Safetensors.swift: round trips, files written by the Python
// safetensors library (Fixtures/dtypes.safetensors and dtypes.json, made by
// tools/make_hf_fixture.py), and hostile headers written here byte by byte, each refused
// with its own error kind before any tensor memory is allocated.

import Core
import Foundation
import JSON
import Platform
import Testing

@testable import Formats

// MARK: - Helpers

/// A fresh directory removed when the test ends.
private func withScratchDirectory<R>(_ body: (URL) throws -> R) throws -> R {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("distill-formats-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try body(directory)
}

private func fixtureURL(_ name: String) throws -> URL {
    try #require(Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures"))
}

/// Runs `body`, expecting a SafetensorsError of `kind`, and returns it.
@discardableResult
private func expectSafetensorsError(
    _ kind: SafetensorsError.Kind, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> SafetensorsError? {
    do {
        try body()
        Issue.record("expected SafetensorsError.\(kind), nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as SafetensorsError {
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected SafetensorsError.\(kind), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// The bytes of a safetensors file: `declaredLength` (default: the header's length), the
/// header text, then `buffer` zero bytes.
private func safetensorsBytes(header: String, buffer: Int, declaredLength: UInt64? = nil) -> Data {
    var data = Data()
    var length = (declaredLength ?? UInt64(header.utf8.count)).littleEndian
    withUnsafeBytes(of: &length) { data.append(contentsOf: $0) }
    data.append(contentsOf: Array(header.utf8))
    data.append(Data(count: buffer))
    return data
}

private struct DTypeFixture: Decodable {
    struct Tensor: Decodable {
        var shape: [Int]
        var bits: [UInt32]
    }
    struct Rounding: Decodable {
        var inputs: [UInt32]
        var f16_bits: [UInt16]
    }
    var tensors: [String: Tensor]
    var rounding: Rounding

    init(from decoder: Decoder) throws {
        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        let c = try decoder.container(keyedBy: Key.self)
        rounding = try c.decode(Rounding.self, forKey: Key(stringValue: "f16_rounding"))
        tensors = [:]
        for key in c.allKeys where key.stringValue != "f16_rounding" {
            tensors[key.stringValue] = try c.decode(Tensor.self, forKey: key)
        }
    }

    static func load() throws -> DTypeFixture {
        try JSONDecoder().decode(DTypeFixture.self, from: Data(contentsOf: fixtureURL("dtypes.json")))
    }
}

// MARK: - Round trips

@Suite struct SafetensorsRoundTrip {
    @Test(arguments: [[], [0], [5], [2, 3], [0, 3], [3, 0, 2], [2, 3, 4]] as [[Int]])
    func float32(shape: [Int]) throws {
        try withScratchDirectory { directory in
            let path = directory.appendingPathComponent("x.safetensors").path
            let count = shape.reduce(1, *)
            let a = Tensor(shape: shape, values: (0..<count).map { Float($0) * 0.25 - 1 })
            let b = Tensor(shape: [3], values: [.infinity, -0.0, .leastNonzeroMagnitude])
            try Safetensors.write(
                [("a", a), ("b.weight", b)], metadata: ["format": "pt", "note": "q\"uote\n"], to: path)

            let file = try SafetensorsFile(path: path)
            #expect(file.metadata == ["format": "pt", "note": "q\"uote\n"])
            #expect(file.entries.map(\.name) == ["a", "b.weight"])
            #expect(file.entries.allSatisfy { $0.dtype == .f32 })
            #expect(file.dataOffset % 8 == 0, "the data buffer starts 8-byte aligned")
            let ra = try file.read("a")
            #expect(ra.shape == shape)
            #expect(ra.values == a.values)
            #expect(try file.read("b.weight").values.map(\.bitPattern) == b.values.map(\.bitPattern))
            // Nothing but the file itself is left in the directory (no temporary files).
            let left = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            #expect(left == ["x.safetensors"])
        }
    }

    /// Values that F16 holds exactly come back exactly; the stored bits are torch's.
    @Test func float16Write() throws {
        try withScratchDirectory { directory in
            let path = directory.appendingPathComponent("h.safetensors").path
            let values: [Float] = [0, -0.0, 1, -2.5, 65504, 0x1p-24, 0x1p-14, 1.0009765625, .infinity, -.infinity]
            try Safetensors.write([("h", Tensor(shape: [2, 5], values: values))], dtype: .f16, to: path)
            let file = try SafetensorsFile(path: path)
            #expect(file.entries.first?.dtype == .f16)
            #expect(file.entries.first?.byteRange == 0..<20)
            let back = try file.read("h")
            #expect(back.shape == [2, 5])
            #expect(back.values.map(\.bitPattern) == values.map(\.bitPattern))
        }
    }

    /// Float32 -> F16 rounding agrees bit for bit with torch's `.to(torch.float16)` (round to
    /// nearest even, overflow to infinity, subnormals), and F16 -> Float32 is its inverse.
    @Test func halfConversionMatchesTorch() throws {
        let fixture = try DTypeFixture.load()
        #expect(fixture.rounding.inputs.count == fixture.rounding.f16_bits.count)
        for (input, expected) in zip(fixture.rounding.inputs, fixture.rounding.f16_bits) {
            let x = Float(bitPattern: input)
            #expect(HalfPrecision.bits(from: x) == expected, "\(x)")
            #expect(HalfPrecision.bits(from: HalfPrecision.float(fromBits: expected)) == expected)
        }
        #expect(HalfPrecision.float(fromBits: HalfPrecision.bits(from: .nan)).isNaN)
        #expect(HalfPrecision.bits(from: 65519) == 0x7BFF)  // rounds down to the largest finite half
        #expect(HalfPrecision.bits(from: 65520) == 0x7C00)  // the tie rounds to even: infinity
        // Every finite half survives the round trip through Float32.
        for bits in UInt16(0)...UInt16.max where bits & 0x7C00 != 0x7C00 {
            #expect(HalfPrecision.bits(from: HalfPrecision.float(fromBits: bits)) == bits)
        }
    }

    @Test func writeRefusesDuplicateAndReservedNames() throws {
        try withScratchDirectory { directory in
            let path = directory.appendingPathComponent("d.safetensors").path
            let t = Tensor(shape: [1], values: [1])
            expectSafetensorsError(.duplicateName) { try Safetensors.write([("a", t), ("a", t)], to: path) }
            expectSafetensorsError(.invalidArgument) { try Safetensors.write([("__metadata__", t)], to: path) }
            expectSafetensorsError(.invalidArgument) { try Safetensors.write([("a", t)], dtype: .bf16, to: path) }
            let left = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            #expect(left.isEmpty)
        }
    }
}

// MARK: - Files written by Python

@Suite struct SafetensorsFromPython {
    /// F32, F16 and BF16 tensors written by safetensors.torch read back as the float32
    /// values torch converts them to (`.float()`), compared bit for bit.
    @Test func dtypesFixture() throws {
        let fixture = try DTypeFixture.load()
        let file = try SafetensorsFile(path: fixtureURL("dtypes.safetensors").path)
        #expect(file.metadata == ["format": "pt", "note": "dtype fixture"])
        #expect(Set(file.entries.map(\.name)) == Set(fixture.tensors.keys))
        let dtypes = Dictionary(uniqueKeysWithValues: file.entries.map { ($0.name, $0.dtype) })
        #expect(dtypes["f32"] == .f32)
        #expect(dtypes["f16"] == .f16)
        #expect(dtypes["bf16"] == .bf16)
        #expect(dtypes["special_bf16"] == .bf16)
        for (name, expected) in fixture.tensors {
            let tensor = try file.read(name)
            #expect(tensor.shape == expected.shape, "\(name)")
            #expect(tensor.values.map(\.bitPattern) == expected.bits, "\(name)")
        }
        // Known values: 1.0 and -2.5 are exact in every format; 0.1 is not.
        let special = try file.read("special_f16").values
        #expect(special[2] == 1 && special[3] == -2.5 && special[6] == 65504)
        #expect(special[1].sign == .minus && special[1] == 0)
        #expect(special[12] == .infinity && special[13] == -.infinity)
        #expect(try file.read("special_bf16").values[4] == Float(bitPattern: 0x3DCD_0000))  // 0x3DCCCCCD rounded up
    }

    @Test func unconvertedDTypeAndMissingTensor() throws {
        try withScratchDirectory { directory in
            let url = directory.appendingPathComponent("i.safetensors")
            let header = #"{"ids":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#
            try safetensorsBytes(header: header, buffer: 8).write(to: url)
            let file = try SafetensorsFile(path: url.path)
            #expect(file.entries.first?.dtype == .i32)
            let error = expectSafetensorsError(.unsupportedDType) { _ = try file.read("ids") }
            #expect(error?.tensor == "ids")
            expectSafetensorsError(.tensorNotFound) { _ = try file.read("nope") }
        }
    }
}

// MARK: - Hostile files

/// One malformed file and the refusal it must produce.
struct SafetensorsHostileCase: CustomTestStringConvertible, Sendable {
    var label: String
    var header: String
    var buffer: Int
    var declaredLength: UInt64?
    var kind: SafetensorsError.Kind
    /// The tensor the error must name, when it concerns one.
    var tensor: String?
    var testDescription: String { label }
}

private func f32(_ name: String, _ shape: String, _ begin: Int, _ end: Int) -> String {
    "\"\(name)\":{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(begin),\(end)]}"
}

private let safetensorsHostileCases: [SafetensorsHostileCase] = [
    SafetensorsHostileCase(
        label: "header length 2^64-1", header: "{}", buffer: 0, declaredLength: .max, kind: .headerTooLarge),
    SafetensorsHostileCase(
        label: "header length above the limit", header: "{}", buffer: 0, declaredLength: 100_000_001,
        kind: .headerTooLarge),
    SafetensorsHostileCase(
        label: "header length beyond the file", header: "{}", buffer: 16, declaredLength: 4096,
        kind: .headerBeyondFile),
    SafetensorsHostileCase(label: "not JSON", header: "{\"a\": ", buffer: 0, kind: .malformedHeader),
    SafetensorsHostileCase(label: "not an object", header: "[1, 2]", buffer: 0, kind: .malformedHeader),
    SafetensorsHostileCase(label: "trailing garbage", header: "{} x", buffer: 0, kind: .malformedHeader),
    SafetensorsHostileCase(
        label: "entry not an object", header: "{\"a\": 3}", buffer: 0, kind: .malformedHeader, tensor: "a"),
    SafetensorsHostileCase(
        label: "missing data_offsets", header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", buffer: 4,
        kind: .malformedHeader, tensor: "a"),
    SafetensorsHostileCase(
        label: "metadata value not a string", header: "{\"__metadata__\":{\"format\":1}}", buffer: 0,
        kind: .malformedHeader),
    SafetensorsHostileCase(
        label: "unknown dtype", header: "{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}",
        buffer: 16, kind: .unknownDType, tensor: "a"),
    SafetensorsHostileCase(
        label: "negative dimension", header: "{" + f32("a", "-1,4", 0, 16) + "}", buffer: 16,
        kind: .negativeDimension, tensor: "a"),
    SafetensorsHostileCase(
        label: "fractional dimension", header: "{" + f32("a", "1.5", 0, 4) + "}", buffer: 4,
        kind: .malformedHeader, tensor: "a"),
    SafetensorsHostileCase(
        label: "element count overflows", header: "{" + f32("a", "4294967296,4294967296", 0, 16) + "}",
        buffer: 16, kind: .sizeOverflow, tensor: "a"),
    SafetensorsHostileCase(
        label: "byte count overflows", header: "{" + f32("a", "2305843009213693952,2", 0, 16) + "}",
        buffer: 16, kind: .sizeOverflow, tensor: "a"),
    SafetensorsHostileCase(
        label: "dimension beyond Int", header: "{" + f32("a", "100000000000000000000", 0, 16) + "}",
        buffer: 16, kind: .sizeOverflow, tensor: "a"),
    SafetensorsHostileCase(
        label: "shape x dtype != span", header: "{" + f32("a", "3", 0, 8) + "}", buffer: 8, kind: .sizeMismatch,
        tensor: "a"),
    SafetensorsHostileCase(
        label: "40 GB tensor in a small file", header: "{" + f32("a", "100000,100000", 0, 40_000_000_000) + "}",
        buffer: 64, kind: .offsetsOutOfBounds, tensor: "a"),
    SafetensorsHostileCase(
        label: "offsets past the buffer", header: "{" + f32("a", "2", 8, 16) + "}", buffer: 12,
        kind: .offsetsOutOfBounds, tensor: "a"),
    SafetensorsHostileCase(
        label: "begin after end", header: "{" + f32("a", "0", 8, 4) + "}", buffer: 8, kind: .offsetsOutOfBounds,
        tensor: "a"),
    SafetensorsHostileCase(
        label: "negative offset", header: "{" + f32("a", "2", -8, 0) + "}", buffer: 8, kind: .offsetsOutOfBounds,
        tensor: "a"),
    SafetensorsHostileCase(
        label: "overlapping tensors", header: "{" + f32("a", "2", 0, 8) + "," + f32("b", "2", 4, 12) + "}",
        buffer: 12, kind: .overlap, tensor: "b"),
    SafetensorsHostileCase(
        label: "same bytes twice", header: "{" + f32("a", "2", 0, 8) + "," + f32("b", "2", 0, 8) + "}",
        buffer: 8, kind: .overlap),
    SafetensorsHostileCase(
        label: "gap between tensors", header: "{" + f32("a", "2", 0, 8) + "," + f32("b", "2", 12, 20) + "}",
        buffer: 20, kind: .gap, tensor: "b"),
    SafetensorsHostileCase(
        label: "gap before the first tensor", header: "{" + f32("a", "2", 4, 12) + "}", buffer: 12, kind: .gap,
        tensor: "a"),
    SafetensorsHostileCase(
        label: "trailing bytes", header: "{" + f32("a", "2", 0, 8) + "}", buffer: 12, kind: .gap, tensor: "a"),
    SafetensorsHostileCase(
        label: "duplicate name", header: "{" + f32("a", "2", 0, 8) + "," + f32("a", "2", 8, 16) + "}",
        buffer: 16, kind: .duplicateName, tensor: "a"),
]

@Suite struct SafetensorsHostile {
    @Test(arguments: safetensorsHostileCases)
    func refused(_ c: SafetensorsHostileCase) throws {
        try withScratchDirectory { directory in
            let url = directory.appendingPathComponent("hostile.safetensors")
            try safetensorsBytes(header: c.header, buffer: c.buffer, declaredLength: c.declaredLength).write(to: url)
            let error = expectSafetensorsError(c.kind) { _ = try SafetensorsFile(path: url.path) }
            #expect(error?.file == url.path)
            if let tensor = c.tensor { #expect(error?.tensor == tensor, "\(error.map { "\($0)" } ?? "")") }
            #expect(error.map { "\($0)".contains("hostile.safetensors") } == true)
        }
    }

    @Test func tooShortAndMissingFiles() throws {
        try withScratchDirectory { directory in
            let url = directory.appendingPathComponent("short.safetensors")
            try Data([1, 2, 3, 4, 5]).write(to: url)
            expectSafetensorsError(.truncated) { _ = try SafetensorsFile(path: url.path) }
            expectSafetensorsError(.io) {
                _ = try SafetensorsFile(path: directory.appendingPathComponent("absent.safetensors").path)
            }
            expectSafetensorsError(.io) { _ = try SafetensorsFile(path: directory.path) }
        }
    }

    @Test func invalidUTF8Header() throws {
        try withScratchDirectory { directory in
            let url = directory.appendingPathComponent("utf8.safetensors")
            var data = safetensorsBytes(header: "{\"a\u{FF}\": 1}", buffer: 0)
            let index = try #require(data.firstIndex(of: 0xC3))  // U+00FF is C3 BF in UTF-8
            data[index] = 0xFF
            try data.write(to: url)
            let error = expectSafetensorsError(.malformedHeader) { _ = try SafetensorsFile(path: url.path) }
            #expect(error?.hint.contains("UTF-8") == true)
        }
    }

    /// A well-formed file whose header has zero-length tensors, metadata and padding.
    @Test func acceptsEdgeCasesTheFormatAllows() throws {
        try withScratchDirectory { directory in
            let url = directory.appendingPathComponent("ok.safetensors")
            let header =
                "{\"__metadata__\":{},\"e\":{\"dtype\":\"F16\",\"shape\":[0,7],\"data_offsets\":[8,8]},"
                + f32("b", "1", 4, 8) + "," + f32("a", "", 0, 4) + "}   "
            try safetensorsBytes(header: header, buffer: 8).write(to: url)
            let file = try SafetensorsFile(path: url.path)
            #expect(file.entries.map(\.name) == ["e", "b", "a"])
            #expect(try file.read("e").shape == [0, 7])
            #expect(try file.read("a").shape == [])
        }
    }
}
