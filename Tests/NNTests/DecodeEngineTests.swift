// The decode engine against the autograd model it serves: with f32 weights every logit it
// gives (prefill and decode, any mix of slots, LoRA adapters, repeated layers) equals the
// full-sequence `LlamaModel.logits` of that slot's tokens to within float rounding; quantized
// weights stay close and keep the greedy tokens.

import Core
import NN
import Testing

/// A model with non-trivial adapters on every projection (B is random, not zero).
func adaptedModel(_ c: LlamaConfig, seed: UInt64) -> LlamaModel {
    var rng = RNG(seed: seed)
    let m = LlamaModel(config: c, rng: &rng)
    for (_, p) in m.addLoRA(LoRAConfig(rank: 4, alpha: 8, targetModules: ["all-linear"]), rng: &rng)
    where p.shape[1] == 4 {  // B [out, r]
        for i in 0..<p.count { p.data[i] = Float(rng.normal()) * 0.1 }
    }
    return m
}

/// Logits of the last position of `ids` alone, by the autograd model without a cache.
func referenceLogits(_ m: LlamaModel, _ ids: [Int32]) -> [Float] {
    let v = m.config.vocabSize
    let all = GradMode.withoutGrad { m.logits(ids: ids, batch: 1, length: ids.count).values }
    return Array(all[((ids.count - 1) * v)...])
}

func relativeDifference(_ a: [Float], _ b: [Float]) -> Float {
    maxDifference(a, b) / max(b.map(abs).max() ?? 1, 1e-6)
}

@Suite struct DecodeEngineTests {
    static let configs: [LlamaConfig] = {
        var repeated = tinyConfig(tied: false)
        repeated.layerRepeat = 2
        return [tinyConfig(), repeated]
    }()

    /// Three slots prefilled in one step with prompts of 7, 1 and 12 tokens, logits asked at
    /// every token; then four decode steps of the three slots together. Each logit row equals
    /// the full-sequence logits of its slot's tokens so far.
    @Test("f32 engine equals the model", arguments: [0, 1], [false, true])
    func f32EngineEqualsTheModel(config: Int, adapters: Bool) {
        let c = Self.configs[config]
        var rng = RNG(seed: 31)
        let m = adapters ? adaptedModel(c, seed: 32) : LlamaModel(config: c, rng: &rng)
        let engine = DecodeEngine(model: m)
        let state = DecodeState(engine: engine, slots: 3, capacity: 20)
        var prompts: [[Int32]] = [7, 1, 12].map { n in (0..<n).map { _ in Int32(rng.next() % 97) } }
        let ids = prompts.flatMap { $0 }
        let slots = prompts.enumerated().flatMap { s, p in Array(repeating: s, count: p.count) }
        let v = c.vocabSize
        let logits = state.step(ids: ids, slots: slots, outputs: Array(ids.indices))
        var at = 0
        for (s, p) in prompts.enumerated() {
            for i in 0..<p.count {
                let got = Array(UnsafeBufferPointer(start: logits + at * v, count: v))
                #expect(relativeDifference(got, referenceLogits(m, Array(p[...i]))) < 1e-5, "slot \(s) token \(i)")
                at += 1
            }
        }
        for step in 0..<4 {
            let next = (0..<3).map { _ in Int32(rng.next() % 97) }
            let out = state.step(ids: next, slots: [0, 1, 2], outputs: [0, 1, 2])
            for s in 0..<3 {
                prompts[s].append(next[s])
                let got = Array(UnsafeBufferPointer(start: out + s * v, count: v))
                #expect(relativeDifference(got, referenceLogits(m, prompts[s])) < 1e-5, "slot \(s) step \(step)")
            }
        }
        #expect(state.lengths == prompts.map(\.count))
    }

