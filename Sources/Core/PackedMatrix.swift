// Weight matrices as the decode engine reads them: f32 (the model's own tensor, not copied),
// bf16, or block-quantized in ggml's layouts (Q8_0, Q4_0, Q4_1), kept quantized in memory. A
// product with quantized weights quantizes its activations to int8 blocks once and runs
// integer dot products (Sources/CKernels); one with bf16 weights rounds its activations to
// bf16 and sums in f32, as the training products over a bf16 base do. Several matrices that
// read the same input run as one piece of parallel work.
//
// Shapes: W [R, K] (R outputs, K inputs), x [N, K], y [N, R].

import CKernels
import Foundation

/// How the decode engine stores a weight matrix.
public enum WeightFormat: String, CaseIterable, Sendable, Codable {
    case f32
    /// The top half of each f32, rounded to nearest even: 16 bits per weight. Its products round
    /// their activations to bf16 too and sum in f32 (`dk_matmul_bf16`, `ProductWeight`).
    case bf16
    /// 32 int8 and one f16 scale per block: 8.5 bits per weight.
    case q8_0
    /// 32 4-bit values and one f16 scale per block (x = d (q - 8)): 4.5 bits per weight.
    case q4_0
    /// 32 4-bit values, an f16 scale and an f16 minimum per block (x = d q + m): 5 bits.
    case q4_1

    package var kernel: dk_format {
        switch self {
        case .f32: DK_F32
        case .bf16: DK_BF16
        case .q8_0: DK_Q8_0
        case .q4_0: DK_Q4_0
        case .q4_1: DK_Q4_1
        }
    }

    /// Block-quantized (Q8_0, Q4_0, Q4_1): products run on int8 activations.
    public var isQuantized: Bool { self != .f32 && self != .bf16 }

    /// Held in a buffer of its own rather than as the model's f32 tensor (every format but f32).
    public var isPacked: Bool { self != .f32 }

    /// Bytes of one row of `columns` values (a multiple of 32 when quantized).
    public func rowBytes(columns: Int) -> Int { dk_row_bytes(kernel, Int32(columns)) }

    /// Whether a matrix with rows of `columns` values can be stored this way: quantized rows
    /// are whole blocks of 32.
    public func fits(columns: Int) -> Bool { !isQuantized || columns % 32 == 0 }

    public var bitsPerWeight: Double { Double(rowBytes(columns: 32) * 8) / 32 }

    /// The format a model's matrix `name` takes when the model is quantized to `format`: the
    /// token embedding and the output matrix keep Q8_0 under the 4-bit formats (their errors
    /// reach every token's logits directly), as llama.cpp's quantizer chooses.
    public static func forMatrix(_ name: String, _ format: WeightFormat) -> WeightFormat {
        let vocabulary = name == "model.embed_tokens.weight" || name == "lm_head.weight"
        return vocabulary && (format == .q4_0 || format == .q4_1) ? .q8_0 : format
    }
}

/// Which kernels run: scalar, AVX2, or AVX-512 VNNI (the best this CPU has, unless
/// `DISTILL_KERNELS=scalar|avx2` asks for less).
public enum KernelLevel: Int, CaseIterable, Sendable, Comparable {
    case scalar = 0, avx2 = 1, avx512vnni = 2

    public static var current: KernelLevel { KernelLevel(rawValue: Int(dk_level()))! }

    /// Whether bf16 products run on AVX-512 BF16 on this thread (the CPU has it and the level
    /// is AVX-512); otherwise they run as sgemm on widened values.
    public static var bf16ProductsAvailable: Bool { dk_bf16_gemm_available() != 0 }
    public static var best: KernelLevel { KernelLevel(rawValue: Int(dk_max_level()))! }

    /// Runs `body` with the kernels of `level` (or the best below it), for tests comparing them.
    /// The choice belongs to this thread and the workers it hands parallel work to, so tests
    /// running side by side on other threads keep their own.
    package static func with<R>(_ level: KernelLevel, _ body: () throws -> R) rethrows -> R {
        let previous = dk_thread_level()
        dk_set_thread_level(Int32(level.rawValue))
        defer { dk_set_thread_level(previous) }
        return try body()
    }

