// LoRA on a packed (quantized) base against f32 LoRA on the decoded weights: the same loss,
// adapter gradients and logits within float rounding, nothing f32 kept for the packed
// matrices, no gradient for them, and the decode engine running the packed base as it is.

import Core
import Foundation
import NN
import Testing

@Suite struct QLoRATests {
    let ids: [Int32] = (0..<24).map { Int32(($0 * 13 + 5) % 97) }
    var targets: [Int32] { ids.map { ($0 + 1) % 97 } }

    /// A tiny model (width 64, MLP 96: down_proj's 96 columns are whole blocks too) with
    /// adapters on q, v and down whose B is not zero, so every adapter gradient is exercised.
    func adapted(seed: UInt64) -> (LlamaModel, [(String, Tensor)]) {
        var rng = RNG(seed: seed)
        var c = tinyConfig()
        (c.hiddenSize, c.intermediateSize) = (64, 96)
        let m = LlamaModel(config: c, rng: &rng)
        let adapters = m.addLoRA(LoRAConfig(rank: 4, alpha: 8, targetModules: ["q_proj", "v_proj", "down_proj"]), rng: &rng)
        for (name, p) in adapters where name.hasSuffix("lora_B.weight") {
            for i in 0..<p.count { p.data[i] = Float(Int(rng.next() % 200) - 100) * 1e-3 }
        }
        return (m, adapters)
    }

    /// The f32 model with every packed matrix of `packed` replaced by its decoded floats and
    /// copies of its adapters: the independent reference.
    func decodedReference(_ packed: LlamaModel, seed: UInt64) -> (LlamaModel, [(String, Tensor)]) {
        let (m, adapters) = adapted(seed: seed)
        let decoded = Dictionary(uniqueKeysWithValues: packed.packedParameters().map { ($0.0, $0.1.decoded()) })
        for (name, p) in m.namedParameters() {
            if let d = decoded[name] { p.data.update(from: d.data, count: d.count) }
        }
        return (m, adapters)
    }

