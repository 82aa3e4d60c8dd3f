// Tests for Sources/Formats/GGUFQuants.swift and GGUFFile's reading of block types: every
// tensor of quants.gguf (tools/make_gguf_quant_fixture.py: one tensor per type distill
// converts, written by gguf-py, edge blocks included) reads back equal, bit for bit, to what
// gguf-py's `gguf.quants.dequantize` returns; row ranges and multi-chunk reads equal the
// whole-tensor decode; types without a decoder are refused naming the tensor and the type;
// quantized data cut short is refused, at open or (for a file that shrinks) at read.

import Core
import Foundation
import Testing

@testable import Formats

private struct QuantsExpected: Decodable {
    struct T: Decodable {
        var shape: [Int]
        var type: UInt32
        var bits: [UInt32]
    }
    var tensors: [String: T]
    var refused: [String]

    static func load() throws -> QuantsExpected {
        try JSONDecoder().decode(QuantsExpected.self, from: Data(contentsOf: ggufFixture("quants.json")))
    }
}

/// Compares bit patterns and names the first difference instead of printing every value.
private func expectBits(
    _ got: [Float], _ want: [UInt32], _ label: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(
        got.count == want.count, "\(label): \(got.count) values, expected \(want.count)", sourceLocation: sourceLocation
    )
    if let i = zip(got, want).enumerated().first(where: { $0.element.0.bitPattern != $0.element.1 })?.offset {
        Issue.record(
            "\(label)[\(i)]: \(got[i]) (0x\(String(got[i].bitPattern, radix: 16))), expected \(Float(bitPattern: want[i])) (0x\(String(want[i], radix: 16)))",
            sourceLocation: sourceLocation)
    }
}

@Suite struct GGUFQuantTests {
    /// Every type of `GGUFQuants.supportedTypes` is in the fixture and reads as gguf-py
    /// dequantizes it: random blocks, a zero scale with a subnormal min, negative scales
    /// with every nibble and sub-block scale at its largest, the largest f16 scale; F16 and
    /// BF16 subnormals, infinities and NaN payloads.
    @Test func everyTypeMatchesGGUFPy() throws {
        let expected = try QuantsExpected.load()
        let file = try GGUFFile(path: ggufFixture("quants.gguf").path)
        #expect(Set(expected.tensors.values.map(\.type)) == Set(GGUFQuants.supportedTypes.map(\.rawValue)))
        for (name, want) in expected.tensors.sorted(by: { $0.key < $1.key }) {
            let info = try #require(file.tensor(name))
            #expect(info.type.rawValue == want.type, "\(name)")
            let tensor = try file.read(name)
            #expect(tensor.shape == want.shape, "\(name)")
            #expect(tensor.name == name)
            expectBits(tensor.values, want.bits, name)
        }
    }

    /// `read(_:rows:)` returns exactly the rows of the whole tensor, for every type.
    @Test func rowRangesEqualTheWholeTensor() throws {
        let expected = try QuantsExpected.load()
        let file = try GGUFFile(path: ggufFixture("quants.gguf").path)
        for (name, want) in expected.tensors.sorted(by: { $0.key < $1.key }) {
            let info = try #require(file.tensor(name))
            let width = info.rowLength
            #expect(info.rowCount * width == want.bits.count, "\(name)")
            #expect(info.rowCount * info.rowBytes == info.byteCount, "\(name)")
            for rows in [0..<info.rowCount, (info.rowCount - 1)..<info.rowCount, 1..<1] {
                let part = try file.read(name, rows: rows)
                #expect(part.shape == [rows.count, width], "\(name) \(rows)")
                expectBits(
                    part.values, Array(want.bits[(rows.lowerBound * width)..<(rows.upperBound * width)]),
                    "\(name) \(rows)")
            }
        }
    }

