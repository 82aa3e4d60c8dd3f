// The decode engine of a loaded model, on the weights asked for (InferenceWeights, in NN).

import Core
import NN
import Platform

extension LoadedModel {
    /// A decode engine over this model's weights as `weights` says (and its enabled adapters).
    package func decodeEngine(_ weights: InferenceWeights) throws -> DecodeEngine {
        if weights == .file {
            guard !fileBlocks.isEmpty else {
                throw UserError(
                    path: basePath ?? path,
                    problem: "has no quantized tensors to run as stored (--weights file reads a GGUF file's Q8_0, Q4_0 or Q4_1 blocks)",
                    fix: "quantize at load instead: --weights q8_0, q4_0 or q4_1", kind: .usage)
            }
        }
        return DecodeEngine(model: model, weights: weights, blocks: fileBlocks)
    }
}
