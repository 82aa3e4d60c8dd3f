// The decode engine of a loaded model, on the weights asked for (InferenceWeights, in NN), and
// the packed frozen base of QLoRA fine-tuning on the same choice of weights.

import Core
import NN
import Platform

extension LoadedModel {
    /// A decode engine over this model's weights as `weights` says (and its enabled adapters).
    package func decodeEngine(_ weights: InferenceWeights) throws -> DecodeEngine {
        if weights == .file { try requireFileBlocks(option: "--weights file") }
        return DecodeEngine(model: model, weights: weights, blocks: fileBlocks)
    }

    /// The frozen matrices of this model packed as `weights` says, by Hugging Face name, for
    /// `LlamaModel.packed(_:)` (QLoRA's base). f32: none. bf16, q8_0, q4_0, q4_1: every
    /// projection and the embedding (and an untied head) converted at load, the embedding and
    /// head in Q8_0 under the 4-bit formats (`WeightFormat.forMatrix`: their errors reach every
    /// logit); a GGUF file's own blocks are used as they are where their format is the one
    /// asked for. file: the GGUF file's quantized tensors as stored, the rest f32.
    package func packedBase(_ weights: InferenceWeights) throws -> [String: PackedMatrix] {
        if weights == .file {
            try requireFileBlocks(option: "base_weights file")
            return fileBlocks.filter { !$0.value.interleaved }
        }
        guard let format = WeightFormat(rawValue: weights.rawValue) else { return [:] }
        return model.quantizedMatrices(format, reusing: fileBlocks)
    }

    /// Refuses `file` weights for a model without a quantized file's blocks.
    private func requireFileBlocks(option: String) throws {
        guard fileBlocks.isEmpty else { return }
        throw UserError(
            path: basePath ?? path,
            problem: "has no quantized tensors to run as stored (\(option) reads a GGUF file's Q8_0, Q4_0 or Q4_1 blocks)",
            fix: "quantize at load instead: q8_0, q4_0 or q4_1", kind: .usage)
    }
}
