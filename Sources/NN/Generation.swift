// Inference: a KV cache (prefill, then one token per step), and batched sampling with
// greedy, temperature, top-k, top-p and a seed.

import Core
import Foundation

/// Keys and values of every layer for up to `capacity` positions of `batch` rows, laid
/// out [S, B, G, D] so the filled prefix is contiguous as it grows.
///
/// The storage holds `reservedRows` rows (at least `batch`), so `branch` can turn a few
/// prefilled rows into the batch that decodes from them without a second allocation.
public final class KVCache {
    public final class Layer {
        let k: Storage, v: Storage
        unowned let owner: KVCache

        init(_ owner: KVCache, count: Int) {
            self.owner = owner
            k = Storage(uninitialized: count)
            v = Storage(uninitialized: count)
        }

        /// Copies k, v [B, T, G, D] in after the cached positions; returns views of all
        /// cached keys and values [S, B, G, D] including them.
        func append(k newK: Tensor, v newV: Tensor) -> (Tensor, Tensor) {
            let (b, t, g, d) = (newK.shape[0], newK.shape[1], newK.shape[2], newK.shape[3])
            let start = owner.length
            precondition(b == owner.batch, "KV cache holds \(owner.batch) rows, got keys of \(b): \(newK.shape)")
            precondition(start + t <= owner.capacity, "KV cache full: \(start) + \(t) > capacity \(owner.capacity)")
            for bi in 0..<b {
                for ti in 0..<t {
                    let src = (bi * t + ti) * g * d, dst = ((start + ti) * b + bi) * g * d
                    (k.pointer + dst).update(from: newK.data + src, count: g * d)
                    (v.pointer + dst).update(from: newV.data + src, count: g * d)
                }
            }
            let shape = [start + t, b, g, d]
            return (Tensor(shape: shape, storage: k), Tensor(shape: shape, storage: v))
        }
    }

    /// Rows cached now.
    public private(set) var batch: Int
    /// Rows the storage has room for: the most `branch` can grow the batch to.
    public let reservedRows: Int
    public let capacity: Int
    public private(set) var length = 0
    public private(set) var layers: [Layer] = []
    /// Floats of one position of one row: G x D.
    private let rowWidth: Int

    /// `reservingRows` (default and minimum `batch`) sizes the storage for a later `branch`.
    public init(config: LlamaConfig, batch: Int, capacity: Int, reservingRows: Int? = nil) {
        let reserved = reservingRows ?? batch
        precondition(batch >= 1 && reserved >= batch, "KV cache of \(batch) rows cannot reserve \(reserved)")
        self.batch = batch
        self.reservedRows = reserved
        self.capacity = capacity
        rowWidth = config.numKeyValueHeads * config.headDim
        let count = capacity * reserved * rowWidth
        layers = (0..<config.effectiveLayers).map { _ in Layer(self, count: count) }
    }

    func advance(by n: Int) { length += n }

    /// Row r of the new batch continues row `source[r]` of the current one: it gets a copy of
    /// that row's cached keys and values, so one prefilled prompt can start several rows.
    /// In place, within the reserved rows; the batch may grow or stay, not shrink.
    ///
    /// Going down from the last position, position s of the old layout [S, B, G, D] lies below
    /// every position already rewritten (s B_old < (s + 1) B_new), so copying its B_old rows
    /// aside before scattering them is all the safety the in-place move needs.
    public func branch(_ source: [Int]) {
        let (old, new, w) = (batch, source.count, rowWidth)
        precondition(
            new >= old && new <= reservedRows, "KV cache branch from \(old) to \(new) rows (reserved \(reservedRows))")
        precondition(
            source.allSatisfy { (0..<old).contains($0) }, "KV cache branch source \(source) outside 0..<\(old)")
        if source == Array(0..<old) { return }
        let aside = UnsafeMutablePointer<Float>.allocate(capacity: old * w)  // one position's old rows
        defer { aside.deallocate() }
        for layer in layers {
            for storage in [layer.k, layer.v] {
                for s in stride(from: length - 1, through: 0, by: -1) {
                    aside.update(from: storage.pointer + s * old * w, count: old * w)
                    for (r, j) in source.enumerated() {
                        (storage.pointer + (s * new + r) * w).update(from: aside + j * w, count: w)
                    }
                }
            }
        }
        batch = new
    }