    public static func < (a: KernelLevel, b: KernelLevel) -> Bool { a.rawValue < b.rawValue }
}

/// A read-only weight matrix [rows, columns] in one `WeightFormat`.
public final class PackedMatrix: @unchecked Sendable {
    public let format: WeightFormat
    public let rows: Int
    public let columns: Int
    /// f32: the tensor whose storage is read in place.
    private let tensor: Tensor?
    /// Quantized: the blocks, row after row (or interleaved by groups of 8 rows), owned
    /// unless `placed` holds them; bf16: the values, row after row.
    private let blocks: UnsafeMutableRawPointer?
    /// The arena storage the interleaved blocks lie in, when they were placed in one.
    private let placed: Storage?
    /// The blocks interleaved by groups of 8 rows (`dk_interleave`), for matrix-vector
    /// products without horizontal sums; false: ggml's row layout.
    public let interleaved: Bool

    /// `weight` [R, K] in `format`: quantized (as ggml's reference quantizers do) or rounded to
    /// bf16, or for f32 the tensor itself, shared. `interleave` stores the quantized formats
    /// interleaved when the rows come in groups of 8 (the decode engine's layout; `blockBytes`
    /// is then unavailable), in `arena` when given (`HugePageArena`: the engine's weights back
    /// to back on huge pages); bf16 goes into `arena` when given, in rows.
    public init(_ weight: Tensor, format: WeightFormat, interleave: Bool = false, in arena: HugePageArena? = nil) {
        precondition(weight.rank == 2, "a packed matrix is [rows, columns], got \(weight.shape)")
        (rows, columns, self.format) = (weight.shape[0], weight.shape[1], format)
        precondition(format.fits(columns: columns), "\(format.rawValue) rows are blocks of 32, got \(columns) columns")
        interleaved = interleave && Self.canInterleave(format, rows: weight.shape[0])
        if format == .f32 {
            (tensor, blocks, placed) = (weight, nil, nil)
            return
        }
        tensor = nil
        let rowBytes = format.rowBytes(columns: columns)
        // bf16 rows go straight into the arena (they are never interleaved); quantized rows are
        // interleaved into it from a buffer of their own.
        let size = weight.shape[0] * rowBytes
        let direct = interleaved ? nil : arena.map { Storage(uninitialized: (size + 3) / 4, in: $0) }
        let raw = direct.map { UnsafeMutableRawPointer($0.pointer) } ?? .allocate(byteCount: max(1, size), alignment: 64)
        let (k, data) = (columns, weight.data)
        parallelChunks(rows, grain: 64) { r in
            dk_quantize(format.kernel, data + r.lowerBound * k, Int32(r.count), Int32(k), raw + r.lowerBound * rowBytes)
        }
        (blocks, placed) = interleaved ? Self.interleave(raw, format: format, rows: rows, columns: k, in: arena) : (raw, direct)
    }

    /// Whether `interleave` applies: a quantized format, rows in groups of 8.
    static func canInterleave(_ format: WeightFormat, rows: Int) -> Bool {
        format.isQuantized && rows % 8 == 0 && rows > 0
    }

    /// The row-layout blocks `raw` interleaved into a new buffer, in `arena` when given (with
    /// the storage that holds them); `raw` is deallocated.
    private static func interleave(
        _ raw: UnsafeMutableRawPointer, format: WeightFormat, rows: Int, columns: Int, in arena: HugePageArena?
    ) -> (UnsafeMutableRawPointer, Storage?) {
        let size = rows * format.rowBytes(columns: columns)
        let placed = arena.map { Storage(uninitialized: (size + 3) / 4, in: $0) }
        let out = placed.map { UnsafeMutableRawPointer($0.pointer) } ?? .allocate(byteCount: size, alignment: 64)
        dk_interleave(format.kernel, raw, Int32(rows), Int32(columns), out)
        raw.deallocate()
        return (out, placed)
    }