    /// A copied slot continues as its source would: the same next-step logits, bit for bit.
    @Test func aCopiedSlotContinuesItsSource() {
        var rng = RNG(seed: 33)
        let c = tinyConfig()
        let m = LlamaModel(config: c, rng: &rng)
        let state = DecodeState(engine: DecodeEngine(model: m), slots: 3, capacity: 40)
        let prompt = (0..<30).map { _ in Int32(rng.next() % 97) }
        state.step(ids: prompt, slots: Array(repeating: 1, count: 30), outputs: [])
        state.copy(slot: 1, to: 0)
        state.copy(slot: 1, to: 2)
        #expect(state.lengths == [30, 30, 30])
        let v = c.vocabSize
        let out = state.step(ids: [5, 5, 5], slots: [0, 1, 2], outputs: [0, 1, 2])
        let rows = (0..<3).map { Array(UnsafeBufferPointer(start: out + $0 * v, count: v)) }
        #expect(rows[0] == rows[1] && rows[2] == rows[1])
        #expect(relativeDifference(rows[1], referenceLogits(m, prompt + [5])) < 1e-5)
    }

    /// Four slots holding copies of an 80-token prefix, slots 0 and 1 copies of 20 more tokens
    /// after it and slots 2 and 3 of 30 others, all declared shared, attend to those spans
    /// together: their own tokens (a step of several per slot, then decode steps) get the
    /// model's logits. A slot reset and refilled leaves its spans, and copying into a span's
    /// source ends the span: after each, every slot still gets the logits of its own tokens.
    @Test func slotsSharingSpansAttendToThemTogether() {
        var rng = RNG(seed: 35)
        let c = tinyConfig()
        let m = LlamaModel(config: c, rng: &rng)
        let state = DecodeState(engine: DecodeEngine(model: m), slots: 4, capacity: 150)
        let v = c.vocabSize
        func random(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(rng.next() % 97) } }
        func check(_ out: UnsafeMutablePointer<Float>, _ row: Int, _ tokens: [Int32], _ what: String) {
            let got = Array(UnsafeBufferPointer(start: out + row * v, count: v))
            #expect(relativeDifference(got, referenceLogits(m, tokens)) < 1e-5, "\(what)")
        }
        let prefix = random(80), first = random(20), second = random(30)
        state.step(ids: prefix, slots: Array(repeating: 0, count: 80), outputs: [])
        state.copy(slot: 0, to: 2)
        state.step(ids: first + second, slots: Array(repeating: 0, count: 20) + Array(repeating: 2, count: 30), outputs: [])
        state.copy(slot: 0, to: 1)
        state.copy(slot: 2, to: 3)
        state.share(0..<80, of: 0, with: [0, 1, 2, 3])
        state.share(80..<100, of: 0, with: [0, 1])
        state.share(80..<110, of: 2, with: [2, 3])
        var held = [prefix + first, prefix + first, prefix + second, prefix + second]
        let own = [2, 5, 1, 3].map(random)
        let slots = own.enumerated().flatMap { s, t in Array(repeating: s, count: t.count) }
        let out = state.step(ids: own.flatMap { $0 }, slots: slots, outputs: Array(slots.indices))
        var at = 0
        for s in 0..<4 {
            for i in own[s].indices {
                check(out, at, held[s] + own[s][...i], "slot \(s) own token \(i)")
                at += 1
            }
            held[s] += own[s]
        }
        // One decode step of `stepping`, each slot's logits checked against its tokens.
        func decode(_ stepping: [Int], _ what: String) {
            let next = random(stepping.count)
            let out = state.step(ids: next, slots: stepping, outputs: Array(stepping.indices))
            for (i, s) in stepping.enumerated() {
                held[s].append(next[i])
                check(out, i, held[s], "\(what), slot \(s)")
            }
        }
        for step in 0..<3 { decode([0, 1, 2, 3], "decode step \(step)") }
        #expect(state.sharedAttentionTokens == 11 + 12)
        // Slot 2 reset and refilled: it attends to its own keys, the others still share.
        state.reset(slot: 2)
        held[2] = random(90)
        state.step(ids: held[2], slots: Array(repeating: 2, count: 90), outputs: [])
        decode([1, 2, 3], "after the reset")
        #expect(state.sharedAttentionTokens == 23 + 2)
        // Slot 2, the source of slot 3's second span, overwritten: slot 3 keeps the first span
        // only. Then slot 0, the first span's source: no slot shares any more.
        state.copy(slot: 1, to: 2)
        held[2] = held[1]
        decode([0, 1, 2, 3], "after slot 2 was overwritten")
        #expect(state.sharedAttentionTokens == 25 + 4)
        state.copy(slot: 3, to: 0)
        held[0] = held[3]
        decode([0, 1, 2, 3], "after the source was overwritten")
        #expect(state.sharedAttentionTokens == 29)
    }

    /// Steps longer than one chunk of the working buffers run in pieces and give the same logits.
    @Test func aLongPrefillRunsInChunks() {
        var rng = RNG(seed: 34)
        let c = tinyConfig()
        let m = LlamaModel(config: c, rng: &rng)
        let prompt = (0..<(DecodeState.chunk + 37)).map { _ in Int32(rng.next() % 97) }
        let state = DecodeState(engine: DecodeEngine(model: m), slots: 1, capacity: prompt.count)
        let out = state.step(ids: prompt, slots: Array(repeating: 0, count: prompt.count), outputs: [prompt.count - 1])
        let got = Array(UnsafeBufferPointer(start: out, count: c.vocabSize))
        #expect(relativeDifference(got, referenceLogits(m, prompt)) < 1e-5)
    }

    /// Quantized weights: the engine's logits against the model whose weights are the decoded
    /// quantized values, so the difference left is the int8 activations' rounding alone (about
    /// 1.5 to 4% of the largest logit on this random model, whose logits are near-uniform); and
    /// the weights take the bytes their formats say.
    @Test("quantized weights differ by the activations' rounding", arguments: WeightFormat.allCases.filter(\.isQuantized))
    func quantizedWeights(format: WeightFormat) throws {
        var rng = RNG(seed: 35)
        var c = tinyConfig()
        c.hiddenSize = 64
        c.intermediateSize = 96
        let m = LlamaModel(config: c, rng: &rng)
        let quantized = DecodeEngine(model: m, format: format)
        // Every matrix in `format`, but the tied embedding and output matrix, which keep Q8_0
        // under the 4-bit formats.
        let matrices = m.namedParameters().filter { $0.1.rank == 2 }
        let bytes = matrices.map { name, p in Double(p.count) * WeightFormat.forMatrix(name, format).bitsPerWeight / 8 }
        #expect(Double(quantized.weightBytes) == bytes.reduce(0, +))
        let decoded = try LlamaModel(
            config: c,
            parameters: Dictionary(uniqueKeysWithValues: m.namedParameters().map { name, p in
                (name, p.rank == 2 ? PackedMatrix(p, format: WeightFormat.forMatrix(name, format)).decoded() : p)
            }))
        let prompt = (0..<16).map { _ in Int32(rng.next() % 97) }
        let state = DecodeState(engine: quantized, slots: 1, capacity: 16)
        let out = state.step(ids: prompt, slots: Array(repeating: 0, count: 16), outputs: [15])
        let got = Array(UnsafeBufferPointer(start: out, count: c.vocabSize))
        let difference = relativeDifference(got, referenceLogits(decoded, prompt))
        #expect(difference < 0.05)
    }

    /// A router's prompt embedding: the mean over the prompt of the autograd model's final
    /// hidden states (`LlamaModel.hidden`, after the final norm), here over 300 tokens, more
    /// than one chunk; the slot then holds the prompt.
    @Test func meanHiddenIsTheMeanOfTheModelsFinalHiddenStates() {
        let c = tinyConfig()
        var rng = RNG(seed: 41)
        let m = LlamaModel(config: c, rng: &rng)
        let ids = (0..<300).map { _ in Int32(rng.next() % 97) }
        let hidden = GradMode.withoutGrad { m.hidden(ids: ids, batch: 1, length: ids.count).values }  // [1, T, C]
        let width = c.hiddenSize
        let reference = (0..<width).map { j in (0..<ids.count).map { hidden[$0 * width + j] }.reduce(0, +) / Float(ids.count) }
        let state = DecodeState(engine: DecodeEngine(model: m), slots: 2, capacity: 320)
        let got = state.meanHidden(ids: ids, slot: 1)
        #expect(relativeDifference(got, reference) < 1e-4)
        #expect(state.lengths == [0, 300])
    }
}