    /// Bytes held for keys and values.
    public var bytes: Int { layers.count * 2 * (layers.first?.k.count ?? 0) * MemoryLayout<Float>.size }
}

/// How to pick each next token.
public struct SamplingConfig: Codable, Sendable, Equatable {
    /// Tokens to generate at most per prompt.
    public var maxTokens: Int = 64
    /// 0 picks the most likely token (greedy); otherwise logits are divided by it.
    public var temperature: Double = 0.8
    /// Keep only the k most likely tokens (0: all).
    public var topK: Int = 0
    /// Keep the smallest set of most likely tokens whose probability reaches p (1: all).
    public var topP: Double = 1
    public var seed: UInt64 = 0
    /// Generation of a row stops after any of these tokens (which is kept in the output).
    public var stopTokens: [Int32] = []

    public init(
        maxTokens: Int = 64, temperature: Double = 0.8, topK: Int = 0, topP: Double = 1, seed: UInt64 = 0,
        stopTokens: [Int32] = []
    ) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
        self.stopTokens = stopTokens
    }
}

/// How the rows of a generation batch share their prefill. Each way gives every row the
/// tokens it gets with `none`; the logits may differ in their last bits (see
/// `generateWithLogProbs`).
package enum PrefillSharing: Sendable, CaseIterable {
    /// Every row prefills its own prompt: the reference the tests compare against.
    case none
    /// Rows with identical prompts (k samples of one task) share one prefill.
    case identicalPrompts
    /// As `identicalPrompts`, and the longest prefix common to all the distinct prompts (a
    /// system message and few-shot block) is prefilled once, before them.
    case commonPrefix
}

/// Which prompts a batch prefills and which of them each row continues.
package struct PrefillPlan: Equatable {
    /// The prompts prefilled, each once, in order of first appearance.
    package var distinct: [[Int32]]
    /// Row r continues `distinct[source[r]]`.
    package var source: [Int]
    /// Leading tokens common to every distinct prompt, prefilled once at batch 1 (0: none).
    /// Less than the shortest prompt, so each distinct prompt keeps a token whose logits it needs.
    package var shared: Int

    package init(prompts: [[Int32]], sharing: PrefillSharing) {
        guard sharing != .none else {
            (distinct, source, shared) = (prompts, Array(prompts.indices), 0)
            return
        }
        var index: [[Int32]: Int] = [:]
        var distinct: [[Int32]] = []
        source = prompts.map { p in
            if let i = index[p] { return i }
            index[p] = distinct.count
            distinct.append(p)
            return distinct.count - 1
        }
        self.distinct = distinct
        shared = 0
        // One distinct prompt gains nothing from a split prefill.
        guard sharing == .commonPrefix, distinct.count > 1 else { return }
        let first = distinct[0]
        var n = distinct.map(\.count).min()! - 1
        for p in distinct.dropFirst() {
            var i = 0
            while i < n && p[i] == first[i] { i += 1 }
            n = i
        }
        shared = n
    }
}

extension LlamaModel {
    /// Continues each prompt (token ids, at least one each) and returns the generated ids.
    ///
    /// Prompts of different lengths are left-padded in one batch: padding sits in its own
    /// attention segment and the positions of each row start at 0 at its first real
    /// token, so every row gets the logits it would get alone (to within float rounding;
    /// identical prompts and a common prefix are prefilled once, see `generateWithLogProbs`).
    /// Row r samples from its own generator seeded with (seed, r), so results do not depend
    /// on the batch.
    /// `shouldStop(row, generated)` lets the caller stop a row early (stop strings).
    public func generate(
        prompts: [[Int32]], sampling: SamplingConfig, shouldStop: (Int, [Int32]) -> Bool = { _, _ in false }
    ) -> [[Int32]] {
        generateWithLogProbs(prompts: prompts, sampling: sampling, logProbs: false, shouldStop: shouldStop).ids
    }

