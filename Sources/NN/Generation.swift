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

/// Limits which token a row may take next (constrained sampling): a grammar over the tokens'
/// bytes, say. The engine asks it about the token it drew first and only has it mask the
/// logits when that token is refused, so the cost is paid where the model strays.
public protocol TokenConstraint: AnyObject {
    /// True when `token` may come next.
    func allows(_ token: Int32) -> Bool
    /// Sets the logits of the tokens that may not come next to -infinity; false when no token may.
    func mask(_ logits: UnsafeMutablePointer<Float>, count: Int) -> Bool
    /// Takes `token` as the next one.
    func accept(_ token: Int32)
    /// What has been taken is complete and nothing may follow: the row ends.
    var isFinished: Bool { get }
}

/// The keys and values of a prompt prefix kept from one `generate` call to the next, so that
/// a prefix every batch shares (a teacher's system message and worked examples) is prefilled
/// once per run rather than once per batch.
///
/// Only whole pieces of `DecodeState.chunk` positions from position 0 are kept and reused: a
/// prefill runs in such pieces, each computed from its tokens and the positions before it, so a
/// piece copied from the cache holds exactly (bit for bit) what prefilling it again would
/// compute, and a sample never depends on what an earlier batch left here.
public final class PrefixCache: @unchecked Sendable {
    fileprivate var tokens: [Int32] = []
    fileprivate var state: DecodeState?
    /// Prompt tokens copied from the cache instead of prefilled, over all calls.
    public private(set) var reusedTokens = 0

    public init() {}

    /// The leading positions of `prefix` this cache holds, in whole chunks.
    fileprivate func reusable(_ prefix: ArraySlice<Int32>) -> Int {
        guard state != nil else { return 0 }
        var same = 0
        let limit = min(tokens.count, prefix.count)
        while same < limit && tokens[same] == prefix[prefix.startIndex + same] { same += 1 }
        return same / DecodeState.chunk * DecodeState.chunk
    }

    /// Keeps the whole chunks of `prefix` that `slot` of `from` holds, unless held already.
    fileprivate func keep(_ prefix: ArraySlice<Int32>, slot: Int, of from: DecodeState) {
        let whole = prefix.count / DecodeState.chunk * DecodeState.chunk
        guard whole > 0, reusable(prefix) < whole else { return }
        if state == nil || state!.capacity < whole || state!.engine !== from.engine {
            state = DecodeState(engine: from.engine, slots: 1, capacity: whole)
        }
        state!.copy(whole, positionsOf: slot, in: from, to: 0)
        tokens = Array(prefix.prefix(whole))
    }