    /// A tensor larger than one read chunk (2^16 values): the streamed read equals one
    /// `dequantize` call over the tensor's raw bytes, for a 32-value and a 256-value block type.
    @Test(arguments: [GGUFTensorType.q4_1, .q6_K, .f16])
    func multiChunkReadEqualsOneDecode(type: GGUFTensorType) throws {
        let (columns, rows) = (512, 300)  // 153,600 values: three chunks, the last partial
        let bytes = columns / type.blockLayout.elements * type.blockLayout.bytes * rows
        var data = Bytes.header(tensors: 1, kvs: 0)
        data.tensor("w", dims: [UInt64(columns), UInt64(rows)], type: type.rawValue)
        data.pad()
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var payload = (0..<bytes).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        if type != .f16 {
            // Finite scales: d (and Q4_1's m) set to an f16 of moderate size in every block.
            let (elements, size) = type.blockLayout
            let scaleOffsets = type == .q4_1 ? [0, 2] : [208]
            for block in 0..<(columns * rows / elements) {
                for offset in scaleOffsets {
                    let h = HalfPrecision.bits(from: Float(block % 7 + 1) * 0.003)
                    payload[block * size + offset] = UInt8(truncatingIfNeeded: h)
                    payload[block * size + offset + 1] = UInt8(truncatingIfNeeded: h >> 8)
                }
            }
        }
        data.b += payload
        try scratch { dir in
            let url = dir.appendingPathComponent("big.gguf")
            try Data(data.b).write(to: url)
            let file = try GGUFFile(path: url.path)
            let whole = try file.read("w")
            #expect(whole.shape == [rows, columns])
            var reference = [Float](repeating: .nan, count: columns * rows)
            let raw = try file.rawBytes("w")
            raw.withUnsafeBytes { blocks in
                reference.withUnsafeMutableBufferPointer {
                    GGUFQuants.dequantize(type, blocks: blocks, into: $0.baseAddress!, count: columns * rows)
                }
            }
            expectBits(whole.values, reference.map(\.bitPattern), "\(type.name) whole")
            #expect(whole.values.allSatisfy(\.isFinite) || type == .f16)
            let part = try file.read("w", rows: 127..<260)
            expectBits(
                part.values, Array(reference[(127 * columns)..<(260 * columns)]).map(\.bitPattern), "\(type.name) rows")
        }
    }

    /// IQ2_XXS and Q8_K have no decoder: refused naming the tensor, the type and the types
    /// that are read.
    @Test func typesWithoutDecoderAreRefused() throws {
        let expected = try QuantsExpected.load()
        let file = try GGUFFile(path: ggufFixture("quants.gguf").path)
        #expect(expected.refused == ["iq2_xxs", "q8_k"])
        for name in expected.refused {
            let info = try #require(file.tensor(name))
            #expect(!GGUFQuants.supports(info.type))
            let error = expectGGUFError(.unsupportedTensorType) { _ = try file.read(name) }
            #expect(error?.field == "tensor '\(name)'")
            #expect(
                error?.hint.contains("type \(info.type.name) is not converted") == true,
                "\(error.map { "\($0)" } ?? "")")
            #expect(error?.hint.contains("Q4_1") == true && error?.hint.contains("Q6_K") == true)
            expectGGUFError(.unsupportedTensorType) { _ = try file.read(name, rows: 0..<1) }
        }
        #expect(try file.rawBytes("q8_k").count == GGUFTensorType.q8_K.blockLayout.bytes)
    }

    /// The fixture cut short fails at open, naming a tensor whose bytes now reach past the
    /// end; a file that shrinks after it was opened fails at read with an io error, and the
    /// tensors before the cut still read.
    @Test func truncatedQuantizedData() throws {
        let original = try Data(contentsOf: ggufFixture("quants.gguf"))
        let whole = try GGUFFile(path: ggufFixture("quants.gguf").path)
        let last = try #require(whole.tensors.max { $0.offset < $1.offset })
        try scratch { dir in
            let cut = dir.appendingPathComponent("cut.gguf")
            try original.prefix(whole.dataOffset + last.offset + last.byteCount - 1).write(to: cut)
            let error = expectGGUFError(.offsetOutOfBounds) { _ = try GGUFFile(path: cut.path) }
            #expect(error?.field == "tensor '\(last.name)'")

            let shrinking = dir.appendingPathComponent("shrinking.gguf")
            try original.write(to: shrinking)
            let file = try GGUFFile(path: shrinking.path)
            let q4k = try #require(file.tensor("q4_k"))
            #expect(truncate(shrinking.path, off_t(file.dataOffset + q4k.offset + 100)) == 0)
            let failure = expectGGUFError(.io) { _ = try file.read("q4_k") }
            #expect(failure?.hint.contains("unexpected end of file") == true)
            let before = try #require(file.tensors.filter { $0.offset + $0.byteCount <= q4k.offset }.first)
            #expect(try file.read(before.name).count == before.elementCount)
        }
    }
}