    /// This matrix with its blocks interleaved, in `arena` when given (itself when that does
    /// not apply).
    public func interleavedCopy(in arena: HugePageArena? = nil) -> PackedMatrix {
        guard !interleaved, Self.canInterleave(format, rows: rows), let blockBytes else { return self }
        return PackedMatrix(format: format, rows: rows, columns: columns, bytes: blockBytes, interleave: true, in: arena)
    }

    /// A matrix over blocks already in `format`'s row layout (a GGUF file's tensor data),
    /// copied (and interleaved when `interleave` applies, in `arena` when given).
    public init(
        format: WeightFormat, rows: Int, columns: Int, bytes: UnsafeRawBufferPointer, interleave: Bool = false,
        in arena: HugePageArena? = nil
    ) {
        precondition(format.isPacked, "f32 matrices wrap a tensor")
        precondition(format.fits(columns: columns), "\(format.rawValue) rows are blocks of 32, got \(columns) columns")
        let size = rows * format.rowBytes(columns: columns)
        precondition(bytes.count == size, "\(rows) x \(columns) \(format.rawValue) takes \(size) bytes, got \(bytes.count)")
        (self.format, self.rows, self.columns, tensor) = (format, rows, columns, nil)
        interleaved = interleave && Self.canInterleave(format, rows: rows)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, size), alignment: 64)
        raw.copyMemory(from: bytes.baseAddress!, byteCount: size)
        (blocks, placed) = interleaved ? Self.interleave(raw, format: format, rows: rows, columns: columns, in: arena) : (raw, nil)
    }

    deinit { if placed == nil { blocks?.deallocate() } }

    /// Bytes the weights occupy.
    public var bytes: Int { rows * format.rowBytes(columns: columns) }

    /// Row-major bytes of the blocks (quantized formats, bf16), valid while this matrix lives (keep it
    /// alive across their use: `withExtendedLifetime`).
    public var blockBytes: UnsafeRawBufferPointer? {
        interleaved ? nil : blocks.map { UnsafeRawBufferPointer(start: $0, count: bytes) }
    }

    /// The quantized blocks in their layout (row or interleaved), for kernel tests.
    package var blockStorage: UnsafeRawPointer? { blocks.map { UnsafeRawPointer($0) } }

    /// bf16: the values, row after row.
    var bf16Values: UnsafePointer<UInt16>? {
        format == .bf16 ? blocks.map { UnsafePointer($0.assumingMemoryBound(to: UInt16.self)) } : nil
    }

    /// Rows `range` decoded to floats into `out` ([range.count, columns]).
    public func decode(rows range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows \(range) of a \(rows)-row matrix")
        if let tensor {
            out.update(from: tensor.data + range.lowerBound * columns, count: range.count * columns)
        } else if interleaved {
            dk_dequantize_interleaved(
                format.kernel, blocks!, Int32(columns), Int32(range.lowerBound), Int32(range.upperBound), out)
        } else {
            let rowBytes = format.rowBytes(columns: columns)
            dk_dequantize(format.kernel, blocks! + range.lowerBound * rowBytes, Int32(range.count), Int32(columns), out)
        }
    }

    /// The whole matrix as floats.
    public func decoded() -> Tensor {
        let out = Tensor.empty([rows, columns])
        parallelChunks(rows, grain: 256) { r in decode(rows: r, into: out.data + r.lowerBound * columns) }
        return out
    }

    /// y[j, r] = W[r] . x[j] for the rows `range` of W and all `n` inputs.
    fileprivate func multiply(
        rows range: Range<Int>, input: ProductInput, into y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        let (r0, r1) = (Int32(range.lowerBound), Int32(range.upperBound))
        if let tensor {
            dk_matmul_f32(tensor.data, Int32(columns), r0, r1, input.x, Int32(input.n), y, Int32(ldy))
        } else if format == .bf16 {
            dk_matmul_bf16(bf16Values!, Int32(columns), r0, r1, input.x, Int32(input.n), y, Int32(ldy))
        } else if interleaved {
            dk_matmul_interleaved(
                format.kernel, blocks!, Int32(columns), r0, r1, input.q, input.scale, input.sum, Int32(input.n), y,
                Int32(ldy))
        } else {
            dk_matmul_quantized(
                format.kernel, blocks!, Int32(columns), r0, r1, input.q, input.scale, input.sum, Int32(input.n), y,
                Int32(ldy))
        }
    }
}

