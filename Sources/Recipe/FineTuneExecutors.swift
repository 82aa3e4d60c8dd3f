// The fine-tuning stages `sft`, `dpo` and `kd`: one session type loads the model (full
// fine-tuning, or LoRA adapters on a frozen base), resumes committed state, runs the trainer
// with the stage's objective and commits checkpoints exactly as pretrain does; each executor
// only prepares its data and objective. docs/finetuning.md describes settings and outputs.
//
// Data order: the training items (SFT/KD rows, DPO pairs) are shuffled per epoch by a
// permutation drawn from (seed, epoch) and cut into micro-batches; the data cursor is the
// number of micro-batches consumed, so a resumed run continues with the same batches.

import Core
import Foundation
import JSON
import ModelIO
import NN
import Platform
import TextData
import Training

// MARK: - Data helpers

/// Deterministic split of `n` items: `fraction` of them (at least one when the fraction is
/// positive and there are two or more items) held out, drawn with `seed`. Both lists sorted.
func holdOut(_ n: Int, fraction: Double, seed: UInt64) -> (train: [Int], validation: [Int]) {
    var held = fraction > 0 && n >= 2 ? max(1, Int((Double(n) * fraction).rounded())) : 0
    held = min(held, n - 1)
    let order = permutation(n, seed: seed)
    return (order[held...].sorted(), order[..<held].sorted())
}

/// A Fisher-Yates permutation of 0..<n from `seed`.
func permutation(_ n: Int, seed: UInt64) -> [Int] {
    var rng = RNG(seed: seed)
    var p = Array(0..<n)
    if n > 1 {
        for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
    }
    return p
}

/// Which items micro-batch `n` holds: epoch e = n / batchesPerEpoch visits the items in the
/// order of a permutation seeded with (seed, e).
struct EpochOrder {
    let count: Int
    let batchSize: Int
    let seed: UInt64
    private var cached: (epoch: Int, order: [Int]) = (-1, [])

    init(count: Int, batchSize: Int, seed: UInt64) {
        precondition(count >= 1 && batchSize >= 1, "an epoch needs items (\(count)) and a batch size (\(batchSize))")
        self.count = count
        self.batchSize = batchSize
        self.seed = seed
    }

    var batchesPerEpoch: Int { (count + batchSize - 1) / batchSize }

    mutating func items(ofBatch n: Int) -> [Int] {
        let epoch = n / batchesPerEpoch, j = n % batchesPerEpoch
        if cached.epoch != epoch {
            cached = (epoch, permutation(count, seed: seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(epoch + 1)))
        }
        return Array(cached.order[(j * batchSize)..<min((j + 1) * batchSize, count)])
    }
}

/// Examples from fine-tuning JSONL rows: SFT rows through the chat template, and TRL's
/// language-modelling rows `{"text"}` (every token trained, end-of-text appended). A text row
/// longer than `seqLen` positions is cut into consecutive windows of seqLen + 1 ids that
/// overlap by one id, so every token is a target once and none is lost to truncation.
package func readExamples(
    _ paths: [String], template: ChatTemplateName, tokenizer: ByteLevelBPETokenizer, endOfText: Int32?, seqLen: Int
) throws -> [RenderedExample] {
    precondition(seqLen >= 1, "seqLen must be >= 1, got \(seqLen)")
    let format = SFTFormat(template: ChatTemplate(rawValue: template.rawValue) ?? .chatml)
    var out: [RenderedExample] = []
    for path in paths {
        try JSONLReader.forEach(path: path) { record in
            if case .string(let text)? = record.value("text"), record.value("messages") == nil,
                record.value("prompt") == nil
            {
                let ids = tokenizer.encode(text) + (endOfText.map { [$0] } ?? [])
                var start = 0
                repeat {
                    let window = Array(ids[start..<min(start + seqLen + 1, ids.count)])
                    out.append(RenderedExample(ids: window, trained: window.map { _ in true }))
                    start += seqLen
                } while start + 1 < ids.count
            } else {
                out.append(try SFTData.render(record, format: format, tokenizer: tokenizer))
            }
        }
    }
    return out
}

extension SFTSequences {
    /// Whether row `r` has at least one trained target.
    func isTrained(_ r: Int) -> Bool {
        targets[(r * seqLen)..<((r + 1) * seqLen)].contains { $0 != SFTSequences.ignoreIndex }
    }

