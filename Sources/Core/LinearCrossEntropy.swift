// Fused, chunked lm head + cross-entropy: crossEntropy(linear(hidden, weight), ...) without
// ever holding the [N, V] logits or their gradient. A language model's vocabulary makes those
// two tensors the largest of a training step (config L: 4096 rows x 8192 words = 128 MiB
// each), and writing them once and reading them back costs more than the product itself.
//
// Rows whose target counts are cut into chunks of R rows (R * V floats of logits stay in the
// cache); each worker thread takes a contiguous run of chunks with its own scratch and its own
// partial weight gradient. Per chunk, with X the chunk's hidden rows [R, C]:
//   Z = X Wᵀ                                        // [R, V]
//   lse_i = log Σ_j exp Z_ij,  loss += w_i (lse_i - Z_i,t_i)
//   dZ_ij = w_i / Σw * (softmax_ij - [j == t_i])    // in place over Z
//   dX = dZ W                                       // [R, C]
//   dW_worker += dZᵀ X                              // [V, C]
// The loss is a scalar, so its input gradients are the pieces above times the incoming
// scalar: they are computed in the forward (three sgemms over the rows instead of four when
// the backward recomputes the logits) and the backward only scales and adds them. What the
// tape keeps between the two is dX [N, C] and dW [V, C], not [N, V].
//
// Rows with an ignored target are never multiplied (SFT masks whole prompts); their hidden
// gradient is exactly 0, as in the unfused composition.

import Foundation

extension Tensor {
    /// crossEntropy(linear(hidden, weight), targets:, ignoreIndex:, weights:) for hidden
    /// [..., C] and weight [V, C] (stored [out, in]), computed chunk by chunk.
    ///
    /// loss = Σ_i w_i * (lse_i - z[i, t_i]) / Σ_i w_i over rows whose target is not
    /// `ignoreIndex`, z = hidden Wᵀ; w_i = 1 without `weights`. With no counted row the loss
    /// is 0 and so are both gradients. A frozen `weight` (or `hidden`) gets no gradient work.
    public static func linearCrossEntropy(
        _ hidden: Tensor, _ weight: Tensor, targets: [Int32], ignoreIndex: Int32 = -100, weights: [Float]? = nil
    ) -> Tensor {
        linearCrossEntropy(
            hidden, weight, targets: targets, ignoreIndex: ignoreIndex, weights: weights,
            rowsPerChunk: chunkRows(vocabulary: weight.shape.first ?? 1))
    }

    /// The same for a frozen packed head [V, C] (QLoRA's tied embedding): each chunk's logits
    /// and hidden gradient read the blocks a tile of vocabulary rows at a time
    /// (PackedProducts.swift), so no f32 copy of the head is made.
    public static func linearCrossEntropy(
        _ hidden: Tensor, _ weight: PackedMatrix, targets: [Int32], ignoreIndex: Int32 = -100, weights: [Float]? = nil,
        rowsPerChunk: Int? = nil
    ) -> Tensor {
        linearCrossEntropy(
            hidden, .packed(weight), targets: targets, ignoreIndex: ignoreIndex, weights: weights,
            rowsPerChunk: rowsPerChunk ?? chunkRows(vocabulary: weight.rows))
    }

    /// The same with an explicit chunk height (tests use small ones to cross chunk and
    /// worker boundaries).
    package static func linearCrossEntropy(
        _ hidden: Tensor, _ weight: Tensor, targets: [Int32], ignoreIndex: Int32, weights: [Float]?, rowsPerChunk: Int
    ) -> Tensor {
        precondition(weight.rank == 2, "linearCrossEntropy: weight must be [V, C], got \(weight.shape)")
        return linearCrossEntropy(
            hidden, .dense(weight), targets: targets, ignoreIndex: ignoreIndex, weights: weights, rowsPerChunk: rowsPerChunk)
    }

