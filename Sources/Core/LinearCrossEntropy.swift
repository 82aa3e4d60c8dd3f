// Fused, chunked lm heads: crossEntropy(linear(hidden, weight), ...) and
// tokenLogProbs(linear(hidden, weight), ...) without ever holding the [N, V] logits or their
// gradient. A language model's vocabulary makes those two tensors the largest of a training
// step (config L: 4096 rows x 8192 words = 128 MiB each; SmolLM2-135M's 49,152 words at
// 8 x 512 rows: 768 MiB each), and writing them once and reading them back costs more than
// the product itself.
//
// Rows whose target counts are cut into chunks of R rows (R * V floats of logits stay in the
// cache); each worker thread takes a contiguous run of chunks with its own scratch and its own
// partial weight gradient (`headChunks`). Per chunk, with X the chunk's hidden rows [R, C]:
//   Z = X Wᵀ                                        // [R, V]
//   a row-wise pass over Z: log-sum-exp, the value, and dZ in place over Z
//   dX = dZ W                                       // [R, C]
//   dW_worker += dZᵀ X                              // [V, C]
//
// Cross-entropy: lse_i = log Σ_j exp Z_ij, loss += w_i (lse_i - Z_i,t_i),
// dZ_ij = w_i / Σw * (softmax_ij - [j == t_i]). The loss is a scalar, so its input gradients
// are the pieces above times the incoming scalar: they are computed in the forward (three
// sgemms over the rows instead of four when the backward recomputes the logits) and the
// backward only scales and adds them. What the tape keeps between the two is dX [N, C] and
// dW [V, C], not [N, V].
//
// Token log-probs: lp_i = Z_i,t_i - lse_i, a vector [N], so the backward gets a gradient g_i
// per row: dZ_ij = g_i ([j == t_i] - softmax_ij). dX is linear in g row by row, so when the
// weight takes no gradient (a frozen or packed head: LoRA, DPO's reference) the forward
// computes dX for g = 1 and the backward scales each row by g_i (two products). dW is not:
// a trained head keeps only lse [N] and recomputes each chunk's logits in the backward
// (four products).
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
            rowsPerChunk: chunkRows(dense: weight))
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
            rowsPerChunk: rowsPerChunk ?? chunkRows(packed: weight))
    }

    /// The same with an explicit chunk height (tests use small ones to cross chunk and
    /// worker boundaries).
    package static func linearCrossEntropy(
        _ hidden: Tensor, _ weight: Tensor, targets: [Int32], ignoreIndex: Int32, weights: [Float]?, rowsPerChunk: Int
    ) -> Tensor {
        precondition(weight.rank == 2, "linearCrossEntropy: weight must be [V, C], got \(weight.shape)")
        return linearCrossEntropy(
            hidden, .dense(weight), targets: targets, ignoreIndex: ignoreIndex, weights: weights,
            rowsPerChunk: rowsPerChunk)
    }

    private static func linearCrossEntropy(
        _ hidden: Tensor, _ weight: ProductWeight, targets: [Int32], ignoreIndex: Int32, weights: [Float]?,
        rowsPerChunk: Int
    ) -> Tensor {
        let n = checkHead(
            "linearCrossEntropy", hidden, weight, targets: targets, ignoreIndex: ignoreIndex, rowsPerChunk: rowsPerChunk
        )
        if let weights {
            precondition(weights.count == n, "linearCrossEntropy: \(weights.count) weights for \(n) rows")
        }
        let v = weight.rows
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
        var chunkLoss = [Double](repeating: 0, count: (counted.count + rows - 1) / rows)
        let scale = 1 / weightSum
        let (dH, dW) = chunkLoss.withUnsafeMutableBufferPointer { lossOut in
            let lossOut = lossOut.baseAddress!
            return headChunks(hidden, weight, counted: counted, rowsPerChunk: rows, dHidden: wantsH, dWeight: wantsW) {
                z, chunk, chunkRows in
                var total = 0.0
                for (i, r) in chunkRows.enumerated() {
                    let row = z + i * v, t = Int(targets[r]), w = weights?[r] ?? 1
                    let lse = logSumExp(row, v)
                    total += Double(w) * Double(lse - row[t])
                    // dZ = scale * w_i * (softmax - onehot)
                    if wantsH || wantsW {
                        softmaxMinusOneHot(row, v, lse: lse, target: t, scale: Float(scale * Double(w)))
                    }
                }
                lossOut[chunk] = total
            }
        }
        let total = chunkLoss.reduce(0, +)
        let out = Tensor(shape: [], values: [Float(total / weightSum)])
        record(out, [hidden] + weight.inputs) { g in
            let k = g[0]
            if let dH { addGradient(hidden, dH, k) }
            if let dW, let trainedWeight { addGradient(trainedWeight, dW, k, adopt: false) }
        }
        return out
    }

    /// tokenLogProbs(linear(hidden, weight), targets:, ignoreIndex:) for hidden [..., C] and
    /// weight [V, C] (stored [out, in]), computed chunk by chunk: [...], with
    /// lp_i = z[i, t_i] - log Σ_j exp z[i, j], z = hidden Wᵀ, on rows whose target is not
    /// `ignoreIndex`; 0 and no gradient on the others.
    ///
    /// A frozen `weight` (LoRA, a DPO reference) gets no gradient work, and the hidden
    /// gradient is then computed in the forward for a unit incoming gradient (two products
    /// per row in all). A trained weight keeps one log-sum-exp per row and recomputes the
    /// logits in the backward (four products). Without the tape (`GradMode.withoutGrad`, or
    /// no input that needs a gradient) only the logits' product runs.
    public static func linearTokenLogProbs(
        _ hidden: Tensor, _ weight: Tensor, targets: [Int32], ignoreIndex: Int32 = -100
    ) -> Tensor {
        linearTokenLogProbs(
            hidden, weight, targets: targets, ignoreIndex: ignoreIndex,
            rowsPerChunk: chunkRows(dense: weight))
    }

    /// The same for a frozen packed head [V, C] (QLoRA's tied embedding), read a tile of
    /// vocabulary rows at a time as `linearCrossEntropy` reads it.
    public static func linearTokenLogProbs(
        _ hidden: Tensor, _ weight: PackedMatrix, targets: [Int32], ignoreIndex: Int32 = -100, rowsPerChunk: Int? = nil
    ) -> Tensor {
        linearTokenLogProbs(
            hidden, .packed(weight), targets: targets, ignoreIndex: ignoreIndex,
            rowsPerChunk: rowsPerChunk ?? chunkRows(packed: weight))
    }

    /// The same with an explicit chunk height (tests use small ones to cross chunk and
    /// worker boundaries).
    package static func linearTokenLogProbs(
        _ hidden: Tensor, _ weight: Tensor, targets: [Int32], ignoreIndex: Int32, rowsPerChunk: Int
    ) -> Tensor {
        precondition(weight.rank == 2, "linearTokenLogProbs: weight must be [V, C], got \(weight.shape)")
        return linearTokenLogProbs(
            hidden, .dense(weight), targets: targets, ignoreIndex: ignoreIndex, rowsPerChunk: rowsPerChunk)
    }

    private static func linearTokenLogProbs(
        _ hidden: Tensor, _ weight: ProductWeight, targets: [Int32], ignoreIndex: Int32, rowsPerChunk rows: Int
    ) -> Tensor {
        let n = checkHead(
            "linearTokenLogProbs", hidden, weight, targets: targets, ignoreIndex: ignoreIndex, rowsPerChunk: rows)
        let v = weight.rows
        let counted = (0..<n).filter { targets[$0] != ignoreIndex }
        let wantsH = GradMode.isEnabled && hidden.requiresGrad
        let trainedWeight = GradMode.isEnabled ? weight.trainable : nil
        // Without a weight gradient, dX for g = 1 now; with one, everything in the backward.
        let unitGradient = wantsH && trainedWeight == nil
        let out = Tensor.zeros(Array(hidden.shape.dropLast()))  // [...]
        var lse = [Float](repeating: 0, count: n)
        let po = out.data
        let (unitDH, _) = lse.withUnsafeMutableBufferPointer { lseOut in
            let lseOut = lseOut.baseAddress!
            return headChunks(
                hidden, weight, counted: counted, rowsPerChunk: rows, dHidden: unitGradient, dWeight: false
            ) { z, _, chunkRows in
                for (i, r) in chunkRows.enumerated() {
                    let row = z + i * v, t = Int(targets[r])
                    let l = logSumExp(row, v)
                    (lseOut[r], po[r]) = (l, row[t] - l)
                    // dZ = onehot - softmax, the gradient of lp_i itself
                    if unitGradient { softmaxMinusOneHot(row, v, lse: l, target: t, scale: -1) }
                }
            }
        }
        guard wantsH || trainedWeight != nil else { return out }
        let c = weight.columns
        record(out, [hidden] + weight.inputs) { g in
            if let unitDH {  // dX_i = g_i * dX_i(g = 1)
                let (dst, src) = (hidden.gradBuffer(), UnsafePointer(unitDH.data))
                parallelChunks(counted.count, grain: 16) { range in
                    for r in counted[range] where g[r] != 0 { addScaled(dst + r * c, src + r * c, c, g[r]) }
                }
                return
            }
            let (dH, dW) = headChunks(
                hidden, weight, counted: counted, rowsPerChunk: rows, dHidden: wantsH, dWeight: true
            ) { z, _, chunkRows in
                for (i, r) in chunkRows.enumerated() {  // dZ = g_i (onehot - softmax), from the kept lse
                    softmaxMinusOneHot(z + i * v, v, lse: lse[r], target: Int(targets[r]), scale: -g[r])
                }
            }
            if let dH { addGradient(hidden, dH, 1) }
            if let dW, let trainedWeight { addGradient(trainedWeight, dW, 1, adopt: false) }
        }
        return out
    }

    /// Checks a fused head's shapes and targets; returns the row count N.
    private static func checkHead(
        _ op: String, _ hidden: Tensor, _ weight: ProductWeight, targets: [Int32], ignoreIndex: Int32, rowsPerChunk: Int
    ) -> Int {
        precondition(rowsPerChunk > 0, "\(op): rowsPerChunk must be positive, got \(rowsPerChunk)")
        let (v, c) = (weight.rows, weight.columns)
        precondition(
            hidden.rank >= 1 && hidden.shape[hidden.rank - 1] == c,
            "\(op): hidden \(hidden.shape) and weight [\(v), \(c)] disagree on the width")
        let n = hidden.count / Swift.max(c, 1)
        precondition(targets.count == n, "\(op): \(targets.count) targets for \(n) rows of \(hidden.shape)")
        for t in targets where t != ignoreIndex {
            precondition(t >= 0 && Int(t) < v, "target \(t) out of range for vocabulary \(v)")
        }
        return n
    }

    /// The chunk loop of both fused heads over the `counted` rows of hidden [N, C]: for each
    /// chunk, Z = X Wᵀ into a per-worker scratch [R, V], then `rowwise(Z, chunk, rows)`, which
    /// reads Z and, when a gradient is asked for, leaves dZ in its place; then with `dHidden`
    /// dX = dZ W into those rows of dH [N, C] (rows not counted are 0), and with `dWeight`
    /// dW = Σ_chunks dZᵀ X [V, C] (per-worker partials added in a fixed order). `rowwise` runs
    /// on several threads at once, each call on its own chunk.
    private static func headChunks(
        _ hidden: Tensor, _ weight: ProductWeight, counted: [Int], rowsPerChunk rows: Int, dHidden: Bool, dWeight: Bool,
        _ rowwise: (_ z: UnsafeMutablePointer<Float>, _ chunk: Int, _ rows: ArraySlice<Int>) -> Void
    ) -> (dH: Tensor?, dW: Tensor?) {
        let (v, c) = (weight.rows, weight.columns)
        let n = hidden.count / Swift.max(c, 1)
        let chunks = (counted.count + rows - 1) / rows
        let workers = Serial.isActive ? 1 : Swift.max(1, Swift.min(Threads.count, chunks))
        let contiguous = counted.count == n  // every row counts: address hidden in place
        let dH = dHidden ? (contiguous ? Tensor.empty(hidden.shape) : Tensor.zeros(hidden.shape)) : nil
        // Worker 0 accumulates into dW itself; the others into partials added at the end.
        let dW = dWeight ? Tensor.empty([v, c]) : nil
        let partials = dWeight ? (1..<workers).map { _ in Tensor.empty([v, c]) } : []
        let px = UnsafePointer(hidden.data)
        func work() {
            parallelChunks(workers) { slots in
                let z = Tensor.empty([rows, v])  // logits, then their gradient
                let xs = contiguous ? nil : Tensor.empty([rows, c])
                let dxs = dHidden && !contiguous ? Tensor.empty([rows, c]) : nil
                for slot in slots {
                    let part = slot == 0 ? dW : (dWeight ? partials[slot - 1] : nil)
                    let first = chunks * slot / workers, last = chunks * (slot + 1) / workers
                    for chunk in first..<last {
                        let r0 = chunk * rows, m = Swift.min(rows, counted.count - r0)
                        let x: UnsafePointer<Float>
                        if let xs {  // gather the counted rows
                            for i in 0..<m {
                                xs.data.advanced(by: i * c).update(from: px + counted[r0 + i] * c, count: c)
                            }
                            x = UnsafePointer(xs.data)
                        } else {
                            x = px + r0 * c
                        }
                        // Z = X Wᵀ  // [m, V]
                        weight.forward(x, m: m, into: z.data, ldy: v, split: workers == 1)
                        rowwise(z.data, chunk, counted[r0..<(r0 + m)])
                        if let dH {  // dX = dZ W  // [m, C]
                            let dst = dxs?.data ?? dH.data + r0 * c
                            weight.backward(z.data, m: m, lddy: v, into: dst, beta: 0, split: workers == 1)
                            if let dxs {  // scatter back to the counted rows
                                for i in 0..<m {
                                    (dH.data + counted[r0 + i] * c).update(from: dxs.data + i * c, count: c)
                                }
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
        if let dW, !partials.isEmpty {
            let (dst, srcs) = (dW.data, partials.map { UnsafePointer($0.data) })
            parallelChunks(v * c, grain: 1 << 14) { range in
                for src in srcs { addScaled(dst + range.lowerBound, src + range.lowerBound, range.count, 1) }
            }
        }
        return (dH, dW)
    }

    /// t.grad += k * piece. With `adopt`, a tensor without a gradient yet takes `piece` itself
    /// when k is 1 (no copy).
    private static func addGradient(_ t: Tensor, _ piece: Tensor, _ k: Float, adopt: Bool = true) {
        if adopt && t.grad == nil && k == 1 {
            t.grad = piece
            return
        }
        let (dst, src) = (t.gradBuffer(), UnsafePointer(piece.data))
        parallelChunks(piece.count, grain: 1 << 14) { r in
            addScaled(dst + r.lowerBound, src + r.lowerBound, r.count, k)
        }
    }

    /// Rows per chunk: about 2 Mi floats (8 MiB) of logits, between 64 and 1024 rows. Fewer
    /// rows would make the weight-gradient product (which reads and writes all of [V, C] per
    /// chunk) memory-bound; more would leave the logits in main memory.
    static func chunkRows(vocabulary v: Int) -> Int {
        Swift.min(1024, Swift.max(64, (1 << 21) / Swift.max(v, 1)))
    }

    /// Rows per chunk over an f32 head [V, C]: as `chunkRows(vocabulary:)` when it is trained,
    /// and four times that (`tallChunk`) when frozen (LoRA, DPO's reference): with no weight
    /// gradient to keep from going memory-bound, taller chunks run the logits and input-gradient
    /// products nearer sgemm's peak. SmolLM2-135M LoRA (64 -> 256 rows): 287 -> 302-303
    /// tokens/s, peak 3,713 -> 3,805-3,809 MiB (`distill bench train --config SmolLM2-135M
    /// --lora`, two alternating rounds).
    static func chunkRows(dense weight: Tensor) -> Int {
        let rows = chunkRows(vocabulary: weight.shape.first ?? 1)
        return weight.requiresGrad ? rows : tallChunk(rows)
    }

    /// Rows per chunk over a packed head: as `chunkRows(vocabulary:)`, and `tallChunk` for
    /// bf16, whose input gradient packs the whole head once per chunk and whose logits copy it
    /// once per chunk (Sources/CKernels/bf16.c). At SmolLM2's 49,152 words, 64 -> 256 rows
    /// (+38 MiB of logits per worker) took one core's head products from 146 to 194 GFLOP/s
    /// forward and from about 120 to 180 for the input gradient. The quantized formats keep
    /// the short chunks: QLoRA is about memory.
    static func chunkRows(packed weight: PackedMatrix) -> Int {
        let rows = chunkRows(vocabulary: weight.rows)
        return weight.format == .bf16 ? tallChunk(rows) : rows
    }

    /// Four times `rows`, at most 1024 (and never fewer than `rows`).
    private static func tallChunk(_ rows: Int) -> Int { Swift.min(1024, Swift.max(rows, 4 * rows)) }
}

/// Replaces the logits row z [V] (whose log-sum-exp is `lse`) in place by
/// scale * (softmax(z) - onehot(target)).
@inline(__always)
private func softmaxMinusOneHot(_ row: UnsafeMutablePointer<Float>, _ v: Int, lse: Float, target: Int, scale k: Float) {
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
    row[target] -= k
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
