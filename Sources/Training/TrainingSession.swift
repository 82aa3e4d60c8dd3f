// One training run from start to committed checkpoint, whatever is trained: pretraining,
// sft/dpo/kd (full or LoRA) and every sweep trial go through a TrainingSession. It owns what
// they share and would otherwise each get slightly different:
//
//   resume   the committed checkpoint of an interrupted attempt with the same fingerprint
//            (weights, AdamW moments, step, tokens seen, data cursor, RNG streams);
//   loop     the optimizer over the trained parameters and the trainer's configuration;
//   metrics  `<name>.metrics.jsonl`, one deterministic line per step and per evaluation (no
//            timings), cut back on resume to the steps the checkpoint contains, so a resumed
//            run writes exactly the file an uninterrupted one writes;
//   progress events every `log_every` steps with tokens/s over the window since the last;
//   commit   checkpoints through ModelIO's commit protocol when due and at the end.
//
// The caller keeps what differs: the model and its data (and their cursor), the objective,
// and how a checkpoint is laid out (a whole model or an adapter). It writes no other file.

import Core
import Foundation
import JSON
import ModelIO
import NN
import Platform

/// What a running stage reports: progress, commits and free text. No printing happens here.
package enum ProgressEvent: Sendable {
    /// A step of `total` (when known) with metrics such as `loss`, `lr`, `tokens_per_s`.
    case progress(step: Int, total: Int?, metrics: [String: Double])
    /// A checkpoint was committed (the state a later run resumes from).
    case checkpointCommitted(path: String, step: Int)
    /// Free text worth showing (`"training a 512-token tokenizer"`).
    case message(String)
}

