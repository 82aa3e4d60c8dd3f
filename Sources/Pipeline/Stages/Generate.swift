// The `generate` stage: continuations of the stage's prompts, one JSON line per prompt.

import Core
import Foundation
import ModelIO
import NN
import Platform
import Recipe

struct GenerateExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .generate(let s) = stage else { mismatch(stage, .generate) }
        if let threads = context.threads { Threads.set(threads) }
        let loaded = try loadModel(from: context.path(of: s.checkpoint))
        let sampling = SamplingConfig(maxTokens: s.maxTokens, temperature: s.temperature, topK: s.topK, topP: s.topP, seed: UInt64(s.seed))
        let samples = try generateText(loaded, prompts: s.prompts, sampling: sampling, stop: s.stop)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var text = Data()
        for sample in samples {
            text.append(try encoder.encode(sample))
            text.append(0x0A)
            emit(.message("\(sample.prompt)\(sample.completion)"))
        }
        try writeAtomically(text, to: s.output)
        return StageOutputs(files: [s.output], summary: ["samples": .int(samples.count)])
    }
}