    @Test("loss, adapter gradients and logits equal f32 LoRA on the decoded weights", arguments: [WeightFormat.q8_0, .q4_0, .q4_1])
    func matchesDecodedReference(format: WeightFormat) {
        let (m, adapters) = adapted(seed: 31)
        let q = m.packed(m.quantizedMatrices(format))
        // Every matrix is packed; the embedding (tied head) takes Q8_0 under the 4-bit formats.
        let packed = Dictionary(uniqueKeysWithValues: q.packedParameters())
        #expect(packed.count == 1 + 2 * 7)
        #expect(packed["model.embed_tokens.weight"]?.format == WeightFormat.forMatrix("model.embed_tokens.weight", format))
        #expect(packed["model.layers.1.mlp.down_proj.weight"]?.format == format)
        #expect(q.namedParameters().map(\.0).allSatisfy { $0.hasSuffix("norm.weight") }, "only the norms stay f32")
        // The adapters moved: the same tensors train.
        #expect(zip(q.adapterParameters(), adapters).allSatisfy { $0.1 === $1.1 })

        let (reference, refAdapters) = decodedReference(q, seed: 31)
        let lossQ = q.loss(ids: ids, targets: targets, batch: 2, length: 12)
        lossQ.backward()
        let lossF = reference.loss(ids: ids, targets: targets, batch: 2, length: 12)
        lossF.backward()
        #expect(abs(lossQ.item - lossF.item) < 1e-5, "loss \(lossQ.item) vs \(lossF.item)")
        for ((name, a), (_, b)) in zip(adapters, refAdapters) {
            let (ga, gb) = (a.grad!.values, b.grad!.values)
            let scale = max(gb.map(abs).max()!, 1e-6)
            #expect(maxDifference(ga, gb) / scale < 1e-4, "\(name)")
        }
        for (name, p) in q.namedParameters() { #expect(p.grad == nil, "\(name) is frozen") }
        let logitsQ = GradMode.withoutGrad { q.logits(ids: ids, batch: 2, length: 12).values }
        let logitsF = GradMode.withoutGrad { reference.logits(ids: ids, batch: 2, length: 12).values }
        #expect(maxDifference(logitsQ, logitsF) < 1e-4)
        // Data-parallel replicas share the packed matrices.
        let replica = q.replica()
        #expect(zip(replica.packedParameters(), q.packedParameters()).allSatisfy { $0.1 === $1.1 })
        #expect(replica.loss(ids: ids, targets: targets, batch: 2, length: 12).item == lossQ.item)
    }

    /// The decode engine over a packed model runs its blocks as they are (with the adapters
    /// beside them): the last position's logits agree with the autograd model's up to the
    /// engine's int8 rounding of activations.
    @Test func decodeEngineRunsThePackedBase() {
        let (m, _) = adapted(seed: 32)
        let q = m.packed(m.quantizedMatrices(.q4_0))
        let state = DecodeState(engine: DecodeEngine(model: q), slots: 1, capacity: 12)
        let prompt = Array(ids.prefix(12))
        let logits = state.step(ids: prompt, slots: Array(repeating: 0, count: 12), outputs: [11])
        let got = Array(UnsafeBufferPointer(start: logits, count: q.config.vocabSize))
        #expect(relativeDifference(got, referenceLogits(q, prompt)) < 0.05)
    }

    /// A bf16 base rounds the activations of its products to bf16 as well, so it trains within
    /// bf16's rounding of f32 LoRA on the decoded weights rather than to float summation order;
    /// the exact products are checked in BF16ProductTests. The decode engine's products over
    /// the bf16 base round their activations the same way.
    @Test func bf16BaseTrainsWithinItsRounding() {
        let (m, adapters) = adapted(seed: 33)
        let b = m.packed(m.quantizedMatrices(.bf16))
        let packed = Dictionary(uniqueKeysWithValues: b.packedParameters())
        #expect(packed.count == 1 + 2 * 7)
        #expect(packed.values.allSatisfy { $0.format == .bf16 }, "the embedding stays bf16 too")
        let (reference, refAdapters) = decodedReference(b, seed: 33)
        let lossB = b.loss(ids: ids, targets: targets, batch: 2, length: 12)
        lossB.backward()
        let lossF = reference.loss(ids: ids, targets: targets, batch: 2, length: 12)
        lossF.backward()
        #expect(abs(lossB.item - lossF.item) < 1e-3 * lossF.item, "loss \(lossB.item) vs \(lossF.item)")
        for ((name, a), (_, r)) in zip(adapters, refAdapters) {  // relative to the gradient's norm
            let (ga, gr) = (a.grad!.values, r.grad!.values)
            let error = zip(ga, gr).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot()
            let norm = gr.map { $0 * $0 }.reduce(0, +).squareRoot()
            #expect(error < 5e-2 * norm, "\(name): \(error / norm)")
            #expect(error > 0, "\(name): the activations are rounded, or the bf16 path did not run")
        }
        for (name, p) in b.namedParameters() { #expect(p.grad == nil, "\(name) is frozen") }
        // The AVX-512 BF16 kernel and the sgemm fallback on the rounded operands agree to
        // summation order, where the first differs from f32 by bf16's rounding.
        let kernel = adapters.map { $0.1.grad!.values }
        for (_, a) in adapters { a.grad = nil }
        KernelLevel.with(.avx2) { b.loss(ids: ids, targets: targets, batch: 2, length: 12).backward() }
        for ((name, a), k) in zip(adapters, kernel) {
            #expect(relativeDifference(a.grad!.values, k) < 1e-4, "\(name): kernel against fallback")
        }

        let state = DecodeState(engine: DecodeEngine(model: b), slots: 1, capacity: 12)
        let prompt = Array(ids.prefix(12))
        let logits = state.step(ids: prompt, slots: Array(repeating: 0, count: 12), outputs: [11])
        let got = Array(UnsafeBufferPointer(start: logits, count: b.config.vocabSize))
        #expect(relativeDifference(got, referenceLogits(b, prompt)) < 1e-4, "the engine's products are the training ones")
        #expect(relativeDifference(got, referenceLogits(reference, prompt)) < 1e-2, "within bf16 rounding of f32")
    }
}
