// Shared prefill: rows with identical prompts prefill once and copy the KV-cache slot, and the
// prefix common to a batch's prompts is prefilled once. Every row must get what the unshared
// path gives it: the same greedy and seeded tokens, log-probabilities within 1e-5.

import Core
import NN
import Testing

/// Three prompts after an 80-token common block (long enough for decode steps to attend to it
/// together), of rests 9, 1 and 5 tokens (the middle one the shortest possible: it keeps one
/// token of its own), the first a prefix of the third.
func promptsWithACommonBlock() -> [[Int32]] {
    var rng = RNG(seed: 21)
    let block = (0..<80).map { _ in Int32(rng.next() % 97) }
    let a = block + [3, 14, 15, 92, 65, 35, 89, 79, 32]
    return [a, block + [7], block + [3, 14, 15, 92, 65]]
}

@Suite struct PrefillSharingTests {
    @Test func thePlanGroupsIdenticalPromptsAndFindsTheCommonPrefix() {
        let prompts: [[Int32]] = [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 5], [1, 2, 3, 4], [1, 2, 5]]
        let none = PrefillPlan(prompts: prompts, sharing: .none)
        #expect(none.distinct == prompts && none.source == [0, 1, 2, 3, 4] && none.shared == 0)
        let same = PrefillPlan(prompts: prompts, sharing: .identicalPrompts)
        #expect(same.distinct == [[1, 2, 3, 4], [1, 2, 5]] && same.source == [0, 0, 1, 0, 1] && same.shared == 0)
        let prefix = PrefillPlan(prompts: prompts, sharing: .commonPrefix)
        #expect(prefix.distinct == same.distinct && prefix.source == same.source && prefix.shared == 2)
        // A prompt that is a prefix of another keeps its last token to itself.
        #expect(PrefillPlan(prompts: [[1, 2, 3], [1, 2, 3, 4]], sharing: .commonPrefix).shared == 2)
        // One distinct prompt, or none in common: nothing to split off.
        #expect(PrefillPlan(prompts: [[1, 2, 3], [1, 2, 3]], sharing: .commonPrefix).shared == 0)
        #expect(PrefillPlan(prompts: [[1, 2], [2, 2]], sharing: .commonPrefix).shared == 0)
    }

    /// k samples of each prompt, rows interleaved (not prompt-major), each with its own seed:
    /// shared and unshared prefills give the same tokens, and log-probabilities within 1e-5.
    @Test(
        "shared prefill gives the unshared tokens", arguments: [PrefillSharing.identicalPrompts, .commonPrefix],
        [0.0, 0.9])
    func sharedEqualsUnshared(sharing: PrefillSharing, temperature: Double) {
        var rng = RNG(seed: 23)
        let m = LlamaModel(config: tinyConfig(), rng: &rng)
        let distinct = promptsWithACommonBlock()
        let prompts = (0..<4).flatMap { _ in distinct }  // 12 rows, 3 prompts x 4 samples
        let seeds = prompts.indices.map { UInt64(1000 + $0) }
        let s = SamplingConfig(maxTokens: 16, temperature: temperature, topK: 30, topP: 0.95)
        let base = m.generateWithLogProbs(
            prompts: prompts, sampling: s, rowSeeds: seeds, logProbs: true, sharing: .none)
        let shared = m.generateWithLogProbs(
            prompts: prompts, sampling: s, rowSeeds: seeds, logProbs: true, sharing: sharing)
        #expect(shared.ids == base.ids)
        for r in prompts.indices {
            let worst = zip(shared.logProbs[r], base.logProbs[r]).map { abs($0 - $1) }.max() ?? 0
            #expect(shared.logProbs[r].count == base.logProbs[r].count && worst < 1e-5, "row \(r): \(worst)")
        }
        // Samples of one prompt differ at temperature 0.9 (distinct seeds), agree greedily.
        let firstPrompt = stride(from: 0, to: prompts.count, by: 3).map { shared.ids[$0] }
        #expect(temperature == 0 ? Set(firstPrompt).count == 1 : Set(firstPrompt).count > 1)
    }

    /// A row that stops early (stop token or `shouldStop`) stops at the same token shared or not.
    @Test func stopsAreTheSameShared() {
        var rng = RNG(seed: 24)
        let m = LlamaModel(config: tinyConfig(), rng: &rng)
        let prompts = promptsWithACommonBlock().flatMap { [$0, $0] }
        let seeds = prompts.indices.map { UInt64($0) }
        let s = SamplingConfig(maxTokens: 20, temperature: 1.0, stopTokens: [5, 6, 7])
        func run(_ sharing: PrefillSharing) -> [[Int32]] {
            m.generateWithLogProbs(prompts: prompts, sampling: s, rowSeeds: seeds, logProbs: false, sharing: sharing) {
                r, generated in r == 1 && generated.count == 3
            }.ids
        }
        let base = run(.none)
        #expect(run(.commonPrefix) == base)
        #expect(base[1].count == 3 && base.contains { $0.count < 20 && $0 != base[1] })
    }

    /// Batches whose prompts share a 600-token block (two whole chunks and a part) and differ
    /// after it: with a prefix cache the later batches copy the block's whole chunks instead of
    /// prefilling them, and every row's tokens and log-probabilities are bit for bit those
    /// without the cache.
    @Test func aPrefixCacheReusesWholeChunksAndChangesNoBit() {
        var config = tinyConfig()
        config.maxPositionEmbeddings = 1024
        var rng = RNG(seed: 25)
        let m = LlamaModel(config: config, rng: &rng)
        let engine = DecodeEngine(model: m)
        let block = (0..<600).map { _ in Int32(rng.next() % 97) }
        // Batch b, prompt i: the block, then i + b + 1 tokens of its own.
        var batches: [[[Int32]]] = []
        for b in 0..<3 {
            var prompts: [[Int32]] = []
            for i in 0..<3 {
                let own: [Int32] = (0...(i + b)).map { j in Int32((j * 7 + i + 3 * b) % 97) }
                prompts.append(block + own)
            }
            batches.append(prompts)
        }
        let s = SamplingConfig(maxTokens: 8, temperature: 0.9)
        let cache = PrefixCache()
        for (b, prompts) in batches.enumerated() {
            let seeds = prompts.indices.map { UInt64(100 * b + $0) }
            let plain = engine.generate(prompts: prompts, sampling: s, rowSeeds: seeds, logProbs: true)
            let cached = engine.generate(prompts: prompts, sampling: s, rowSeeds: seeds, logProbs: true, prefixCache: cache)
            #expect(cached.ids == plain.ids && cached.logProbs == plain.logProbs, "batch \(b)")
            // The first batch fills the cache; each later one copies the block's two whole chunks.
            #expect(cache.reusedTokens == b * 2 * DecodeState.chunk)
        }
    }
}