    /// `generate`, with two additions for teachers: `rowSeeds` gives each row its own seed
    /// (row r samples from a generator seeded with `rowSeeds[r]` alone, so a sample depends on
    /// its prompt and seed, not on its row or the batch), and with `logProbs` the
    /// log-probability of every generated token under the model's distribution (log-softmax
    /// of the logits at temperature 1, before top-k/top-p) is returned next to it.
    ///
    /// The prefill is shared (`PrefillSharing.commonPrefix`): rows with identical prompts
    /// prefill it once and branch the KV cache, and the prefix common to all the batch's
    /// prompts is prefilled once before the rest. A row's logits are those of its prompt
    /// alone up to float rounding (padding moves the lanes of the softmax sums, and matrix
    /// products of other heights may block differently), as they were for a left-padded batch
    /// before: the tests check greedy and seeded tokens identical and log-probabilities
    /// within 1e-5 of the unshared path.
    public func generateWithLogProbs(
        prompts: [[Int32]], sampling: SamplingConfig, rowSeeds: [UInt64]? = nil, logProbs: Bool,
        shouldStop: (Int, [Int32]) -> Bool = { _, _ in false }
    ) -> (ids: [[Int32]], logProbs: [[Double]]) {
        generateWithLogProbs(
            prompts: prompts, sampling: sampling, rowSeeds: rowSeeds, logProbs: logProbs, sharing: .commonPrefix,
            shouldStop: shouldStop)
    }

    /// `generateWithLogProbs` with the prefill shared as `sharing` says.
    package func generateWithLogProbs(
        prompts: [[Int32]], sampling: SamplingConfig, rowSeeds: [UInt64]? = nil, logProbs: Bool,
        sharing: PrefillSharing, shouldStop: (Int, [Int32]) -> Bool = { _, _ in false }
    ) -> (ids: [[Int32]], logProbs: [[Double]]) {
        precondition(prompts.allSatisfy { !$0.isEmpty }, "every prompt needs at least one token")
        precondition(
            rowSeeds == nil || rowSeeds!.count == prompts.count,
            "\(rowSeeds?.count ?? 0) seeds for \(prompts.count) prompts")
        let b = prompts.count
        var rngs = (0..<b).map { r in
            RNG(seed: rowSeeds?[r] ?? (sampling.seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(r + 1)))
        }
        var outputs = [[Int32]](repeating: [], count: b)
        var logProbOutputs = [[Double]](repeating: [], count: b)
        guard b > 0, sampling.maxTokens > 0 else { return (outputs, logProbOutputs) }
        var done = [Bool](repeating: false, count: b)
        let plan = PrefillPlan(prompts: prompts, sharing: sharing)
        let longest = prompts.map(\.count).max()!
        return GradMode.withoutGrad {
            // Room for every row from the start: branching fills it in place, so the cache never
            // takes more than an unshared batch's.
            let cache = KVCache(
                config: config, batch: plan.shared > 0 ? 1 : plan.distinct.count,
                capacity: longest + sampling.maxTokens,
                reservingRows: b)
            let prefilled = prefill(plan, cache: cache)
            var last = prefilled.logits  // [U, 1, V]
            cache.branch(plan.source)
            var keySegments = plan.source.map { prefilled.segments[$0] }
            var logitRow = plan.source  // row r samples from row logitRow[r] of `last`
            var step = 0
            while true {
                var ids = [Int32](), positions = [Int32]()
                for r in 0..<b {
                    let next: Int32
                    if done[r] {
                        next = 0
                    } else {
                        let row = last.data + logitRow[r] * config.vocabSize
                        next = sample(row, config.vocabSize, sampling, &rngs[r])
                        outputs[r].append(next)
                        if logProbs { logProbOutputs[r].append(logProbability(row, config.vocabSize, next)) }
                        if sampling.stopTokens.contains(next) || outputs[r].count >= sampling.maxTokens
                            || shouldStop(r, outputs[r])
                        {
                            done[r] = true
                        }
                    }
                    ids.append(next)
                    positions.append(Int32(prompts[r].count + step))
                    keySegments[r].append(0)
                }
                if done.allSatisfy({ $0 }) { break }
                let h = hidden(
                    ids: ids, batch: b, length: 1, positions: positions, segments: keySegments.flatMap { $0 },
                    cache: cache)
                last = lmHead(h)  // [B, 1, V]
                logitRow = Array(0..<b)
                step += 1
            }
            return (outputs, logProbOutputs)
        }
    }