    fileprivate func reused(_ n: Int) { reusedTokens += n }
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
    /// prefilled once before the rest; decode steps then attend to that prefix once for all the
    /// rows, and to the rest of a prompt once for the rows that continue it (`DecodeState.share`).
    /// A row's logits are those of its prompt alone up to float rounding (products of other
    /// heights may block differently): the tests check greedy and seeded tokens identical and
    /// log-probabilities within 1e-5 of the unshared path.
    /// A row that finishes (a stop token, `maxTokens`, or `shouldStop(row, generated)`) leaves
    /// the batch: later steps decode only the rows still running.
    ///
    /// With `constraints`, row r takes only tokens `constraints[r]` allows (nil: any): the
    /// token drawn from the model's distribution is kept when allowed; otherwise the refused
    /// tokens' logits are set to -infinity and the row draws again from the same settings.
    /// Without top-k or top-p this is exactly sampling from the allowed tokens' renormalised
    /// distribution (and greedy takes the most likely allowed token); with them, the cut is
    /// made among the allowed tokens only after a refusal. Log-probabilities stay the model's.
    /// A row ends when its constraint is finished, or when nothing is allowed.
    ///
    /// With `prefixCache`, the prefix common to the batch's prompts starts from the whole
    /// chunks of it the cache holds, and leaves its own whole chunks there for the next call;
    /// the logits are bit for bit those without the cache (see `PrefixCache`).
    public func generate(
        prompts: [[Int32]], sampling: SamplingConfig, rowSeeds: [UInt64]? = nil, logProbs: Bool = false,
        sharing: PrefillSharing = .commonPrefix, prefixCache: PrefixCache? = nil, constraints: [(any TokenConstraint)?]? = nil,
        shouldStop: (Int, [Int32]) -> Bool = { _, _ in false }
    ) -> (ids: [[Int32]], logProbs: [[Double]]) {
        precondition(prompts.allSatisfy { !$0.isEmpty }, "every prompt needs at least one token")
        precondition(
            rowSeeds == nil || rowSeeds!.count == prompts.count,
            "\(rowSeeds?.count ?? 0) seeds for \(prompts.count) prompts")
        precondition(
            constraints == nil || constraints!.count == prompts.count,
            "\(constraints?.count ?? 0) constraints for \(prompts.count) prompts")
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
            let prefix = plan.distinct[0][..<c]
            let cached = prefixCache?.reusable(prefix) ?? 0
            if cached > 0, let held = prefixCache?.state {
                state.copy(cached, positionsOf: 0, in: held, to: home[0])
                prefixCache!.reused(cached)
            }
            if cached < c { state.step(ids: Array(prefix[cached...]), slots: Array(repeating: home[0], count: c - cached), outputs: []) }
            prefixCache?.keep(prefix, slot: home[0], of: state)
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
        // Every row now starts with copies of the common prefix's keys and values, and the rows
        // of one prompt with copies of the rest of it: decode steps read each span once for all
        // the rows that hold it. Spans shorter than `DecodeState.shortestSpan` stay each row's own.
        if sharing != .none {
            var start = 0
            if c >= DecodeState.shortestSpan {
                state.share(0..<c, of: home[0], with: Array(0..<b))
                start = c
            }
            for (u, prompt) in plan.distinct.enumerated() where prompt.count - start >= DecodeState.shortestSpan {
                let rows = plan.source.indices.filter { plan.source[$0] == u }
                if rows.count > 1 { state.share(start..<prompt.count, of: home[u], with: rows) }
            }
        }
        var logitRow = plan.source  // row r samples from row logitRow[r] of `logits`
        var running = Array(0..<b)
        let v = config.vocabSize
        let sampler = TokenSampler(vocabulary: v)
        let masked = UnsafeMutablePointer<Float>.allocate(capacity: constraints == nil ? 0 : v)
        defer { masked.deallocate() }
        while true {
            var next: [Int32] = [], still: [Int] = []
            for r in running {
                let row = logits + logitRow[r] * v
                guard let token = sampler.pick(row, sampling, &rngs[r], constraint: constraints?[r], scratch: masked)
                else { continue }  // nothing allowed: the row ends
                outputs[r].append(token)
                if logProbs { logProbOutputs[r].append(logProbability(row, v, token)) }
                if sampling.stopTokens.contains(token) || outputs[r].count >= sampling.maxTokens
                    || constraints?[r]?.isFinished == true || shouldStop(r, outputs[r])
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
package func logProbability(_ logits: UnsafePointer<Float>, _ v: Int, _ token: Int32) -> Double {
    let top = maxOf(logits, v)
    return Double(logits[Int(token)] - top) - Foundation.log(Double(expShiftedSumOnly(logits, v, shift: top)))
}

/// The `count` most likely tokens of `logits` (V values) with their log-probabilities, most
/// likely first (ties to the smaller id), in one pass without sorting the vocabulary.
package func topLogProbabilities(_ logits: UnsafePointer<Float>, _ v: Int, count: Int) -> [(id: Int32, logProb: Double)] {
    guard count > 0 else { return [] }
    let top = maxOf(logits, v)
    let logTotal = Foundation.log(Double(expShiftedSumOnly(logits, v, shift: top)))
    var best: [(id: Int32, logit: Float)] = []  // kept in order, best first; a handful at most
    best.reserveCapacity(count + 1)
    for j in 0..<v {
        let x = logits[j]
        if best.count == count, x <= best[count - 1].logit { continue }
        var at = best.count
        while at > 0 && best[at - 1].logit < x { at -= 1 }
        best.insert((Int32(j), x), at: at)
        if best.count > count { best.removeLast() }
    }
    return best.map { ($0.id, Double($0.logit - top) - logTotal) }
}

/// Picks next tokens from rows of logits: greedy, temperature, top-k and top-p. It keeps its
/// buffers, so choosing a token allocates nothing, and it never sorts the vocabulary: top-k is
/// a partial selection (a heap of k), top-p a selection of the most likely tokens grown until
/// they hold the mass p, and plain temperature sampling draws in id order.
package final class TokenSampler {
    let vocabulary: Int
    /// exp((logit - max) / temperature) of every token.
    private let terms: UnsafeMutablePointer<Float>
    /// The candidates: logits and ids, a min-heap while selecting, then best first.
    private var candidateLogits: [Float] = []
    private var candidateIDs: [Int32] = []

    package init(vocabulary: Int) {
        self.vocabulary = vocabulary
        terms = .allocate(capacity: max(1, vocabulary))
    }

    deinit { terms.deallocate() }

    /// One token from `logits` (V values) as `s` says, drawing from `rng` unless greedy.
    ///
    /// Greedy takes the first largest logit. Otherwise the distribution is softmax(logits /
    /// temperature); top-k keeps the k largest logits (ties to the smaller id) and renormalises;
    /// top-p then keeps the fewest most likely tokens whose probability reaches p; one uniform
    /// draw walks the kept tokens (most likely first), or every token in id order when neither
    /// cut applies.
    /// One token under `constraint` (see `DecodeEngine.generate`): the draw from `logits` when
    /// the constraint allows it, else a draw from a copy in `scratch` (V values) with the refused
    /// tokens at -infinity; the constraint takes the token. nil when it allows none.
    package func pick(
        _ logits: UnsafePointer<Float>, _ s: SamplingConfig, _ rng: inout RNG, constraint: (any TokenConstraint)?,
        scratch: UnsafeMutablePointer<Float>
    ) -> Int32? {
        var token = pick(logits, s, &rng)
        guard let constraint else { return token }
        if !constraint.allows(token) {
            scratch.update(from: logits, count: vocabulary)
            guard constraint.mask(scratch, count: vocabulary) else { return nil }
            token = pick(scratch, s, &rng)
        }
        constraint.accept(token)
        return token
    }

    package func pick(_ logits: UnsafePointer<Float>, _ s: SamplingConfig, _ rng: inout RNG) -> Int32 {
        let v = vocabulary
        if s.temperature <= 0 {
            var best = 0
            for j in 1..<v where logits[j] > logits[best] { best = j }
            return Int32(best)
        }
        let top = maxOf(logits, v)
        let scale = Float(1 / s.temperature)
        let topK = s.topK > 0 && s.topK < v ? s.topK : v
        if topK == v && s.topP >= 1 {
            let total = expShiftedSum(logits, terms, v, shift: top, scale: scale)
            var u = Float(rng.uniform()) * total
            var last = 0
            for j in 0..<v where terms[j] > 0 {
                u -= terms[j]
                last = j
                if u < 0 { return Int32(j) }
            }
            return Int32(last)
        }
        // The mass the kept tokens are measured against: all tokens without top-k, else the k kept.
        var total = topK == v ? expShiftedSum(logits, terms, v, shift: top, scale: scale) : 0
        var m = topK == v ? min(64, v) : topK
        while true {
            select(m, logits)
            let kept = candidateLogits.map { Foundation.exp(($0 - top) * scale) }
            if topK < v { total = kept.reduce(0, +) }
            var keep = kept.count
            if s.topP < 1 {
                var acc: Float = 0
                keep = 0
                while keep < kept.count && acc < Float(s.topP) * total {
                    acc += kept[keep]
                    keep += 1
                }
                // The nucleus reaches past the candidates: select more and measure again.
                if acc < Float(s.topP) * total && m < topK {
                    m = min(topK, m * 4)
                    continue
                }
            }
            keep = max(keep, 1)  // the most likely token at least, even when the mass is not a number
            var u = Float(rng.uniform()) * kept[..<keep].reduce(0, +)
            for i in 0..<keep {
                u -= kept[i]
                if u < 0 { return candidateIDs[i] }
            }
            return candidateIDs[keep - 1]
        }
    }

    /// The m largest logits with their ids, best first (ties to the smaller id).
    private func select(_ m: Int, _ logits: UnsafePointer<Float>) {
        candidateLogits.removeAll(keepingCapacity: true)
        candidateIDs.removeAll(keepingCapacity: true)
        // A min-heap on (logit, -id): the root is the worst candidate kept so far. Ids arrive in
        // increasing order, so a later token displaces the root only with a strictly larger logit.
        func worse(_ a: Int, _ b: Int) -> Bool {
            candidateLogits[a] < candidateLogits[b]
                || (candidateLogits[a] == candidateLogits[b] && candidateIDs[a] > candidateIDs[b])
        }
        func siftDown(_ start: Int) {
            var i = start
            while true {
                let l = 2 * i + 1, r = l + 1
                var w = i
                if l < candidateLogits.count && worse(l, w) { w = l }
                if r < candidateLogits.count && worse(r, w) { w = r }
                if w == i { return }
                candidateLogits.swapAt(i, w)
                candidateIDs.swapAt(i, w)
                i = w
            }
        }
        for j in 0..<vocabulary {
            let x = logits[j]
            if candidateLogits.count < m {
                candidateLogits.append(x)
                candidateIDs.append(Int32(j))
                var i = candidateLogits.count - 1
                while i > 0 && worse(i, (i - 1) / 2) {
                    candidateLogits.swapAt(i, (i - 1) / 2)
                    candidateIDs.swapAt(i, (i - 1) / 2)
                    i = (i - 1) / 2
                }
            } else if x > candidateLogits[0] {
                candidateLogits[0] = x
                candidateIDs[0] = Int32(j)
                siftDown(0)
            }
        }
        let order = candidateLogits.indices.sorted { a, b in
            candidateLogits[a] > candidateLogits[b]
                || (candidateLogits[a] == candidateLogits[b] && candidateIDs[a] < candidateIDs[b])
        }
        candidateLogits = order.map { candidateLogits[$0] }
        candidateIDs = order.map { candidateIDs[$0] }
    }
}