    /// Rows `rows` (any order) as one training batch with their segment ids.
    package func batch(_ rows: [Int]) -> TrainingBatch {
        var inputs: [Int32] = [], targets: [Int32] = [], segments: [Int32] = []
        for r in rows {
            let s = slice(r..<(r + 1))
            inputs += s.inputs
            targets += s.targets
            segments += s.segments
        }
        return TrainingBatch(inputs: inputs, targets: targets, batch: rows.count, length: seqLen, segments: segments)
    }
}

/// XXH64 over every tensor that shapes the model's logits (base parameters, then adapters),
/// names included: the identity of a model in cache keys.
func weightsDigest(_ model: LlamaModel) -> String {
    var h = XXH64()
    for (name, t) in model.namedParameters() + model.adapterParameters() {
        h.update(name)
        h.update(UnsafeRawBufferPointer(start: t.data, count: t.count * MemoryLayout<Float>.size))
    }
    return hexDigits(h.finalize())
}

/// Refuses a teacher whose tokenizer differs from the student's: distillation compares the
/// two distributions id by id, so the vocabularies (and the merges that pick the ids) must be
/// the same. Cross-tokenizer distillation is out of scope.
func requireSameTokenizer(
    student: ByteLevelBPETokenizer, studentPath: String, teacher: ByteLevelBPETokenizer, teacherPath: String,
    studentVocab: Int, teacherVocab: Int
) throws {
    func refuse(_ what: String) -> UserError {
        UserError(
            path: teacherPath,
            problem: "the teacher's tokenizer differs from the student's (\(studentPath)): \(what)",
            fix: "distill from a teacher trained with the same tokenizer.json (cross-tokenizer distillation is not supported)", kind: .usage)
    }
    guard studentVocab == teacherVocab else {
        throw refuse("the models' vocabularies have \(studentVocab) and \(teacherVocab) entries")
    }
    guard student.vocabSize == teacher.vocabSize else {
        throw refuse("\(student.vocabSize) tokens against \(teacher.vocabSize)")
    }
    for id in 0..<Int32(student.vocabSize) where student.token(for: id) != teacher.token(for: id) {
        throw refuse(
            "token \(id) is \(student.token(for: id).map { "\"\($0)\"" } ?? "unused") for the student and "
                + "\(teacher.token(for: id).map { "\"\($0)\"" } ?? "unused") for the teacher")
    }
    let a = student.model.merges, b = teacher.model.merges
    guard a.count == b.count, zip(a, b).allSatisfy({ $0 == $1 }) else {
        throw refuse("same vocabulary but different merges (\(a.count) against \(b.count))")
    }
}

// MARK: - The session

/// The model, optimizer, resumed state and checkpoint commits of one fine-tuning stage.
final class FineTuneSession {
    let name: String
    let settings: FineTuneTraining
    let lora: LoRAConfig?
    let context: RunContext
    let output: URL
    let metricsURL: URL
    let emit: (StageEvent) -> Void
    /// The model being trained (with adapters when `lora` is set).
    let model: LlamaModel
    let modelPath: String
    let tokenizer: ByteLevelBPETokenizer
    let tokenizerJSON: String?
    let endOfText: Int32?
    /// The committed state this attempt continues from.
    let resumed: CheckpointContents?
    /// Digest of the starting weights (base plus any adapters it came with), before training.
    let startDigest: String
    /// The stage trains the adapter its model came with (rather than fresh adapters).
    let continuesAdapter: Bool
    /// The base an adapter checkpoint of this stage names (LoRA only).
    let basePath: String?

