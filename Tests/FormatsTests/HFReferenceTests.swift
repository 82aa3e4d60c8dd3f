// distill's model on Hugging Face checkpoints made by tools/make_hf_fixture.py reproduces
// transformers' outputs: the causal-LM loss and last-position logits within 1e-4, and the
// 32 greedy tokens exactly.

import Core
import Foundation
import ModelIO
import NN
import Testing

struct HFReference: Decodable {
    var ids: [Int32]
    var loss: Double
    var last_logits: [Double]
    var prompt_ids: [Int32]
    var greedy_ids: [Int32]
}

@Suite struct HFReferenceTests {
    static func load(_ fixture: String) throws -> (LlamaModel, HFReference) {
        let dir = Bundle.module.url(forResource: fixture, withExtension: nil, subdirectory: "Fixtures")!
        let (config, tensors, _) = try HFModelDirectory.read(at: dir)
        let reference = try JSONDecoder().decode(HFReference.self, from: Data(contentsOf: dir.appendingPathComponent("reference.json")))
        return (try LlamaModel(config: config, parameters: tensors), reference)
    }

    @Test("loss and last logits match transformers", arguments: ["tiny_llama", "tiny_llama_untied"])
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

    @Test("greedy generation matches transformers token for token", arguments: ["tiny_llama", "tiny_llama_untied"])
    func greedy(_ fixture: String) throws {
        let (model, ref) = try Self.load(fixture)
        let out = model.generate(prompts: [ref.prompt_ids], sampling: SamplingConfig(maxTokens: 32, temperature: 0))[0]
        #expect(out == ref.greedy_ids)
    }
}
