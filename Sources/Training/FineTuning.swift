// The model side of a fine-tuning stage (sft, dpo, kd): the model loaded from its checkpoint,
// either trained whole or through LoRA adapters on a frozen base, resumed from the stage's own
// checkpoint, and trained through a TrainingSession that commits whole models or adapter-only
// checkpoints bound to their base. The stages differ only in data and objective
// (docs/finetuning.md).

import Core
import Foundation
import JSON
import ModelIO
import NN
import Platform
import TextData

package final class FineTuning {
    package let session: TrainingSession
    package let settings: TrainingSettings
    /// The stage's adapters resolved against this model's layers; nil for full fine-tuning.
    package let lora: LoRAConfig?
    /// The model being trained (with adapters when `lora` is set).
    package let model: LlamaModel
    package let modelPath: String
    package let tokenizer: ByteLevelBPETokenizer
    package let tokenizerJSON: String?
    package let endOfText: Int32?
    /// The model's chat style (carried into the checkpoints this stage writes).
    package let chat: ChatStyle?
    /// Digest of the starting weights (base plus any adapters it came with, and the blocks of a
    /// packed base), before training.
    package let startDigest: String
    /// The stage trains the adapter its model came with (rather than fresh adapters).
    package let continuesAdapter: Bool
    /// The base an adapter checkpoint of this stage names (LoRA only).
    package let basePath: String?
    /// How the frozen base is held (f32, or packed for QLoRA).
    package let baseWeights: InferenceWeights
    /// The f32 base's checksum, which the adapter checkpoints record so that they load onto
    /// the f32 base (taken before the base is packed).
    private let baseChecksum: String?
    private let seed: Int

    package var resumed: CheckpointContents? { session.resumed }

    /// Loads `modelPath` for stage `name` and resumes its committed state when `resume` and the
    /// fingerprint match. `lora` nil trains every weight; with `lora`, `baseWeights` other than
    /// f32 holds the frozen base packed (QLoRA: quantized at load, or a GGUF file's own blocks).
    package init(
        name: String, modelPath: String, settings: TrainingSettings, lora: LoRAConfig?, baseWeights: InferenceWeights = .f32,
        output: String, metrics: String, seed: Int, fingerprint: String, recipeJSON: String, resume: Bool,
        emit: @escaping (ProgressEvent) -> Void
    ) throws {
        guard baseWeights == .f32 || lora != nil else {
            throw UserError(
                path: "stage \(name), base_weights", problem: "\(baseWeights.rawValue) holds a frozen base, which only LoRA has",
                fix: "add a lora block (QLoRA) or remove base_weights for full fine-tuning", kind: .usage)
        }
        self.baseWeights = baseWeights
        self.settings = settings
        self.modelPath = modelPath
        self.seed = seed
        session = try TrainingSession(
            name: name, output: output, metrics: metrics, fingerprint: fingerprint, recipeJSON: recipeJSON, resume: resume,
            emit: emit)

        var model: LlamaModel
        var packedMatrices: [String: PackedMatrix] = [:]
        var digest: String
        do {  // `loaded`, which holds the f32 base a packed run drops, ends with this block
            let loaded = try loadModel(from: modelPath, trainable: lora == nil)
            tokenizer = try loaded.requireTokenizer()
            tokenizerJSON = loaded.tokenizerJSON
            endOfText = loaded.endOfText
            chat = loaded.chat
            model = loaded.model
            digest = modelChecksum(model, includingAdapters: true)
            continuesAdapter = loaded.adapter != nil && lora != nil
            // The stage's target_modules resolved once against this model's layers.
            do {
                self.lora = try lora?.resolved(layers: model.layers.count)
            } catch {
                throw UserError(
                    path: "stage \(name), lora.target_modules", problem: "\(error) (model \(modelPath))",
                    fix: "name projections or module paths the model has (q_proj ... down_proj, layers.0.mlp.down_proj) or a regex matching some",
                    kind: .usage)
            }
            if let config = self.lora {
                if let adapter = loaded.adapter {
                    // The model is an adapter on its base: keep training that adapter, bound to the same base.
                    guard adapter.lora.sameAdapters(as: config) else {
                        throw UserError(
                            path: modelPath,
                            problem: "is an adapter with LoRA settings r \(adapter.lora.rank), alpha \(adapter.lora.alpha), dropout \(adapter.lora.dropout), use_rslora \(adapter.lora.useRSLoRA), on \(adapter.lora.adaptedModules?.count ?? 0) modules (target_modules \(adapter.lora.targetDescription)); the stage's lora block differs",
                            fix: "give the same lora settings to continue training this adapter, or merge it first (a merge stage, or distill merge) and train a new adapter on the merged model",
                            kind: .usage)
                    }
                    basePath = loaded.basePath ?? modelPath
                    for (_, p) in model.adapterParameters() { p.requiresGrad = true }
                } else {
                    var rng = RNG(seed: UInt64(seed) ^ 0x4C6F_5241)
                    model.addLoRA(config, rng: &rng)
                    basePath = modelPath
                }
            } else {
                if loaded.adapter != nil {
                    // Full fine-tuning of an adapter model: fold the adapter in and train every weight.
                    model.mergeAdapters()
                    for (_, p) in model.namedParameters() { p.requiresGrad = true }
                }
                basePath = nil
            }
            if baseWeights != .f32 { packedMatrices = try loaded.packedBase(baseWeights) }
        }
        if baseWeights == .f32 {
            baseChecksum = nil
        } else {
            baseChecksum = modelChecksum(model)
            model = model.packed(packedMatrices)
            BufferPool.shared.releaseToSystem()  // the f32 matrices just dropped
        }
        self.model = model
        // A packed base's blocks shape the starting logits too.
        startDigest = baseWeights == .f32 ? digest : digest + "+" + modelChecksum(model)
        try session.restore(trainedParameters)
        if let resumed = session.resumed {
            for (key, layer) in loraLayers() { if let r = resumed.rng[key] { layer.rng = r } }
        }
    }

    /// What the optimizer updates: the adapters with LoRA, else every weight.
    private var trainedParameters: [(String, Tensor)] {
        lora == nil ? model.namedParameters() : model.adapterParameters()
    }

    /// The adapters by the RNG stream name their dropout state is stored under.
    private func loraLayers() -> [(String, LoRALinear)] {
        var out: [(String, LoRALinear)] = []
        for (i, layer) in model.layers.enumerated() {
            for (m, linear) in layer.modules { if let l = linear as? LoRALinear, l.rng != nil { out.append(("lora.\(i).\(m)", l)) } }
        }
        return out
    }

    /// Refuses a seq_len the model cannot take.
    /// The chat style for the stage's `template` setting: the named family, else the model's
    /// own, else ChatML.
    package func chatStyle(_ template: ChatTemplate?) -> ChatStyle {
        ChatStyle.resolved(template, model: chat) ?? ChatStyle(template: .chatml)
    }

    package func checkSeqLen(_ seqLen: Int) throws {
        try requireSeqLen(seqLen, fits: model, path: modelPath, setting: "training.seq_len")
    }

    /// Refuses (exit 2, with the estimate and the limit) training that cannot fit the memory
    /// budget, before the gradients, moments and activations are allocated: `sequencesPerRow`
    /// is 2 for preference pairs; `extra` adds what else the stage holds (a KD teacher).
    package func checkMemory(sequencesPerRow: Int = 1, extra: Double = 0) throws {
        let trainable = trainedParameters.reduce(0) { $0 + $1.1.count }
        // A packed base counts its blocks; checkpointing keeps one layer's activations.
        let weightBytes =
            Double(model.namedParameters().reduce(0) { $0 + $1.1.count } * 4)
            + Double(model.packedParameters().reduce(0) { $0 + $1.1.bytes })
        try requireMemory(
            model.config, batch: settings.batchSize * sequencesPerRow, seqLen: settings.seqLen, trainable: trainable,
            extra: extra, path: modelPath, suggestLoRA: lora == nil, weightBytes: weightBytes,
            recomputeLayers: settings.gradientCheckpointing ?? false)
    }

    /// Trains with `objective` on micro-batches `batch(n)` (n counting from 0 over the run, the
    /// data cursor) for the steps of `batchesPerEpoch` micro-batches per epoch, and commits.
    /// Returns the session's summary with `trained_parameters` and `extra` added.
    package func train<O: TrainingObjective>(
        objective: O, batchesPerEpoch: Int, batch: (Int) throws -> O.Batch, validation: [O.Batch], progressKeys: [String],
        summary extra: [String: Scalar]
    ) throws -> [String: Scalar] {
        let steps = settings.totalSteps(batchesPerEpoch: batchesPerEpoch)
        var consumed = 0
        if let resumed = session.resumed { consumed = try Self.cursor(resumed.dataCursor, session: session) }
        let parameters = trainedParameters
        var summary = try session.train(
            model: model, parameters: parameters, settings: settings, steps: steps, progressKeys: progressKeys,
            run: { trainer, handle in
                try trainer.run(
                    objective: objective,
                    nextBatch: {
                        defer { consumed += 1 }
                        return try batch(consumed)
                    }, validation: validation.isEmpty ? nil : { validation }, handle: handle)
            },
            contents: { [self] commit in
                var commit = commit
                commit.metadata.merge(chat?.metadata ?? [:]) { a, _ in a }
                var rng: [String: RNG] = [:]
                for (key, layer) in loraLayers() { rng[key] = layer.rng }
                let cursor = "{\"micro_batches\":\(consumed)}"
                guard let lora else { return commit.contents(model, rng: rng, dataCursor: cursor, tokenizer: tokenizerJSON) }
                return adapterContents(
                    model, lora: lora, basePath: basePath, adapterPath: session.output.path, threads: Threads.count,
                    optimizer: commit.optimizer, step: commit.step, tokensSeen: commit.tokensSeen, rng: rng, dataCursor: cursor,
                    recipe: commit.recipe, tokenizer: tokenizerJSON, metadata: commit.metadata, baseChecksum: baseChecksum)
            })
        summary.merge(extra) { a, _ in a }
        summary["trained_parameters"] = .int(parameters.reduce(0) { $0 + $1.1.count })
        return summary
    }

    private static func cursor(_ text: String?, session: TrainingSession) throws -> Int {
        guard let text, case .object(let o)? = try? JSONValue.parse(Array(text.utf8)), case .int(let n)? = o["micro_batches"], n >= 0
        else { throw session.damaged("the data cursor is missing or unreadable") }
        return n
    }
}