    init(name: String, model source: CheckpointSource, settings: FineTuneTraining, lora: LoRASettings?, context: RunContext, output: String, emit: @escaping (StageEvent) -> Void) throws {
        if let threads = context.threads { Threads.set(threads) }
        self.name = name
        self.settings = settings
        self.context = context
        self.emit = emit
        self.output = URL(fileURLWithPath: output)
        metricsURL = URL(fileURLWithPath: context.runDirectory).appendingPathComponent("\(name).metrics.jsonl")
        modelPath = context.path(of: source)

        var resumed: CheckpointContents?
        let fm = FileManager.default
        if context.resume, fm.fileExists(atPath: output) || fm.fileExists(atPath: output + ".prev") {
            let (contents, _) = try readCommittedCheckpoint(at: self.output)
            if contents.metadata["fingerprint"] == context.fingerprint, contents.optimizer != nil {
                resumed = contents
                if contents.threads != Threads.count {
                    emit(.message("resuming a run checkpointed with \(contents.threads) threads on \(Threads.count): results stay correct but are no longer bit-identical to an uninterrupted run"))
                }
            }
        }
        self.resumed = resumed

        let loaded = try loadModel(from: modelPath, trainable: lora == nil)
        tokenizer = try loaded.requireTokenizer()
        tokenizerJSON = loaded.tokenizerJSON
        endOfText = loaded.endOfText
        model = loaded.model
        startDigest = weightsDigest(model)
        continuesAdapter = loaded.adapter != nil && lora != nil
        // The stage's target_modules resolved once against this model's layers.
        do {
            self.lora = try lora?.config.resolved(layers: model.layers.count)
        } catch {
            throw UserError(
                path: "stage \(name), lora.target_modules", problem: "\(error) (model \(modelPath))",
                fix: "name projections or module paths the model has (q_proj ... down_proj, layers.0.mlp.down_proj) or a regex matching some", kind: .usage)
        }
        if let config = self.lora {
            if let adapter = loaded.adapter {
                // The model is an adapter on its base: keep training that adapter, bound to the same base.
                guard adapter.lora.sameAdapters(as: config) else {
                    throw UserError(
                        path: modelPath,
                        problem: "is an adapter with LoRA settings r \(adapter.lora.rank), alpha \(adapter.lora.alpha), dropout \(adapter.lora.dropout), use_rslora \(adapter.lora.useRSLoRA), on \(adapter.lora.adaptedModules?.count ?? 0) modules (target_modules \(adapter.lora.targetDescription)); the stage's lora block differs",
                        fix: "give the same lora settings to continue training this adapter, or merge it first (a merge stage, or distill merge) and train a new adapter on the merged model", kind: .usage)
                }
                basePath = loaded.basePath ?? modelPath
                for (_, p) in model.adapterParameters() { p.requiresGrad = true }
            } else {
                var rng = RNG(seed: UInt64(context.seed) ^ 0x4C6F_5241)
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
        if let resumed {
            let trained = self.lora == nil ? model.namedParameters() : model.adapterParameters()
            let saved = Dictionary(resumed.parameters.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
            for (pname, p) in trained {
                guard let t = saved[pname], t.shape == p.shape else {
                    throw UserError(path: output, problem: "parameter \(pname) is missing or mis-shaped", fix: "delete the checkpoint to start the stage over", kind: .badData)
                }
                p.data.update(from: t.data, count: t.count)
            }
            for (key, layer) in loraLayers() { if let r = resumed.rng[key] { layer.rng = r } }
        }
    }

    /// The adapters by the RNG stream name their dropout state is stored under.
    private func loraLayers() -> [(String, LoRALinear)] {
        var out: [(String, LoRALinear)] = []
        for (i, layer) in model.layers.enumerated() {
            for (m, linear) in layer.modules { if let l = linear as? LoRALinear, l.rng != nil { out.append(("lora.\(i).\(m)", l)) } }
        }
        return out
    }

    /// Optimiser steps for `batchesPerEpoch` micro-batches per epoch.
    func steps(batchesPerEpoch: Int) -> Int {
        if let steps = settings.steps { return steps }
        return max(1, Int((settings.epochs * Double(batchesPerEpoch) / Double(settings.gradAccum)).rounded(.up)))
    }

    /// Trains with `objective` on micro-batches `batch(n)` (n counting from 0 over the run) and
    /// commits checkpoints; returns the stage outputs.
    func train<O: TrainingObjective>(
        objective: O, steps: Int, batch: (Int) throws -> O.Batch, validation: [O.Batch], progressKeys: [String],
        summary extra: [String: SummaryValue]
    ) throws -> StageOutputs {
        let t = settings
        let config = TrainerConfig(
            steps: steps, gradAccum: t.gradAccum,
            schedule: LearningRateSchedule(
                peak: t.lr, warmupSteps: min(t.warmupSteps, steps - 1), totalSteps: steps, minRatio: t.minLRRatio,
                kind: ScheduleKind(rawValue: t.schedule.rawValue) ?? .cosine),
            optimizer: AdamWConfig(beta1: t.beta1, beta2: t.beta2, eps: t.eps, weightDecay: t.weightDecay),
            gradClip: t.gradClip, evalEvery: t.evalEvery == 0 ? steps : t.evalEvery,
            checkpointEvery: t.checkpointEvery, logEvery: t.logEvery)
        let noDecay = t.noDecay
        let parameters = lora == nil ? model.namedParameters() : model.adapterParameters()
        let optimizer = AdamW(parameters: parameters, config: config.optimizer) { n in !noDecay.contains { n.contains($0) } }
        var consumed = 0, tokensSeen = 0
        if let resumed, let state = resumed.optimizer {
            try restore(optimizer, from: state)
            consumed = try Self.cursor(resumed.dataCursor, path: output.path)
            tokensSeen = resumed.tokensSeen
            emit(.message("resuming at step \(resumed.step) of \(steps)"))
        }
        let metrics = try MetricsLog(url: metricsURL, keepThroughStep: resumed?.step ?? 0)

        func commit(step: Int) throws {
            var rng: [String: RNG] = [:]
            for (key, layer) in loraLayers() { rng[key] = layer.rng }
            let moments: [String: [(name: String, tensor: Tensor)]] = [
                "m": optimizer.slots.map { ($0.name, $0.m) }, "v": optimizer.slots.map { ($0.name, $0.v) },
            ]
            let metadata = ["stage": name, "fingerprint": context.fingerprint]
            let state = OptimizerState(kind: "adamw", step: optimizer.step, moments: moments)
            let cursor = "{\"micro_batches\":\(consumed)}"
            let contents: CheckpointContents
            if let lora {
                contents = adapterContents(
                    model, lora: lora, basePath: basePath, adapterPath: output.path, threads: Threads.count,
                    optimizer: state, step: step, tokensSeen: tokensSeen, rng: rng, dataCursor: cursor,
                    recipe: context.recipeJSON, tokenizer: tokenizerJSON, metadata: metadata)
            } else {
                contents = CheckpointContents(
                    config: model.config, parameters: model.namedParameters().map { ($0.0, $0.1) }, optimizer: state,
                    step: step, tokensSeen: tokensSeen, rng: rng, dataCursor: cursor, recipe: context.recipeJSON,
                    tokenizer: tokenizerJSON, threads: Threads.count, metadata: metadata)
            }
            try writeCheckpoint(contents, to: output)
            emit(.checkpointCommitted(path: output.path, step: step))
        }

        let trainer = Trainer(model: model, config: config, optimizer: optimizer)
        var lastLoss = Double.nan, lastValidation = Double.nan
        var lastMetrics: [String: Double] = [:], lastValidationMetrics: [String: Double] = [:]
        var window: (tokens: Int, seconds: Double) = (0, 0)
        try trainer.run(
            objective: objective,
            nextBatch: {
                defer { consumed += 1 }
                return try batch(consumed)
            }, validation: validation.isEmpty ? nil : { validation }
        ) { event in
            switch event {
            case .step(let r):
                tokensSeen += r.tokens
                lastLoss = r.loss
                lastMetrics = r.metrics
                window.tokens += r.tokens
                window.seconds += r.seconds
                var line: [String: SummaryValue] = ["step": .int(r.step), "loss": .double(r.loss), "lr": .double(r.lr), "grad_norm": .double(r.gradNorm)]
                for (k, v) in r.metrics { line[k] = .double(v) }
                try metrics.append(line)
                if r.step % max(1, t.logEvery) == 0 || r.step == steps || r.step == 1 {
                    var shown = ["loss": r.loss, "lr": r.lr, "tokens_per_s": Double(window.tokens) / max(window.seconds, 1e-9)]
                    for k in progressKeys { shown[k] = r.metrics[k] }
                    emit(.progress(step: r.step, total: steps, metrics: shown))
                    window = (0, 0)
                }
            case .evaluation(let step, let loss):
                lastValidation = loss
                lastValidationMetrics = trainer.lastEvaluationMetrics
                var line: [String: SummaryValue] = ["step": .int(step), "val_loss": .double(loss)]
                for (k, v) in lastValidationMetrics { line["val_" + k] = .double(v) }
                try metrics.append(line)
                var shown = ["val_loss": loss]
                for k in progressKeys { shown["val_" + k] = lastValidationMetrics[k] }
                emit(.progress(step: step, total: steps, metrics: shown))
            case .checkpointDue(let step):
                try commit(step: step)
            }
            return true
        }
        if t.checkpointEvery == 0 || optimizer.step % t.checkpointEvery != 0 { try commit(step: optimizer.step) }
        var summary = extra
        summary["steps"] = .int(optimizer.step)
        summary["tokens"] = .int(tokensSeen)
        summary["trained_parameters"] = .int(optimizer.slots.reduce(0) { $0 + $1.parameter.count })
        if lastLoss.isFinite { summary["loss"] = .double(lastLoss) }
        if lastValidation.isFinite { summary["val_loss"] = .double(lastValidation) }
        for k in progressKeys {
            if let v = lastMetrics[k] { summary[k] = .double(v) }
            if let v = lastValidationMetrics[k] { summary["val_" + k] = .double(v) }
        }
        return StageOutputs(files: [output.path, metricsURL.path], summary: summary)
    }

    private static func cursor(_ text: String?, path: String) throws -> Int {
        guard let text, let data = text.data(using: .utf8),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let n = object["micro_batches"] as? Int, n >= 0
        else {
            throw UserError(path: path, problem: "the data cursor is missing or unreadable", fix: "delete the checkpoint to start the stage over", kind: .badData)
        }
        return n
    }

    private func restore(_ optimizer: AdamW, from state: OptimizerState) throws {
        optimizer.step = state.step
        for (moment, keyPath) in [("m", \AdamW.Slot.m), ("v", \AdamW.Slot.v)] {
            let saved = Dictionary((state.moments[moment] ?? []).map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
            for slot in optimizer.slots {
                guard let t = saved[slot.name], t.count == slot.parameter.count else {
                    throw UserError(path: output.path, problem: "optimizer moment \(moment) for \(slot.name) is missing or mis-shaped", fix: "delete the checkpoint to start the stage over", kind: .badData)
                }
                slot[keyPath: keyPath].data.update(from: t.data, count: t.count)
            }
        }
    }
}

/// Examples laid out in rows, split into training and validation rows, rows without a
/// trained target dropped.
package struct SFTRows {
    package var sequences: SFTSequences
    package var train: [Int]
    package var validation: [Int]

    package init(_ examples: [RenderedExample], seqLen: Int, packing: Bool, fraction: Double, seed: UInt64, padID: Int32, path: String) throws {
        let split = holdOut(examples.count, fraction: fraction, seed: seed)
        let trainSeq = SFTSequences(split.train.map { examples[$0] }, seqLen: seqLen, layout: packing ? .packed : .padded, padID: padID)
        let valSeq = SFTSequences(split.validation.map { examples[$0] }, seqLen: seqLen, layout: packing ? .packed : .padded, padID: padID)
        // One table of rows: training rows then validation rows.
        var all = trainSeq
        all.rows += valSeq.rows
        all.inputs += valSeq.inputs
        all.targets += valSeq.targets
        all.segments += valSeq.segments
        all.positions += valSeq.positions
        all.truncated += valSeq.truncated
        sequences = all
        train = (0..<trainSeq.rows).filter { all.isTrained($0) }
        validation = (trainSeq.rows..<all.rows).filter { all.isTrained($0) }
        guard !train.isEmpty else {
            throw UserError(path: path, problem: "no training row has a trained token (\(examples.count) examples)", fix: "check the data rows and seq_len", kind: .badData)
        }
    }

    /// Validation batches of `batchSize` rows, at most `count`.
    func validationBatches(batchSize: Int, count: Int) -> [[Int]] {
        stride(from: 0, to: validation.count, by: batchSize).prefix(count).map {
            Array(validation[$0..<min($0 + batchSize, validation.count)])
        }
    }
}

// MARK: - sft

struct SFTExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .sft(let s) = stage else { preconditionFailure("sft executor got a \(stage.type) stage") }
        return try withoutActuallyEscaping(emit) { emit in
            let session = try FineTuneSession(name: s.name, model: s.model, settings: s.training, lora: s.lora, context: context, output: s.output, emit: emit)
            let t = s.training
            try checkSeqLen(t.seqLen, session)
            let examples = try readExamples(s.data.train, template: s.template, tokenizer: session.tokenizer, endOfText: session.endOfText, seqLen: t.seqLen)
            let rows = try SFTRows(examples, seqLen: t.seqLen, packing: s.packing, fraction: s.data.validationFraction, seed: UInt64(context.seed), padID: session.endOfText ?? 0, path: s.data.train.first ?? "")
            emit(.message("\(examples.count) examples in \(rows.train.count) training and \(rows.validation.count) validation rows of \(t.seqLen) (\(rows.sequences.truncated) truncated)"))
            var order = EpochOrder(count: rows.train.count, batchSize: t.batchSize, seed: UInt64(context.seed))
            let objective = MaskedLanguageModeling(model: session.model)
            return try session.train(
                objective: objective, steps: session.steps(batchesPerEpoch: order.batchesPerEpoch),
                batch: { n in rows.sequences.batch(order.items(ofBatch: n).map { rows.train[$0] }) },
                validation: rows.validationBatches(batchSize: t.batchSize, count: t.evalBatches).map { rows.sequences.batch($0) },
                progressKeys: [], summary: ["examples": .int(examples.count)])
        }
    }
}

/// Refuses a seq_len the model cannot take.
func checkSeqLen(_ seqLen: Int, _ session: FineTuneSession) throws {
    let limit = session.model.config.maxPositionEmbeddings
    guard seqLen <= limit else {
        throw UserError(path: session.modelPath, problem: "training.seq_len \(seqLen) exceeds the model's max_position_embeddings (\(limit))", fix: "set training.seq_len <= \(limit)", kind: .usage)
    }
}

// MARK: - dpo

struct DPOExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .dpo(let s) = stage else { preconditionFailure("dpo executor got a \(stage.type) stage") }
        return try withoutActuallyEscaping(emit) { emit in
            let session = try FineTuneSession(name: s.name, model: s.model, settings: s.training, lora: s.lora, context: context, output: s.output, emit: emit)
            let t = s.training
            try checkSeqLen(t.seqLen, session)
            let format = SFTFormat(template: ChatTemplate(rawValue: s.template.rawValue) ?? .chatml)
            var pairs: [PreferencePair] = []
            for path in s.data.train { pairs += try PreferenceData.read(path: path, format: format, tokenizer: session.tokenizer) }
            guard !pairs.isEmpty else {
                throw UserError(path: s.data.train.first ?? "", problem: "no preference pairs", fix: "add {\"prompt\", \"chosen\", \"rejected\"} rows", kind: .badData)
            }
            let padID = session.endOfText ?? 0
            let config = s.lossConfig
            var summary: [String: SummaryValue] = ["pairs": .int(pairs.count)]
            var reference: ReferenceLogProbs?
            if config.kind.needsReference {
                let (ref, status) = try referenceLogProbs(pairs, stage: s, session: session, padID: padID, emit: emit)
                reference = ref
                summary["reference"] = .string(status)
            }
            let split = holdOut(pairs.count, fraction: s.data.validationFraction, seed: UInt64(context.seed))
            func batch(_ idx: [Int]) -> PreferenceBatch {
                PreferenceBatch(
                    sequences: PreferenceSequences(idx.map { pairs[$0] }, maxLength: t.seqLen, padID: padID),
                    reference: reference.map { r in ReferenceLogProbs(chosen: idx.map { r.chosen[$0] }, rejected: idx.map { r.rejected[$0] }) })
            }
            emit(.message("\(pairs.count) pairs: \(split.train.count) training, \(split.validation.count) validation"))
            var order = EpochOrder(count: split.train.count, batchSize: t.batchSize, seed: UInt64(context.seed))
            let validation = stride(from: 0, to: split.validation.count, by: t.batchSize).prefix(t.evalBatches).map {
                batch(Array(split.validation[$0..<min($0 + t.batchSize, split.validation.count)]))
            }
            return try session.train(
                objective: PreferenceObjective(model: session.model, config: config),
                steps: session.steps(batchesPerEpoch: order.batchesPerEpoch),
                batch: { n in batch(order.items(ofBatch: n).map { split.train[$0] }) }, validation: validation,
                progressKeys: PreferenceMetrics.names, summary: summary)
        }
    }