/// One input of a group of products: the floats, and their int8 blocks when a quantized
/// matrix reads them.
private struct ProductInput {
    let x: UnsafePointer<Float>
    let n: Int
    let q: UnsafePointer<Int8>?
    let scale: UnsafePointer<Float>?
    let sum: UnsafePointer<Float>?
}

/// Reusable buffers for products (the int8 activations), so a decode step allocates nothing.
public final class ProductScratch {
    private var q = UnsafeMutablePointer<Int8>.allocate(capacity: 1)
    private var scale = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private var sum = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private var capacity = 0  // values

    public init() {}

    deinit {
        roundedBuffer.deallocate()
        q.deallocate()
        scale.deallocate()
        sum.deallocate()
    }

    private var roundedBuffer = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private var roundedCapacity = 0

    /// x [n, k] as its int8 activations decoded (`dk_round_activations`), in a reused buffer.
    fileprivate func rounded(_ x: UnsafePointer<Float>, n: Int, k: Int) -> UnsafePointer<Float> {
        if n * k > roundedCapacity {
            roundedBuffer.deallocate()
            roundedCapacity = n * k
            roundedBuffer = .allocate(capacity: roundedCapacity)
        }
        let out = roundedBuffer
        out.update(from: x, count: n * k)
        parallelChunks(n, grain: 16) { rows in dk_round_activations(out + rows.lowerBound * k, Int32(rows.count), Int32(k)) }
        return UnsafePointer(out)
    }

    fileprivate func quantized(_ x: UnsafePointer<Float>, n: Int, k: Int) -> ProductInput {
        if n * k > capacity {
            q.deallocate()
            scale.deallocate()
            sum.deallocate()
            capacity = n * k
            q = .allocate(capacity: capacity)
            scale = .allocate(capacity: capacity / 32)
            sum = .allocate(capacity: capacity / 32)
        }
        let (q, scale, sum) = (q, scale, sum)
        parallelChunks(n, grain: 16) { rows in
            let at = rows.lowerBound * k
            dk_quantize_activations(x + at, Int32(rows.count), Int32(k), q + at, scale + at / 32, sum + at / 32)
        }
        return ProductInput(x: x, n: n, q: q, scale: scale, sum: sum)
    }
}

/// One product of a group: W and where its [N, R] result goes (row stride `ldy`).
public struct PackedProduct {
    public let matrix: PackedMatrix
    public let output: UnsafeMutablePointer<Float>
    public let ldy: Int

    public init(_ matrix: PackedMatrix, into output: UnsafeMutablePointer<Float>, ldy: Int? = nil) {
        (self.matrix, self.output, self.ldy) = (matrix, output, ldy ?? matrix.rows)
    }
}

extension PackedMatrix {
    /// Inputs from which products go to sgemm rather than the matrix-vector kernels: f32 weights
    /// as they are; quantized weights decoded a block of rows at a time, against the input's
    /// int8 activations decoded, which is the quantized product up to float summation order
    /// (bf16 weights decoded the same way, against the input rounded to bf16, where the CPU
    /// lacks the bf16 kernel).
    /// Interleaved weights never do: their integer kernel unpacks each block once for all
    /// the inputs, and beats decoding plus sgemm at every batch (2.4-2.6x on prefill, 2.6x on
    /// a decode step of 16 rows, Q4_1; docs/training.md).
    public static let sgemmFrom = 16

    /// Inputs from which f32 and bf16 weights go to sgemm. Below it distill's own kernel reads each
    /// weight once for all the inputs and needs no packing; sgemm packs the weights on every
    /// call, which at a decode step's few inputs costs about as much as the product.
    public static let f32SgemmFrom = 64