package final class TrainingSession {
    /// What a commit stores besides the weights: the caller turns it into checkpoint contents.
    package struct Commit {
        package var step: Int
        package var optimizer: OptimizerState
        package var tokensSeen: Int
        /// `stage` and `fingerprint`, which a resume checks.
        package var metadata: [String: String]
        package var recipe: String
    }

    /// The stage name (checkpoint metadata).
    package let name: String
    package let output: URL
    package let metricsURL: URL
    private let fingerprint: String
    private let recipeJSON: String
    private let emit: (ProgressEvent) -> Void
    /// The committed state this attempt continues from; nil when it starts fresh.
    package let resumed: CheckpointContents?

    /// Opens the run of stage `name` committing to `output`. With `resume`, a committed
    /// checkpoint at `output` (or its `.prev`) carrying `fingerprint` and optimizer state is
    /// continued; anything else starts over.
    package init(
        name: String, output: String, metrics: String, fingerprint: String, recipeJSON: String, resume: Bool,
        emit: @escaping (ProgressEvent) -> Void
    ) throws {
        self.name = name
        self.output = URL(fileURLWithPath: output)
        metricsURL = URL(fileURLWithPath: metrics)
        self.fingerprint = fingerprint
        self.recipeJSON = recipeJSON
        self.emit = emit
        var resumed: CheckpointContents?
        if resume, fileExists(output) || fileExists(output + ".prev") {
            let (contents, source) = try readCommittedCheckpoint(at: self.output)
            if source != self.output {
                emit(.message("\(output) is missing or does not read; continuing from \(source.path), the checkpoint committed before it"))
            }
            if contents.metadata["fingerprint"] == fingerprint, contents.optimizer != nil {
                resumed = contents
                if contents.threads != Threads.count {
                    emit(.message("resuming a run checkpointed with \(contents.threads) threads on \(Threads.count): results stay correct but are no longer bit-identical to an uninterrupted run"))
                }
            }
        }
        self.resumed = resumed
    }

    /// Copies the resumed checkpoint's tensors into `parameters` (no-op when starting fresh).
    package func restore(_ parameters: [(String, Tensor)]) throws {
        guard let resumed else { return }
        let saved = Dictionary(resumed.parameters.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        for (name, p) in parameters {
            guard let t = saved[name], t.shape == p.shape else { throw damaged("parameter \(name) is missing or mis-shaped") }
            p.data.update(from: t.data, count: t.count)
        }
    }

    /// A resumed checkpoint this session cannot continue from.
    package func damaged(_ problem: String) -> UserError {
        UserError(path: output.path, problem: problem, fix: "delete the checkpoint to start the stage over", kind: .badData)
    }

    /// Trains `parameters` of `model` for `steps` steps with `settings`. `run` drives the
    /// trainer (`trainer.run(nextBatch:...)` or `trainer.run(objective:...)`) with the handler it
    /// is given; `contents` lays a commit out as a checkpoint (reading the caller's data cursor
    /// and RNG streams at that moment). `progressKeys` are objective metrics shown with the loss
    /// and kept in the summary; `perplexity` adds `val_ppl` = exp(val_loss) to evaluations (for
    /// next-token losses). Returns the summary: steps, tokens, last loss and validation loss, and
    /// those metrics.
    package func train(
        model: LlamaModel, parameters: [(String, Tensor)], settings t: TrainingSettings, steps: Int,
        progressKeys: [String] = [], perplexity: Bool = false,
        run: (Trainer, _ handle: (TrainingEvent) throws -> Bool) throws -> Void,
        contents: @escaping (Commit) -> CheckpointContents
    ) throws -> [String: Scalar] {
        let config = t.trainerConfig(steps: steps)
        model.recomputeLayers = t.gradientCheckpointing ?? false
        let noDecay = t.noDecay
        let optimizer = AdamW(parameters: parameters, config: config.optimizer) { n in !noDecay.contains { n.contains($0) } }
        var tokensSeen = 0
        if let resumed, let state = resumed.optimizer {
            try restore(optimizer, from: state)
            tokensSeen = resumed.tokensSeen
            emit(.message("resuming at step \(resumed.step) of \(steps)"))
        }
        let metrics = try MetricsLog(url: metricsURL, keepThroughStep: resumed?.step ?? 0)

        func commit(step: Int) throws {
            // Never commit poisoned state: an update can make weights non-finite with a finite
            // gradient (a huge learning rate), which only the next loss would reveal. The last
            // good checkpoint stays.
            if let bad = (parameters + optimizer.slots.flatMap { [($0.name + " (AdamW m)", $0.m), ($0.name + " (AdamW v)", $0.v)] })
                .first(where: { $0.1.firstNonFinite() != nil })
            {
                throw TrainingError.nonFiniteWeights(step: step, what: "\(bad.0) is not finite after the update")
            }
            let state = OptimizerState(
                kind: "adamw", step: optimizer.step,
                moments: ["m": optimizer.slots.map { ($0.name, $0.m) }, "v": optimizer.slots.map { ($0.name, $0.v) }])
            let commit = Commit(
                step: step, optimizer: state, tokensSeen: tokensSeen,
                metadata: ["stage": name, "fingerprint": fingerprint], recipe: recipeJSON)
            try writeCheckpoint(contents(commit), to: output)
            emit(.checkpointCommitted(path: output.path, step: step))
        }

        let trainer = Trainer(model: model, config: config, optimizer: optimizer)
        var lastLoss = Double.nan, lastValidation = Double.nan
        var lastMetrics: [String: Double] = [:], lastValidationMetrics: [String: Double] = [:]
        var window: (tokens: Int, seconds: Double) = (0, 0)
        try run(trainer) { event in
            switch event {
            case .step(let r):
                tokensSeen += r.tokens
                lastLoss = r.loss
                lastMetrics = r.metrics
                window.tokens += r.tokens
                window.seconds += r.seconds
                var line: [String: Scalar] = ["step": .int(r.step), "loss": .double(r.loss), "lr": .double(r.lr), "grad_norm": .double(r.gradNorm)]
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
                var line: [String: Scalar] = ["step": .int(step), "val_loss": .double(loss)]
                var shown = ["val_loss": loss]
                if perplexity {
                    line["val_ppl"] = .double(Foundation.exp(loss))
                    shown["val_ppl"] = Foundation.exp(loss)
                }
                for (k, v) in lastValidationMetrics { line["val_" + k] = .double(v) }
                try metrics.append(line)
                for k in progressKeys { shown["val_" + k] = lastValidationMetrics[k] }
                emit(.progress(step: step, total: steps, metrics: shown))
            case .checkpointDue(let step):
                try commit(step: step)
            }
            return true
        }
        if t.checkpointEvery == 0 || optimizer.step % t.checkpointEvery != 0 { try commit(step: optimizer.step) }
        var summary: [String: Scalar] = ["steps": .int(optimizer.step), "tokens": .int(tokensSeen)]
        if lastLoss.isFinite { summary["loss"] = .double(lastLoss) }
        if lastValidation.isFinite { summary["val_loss"] = .double(lastValidation) }
        for k in progressKeys {
            if let v = lastMetrics[k] { summary[k] = .double(v) }
            if let v = lastValidationMetrics[k] { summary["val_" + k] = .double(v) }
        }
        return summary
    }

    private func restore(_ optimizer: AdamW, from state: OptimizerState) throws {
        optimizer.step = state.step
        for (moment, keyPath) in [("m", \AdamW.Slot.m), ("v", \AdamW.Slot.v)] {
            let saved = Dictionary((state.moments[moment] ?? []).map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
            for slot in optimizer.slots {
                guard let t = saved[slot.name], t.count == slot.parameter.count else {
                    throw damaged("optimizer moment \(moment) for \(slot.name) is missing or mis-shaped")
                }
                slot[keyPath: keyPath].data.update(from: t.data, count: t.count)
            }
        }
    }
}

extension TrainingSession.Commit {
    /// A whole-model checkpoint of `model` at this commit.
    package func contents(
        _ model: LlamaModel, rng: [String: RNG], dataCursor: String, tokenizer: String?
    ) -> CheckpointContents {
        CheckpointContents(
            config: model.config, parameters: model.namedParameters().map { ($0.0, $0.1) }, optimizer: optimizer,
            step: step, tokensSeen: tokensSeen, rng: rng, dataCursor: dataCursor, recipe: recipe, tokenizer: tokenizer,
            threads: Threads.count, metadata: metadata)
    }
}

/// Append-only JSON lines of deterministic training metrics (no timings), cut back on resume
/// to the lines of steps that the resumed checkpoint contains.
final class MetricsLog {
    let url: URL
    private let handle: FileHandle

    init(url: URL, keepThroughStep step: Int) throws {
        self.url = url
        var kept = ""
        if step > 0, let text = try? String(contentsOf: url, encoding: .utf8) {
            for line in text.split(separator: "\n") {
                guard let object = try? JSONValue.parse(Array(line.utf8)), case .object(let o) = object,
                    case .int(let s)? = o["step"], s <= step
                else { continue }
                kept += line + "\n"
            }
        }
        try writeAtomically(kept, to: url.path)
        do {
            handle = try FileHandle(forWritingTo: url)
            try handle.seekToEnd()
        } catch {
            throw UserError(path: url.path, problem: "cannot open for appending (\(error.localizedDescription))", kind: .io)
        }
    }

    deinit { try? handle.close() }

    func append(_ fields: [String: Scalar]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var line = try encoder.encode(fields)
        line.append(0x0A)
        try handle.write(contentsOf: line)
    }
}