    /// The reference model's summed completion log-probs for every pair (file order), from the
    /// cache in the run directory when its key matches, else computed (adapters disabled for
    /// LoRA; the untouched starting model for full fine-tuning) and stored.
    private func referenceLogProbs(
        _ pairs: [PreferencePair], stage s: DPOStage, session: FineTuneSession, padID: Int32, emit: (StageEvent) -> Void
    ) throws -> (ReferenceLogProbs, String) {
        var key = XXH64()
        key.update("dpo-reference-v1")
        key.update(session.startDigest)
        for path in s.data.train { key.update(try fileDigest(path)) }
        key.update(s.template.rawValue)
        key.update(UInt64(s.training.seqLen))
        key.update(UInt64(s.training.batchSize))
        let fingerprint = hexDigits(key.finalize())
        let cache = URL(fileURLWithPath: session.context.runDirectory).appendingPathComponent("cache/reference-\(fingerprint).json")
        if let data = FileManager.default.contents(atPath: cache.path),
            let stored = try? JSONDecoder().decode(StoredReference.self, from: data),
            stored.fingerprint == fingerprint, stored.logProbs.chosen.count == pairs.count
        {
            emit(.message("reference log-probs: cached (\(cache.lastPathComponent))"))
            return (stored.logProbs, "cached")
        }
        emit(.message("reference log-probs: computing for \(pairs.count) pairs"))
        // The reference is the stage's starting model: the base with fresh adapters disabled
        // (exactly the base, no second copy), else the model as loaded while it is untrained,
        // else a fresh load of it.
        let model: LlamaModel
        let disable = session.lora != nil && !session.continuesAdapter
        if disable {
            model = session.model
            model.setAdapters(enabled: false)
        } else if session.resumed == nil {
            model = session.model
        } else {
            let loaded = try loadModel(from: session.modelPath)
            if session.lora == nil && loaded.adapter != nil { loaded.model.mergeAdapters() }
            model = loaded.model
        }
        defer { if disable { session.model.setAdapters(enabled: true) } }
        var chosen: [Float] = [], rejected: [Float] = []
        for start in stride(from: 0, to: pairs.count, by: s.training.batchSize) {
            let chunk = Array(pairs[start..<min(start + s.training.batchSize, pairs.count)])
            let r = PreferenceObjective.referenceLogProbs(model, PreferenceSequences(chunk, maxLength: s.training.seqLen, padID: padID))
            chosen += r.chosen
            rejected += r.rejected
        }
        let result = ReferenceLogProbs(chosen: chosen, rejected: rejected)
        try FileManager.default.createDirectory(at: cache.deletingLastPathComponent(), withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try writeAtomically(try encoder.encode(StoredReference(fingerprint: fingerprint, logProbs: result)), to: cache.path)
        return (result, "computed")
    }
}

/// The reference cache file: its key and the log-probs.
private struct StoredReference: Codable {
    var fingerprint: String
    var logProbs: ReferenceLogProbs
}

extension PreferenceMetrics {
    /// TRL's metric names, in its logging order.
    static let names = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"]
}

// MARK: - kd

struct KDExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .kd(let s) = stage else { preconditionFailure("kd executor got a \(stage.type) stage") }
        return try withoutActuallyEscaping(emit) { emit in
            let session = try FineTuneSession(name: s.name, model: s.model, settings: s.training, lora: s.lora, context: context, output: s.output, emit: emit)
            let t = s.training
            let teacherPath = context.path(of: s.teacher)
            let teacher = try loadModel(from: teacherPath)
            try requireSameTokenizer(
                student: session.tokenizer, studentPath: session.modelPath, teacher: try teacher.requireTokenizer(),
                teacherPath: teacherPath, studentVocab: session.model.config.vocabSize, teacherVocab: teacher.model.config.vocabSize)
            try checkSeqLen(t.seqLen, session)
            guard t.seqLen <= teacher.model.config.maxPositionEmbeddings else {
                throw UserError(path: teacherPath, problem: "training.seq_len \(t.seqLen) exceeds the teacher's max_position_embeddings (\(teacher.model.config.maxPositionEmbeddings))", fix: "lower training.seq_len", kind: .usage)
            }
            let examples = try readExamples(s.data.train, template: s.template, tokenizer: session.tokenizer, endOfText: session.endOfText, seqLen: t.seqLen)
            let rows = try SFTRows(examples, seqLen: t.seqLen, packing: s.packing, fraction: s.data.validationFraction, seed: UInt64(context.seed), padID: session.endOfText ?? 0, path: s.data.train.first ?? "")
            emit(.message("\(examples.count) examples in \(rows.train.count) training and \(rows.validation.count) validation rows of \(t.seqLen)"))
            var summary: [String: SummaryValue] = ["examples": .int(examples.count)]
            var topK: [TopKLogProbs]?
            if let k = s.topK {
                let (table, status) = try teacherTopK(rows.sequences, k: min(k, teacher.model.config.vocabSize), stage: s, teacher: teacher.model, runDirectory: context.runDirectory, emit: emit)
                topK = table
                summary["teacher_top_k"] = .string(status)
            }
            func batch(_ idx: [Int]) -> DistillationBatch {
                let b = rows.sequences.batch(idx)
                guard let topK else { return DistillationBatch(batch: b, teacherTopK: nil) }
                let k = topK[0].k
                return DistillationBatch(batch: b, teacherTopK: TopKLogProbs(k: k, ids: idx.flatMap { topK[$0].ids }, logProbs: idx.flatMap { topK[$0].logProbs }))
            }
            var order = EpochOrder(count: rows.train.count, batchSize: t.batchSize, seed: UInt64(context.seed))
            let objective = DistillationObjective(student: session.model, teacher: topK == nil ? teacher.model : nil, config: s.distillationConfig)
            return try session.train(
                objective: objective, steps: session.steps(batchesPerEpoch: order.batchesPerEpoch),
                batch: { n in batch(order.items(ofBatch: n).map { rows.train[$0] }) },
                validation: rows.validationBatches(batchSize: t.batchSize, count: t.evalBatches).map { batch($0) },
                progressKeys: s.alpha < 1 ? ["kd", "ce"] : ["kd"], summary: summary)
        }
    }

    /// The teacher's top-k log-probs for every row (training and validation), from the run
    /// directory's cache when its key (teacher weights, data, layout, k, temperature) matches.
    private func teacherTopK(
        _ seqs: SFTSequences, k: Int, stage s: KDStage, teacher: LlamaModel, runDirectory: String, emit: (StageEvent) -> Void
    ) throws -> ([TopKLogProbs], String) {
        var key = XXH64()
        key.update("kd-topk-v1")
        key.update(weightsDigest(teacher))
        key.update(seqs.inputs.withUnsafeBytes { XXH64.hash($0) })
        key.update(seqs.segments.withUnsafeBytes { XXH64.hash($0) })
        key.update(UInt64(seqs.seqLen))
        key.update(UInt64(k))
        key.update(s.temperature.bitPattern)
        let fingerprint = hexDigits(key.finalize())
        let cache = URL(fileURLWithPath: runDirectory).appendingPathComponent("cache/teacher-topk-\(fingerprint).bin")
        let perRow = seqs.seqLen * k
        if let data = FileManager.default.contents(atPath: cache.path), let table = TopKTable(data: data, rows: seqs.rows, perRow: perRow) {
            emit(.message("teacher top-\(k): cached (\(cache.lastPathComponent))"))
            return ((0..<seqs.rows).map { table.row($0, k: k) }, "cached")
        }
        emit(.message("teacher top-\(k): computing for \(seqs.rows) rows"))
        var out: [TopKLogProbs] = []
        for start in stride(from: 0, to: seqs.rows, by: max(1, s.training.batchSize)) {
            let idx = Array(start..<min(start + s.training.batchSize, seqs.rows))
            let logits = DistillationObjective.teacherLogits(teacher, seqs.batch(idx))  // [B, T, V]
            let v = logits.shape[2]
            for (i, _) in idx.enumerated() {
                let row = Tensor(shape: [seqs.seqLen, v], values: Array(logits.values[(i * seqs.seqLen * v)..<((i + 1) * seqs.seqLen * v)]))
                out.append(TopKLogProbs(logits: row, k: k, temperature: s.temperature))
            }
        }
        try FileManager.default.createDirectory(at: cache.deletingLastPathComponent(), withIntermediateDirectories: true)
        try writeAtomically(TopKTable.encode(out, perRow: perRow), to: cache.path)
        return (out, "computed")
    }
}

