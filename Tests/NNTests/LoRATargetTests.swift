// Choosing LoRA target modules as peft does (peft 0.21 `check_target_module_exists`): a list
// entry matches a module path equal to it or ending in "." + entry; a single string is a
// regex the whole path must match. And a model adapted on some modules of some layers
// trains exactly those.

import Core
import Foundation
import NN
import Testing

@Suite struct LoRATargetTests {
    func paths(_ modules: [String] = [], pattern: String? = nil, layers: Int = 4) throws -> [String] {
        try LoRAConfig(targetModules: modules, targetPattern: pattern).resolved(layers: layers).adaptedModules ?? []
    }

    @Test func listEntriesFollowPEFTsSuffixRule() throws {
        // A bare name is every layer's module of that name.
        #expect(try paths(["q_proj"]) == (0..<4).map { "model.layers.\($0).self_attn.q_proj" })
        // A tail of a path names one module; a full path too. The order is canonical
        // (layer, then q k v o gate up down), whatever the list's order.
        #expect(
            try paths(["model.layers.2.self_attn.v_proj", "layers.0.mlp.down_proj", "1.self_attn.q_proj"]) == [
                "model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_proj", "model.layers.2.self_attn.v_proj",
            ])
        // Suffixes break at dots only: "layers.1.mlp.up_proj" is not "layers.11.mlp.up_proj".
        #expect(try paths(["layers.1.mlp.up_proj"], layers: 12) == ["model.layers.1.mlp.up_proj"])
        // "all-linear": the seven projections of every layer, and nothing else (no lm_head).
        let all = try paths(["all-linear"], layers: 3)
        #expect(all == LoRAConfig.modulePaths(layers: 3) && all.count == 21)
    }

    @Test func aStringIsARegexOverTheWholePath() throws {
        #expect(
            try paths(pattern: #".*\.(1|2)\.self_attn\.(q|v)_proj"#) == [
                "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj", "model.layers.2.self_attn.q_proj",
                "model.layers.2.self_attn.v_proj",
            ])
        // re.fullmatch, not re.search: "q_proj" as a regex matches no whole path.
        #expect(throws: LoRATargetError.self) { try paths(pattern: "q_proj") }
        // An alternation whose first branch matches a prefix still matches the whole path.
        #expect(try paths(pattern: #"model\.layers\.0\.mlp\.up|model\.layers\.0\.mlp\.up_proj"#) == ["model.layers.0.mlp.up_proj"])
        // Python's named groups read as in re.
        #expect(try paths(pattern: #"model\.layers\.(?P<i>3)\.mlp\.gate_proj"#) == ["model.layers.3.mlp.gate_proj"])
    }

    /// A pattern that makes backtracking engines take exponential time on a module path (nested
    /// stars that can split "model.layers.0.self_attn.q_proj" in 2^30 ways before failing on
    /// the missing X) is matched in linear time: it matches nothing, reported as such.
    @Test func aCatastrophicPatternMatchesNothingAtOnce() throws {
        #expect(throws: LoRATargetError.self) { try paths(pattern: "(.*.*)*X", layers: 32) }
        #expect(try paths(pattern: "(.*.*)*q_proj", layers: 2) == ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"])
    }

    @Test func badSpecsSayWhatIsWrong() throws {
        // An invalid regex: the parser's message.
        #expect {
            try paths(pattern: "(q|v_proj")
        } throws: { error in
            guard case .invalidPattern(let p, let message)? = error as? LoRATargetError else { return false }
            return p == "(q|v_proj" && message.contains("without its )") && "\(error)".contains("does not compile")
        }
        #expect(LoRAConfig(targetPattern: "a[").problems().first?.contains("does not compile") == true)
        // Matching nothing names the pattern and shows what paths look like.
        #expect {
            try paths(["layers.7.mlp.down_proj"], layers: 4)
        } throws: { error in
            let text = "\(error)"
            return text.contains("\"layers.7.mlp.down_proj\" matches no module") && text.contains("(4 layers)")
                && text.contains("model.layers.0.self_attn.q_proj") && text.contains("model.layers.3.mlp.down_proj")
        }
        // Modules other than the seven projections are refused, as peft refuses them.
        #expect(throws: LoRATargetError.notAdaptable(pattern: "lm_head", module: "lm_head")) { try paths(["lm_head"]) }
        #expect(throws: LoRATargetError.notAdaptable(pattern: ".*", module: "model")) { try paths(pattern: ".*") }
        #expect {
            try paths(pattern: #".*\.0\.mlp.*"#)
        } throws: { "\($0)".contains("matches model.layers.0.mlp, which is not a linear projection") }
        // Without a model: entries that cannot name a projection of any Llama model.
        let p = LoRAConfig(targetModules: ["q_proj", "mlp.q_proj", "layers.x.mlp.up_proj", "layers.0.mlp.up_proj"]).problems()
        #expect(p.count == 2 && p[0].contains("\"mlp.q_proj\"") && p[1].contains("\"layers.x.mlp.up_proj\""))
        // A resolved set recorded for a deeper model does not fit this one.
        let recorded = LoRAConfig(adaptedModules: ["model.layers.5.self_attn.q_proj"])
        #expect(throws: LoRATargetError.unknownModule(path: "model.layers.5.self_attn.q_proj", layers: 4)) {
            try recorded.resolved(layers: 4)
        }
    }

    @Test func onlyTheChosenModulesOfTheChosenLayersTrain() throws {
        var rng = RNG(seed: 21)
        let c = tinyConfig()
        let m = LlamaModel(config: c, rng: &rng)
        let ids: [Int32] = (0..<24).map { Int32(($0 * 7 + 3) % 97) }
        let base = GradMode.withoutGrad { m.logits(ids: ids, batch: 2, length: 12).values }
        // Layer 0: down_proj only; layer 1: q_proj and v_proj.
        let lora = try LoRAConfig(rank: 4, alpha: 8, targetPattern: #".*\.0\.mlp\.down_proj|.*\.1\.self_attn\.(q|v)_proj"#)
            .resolved(layers: c.numHiddenLayers)
        let adapters = m.addLoRA(lora, rng: &rng)
        #expect(
            adapters.map(\.0) == [
                "model.layers.0.mlp.down_proj.lora_A.weight", "model.layers.0.mlp.down_proj.lora_B.weight",
                "model.layers.1.self_attn.q_proj.lora_A.weight", "model.layers.1.self_attn.q_proj.lora_B.weight",
                "model.layers.1.self_attn.v_proj.lora_A.weight", "model.layers.1.self_attn.v_proj.lora_B.weight",
            ])
        #expect(m.adaptedModulePaths() == lora.adaptedModules)
        // r (in + out) per adapted module: down 4·(48+32), q 4·(32+32), v 4·(32+16).
        let trained = adapters.reduce(0) { $0 + $1.1.count }
        let expected: Int = 4 * (48 + 32) + 4 * (32 + 32) + 4 * (32 + 16)
        #expect(trained == expected)
        // The unadapted modules stay plain linear layers.
        let adaptedByLayer = m.layers.map { $0.modules.filter { $0.1 is LoRALinear }.map(\.0) }
        #expect(adaptedByLayer == [["mlp.down_proj"], ["self_attn.q_proj", "self_attn.v_proj"]])
        #expect(lora.modules(inLayer: 0) == ["down_proj"] && lora.modules(inLayer: 1) == ["q_proj", "v_proj"])
        #expect(lora.uniformModules(layers: 2) == nil)

        // Make B non-zero so A gets gradients too, then one backward pass.
        for (name, p) in adapters where name.hasSuffix("lora_B.weight") { for i in 0..<p.count { p.data[i] = 0.05 * Float(i % 7 - 3) } }
        let adapted = GradMode.withoutGrad { m.logits(ids: ids, batch: 2, length: 12).values }
        #expect(maxDifference(adapted, base) > 1e-3)
        m.loss(ids: ids, targets: ids.map { ($0 + 1) % 97 }, batch: 2, length: 12).backward()
        for (name, p) in m.namedParameters() { #expect(p.grad == nil, "\(name) is frozen but got a gradient") }
        for (name, p) in adapters {
            let norm = p.grad.map { g in (0..<g.count).reduce(Float(0)) { $0 + g.data[$1] * g.data[$1] } } ?? 0
            #expect(norm > 0, "\(name) gets no gradient")
        }
        // Merging folds exactly these adapters in.
        m.mergeAdapters()
        #expect(m.adaptedModulePaths().isEmpty)
        #expect(maxDifference(GradMode.withoutGrad { m.logits(ids: ids, batch: 2, length: 12).values }, adapted) < 1e-5)
    }
}