    /// Rows of a quantized matrix one sgemm worker decodes at a time.
    static let decodeRows = 128

    /// Runs every product of `group` on the same input x [n, K], all their rows split over
    /// the threads as one piece of work (q, k and v of a layer; gate and up). The input is
    /// quantized once when any matrix is quantized. From `sgemmFrom` inputs on (`f32SgemmFrom`
    /// when every matrix is f32), products run as sgemms (see there), unless every matrix is
    /// interleaved.
    public static func multiply(
        _ x: UnsafePointer<Float>, n: Int, _ group: [PackedProduct], scratch: ProductScratch
    ) {
        guard n > 0, let k = group.first?.matrix.columns else { return }
        precondition(group.allSatisfy { $0.matrix.columns == k }, "products of one input need equal columns")
        let quantized = group.contains { $0.matrix.format.isQuantized }
        let integer = quantized && group.allSatisfy { $0.matrix.interleaved }
        // bf16 runs on its own kernel at every batch where the CPU has the instructions.
        let bf16 = group.allSatisfy { $0.matrix.format == .bf16 } && dk_bf16_gemm_available() != 0
        if !integer && !bf16 && n >= (quantized ? sgemmFrom : f32SgemmFrom) {
            return multiplyBySgemm(x, n: n, group, scratch: scratch)
        }
        let input = quantized ? scratch.quantized(x, n: n, k: k) : ProductInput(x: x, n: n, q: nil, scale: nil, sum: nil)
        // The group's rows end to end; each chunk of them runs on one thread.
        let ends = group.reduce(into: [Int]()) { $0.append(($0.last ?? 0) + $1.matrix.rows) }
        parallelChunks(ends.last!, grain: 32) { chunk in
            var start = 0
            for (p, end) in zip(group, ends) {
                defer { start = end }
                let lo = max(chunk.lowerBound, start), hi = min(chunk.upperBound, end)
                guard lo < hi else { continue }
                p.matrix.multiply(rows: (lo - start)..<(hi - start), input: input, into: p.output, ldy: p.ldy)
            }
        }
    }

    private static func multiplyBySgemm(
        _ x: UnsafePointer<Float>, n: Int, _ group: [PackedProduct], scratch: ProductScratch
    ) {
        let k = group[0].matrix.columns
        for p in group where p.matrix.format == .f32 {
            BLAS.sgemm(
                transA: false, transB: true, m: n, n: p.matrix.rows, k: k, a: x, lda: k, b: p.matrix.tensor!.data,
                ldb: k, c: p.output, ldc: p.ldy)
        }
        let packed = group.filter { $0.matrix.format.isPacked }
        guard !packed.isEmpty else { return }
        let rounded = packed.contains { $0.matrix.format.isQuantized } ? scratch.rounded(x, n: n, k: k) : x
        let halves = packed.contains { $0.matrix.format == .bf16 } ? bf16Rounded(x, rows: n, columns: k, stride: k, split: true) : nil
        defer { halves?.deallocate() }
        // Blocks of rows of every packed matrix, each decoded and multiplied by one worker.
        let blocks = packed.flatMap { p in
            stride(from: 0, to: p.matrix.rows, by: decodeRows).map { (p, $0..<min($0 + decodeRows, p.matrix.rows)) }
        }
        BLAS.singleThreaded {
            parallelChunks(blocks.count) { items in
                let w = UnsafeMutablePointer<Float>.allocate(capacity: decodeRows * k)
                defer { w.deallocate() }
                for (p, rows) in blocks[items] {
                    p.matrix.decode(rows: rows, into: w)
                    BLAS.sgemm(
                        transA: false, transB: true, m: n, n: rows.count, k: k,
                        a: p.matrix.format.isQuantized ? rounded : halves.map { UnsafePointer($0) } ?? x, lda: k, b: w, ldb: k,
                        c: p.output + rows.lowerBound, ldc: p.ldy, split: false)
                }
            }
        }
    }
}