/// The top-k cache file: "DSTLTOPK", rows and entries per row (UInt64 LE), then every row's
/// ids (Int32 LE) and log-probs (Float32 LE).
private struct TopKTable {
    static let magic = Array("DSTLTOPK".utf8)
    var ids: [Int32]
    var logProbs: [Float]
    var perRow: Int

    init?(data: Data, rows: Int, perRow: Int) {
        let header = 8 + 16, n = rows * perRow
        guard data.count == header + n * 8, Array(data.prefix(8)) == Self.magic else { return nil }
        func u64(_ at: Int) -> UInt64 { data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt64.self) }.littleEndian }
        guard u64(8) == UInt64(rows), u64(16) == UInt64(perRow) else { return nil }
        var ids = [Int32](repeating: 0, count: n)
        var logProbs = [Float](repeating: 0, count: n)
        data.withUnsafeBytes { raw in
            ids.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[header..<(header + n * 4)])) }
            logProbs.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[(header + n * 4)...])) }
        }
        self.ids = ids
        self.logProbs = logProbs
        self.perRow = perRow
    }

    func row(_ r: Int, k: Int) -> TopKLogProbs {
        let range = (r * perRow)..<((r + 1) * perRow)
        return TopKLogProbs(k: k, ids: Array(ids[range]), logProbs: Array(logProbs[range]))
    }

    static func encode(_ rows: [TopKLogProbs], perRow: Int) -> Data {
        var data = Data(magic)
        withUnsafeBytes(of: UInt64(rows.count).littleEndian) { data.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt64(perRow).littleEndian) { data.append(contentsOf: $0) }
        for r in rows { r.ids.withUnsafeBytes { data.append(contentsOf: $0) } }
        for r in rows { r.logProbs.withUnsafeBytes { data.append(contentsOf: $0) } }
        return data
    }
}
