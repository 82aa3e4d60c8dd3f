// Lower bounds on the memory a model needs to run, from its config alone, so commands can
// refuse what cannot fit before allocating it (Platform's MemoryBudget has the limit).

import NN
import Platform

/// Bytes of `config`'s weights in float32.
package func weightBytes(_ config: LlamaConfig) -> Double { Double(config.parameterCount) * 4 }

/// `MemoryBudget.inferenceBytes` for `config`: weights, KV cache, activations and logits
/// of `rows` x `positions` tokens.
package func inferenceMemoryEstimate(_ config: LlamaConfig, rows: Int, positions: Int, allLogits: Bool) -> Double {
    MemoryBudget.inferenceBytes(
        parameters: config.parameterCount, layers: config.numHiddenLayers * max(1, config.layerRepeat),
        kvWidth: config.numKeyValueHeads * config.headDim, hidden: config.hiddenSize,
        intermediate: config.intermediateSize, vocabulary: config.vocabSize, rows: rows, positions: positions,
        allLogits: allLogits)
}

/// Refuses (exit 2, with the estimate and the limit) running `config` over `rows` x
/// `positions` when `inferenceMemoryEstimate` exceeds the memory budget. `what` names the
/// work ("evaluating", "generating"), `fix` the settings to lower.
package func requireInferenceMemory(
    _ config: LlamaConfig, rows: Int, positions: Int, allLogits: Bool, what: String, path: String, fix: String
) throws {
    let need = inferenceMemoryEstimate(config, rows: rows, positions: positions, allLogits: allLogits)
    try MemoryBudget.require(
        need,
        for: "\(what) with this model (\(config.parameterCount) parameters, \(rows) x \(positions) tokens: "
            + "weights, KV cache, activations and logits)",
        path: path, fix: fix)
}
