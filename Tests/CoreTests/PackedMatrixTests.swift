// The decode kernels at every instruction-set level this CPU has, against references written
// here in Double: a quantized product must equal the exact sum over the decoded weights and the
// decoded int8 activations (the only rounding is the float accumulation), an f32 product the
// plain dot products, one token's attention the softmax formula. Quantizing to ggml's layouts
// is checked byte for byte against gguf-py (Fixtures/quantize.json, tools/make_quantize_fixture.py).

@testable import Core
import CKernels
import Foundation
import Testing

private func randomMatrix(_ rows: Int, _ cols: Int, seed: UInt64, scale: Double = 1) -> Tensor {
    var rng = RNG(seed: seed)
    return Tensor(shape: [rows, cols], values: (0..<(rows * cols)).map { _ in Float(rng.normal() * scale) })
}

/// The int8 activations of x [n, k] decoded back to floats: q * scale per block.
private func decodedActivations(_ x: Tensor) -> [Float] {
    let (n, k) = (x.shape[0], x.shape[1])
    var q = [Int8](repeating: 0, count: n * k)
    var scale = [Float](repeating: 0, count: n * k / 32), sum = [Float](repeating: 0, count: n * k / 32)
    dk_quantize_activations(x.data, Int32(n), Int32(k), &q, &scale, &sum)
    for b in 0..<(n * k / 32) { #expect(sum[b] == scale[b] * Float(q[(b * 32)..<(b * 32 + 32)].reduce(0) { $0 + Int32($1) })) }
    return (0..<(n * k)).map { Float(q[$0]) * scale[$0 / 32] }
}

/// Rows of floats and gguf-py's quantized bytes of them.
private struct QuantizeFixture: Decodable {
    var shape: [Int]
    var source: [UInt32]
    var formats: [String: String]
}

@Suite struct PackedMatrixTests {
    static let levels = KernelLevel.allCases.filter { $0 <= KernelLevel.best }

    /// A level chosen for a test holds on its thread and on the workers that thread hands
    /// chunks to, and nowhere else: tests of other levels run side by side.
    @Test func aChosenLevelBelongsToItsThread() {
        final class Seen: @unchecked Sendable {
            let lock = NSLock()
            var levels: [KernelLevel] = []
            func add(_ level: KernelLevel) { lock.withLock { levels.append(level) } }
        }
        let process = KernelLevel.current
        KernelLevel.with(.scalar) {
            #expect(KernelLevel.current == .scalar)
            let workers = Seen()
            parallelChunks(64, grain: 1) { _ in workers.add(KernelLevel.current) }
            #expect(!workers.levels.isEmpty && workers.levels.allSatisfy { $0 == .scalar })
            let other = Seen(), done = DispatchSemaphore(value: 0)
            Thread {
                other.add(KernelLevel.current)
                done.signal()
            }.start()
            done.wait()
            #expect(other.levels == [process])
        }
        #expect(KernelLevel.current == process)
    }

    /// Random rows at four scales and edge blocks (zeros, a constant, exact halves, a negative
    /// largest magnitude, a lone value, tied extremes, f16's largest scales): the bytes equal
    /// gguf-py's quantizers', and a matrix over those bytes decodes to the same values.
    @Test("quantizing gives gguf-py's bytes", arguments: WeightFormat.allCases.filter(\.isQuantized))
    func quantizingMatchesGGUFPy(format: WeightFormat) throws {
        let fixture = Fixtures.load(QuantizeFixture.self, "quantize.json")
        let (rows, cols) = (fixture.shape[0], fixture.shape[1])
        let source = Tensor(shape: fixture.shape, values: fixture.source.map(Float.init(bitPattern:)))
        let hex = try #require(fixture.formats[format.rawValue])
        let expected = stride(from: 0, to: hex.count, by: 2).map { i -> UInt8 in
            let at = hex.index(hex.startIndex, offsetBy: i)
            return UInt8(hex[at..<hex.index(at, offsetBy: 2)], radix: 16)!
        }
        let packed = PackedMatrix(source, format: format)
        let bytes = Array(try #require(packed.blockBytes))
        #expect(bytes.count == expected.count)
        let differing = zip(bytes, expected).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
        #expect(differing.isEmpty, "\(format): bytes \(differing.prefix(8)) differ")
        let stored = expected.withUnsafeBytes { PackedMatrix(format: format, rows: rows, columns: cols, bytes: $0) }
        #expect(stored.decoded().values.map(\.bitPattern) == packed.decoded().values.map(\.bitPattern))
    }

    /// Row layout (37 rows) and the interleaved layout (40 rows, five groups of 8; products of
    /// row ranges that cut groups too).
    @Test(
        "quantized products equal the decoded sums", arguments: levels,
        WeightFormat.allCases.filter(\.isQuantized).flatMap { [($0, false), ($0, true)] })
    func quantizedProducts(level: KernelLevel, layout: (WeightFormat, Bool)) {
        let (format, interleave) = layout
        let (r, k) = (interleave ? 40 : 37, 96)
        let w = randomMatrix(r, k, seed: 1)
        w.data[5] = 40  // one block with an outlier
        let packed = PackedMatrix(w, format: format, interleave: interleave)
        #expect(packed.interleaved == interleave)
        #expect(packed.bytes == r * k / 32 * [.q8_0: 34, .q4_0: 18, .q4_1: 20][format]!)
        let wd = packed.decoded().values
        if interleave {
            // The same blocks as the row layout: decoding gives the same values, bit for bit.
            let rowsLayout = PackedMatrix(w, format: format)
            #expect(wd.map(\.bitPattern) == rowsLayout.decoded().values.map(\.bitPattern))
            #expect(rowsLayout.interleavedCopy().decoded().values.map(\.bitPattern) == wd.map(\.bitPattern))
            // Placed in an arena, as the decode engine places them: the same blocks.
            let arena = HugePageArena(regionBytes: 2 << 20)
            let placed = [PackedMatrix(w, format: format, interleave: true, in: arena), rowsLayout.interleavedCopy(in: arena)]
            #expect(arena.regionCount == 1)
            for m in placed { #expect(m.decoded().values.map(\.bitPattern) == wd.map(\.bitPattern)) }
            var part = [Float](repeating: .nan, count: 11 * k)  // rows 13..<24 cross a group boundary
            part.withUnsafeMutableBufferPointer { packed.decode(rows: 13..<24, into: $0.baseAddress!) }
            #expect(part.map(\.bitPattern) == wd[(13 * k)..<(24 * k)].map(\.bitPattern))
        }
        for n in [1, 3, 4, 9, 70] {  // the kernels take activation rows four at a time; 64 a tile
            let x = randomMatrix(n, k, seed: UInt64(n))
            let xd = decodedActivations(x)
            var y = [Float](repeating: .nan, count: n * r)
            KernelLevel.with(level) {
                y.withUnsafeMutableBufferPointer { yp in
                    PackedMatrix.multiply(x.data, n: n, [PackedProduct(packed, into: yp.baseAddress!)], scratch: ProductScratch())
                }
            }
            for j in 0..<n {
                for i in 0..<r {
                    var exact = 0.0, magnitude = 0.0
                    for t in 0..<k {
                        exact += Double(wd[i * k + t]) * Double(xd[j * k + t])
                        magnitude += abs(Double(wd[i * k + t]) * Double(xd[j * k + t]))
                    }
                    #expect(abs(Double(y[j * r + i]) - exact) <= 1e-5 * magnitude + 1e-6, "\(format) n \(n) row \(j) col \(i)")
                }
            }
            if interleave {
                // Rows 13..<27 alone (cutting two groups) write exactly those rows, the same values.
                var q = [Int8](repeating: 0, count: n * k)
                var scale = [Float](repeating: 0, count: n * k / 32), sum = scale
                var part = [Float](repeating: -7, count: n * r)
                KernelLevel.with(level) {
                    dk_quantize_activations(x.data, Int32(n), Int32(k), &q, &scale, &sum)
                    withExtendedLifetime(packed) {
                        let blocks = packed.blockStorage!
                        dk_matmul_interleaved(format.kernel, blocks, Int32(k), 13, 27, q, scale, sum, Int32(n), &part, Int32(r))
                    }
                }
                for j in 0..<n {
                    for i in 0..<r {
                        let want = (13..<27).contains(i) ? y[j * r + i] : -7
                        #expect(part[j * r + i] == want, "\(format) n \(n) partial row \(j) col \(i)")
                    }
                }
                // Each activation row alone (the two-row kernel) gives the bits it gets among n
                // (the wide kernel from 3 rows on).
                var alone = [Float](repeating: -7, count: r)
                for j in 0..<n {
                    KernelLevel.with(level) {
                        withExtendedLifetime(packed) {
                            dk_matmul_interleaved(
                                format.kernel, packed.blockStorage!, Int32(k), 13, 27, q.withUnsafeBufferPointer { $0.baseAddress! + j * k },
                                scale.withUnsafeBufferPointer { $0.baseAddress! + j * k / 32 },
                                sum.withUnsafeBufferPointer { $0.baseAddress! + j * k / 32 }, 1, &alone, Int32(r))
                        }
                    }
                    #expect(alone[13..<27].map(\.bitPattern) == part[(j * r + 13)..<(j * r + 27)].map(\.bitPattern), "\(format) n \(n) row \(j) alone")
                }
            }
        }
    }

    /// Quantizing then decoding stays within half a step of each block's grid (Q4_0's grid,
    /// -8d ... 7d with d = -max/8, ends one step short on the side opposite the block's largest
    /// magnitude, so there the error reaches a whole step).
    @Test("round trip within half a step", arguments: WeightFormat.allCases.filter(\.isQuantized))
    func roundTrip(format: WeightFormat) {
        let w = randomMatrix(8, 64, seed: 2, scale: 3)
        let d = PackedMatrix(w, format: format).decoded().values
        for b in 0..<(w.count / 32) {
            let block = w.values[(b * 32)..<(b * 32 + 32)]
            let (lo, hi) = (Double(block.min()!), Double(block.max()!))
            let amax = max(abs(lo), abs(hi))
            let step = format == .q8_0 ? amax / 127 : format == .q4_0 ? amax / 8 : (hi - lo) / 15
            for i in (b * 32)..<(b * 32 + 32) {
                let bound = format == .q4_0 ? step : step * 0.5
                #expect(abs(Double(d[i]) - Double(w.data[i])) <= bound * 1.01 + 1e-3 * amax, "\(format) value \(i)")
            }
        }
    }

    @Test("f32 products equal the dot products", arguments: levels)
    func f32Products(level: KernelLevel) {
        let (r, k) = (23, 77)  // k not a multiple of the vector width, r not of the kernel's four rows
        let w = randomMatrix(r, k, seed: 3)
        var first: [Float] = []
        for n in [1, 5, 8, 10, 35, 63, 64, 70] {  // inputs three at a time and the tails; sgemm from 64
            let x = randomMatrix(n, k, seed: 4)
            var y = [Float](repeating: .nan, count: n * r)
            KernelLevel.with(level) {
                y.withUnsafeMutableBufferPointer { yp in
                    PackedMatrix.multiply(x.data, n: n, [PackedProduct(PackedMatrix(w, format: .f32), into: yp.baseAddress!)], scratch: ProductScratch())
                }
            }
            for j in 0..<n {
                for i in 0..<r {
                    let exact = (0..<k).reduce(0.0) { $0 + Double(w.data[i * k + $1]) * Double(x.data[j * k + $1]) }
                    #expect(abs(Double(y[j * r + i]) - exact) < 1e-4, "n \(n) row \(j) col \(i)")
                }
            }
            // From 8 inputs to sgemm one kernel runs: the first input's products are the same
            // bits whatever the batch.
            if n == 8 { first = Array(y[..<r]) }
            if n > 8 && n < PackedMatrix.f32SgemmFrom {
                #expect(Array(y[..<r]).map(\.bitPattern) == first.map(\.bitPattern), "n \(n)")
            }
        }
    }

    /// A group of products on one input writes each into its own columns of a shared output.
    @Test func aGroupWritesEachProductIntoItsColumns() {
        let k = 64
        let a = randomMatrix(5, k, seed: 5), b = randomMatrix(3, k, seed: 6)
        let x = randomMatrix(2, k, seed: 7)
        var fused = [Float](repeating: .nan, count: 2 * 8), alone = [Float](repeating: .nan, count: 2 * 3)
        let pa = PackedMatrix(a, format: .q8_0), pb = PackedMatrix(b, format: .q8_0)
        fused.withUnsafeMutableBufferPointer { f in
            PackedMatrix.multiply(
                x.data, n: 2, [PackedProduct(pa, into: f.baseAddress!, ldy: 8), PackedProduct(pb, into: f.baseAddress! + 5, ldy: 8)],
                scratch: ProductScratch())
        }
        alone.withUnsafeMutableBufferPointer { p in
            PackedMatrix.multiply(x.data, n: 2, [PackedProduct(pb, into: p.baseAddress!)], scratch: ProductScratch())
        }
        for j in 0..<2 { #expect(Array(fused[(j * 8 + 5)..<(j * 8 + 8)]) == Array(alone[(j * 3)..<(j * 3 + 3)])) }
    }

    @Test("one token's attention is the softmax formula", arguments: levels)
    func attention(level: KernelLevel) {
        let (h, g, d, keys) = (6, 2, 16, 13)
        let stride = g * d + 5  // keys of one position need not be packed
        let q = randomMatrix(h, d, seed: 8), kv = randomMatrix(2, keys * stride, seed: 9)
        var out = [Float](repeating: .nan, count: h * d), scratch = [Float](repeating: 0, count: keys)
        KernelLevel.with(level) {
            attendToken(
                q: q.data, heads: h, kvHeads: g, headDim: d, keys: kv.data, values: kv.data + keys * stride, count: keys,
                stride: stride, out: &out, scratch: &scratch)
        }
        for head in 0..<h {
            let kvHead = head / (h / g)
            let scores = (0..<keys).map { j in
                (0..<d).reduce(0.0) { $0 + Double(q.data[head * d + $1]) * Double(kv.data[j * stride + kvHead * d + $1]) }
                    / Double(d).squareRoot()
            }
            let top = scores.max()!
            let p = scores.map { Foundation.exp($0 - top) }
            let total = p.reduce(0, +)
            for i in 0..<d {
                let want = (0..<keys).reduce(0.0) { $0 + p[$1] / total * Double(kv.data[keys * stride + $1 * stride + kvHead * d + i]) }
                #expect(abs(Double(out[head * d + i]) - want) < 1e-5, "head \(head) dim \(i)")
            }
        }
    }
}