    /// Prefills `plan` into `cache`: the shared prefix at batch 1, branched to the distinct
    /// prompts, then the rest of each, left-padded to the longest rest (padding in its own
    /// attention segment between the prefix and the rest, positions continuing the prefix).
    /// Leaves the cache at one row per distinct prompt; returns their last-position logits
    /// [U, 1, V] and each one's key segments so far.
    private func prefill(_ plan: PrefillPlan, cache: KVCache) -> (logits: Tensor, segments: [[Int32]]) {
        let c = plan.shared
        if c > 0 {
            _ = hidden(ids: Array(plan.distinct[0][..<c]), batch: 1, length: c, cache: cache)  // only the cache is kept
            cache.branch(Array(repeating: 0, count: plan.distinct.count))
        }
        let rests = plan.distinct.map { $0[c...] }
        let t = rests.map(\.count).max()!
        var ids = [Int32](), positions = [Int32](), segments: [[Int32]] = []
        for rest in rests {
            let pad = t - rest.count
            ids += Array(repeating: rest.first!, count: pad) + rest
            positions += Array(repeating: Int32(c), count: pad) + (c..<(c + rest.count)).map { Int32($0) }
            segments.append(
                Array(repeating: 0, count: c) + Array(repeating: -1, count: pad)
                    + Array(repeating: 0, count: rest.count))
        }
        let h = hidden(
            ids: ids, batch: rests.count, length: t, positions: positions, segments: segments.flatMap { $0 },
            cache: cache)
        return (lmHead(h.slice(axis: 1, (t - 1)..<t)), segments)  // [U, 1, V]
    }
}

/// log softmax(logits)[token], in Double.
func logProbability(_ logits: UnsafePointer<Float>, _ v: Int, _ token: Int32) -> Double {
    var top = logits[0]
    for j in 1..<v where logits[j] > top { top = logits[j] }
    var sum = 0.0
    for j in 0..<v { sum += Foundation.exp(Double(logits[j] - top)) }
    return Double(logits[Int(token)] - top) - Foundation.log(sum)
}

/// Picks a token from one row of logits.
func sample(_ logits: UnsafePointer<Float>, _ v: Int, _ s: SamplingConfig, _ rng: inout RNG) -> Int32 {
    if s.temperature <= 0 {
        var best = 0
        for j in 1..<v where logits[j] > logits[best] { best = j }
        return Int32(best)
    }
    // Candidates by descending logit (ties by id), cut by top-k, softmax at temperature,
    // cut by top-p, then one uniform draw.
    var order = Array(0..<v)
    order.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
    if s.topK > 0 && s.topK < v { order.removeLast(v - s.topK) }
    let inv = 1 / s.temperature
    let top = Double(logits[order[0]])
    var probs = order.map { Foundation.exp((Double(logits[$0]) - top) * inv) }
    let total = probs.reduce(0, +)
    for i in probs.indices { probs[i] /= total }
    if s.topP < 1 {
        var acc = 0.0
        var keep = probs.count
        for (i, p) in probs.enumerated() {
            acc += p
            if acc >= s.topP {
                keep = i + 1
                break
            }
        }
        probs.removeLast(probs.count - keep)
        let kept = probs.reduce(0, +)
        for i in probs.indices { probs[i] /= kept }
    }
    var u = rng.uniform()
    for (i, p) in probs.enumerated() {
        u -= p
        if u < 0 { return Int32(order[i]) }
    }
    return Int32(order[probs.count - 1])
}
