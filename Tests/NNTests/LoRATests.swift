import Core
import Foundation
import NN
import Testing

@Suite struct LoRATests {
    let ids: [Int32] = (0..<24).map { Int32(($0 * 13 + 5) % 97) }

    func logits(_ m: LlamaModel) -> [Float] { GradMode.withoutGrad { m.logits(ids: ids, batch: 2, length: 12).values } }

    /// Trains the adapters a few steps by plain SGD on next-token loss.
    func train(_ m: LlamaModel, _ adapters: [(String, Tensor)], steps: Int = 5) {
        for _ in 0..<steps {
            for (_, p) in adapters { p.zeroGrad() }
            m.loss(ids: ids, targets: ids.map { ($0 + 1) % 97 }, batch: 2, length: 12).backward()
            for (_, p) in adapters {
                guard let g = p.grad else { continue }
                for i in 0..<p.count { p.data[i] -= 0.5 * g.data[i] }
            }
        }
    }

    @Test func aFreshAdapterChangesNothingAndOnlyAdaptersTrain() {
        var rng = RNG(seed: 1)
        let m = LlamaModel(config: tinyConfig(), rng: &rng)
        let base = logits(m)
        let adapters = m.addLoRA(LoRAConfig(rank: 4, alpha: 8, targetModules: ["q_proj", "v_proj", "down_proj"]), rng: &rng)
        #expect(adapters.count == 2 * 3 * 2)  // A and B, 3 modules, 2 layers
        #expect(adapters.first?.0 == "model.layers.0.self_attn.q_proj.lora_A.weight")
        // B = 0: the adapter adds exactly 0, but the adapted layers run their own products
        // instead of the fused q/k/v one, so the sums round differently.
        #expect(maxDifference(logits(m), base) < 1e-5)
        m.loss(ids: ids, targets: ids.map { ($0 + 1) % 97 }, batch: 2, length: 12).backward()
        for (name, p) in m.namedParameters() { #expect(p.grad == nil, "\(name) is frozen but got a gradient") }
        // B = 0, so A gets no gradient on the first step; B does.
        #expect(adapters.filter { $0.0.hasSuffix("lora_B.weight") }.allSatisfy { $0.1.grad != nil })
    }

    @Test func disabledAdaptersGiveExactlyTheBase() {
        var rng = RNG(seed: 2)
        let m = LlamaModel(config: tinyConfig(), rng: &rng)
        let base = logits(m)
        let adapters = m.addLoRA(LoRAConfig(rank: 4, alpha: 8), rng: &rng)
        train(m, adapters)
        let adapted = logits(m)
        #expect(maxDifference(adapted, base) > 1e-3)
        m.setAdapters(enabled: false)
        #expect(maxDifference(logits(m), base) == 0, "disabled adapters must give the base bit for bit")
        m.setAdapters(enabled: true)
        #expect(maxDifference(logits(m), adapted) == 0)
    }

    /// Merged weights W + s·B·A give the adapted model's logits (within float rounding).
    @Test("merging keeps the logits", arguments: [false, true])
    func mergeKeepsLogits(rsLoRA: Bool) {
        var rng = RNG(seed: 3)
        let m = LlamaModel(config: tinyConfig(), rng: &rng)
        let adapters = m.addLoRA(
            LoRAConfig(rank: 4, alpha: 8, useRSLoRA: rsLoRA, targetModules: LoRAConfig.moduleNames), rng: &rng)
        train(m, adapters)
        let adapted = logits(m)
        m.mergeAdapters()
        #expect(m.adapterParameters().isEmpty)
        #expect(maxDifference(logits(m), adapted) < 1e-5)
    }

    @Test func scalesAndProblems() {
        #expect(LoRAConfig(rank: 16, alpha: 32).scale == 2)
        #expect(LoRAConfig(rank: 16, alpha: 32, useRSLoRA: true).scale == 8)
        let p = LoRAConfig(rank: 0, alpha: -1, dropout: 1, targetModules: ["qproj"]).problems()
        #expect(p.count == 4)
        #expect(p.contains { $0.contains("\"qproj\" is not one of") })
    }
}
