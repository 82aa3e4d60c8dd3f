// distill's model on Hugging Face checkpoints made by tools/make_hf_fixture.py reproduces
// transformers' outputs: the causal-LM loss and last-position logits within 1e-4, and the
// 32 greedy tokens exactly. tiny_llama3 has Llama 3's rope scaling (rope_type "llama3",
// original_max_position_embeddings 64, text of 165 tokens, a prompt of 83 then 32 greedy
// tokens): its inverse frequencies are transformers' bit for bit, and without the scaling the
// same weights give logits far from transformers'.

import Core
import Foundation
import ModelIO
import NN
import Testing

struct HFReference: Decodable {
    var ids: [Int32]
    var loss: Double
    var last_logits: [Double]
    var prompt: String
    var prompt_ids: [Int32]
    var greedy_ids: [Int32]
    /// tiny_llama3 only: transformers' rotary_emb.inv_freq as float32 bit patterns.
    var inv_freq_bits: [UInt32]?
}

@Suite struct HFReferenceTests {
    static func load(_ fixture: String) throws -> (LlamaModel, HFReference) {
        let dir = Bundle.module.url(forResource: fixture, withExtension: nil, subdirectory: "Fixtures")!
        let (config, tensors, _) = try HFModelDirectory.read(at: dir)
        let reference = try JSONDecoder().decode(HFReference.self, from: Data(contentsOf: dir.appendingPathComponent("reference.json")))
        return (try LlamaModel(config: config, parameters: tensors), reference)
    }

    @Test("loss and last logits match transformers", arguments: ["tiny_llama", "tiny_llama_untied", "tiny_llama3"])
    func lossAndLogits(_ fixture: String) throws {
        let (model, ref) = try Self.load(fixture)
        let t = ref.ids.count
        // transformers' labels=ids: position i predicts token i+1; the last has no target.
        let targets = Array(ref.ids.dropFirst()) + [-100]
        let (loss, logits) = GradMode.withoutGrad {
            (model.loss(ids: ref.ids, targets: targets, batch: 1, length: t).item, model.logits(ids: ref.ids, batch: 1, length: t))
        }
        #expect(abs(Double(loss) - ref.loss) < 1e-4, "loss \(loss) vs transformers \(ref.loss)")
        let last = logits.slice(axis: 1, (t - 1)..<t).values
        let worst = zip(last, ref.last_logits).map { abs(Double($0) - $1) }.max()!
        #expect(worst < 1e-4, "last-position logits differ by up to \(worst)")
    }

    @Test("greedy generation matches transformers token for token", arguments: ["tiny_llama", "tiny_llama_untied", "tiny_llama3"])
    func greedy(_ fixture: String) throws {
        let (model, ref) = try Self.load(fixture)
        let out = model.generate(prompts: [ref.prompt_ids], sampling: SamplingConfig(maxTokens: 32, temperature: 0))[0]
        #expect(out == ref.greedy_ids)
    }

    /// The config.json transformers 5 wrote (rope_parameters, rope_type "llama3") reads as
    /// Llama 3's scaling, and the scaled inverse frequencies equal transformers' buffer bit for bit.
    @Test func llama3InverseFrequenciesAreTransformers() throws {
        let (model, ref) = try Self.load("tiny_llama3")
        let c = model.config
        #expect(c.ropeScaling == RopeScaling(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64))
        #expect(c.ropeTheta == 10000 && c.headDim == 16 && c.maxPositionEmbeddings == 256)
        let ours = RopeTable.inverseFrequencies(headDim: c.headDim, theta: Float(c.ropeTheta), scaling: c.ropeScaling)
        #expect(ours.map(\.bitPattern) == ref.inv_freq_bits)
    }

    /// Imported into a checkpoint, the scaling is part of the stored config: the checkpoint
    /// loads as the same config and the same logits.
    @Test func llama3ScalingSurvivesACheckpoint() throws {
        let dir = Bundle.module.url(forResource: "tiny_llama3", withExtension: nil, subdirectory: "Fixtures")!
        try scratch { out in
            let path = out.appendingPathComponent("llama3.h5").path
            let imported = try importModel(from: dir.path, to: path)
            let loaded = try loadModel(from: path)
            #expect(loaded.model.config == imported.model.config && loaded.model.config.ropeScaling?.factor == 8)
            let ids: [Int32] = Array(0..<100).map { Int32($0 % 300) }
            let a = GradMode.withoutGrad { imported.model.logits(ids: ids, batch: 1, length: ids.count).values }
            let b = GradMode.withoutGrad { loaded.model.logits(ids: ids, batch: 1, length: ids.count).values }
            #expect(a == b)
        }
    }

    /// The scaling is not a rounding detail here: the same weights with unscaled rope miss
    /// transformers' last logits by far more than the 1e-4 the scaled model meets.
    @Test func llama3WithoutItsScalingIsAnotherModel() throws {
        let (model, ref) = try Self.load("tiny_llama3")
        var plain = model.config
        plain.ropeScaling = nil
        let unscaled = try LlamaModel(config: plain, parameters: Dictionary(uniqueKeysWithValues: model.namedParameters()))
        let t = ref.ids.count
        let logits = GradMode.withoutGrad { unscaled.logits(ids: ref.ids, batch: 1, length: t) }
        let last = logits.slice(axis: 1, (t - 1)..<t).values
        let worst = zip(last, ref.last_logits).map { abs(Double($0) - $1) }.max()!
        #expect(worst > 0.1, "unscaled rope moves the last logits by only \(worst)")
    }
}
