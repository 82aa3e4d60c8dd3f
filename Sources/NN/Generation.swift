// Inference: a KV cache (prefill, then one token per step), and batched sampling with
// greedy, temperature, top-k, top-p and a seed.

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

extension LlamaModel {
    /// Continues each prompt (token ids, at least one each) and returns the generated ids.
    ///
    /// Prompts of different lengths are left-padded in one batch: padding sits in its own
    /// attention segment and the positions of each row start at 0 at its first real
    /// token, so every row gets the logits it would get alone. Row r samples from its
    /// own generator seeded with (seed, r), so results do not depend on the batch.
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
    public func generateWithLogProbs(
        prompts: [[Int32]], sampling: SamplingConfig, rowSeeds: [UInt64]? = nil, logProbs: Bool,
        shouldStop: (Int, [Int32]) -> Bool = { _, _ in false }
    ) -> (ids: [[Int32]], logProbs: [[Double]]) {
        precondition(prompts.allSatisfy { !$0.isEmpty }, "every prompt needs at least one token")
        precondition(rowSeeds == nil || rowSeeds!.count == prompts.count, "\(rowSeeds?.count ?? 0) seeds for \(prompts.count) prompts")
        let b = prompts.count
        let longest = prompts.map(\.count).max() ?? 0
        let cache = KVCache(config: config, batch: b, capacity: longest + sampling.maxTokens)
        var rngs = (0..<b).map { r in
            RNG(seed: rowSeeds?[r] ?? (sampling.seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(r + 1)))
        }
        var outputs = [[Int32]](repeating: [], count: b)
        var logProbOutputs = [[Double]](repeating: [], count: b)
        var done = [Bool](repeating: sampling.maxTokens == 0, count: b)
        // Left padding: row r has `pad[r]` padding positions before its prompt.
        let pad = prompts.map { longest - $0.count }
        var keySegments: [[Int32]] = pad.map { p in Array(repeating: -1, count: p) + Array(repeating: 0, count: longest - p) }
        var ids = [Int32](), positions = [Int32]()
        for (r, prompt) in prompts.enumerated() {
            ids += Array(repeating: prompt[0], count: pad[r]) + prompt
            positions += Array(repeating: 0, count: pad[r]) + (0..<prompt.count).map { Int32($0) }
        }
        var step = longest
        var length = longest
        return GradMode.withoutGrad {
            while !done.allSatisfy({ $0 }) {
                let segments = keySegments.flatMap { $0 }
                let h = hidden(ids: ids, batch: b, length: length, positions: positions, segments: segments, cache: cache)
                let last = lmHead(h.slice(axis: 1, (length - 1)..<length))  // [B, 1, V]
                ids = []
                positions = []
                for r in 0..<b {
                    let next: Int32
                    if done[r] {
                        next = 0
                    } else {
                        let row = last.data + r * config.vocabSize
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
                    positions.append(Int32(step - pad[r]))
                    keySegments[r].append(0)
                }
                step += 1
                length = 1
            }
            return (outputs, logProbOutputs)
        }
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