    private static func linearCrossEntropy(
        _ hidden: Tensor, _ weight: ProductWeight, targets: [Int32], ignoreIndex: Int32, weights: [Float]?, rowsPerChunk: Int
    ) -> Tensor {
        precondition(rowsPerChunk > 0, "linearCrossEntropy: rowsPerChunk must be positive, got \(rowsPerChunk)")
        let (v, c) = (weight.rows, weight.columns)
        precondition(
            hidden.rank >= 1 && hidden.shape[hidden.rank - 1] == c,
            "linearCrossEntropy: hidden \(hidden.shape) and weight [\(v), \(c)] disagree on the width")
        let n = hidden.count / Swift.max(c, 1)
        precondition(targets.count == n, "linearCrossEntropy: \(targets.count) targets for \(n) rows of \(hidden.shape)")
        if let weights { precondition(weights.count == n, "linearCrossEntropy: \(weights.count) weights for \(n) rows") }
        for t in targets where t != ignoreIndex {
            precondition(t >= 0 && Int(t) < v, "target \(t) out of range for vocabulary \(v)")
        }
        let counted = (0..<n).filter { targets[$0] != ignoreIndex }
        let weightSum = counted.reduce(0.0) { $0 + Double(weights?[$1] ?? 1) }
        let wantsH = GradMode.isEnabled && hidden.requiresGrad
        let trainedWeight = weight.trainable
        let wantsW = GradMode.isEnabled && trainedWeight != nil
        guard weightSum > 0 else {
            let out = Tensor(shape: [], values: [0])
            record(out, [hidden] + weight.inputs) { _ in
                if hidden.requiresGrad { _ = hidden.gradBuffer() }
                if let trainedWeight { _ = trainedWeight.gradBuffer() }
            }
            return out
        }

        let rows = rowsPerChunk
        let chunks = (counted.count + rows - 1) / rows
        let workers = Serial.isActive ? 1 : Swift.min(Threads.count, chunks)
        let contiguous = counted.count == n  // every row counts: address hidden in place
        let dH = wantsH ? (contiguous ? Tensor.empty(hidden.shape) : Tensor.zeros(hidden.shape)) : nil
        // Worker 0 accumulates into dW itself; the others into partials added at the end.
        let dW = wantsW ? Tensor.empty([v, c]) : nil
        let partials = wantsW ? (1..<workers).map { _ in Tensor.empty([v, c]) } : []
        var chunkLoss = [Double](repeating: 0, count: chunks)
        let scale = 1 / weightSum
        let px = UnsafePointer(hidden.data)

        chunkLoss.withUnsafeMutableBufferPointer { lossOut in
            let lossOut = lossOut.baseAddress!
            let work = {
                parallelChunks(workers) { slots in
                    let z = Tensor.empty([rows, v])  // logits, then their gradient
                    let xs = contiguous ? nil : Tensor.empty([rows, c])
                    let dxs = wantsH && !contiguous ? Tensor.empty([rows, c]) : nil
                    for slot in slots {
                        let part = slot == 0 ? dW : (wantsW ? partials[slot - 1] : nil)
                        let first = chunks * slot / workers, last = chunks * (slot + 1) / workers
                        for chunk in first..<last {
                            let r0 = chunk * rows, m = Swift.min(rows, counted.count - r0)
                            let x: UnsafePointer<Float>
                            if let xs {  // gather the counted rows
                                for i in 0..<m { xs.data.advanced(by: i * c).update(from: px + counted[r0 + i] * c, count: c) }
                                x = UnsafePointer(xs.data)
                            } else {
                                x = px + r0 * c
                            }
                            // Z = X Wᵀ  // [m, V]
                            weight.forward(x, m: m, into: z.data, ldy: v, split: workers == 1)
                            lossOut[chunk] = chunkLossAndGradient(
                                z.data, m: m, v: v, rows: counted[r0..<(r0 + m)], targets: targets, weights: weights,
                                scale: scale, gradient: wantsH || wantsW)
                            if let dH {  // dX = dZ W  // [m, C]
                                let dst = dxs?.data ?? dH.data + r0 * c
                                weight.backward(z.data, m: m, lddy: v, into: dst, beta: 0, split: workers == 1)
                                if let dxs {  // scatter back to the counted rows
                                    for i in 0..<m { (dH.data + counted[r0 + i] * c).update(from: dxs.data + i * c, count: c) }
                                }
                            }
                            if let part {  // dW += dZᵀ X  // [V, C]
                                BLAS.sgemm(
                                    transA: true, transB: false, m: v, n: c, k: m, a: z.data, lda: v, b: x, ldb: c,
                                    beta: chunk == first ? 0 : 1, c: part.data, ldc: c, split: workers == 1)
                            }
                        }
                        // A worker with no chunk leaves its partial unwritten: clear it.
                        if first == last, let part { part.data.update(repeating: 0, count: v * c) }
                    }
                }
            }
            if workers > 1 { BLAS.singleThreaded(work) } else { work() }
        }
        if let dW, !partials.isEmpty {
            let (dst, srcs) = (dW.data, partials.map { UnsafePointer($0.data) })
            parallelChunks(v * c, grain: 1 << 14) { range in
                for src in srcs { addScaled(dst + range.lowerBound, src + range.lowerBound, range.count, 1) }
            }
        }
        let total = chunkLoss.reduce(0, +)
        let out = Tensor(shape: [], values: [Float(total / weightSum)])
        record(out, [hidden] + weight.inputs) { g in
            let k = g[0]
            if let dH {
                if hidden.grad == nil && k == 1 {
                    hidden.grad = dH  // the gradient piece is already the answer: no copy
                } else {
                    let (dst, src) = (hidden.gradBuffer(), UnsafePointer(dH.data))
                    parallelChunks(dH.count, grain: 1 << 14) { r in addScaled(dst + r.lowerBound, src + r.lowerBound, r.count, k) }
                }
            }
            if let dW, let trainedWeight {
                let (dst, src) = (trainedWeight.gradBuffer(), UnsafePointer(dW.data))
                parallelChunks(dW.count, grain: 1 << 14) { r in addScaled(dst + r.lowerBound, src + r.lowerBound, r.count, k) }
            }
        }
        return out
    }

