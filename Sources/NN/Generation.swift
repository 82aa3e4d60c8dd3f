// Inference: generation on the decode engine (DecodeEngine.swift) with greedy, temperature,
// top-k, top-p and a seed; and the autograd model's KV cache (`LlamaModel.hidden(cache:)`),
// the reference the engine is tested against.

import Core
import Foundation

/// Keys and values of every layer for up to `capacity` positions of `batch` rows, laid
/// out [S, B, G, D] so the filled prefix is contiguous as it grows.
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

    public let batch: Int
    public let capacity: Int
    public private(set) var length = 0
    public private(set) var layers: [Layer] = []
    public init(config: LlamaConfig, batch: Int, capacity: Int) {
        precondition(batch >= 1, "a KV cache needs at least one row, got \(batch)")
        self.batch = batch
        self.capacity = capacity
        let count = capacity * batch * config.numKeyValueHeads * config.headDim
        layers = (0..<config.effectiveLayers).map { _ in Layer(self, count: count) }
    }

    func advance(by n: Int) { length += n }

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
public enum PrefillSharing: Sendable, CaseIterable {
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
    /// Runs on a `DecodeEngine` over this model's f32 weights (see `DecodeEngine.generate`):
    /// every row gets the logits it would get alone, to within float rounding. Row r samples
    /// from its own generator seeded with (seed, r), so results do not depend on the batch.
    /// `shouldStop(row, generated)` lets the caller stop a row early (stop strings).
    public func generate(
        prompts: [[Int32]], sampling: SamplingConfig, shouldStop: (Int, [Int32]) -> Bool = { _, _ in false }
    ) -> [[Int32]] {
        generateWithLogProbs(prompts: prompts, sampling: sampling, logProbs: false, shouldStop: shouldStop).ids
    }

    /// `generate` with per-row seeds and log-probabilities: `DecodeEngine.generate` on this
    /// model's f32 weights (and its enabled adapters).
    public func generateWithLogProbs(
        prompts: [[Int32]], sampling: SamplingConfig, rowSeeds: [UInt64]? = nil, logProbs: Bool,
        shouldStop: (Int, [Int32]) -> Bool = { _, _ in false }
    ) -> (ids: [[Int32]], logProbs: [[Double]]) {
        DecodeEngine(model: self).generate(
            prompts: prompts, sampling: sampling, rowSeeds: rowSeeds, logProbs: logProbs, shouldStop: shouldStop)
    }

    /// `generateWithLogProbs` with the prefill shared as `sharing` says.
    package func generateWithLogProbs(
        prompts: [[Int32]], sampling: SamplingConfig, rowSeeds: [UInt64]? = nil, logProbs: Bool,
        sharing: PrefillSharing, shouldStop: (Int, [Int32]) -> Bool = { _, _ in false }
    ) -> (ids: [[Int32]], logProbs: [[Double]]) {
        DecodeEngine(model: self).generate(
            prompts: prompts, sampling: sampling, rowSeeds: rowSeeds, logProbs: logProbs, sharing: sharing,
            shouldStop: shouldStop)
    }
}

extension DecodeEngine {
    /// Continues each prompt (token ids, at least one each); returns the generated ids and,
    /// with `logProbs`, the log-probability of every generated token under the model's
    /// distribution (log-softmax of the logits at temperature 1, before top-k/top-p).
    ///
    /// Row r samples from a generator seeded with `rowSeeds[r]`, or (seed, r) without them, so
    /// a sample depends on its prompt and seed, not on its row or the batch. Each row has its
    /// own KV-cache slot and positions from 0, so no padding is ever attended to. The prefill
    /// is shared as `sharing` says (default `commonPrefix`): rows with identical prompts
    /// prefill it once and copy the slot, and the prefix common to all the batch's prompts is
    /// prefilled once before the rest. A row's logits are those of its prompt alone up to float
    /// rounding (products of other heights may block differently): the tests check greedy and
    /// seeded tokens identical and log-probabilities within 1e-5 of the unshared path.
    /// A row that finishes (a stop token, `maxTokens`, or `shouldStop(row, generated)`) leaves
    /// the batch: later steps decode only the rows still running.
    public func generate(
        prompts: [[Int32]], sampling: SamplingConfig, rowSeeds: [UInt64]? = nil, logProbs: Bool = false,
        sharing: PrefillSharing = .commonPrefix, shouldStop: (Int, [Int32]) -> Bool = { _, _ in false }
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
        let plan = PrefillPlan(prompts: prompts, sharing: sharing)
        let longest = prompts.map(\.count).max()!
        let state = DecodeState(engine: self, slots: b, capacity: longest + sampling.maxTokens)
        // Distinct prompt u is prefilled in the slot of its first row, then copied to the others.
        var home = [Int](repeating: -1, count: plan.distinct.count)
        for (r, u) in plan.source.enumerated() where home[u] < 0 { home[u] = r }
        let c = plan.shared
        if c > 0 {
            state.step(ids: Array(plan.distinct[0][..<c]), slots: Array(repeating: home[0], count: c), outputs: [])
            for u in 1..<plan.distinct.count { state.copy(slot: home[0], to: home[u]) }
        }
        var ids: [Int32] = [], slots: [Int] = [], lastTokens: [Int] = []
        for (u, prompt) in plan.distinct.enumerated() {
            ids += prompt[c...]
            slots += Array(repeating: home[u], count: prompt.count - c)
            lastTokens.append(ids.count - 1)
        }
        var logits = state.step(ids: ids, slots: slots, outputs: lastTokens)  // [U, V]
        for (r, u) in plan.source.enumerated() where r != home[u] { state.copy(slot: home[u], to: r) }
        var logitRow = plan.source  // row r samples from row logitRow[r] of `logits`
        var running = Array(0..<b)
        let v = config.vocabSize
        while true {
            var next: [Int32] = [], still: [Int] = []
            for r in running {
                let row = logits + logitRow[r] * v
                let token = sample(row, v, sampling, &rngs[r])
                outputs[r].append(token)
                if logProbs { logProbOutputs[r].append(logProbability(row, v, token)) }
                if sampling.stopTokens.contains(token) || outputs[r].count >= sampling.maxTokens
                    || shouldStop(r, outputs[r])
                {
                    continue
                }
                next.append(token)
                still.append(r)
            }
            running = still
            if running.isEmpty { break }
            logits = state.step(ids: next, slots: running, outputs: Array(running.indices))  // [A, V]
            for (i, r) in running.enumerated() { logitRow[r] = i }
        }
        return (outputs, logProbOutputs)
    }
}

/// log softmax(logits)[token]: the max-shifted sum of exponentials in SIMD (relative error
/// near 1e-7), the rest in Double.
func logProbability(_ logits: UnsafePointer<Float>, _ v: Int, _ token: Int32) -> Double {
    let top = maxOf(logits, v)
    return Double(logits[Int(token)] - top) - Foundation.log(Double(expShiftedSumOnly(logits, v, shift: top)))
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