    /// Rows per chunk: about 2 Mi floats (8 MiB) of logits, between 64 and 1024 rows. Fewer
    /// rows would make the weight-gradient product (which reads and writes all of [V, C] per
    /// chunk) memory-bound; more would leave the logits in main memory.
    static func chunkRows(vocabulary v: Int) -> Int {
        Swift.min(1024, Swift.max(64, (1 << 21) / Swift.max(v, 1)))
    }
}

/// The weighted loss Σ w_i (lse_i - z[i, t_i]) of m logit rows z [m, V] (the counted rows
/// `rows`), and with `gradient` each row replaced in place by
/// scale * w_i * (softmax(z_i) - onehot(t_i)).
@inline(__always)
private func chunkLossAndGradient(
    _ z: UnsafeMutablePointer<Float>, m: Int, v: Int, rows: ArraySlice<Int>, targets: [Int32], weights: [Float]?,
    scale: Double, gradient: Bool
) -> Double {
    var total = 0.0
    for (i, r) in rows.enumerated() {
        let row = z + i * v, t = Int(targets[r]), w = weights?[r] ?? 1
        let lse = logSumExp(row, v)
        total += Double(w) * Double(lse - row[t])
        guard gradient else { continue }
        let k = Float(scale * Double(w))
        var j = 0
        while j + 8 <= v {
            let p = UnsafeMutableRawPointer(row + j)
            p.storeBytes(of: k * expNonPositive(p.loadUnaligned(as: SIMD8<Float>.self) - lse), as: SIMD8<Float>.self)
            j += 8
        }
        while j < v {
            row[j] = k * fastExp(row[j] - lse)
            j += 1
        }
        row[t] -= k
    }
    return total
}

/// dst[i] += k * src[i].
@inline(__always)
private func addScaled(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int, _ k: Float) {
    let kv = SIMD8<Float>(repeating: k)
    var i = 0
    while i + 8 <= count {
        let d = UnsafeMutableRawPointer(dst + i)
        d.storeBytes(
            of: d.loadUnaligned(as: SIMD8<Float>.self) + kv * UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self),
            as: SIMD8<Float>.self)
        i += 8
    }
    while i < count {
        dst[i] += k * src[i]
        i += 1
    }
}
