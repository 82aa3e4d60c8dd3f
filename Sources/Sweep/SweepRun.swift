// Running a sweep: one tokenizer for all trials, then per trial (in plan order, this shard's
// share) a pretraining run in its own folder (Training's PretrainRun, so an interrupted
// trial resumes from its HDF5 checkpoint), the measurements, and one appended row in
// results.jsonl / results.csv. A trial with a result.json is finished and skipped.
//
// Layout of the sweep folder (the stage output):
//   sweep.json            the stage settings and recipe name (the report reads them)
//   plan.json             valid configurations and invalid ones with their reasons
//   tokenizer.json        shared by every trial (unless tokenizer.path is given)
//   cache/                the token cache (cache.shard-i-of-n/ per shard)
//   trials/<id>/          trial.json, model.h5, trial.metrics.jsonl, result.json
//   results[.shard-i-of-n].jsonl / .csv

import Core
import Foundation
import JSON
import ModelIO
import NN
import Platform
import Recipe
import Teacher
import TextData
import Training
import Verify

#if canImport(Glibc)
    import Glibc
#endif

/// One finished trial: the row of results.jsonl (the CSV has every column but the curves).
package struct SweepResult: Codable, Sendable, Equatable {
    package var trialId: String
    package var configId: String
    package var label: String
    package var values: [String: SweepValue]
    package var solved: String?
    package var seed: Int
    package var rung: Int
    package var model: ModelSettings
    package var steps: Int
    package var seqLen: Int
    package var tokens: Int
    package var parameters: Int
    package var embeddingParameters: Int
    package var nonEmbeddingParameters: Int
    package var flopsPerToken: Double
    package var trainingFlops: Double
    package var finalValLoss: Double?
    package var bestValLoss: Double?
    package var finalTrainLoss: Double?
    package var trainTokensPerSecond: Double?
    package var prefillTokensPerSecond: Double
    package var decodeTokensPerSecond: Double
    package var kvCacheBytesPerToken: Int
    package var peakMemoryMB: Double?
    package var wallSeconds: Double
    package var taskScore: Double?
    /// (step, training loss), at most 200 points.
    package var lossCurve: [[Double]]
    /// (step, validation loss).
    package var valCurve: [[Double]]
    package var finished: String
    package var shard: String

    enum CodingKeys: String, CodingKey, CaseIterable {
        case trialId = "trial_id", configId = "config_id", label, values, solved, seed, rung, model, steps
        case seqLen = "seq_len", tokens, parameters, embeddingParameters = "embedding_parameters"
        case nonEmbeddingParameters = "non_embedding_parameters", flopsPerToken = "flops_per_token"
        case trainingFlops = "training_flops", finalValLoss = "final_val_loss", bestValLoss = "best_val_loss"
        case finalTrainLoss = "final_train_loss", trainTokensPerSecond = "train_tokens_per_s"
        case prefillTokensPerSecond = "prefill_tokens_per_s", decodeTokensPerSecond = "decode_tokens_per_s"
        case kvCacheBytesPerToken = "kv_cache_bytes_per_token", peakMemoryMB = "peak_memory_mb"
        case wallSeconds = "wall_seconds", taskScore = "task_score", lossCurve = "loss_curve", valCurve = "val_curve"
        case finished, shard
    }

    /// The loss a trial is ranked by: best validation loss, else the final training loss.
    package var score: Double { bestValLoss ?? finalValLoss ?? finalTrainLoss ?? .infinity }

    package static let csvColumns: [String] = [
        "trial_id", "config_id", "label", "seed", "rung", "num_hidden_layers", "layer_repeat", "hidden_size",
        "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size", "tie_word_embeddings", "steps",
        "tokens", "parameters", "embedding_parameters", "non_embedding_parameters", "flops_per_token", "training_flops",
        "final_val_loss", "best_val_loss", "final_train_loss", "train_tokens_per_s", "prefill_tokens_per_s",
        "decode_tokens_per_s", "kv_cache_bytes_per_token", "peak_memory_mb", "wall_seconds", "task_score", "finished",
    ]

    package var csvRow: [String] {
        func d(_ x: Double?) -> String { x.map { String(format: "%.6g", $0) } ?? "" }
        let m = model
        return [
            trialId, configId, label, String(seed), String(rung), String(m.numHiddenLayers), String(m.layerRepeat),
            String(m.hiddenSize), String(m.numAttentionHeads), String(m.numKeyValueHeads), String(m.headDim),
            String(m.intermediateSize), String(m.tieWordEmbeddings), String(steps), String(tokens), String(parameters),
            String(embeddingParameters), String(nonEmbeddingParameters), d(flopsPerToken), d(trainingFlops),
            d(finalValLoss), d(bestValLoss), d(finalTrainLoss), d(trainTokensPerSecond), d(prefillTokensPerSecond),
            d(decodeTokensPerSecond), String(kvCacheBytesPerToken), d(peakMemoryMB), d(wallSeconds), d(taskScore), finished,
        ]
    }
}

/// What a sweep run did.
package struct SweepSummary: Sendable {
    package var ran = 0
    package var skipped = 0
    package var invalid: [InvalidConfig] = []
    package var planned = 0
    /// Set when successive halving waits for other shards' trials.
    package var waiting: String?
    package var directory: String
}

/// Runs the trials of one sweep stage (this shard's share).
package struct SweepRunner {
    package var stage: SweepStage
    /// The recipe the stage belongs to (its name labels the trials).
    package var recipe: Recipe
    package var seed: Int
    /// nil: all cores.
    package var threads: Int?
    package var shard: SweepShard

    /// Runs `stage` of `recipe`, in `distill run` or outside it (`distill sweep`: no run.json,
    /// no run lock, so several shards can share the folder).
    package init(stage: SweepStage, recipe: Recipe, seed: Int, threads: Int?, shard: SweepShard = .all) {
        self.stage = stage
        self.recipe = recipe
        self.seed = seed
        self.threads = threads
        self.shard = shard
    }

    package init(recipe: Recipe, stage: SweepStage, threads: Int?, shard: SweepShard) {
        self.init(stage: stage, recipe: recipe, seed: recipe.seed, threads: threads ?? recipe.threads, shard: shard)
    }

    var directory: URL { URL(fileURLWithPath: stage.output) }

    /// The token cache folder of this shard, in the sweep folder.
    var cacheName: String { shard.count == 1 ? "cache" : "cache.shard-\(shard.index)-of-\(shard.count)" }

    /// The vocabulary size trials will have: from the tokenizer file, or the one to train.
    package func plannedVocabSize() -> Int {
        if let path = stage.tokenizer.path, let data = FileManager.default.contents(atPath: path),
            let t = try? ByteLevelBPETokenizer(jsonData: Array(data))
        {
            return t.vocabSize
        }
        return stage.tokenizer.train?.vocabSize ?? TokenizerTraining().vocabSize
    }

    /// Valid configurations and invalid combinations, as a dry run shows them.
    package func plan(vocabSize: Int? = nil) -> (valid: [SweepConfig], invalid: [InvalidConfig], trials: [SweepTrial]) {
        let vocab = vocabSize ?? plannedVocabSize()
        let (valid, invalid) = SweepPlanner.configurations(stage, vocabSize: vocab, seed: seed)
        return (valid, invalid, SweepPlanner.trials(valid, rung: 0, stage: stage, vocabSize: vocab))
    }

    package func run(emit: (ProgressEvent) -> Void) throws -> SweepSummary {
        let fm = FileManager.default
        let dir = directory
        try createDirectory(dir.appendingPathComponent("trials"))
        try createDirectory(dir.appendingPathComponent(cacheName))
        try writeAtomically(
            Data(canonicalText(SweepManifest(recipe: recipe.name, seed: seed, stage: stage)).utf8),
            to: dir.appendingPathComponent("sweep.json"))

        let (tokenizerPath, tokenizer) = try sharedTokenizer(emit: emit)
        let vocab = tokenizer.vocabSize
        var (configs, invalid) = SweepPlanner.configurations(stage, vocabSize: vocab, seed: seed)
        var summary = SweepSummary(invalid: invalid, directory: dir.path)
        try writeAtomically(
            Data(canonicalText(SweepPlanFile(valid: configs, invalid: invalid)).utf8), to: dir.appendingPathComponent("plan.json"))
        for bad in invalid {
            emit(.message("skipped \(describe(bad.values)): " + bad.reasons.joined(separator: "; ")))
        }
        if configs.isEmpty {
            throw UserError(path: stage.output, problem: "no valid configuration (\(invalid.count) invalid, listed above)", fix: "change the axes or the budget", kind: .usage)
        }
        let table = try ResultsTable(directory: dir, stem: shard.resultsStem)
        let rungs = stage.strategy == .halving ? stage.rungs : 1
        for rung in 0..<rungs {
            let trials = SweepPlanner.trials(configs, rung: rung, stage: stage, vocabSize: vocab)
            let mine = shard.select(trials)
            summary.planned += mine.count
            for (k, trial) in mine.enumerated() {
                let trialDir = dir.appendingPathComponent("trials").appendingPathComponent(trial.id)
                let resultURL = trialDir.appendingPathComponent("result.json")
                if let data = fm.contents(atPath: resultURL.path), let done = try? JSONDecoder().decode(SweepResult.self, from: data) {
                    try table.appendIfMissing(done)
                    summary.skipped += 1
                    continue
                }
                let rungText = rungs > 1 ? " rung \(rung + 1)/\(rungs)" : ""
                emit(.message("trial \(k + 1)/\(mine.count)\(rungText) \(trial.id): \(trial.label) seed \(trial.seed)" + (trial.solved.map { " (\($0))" } ?? "")))
                let result = try runTrial(trial, in: trialDir, tokenizerPath: tokenizerPath, vocab: vocab, emit: emit)
                try writeAtomically(try encodeSorted(result), to: resultURL)
                try table.appendIfMissing(result)
                summary.ran += 1
                emit(.message(String(format: "trial %@ done: val loss %@, decode %.0f tokens/s, %.0f s", trial.id, result.bestValLoss.map { String(format: "%.4f", $0) } ?? "-", result.decodeTokensPerSecond, result.wallSeconds)))
            }
            guard rung + 1 < rungs else { break }
            // Promotion needs every trial of the rung, including other shards' ones.
            var byConfig: [String: [Double]] = [:]
            var missing = 0
            for t in trials {
                let url = dir.appendingPathComponent("trials/\(t.id)/result.json")
                if let data = fm.contents(atPath: url.path), let r = try? JSONDecoder().decode(SweepResult.self, from: data) {
                    byConfig[t.configId, default: []].append(r.score)
                } else {
                    missing += 1
                }
            }
            if missing > 0 {
                summary.waiting = "rung \(rung + 2) waits for \(missing) trial(s) of rung \(rung + 1) run by other shards; run this shard again once they finish"
                emit(.message(summary.waiting!))
                break
            }
            let means = byConfig.mapValues { $0.reduce(0, +) / Double($0.count) }
            configs = SweepPlanner.survivors(configs, results: means, eta: stage.eta)
            emit(.message("rung \(rung + 1) done: \(configs.count) configuration(s) go on: " + configs.map(\.label).joined(separator: ", ")))
        }
        return summary
    }

    private func describe(_ values: [String: SweepValue]) -> String {
        values.isEmpty ? "the base model" : values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.json.canonical)" }.joined(separator: " ")
    }

    /// tokenizer.path, or one trained on the data once and kept in the sweep folder.
    private func sharedTokenizer(emit: (ProgressEvent) -> Void) throws -> (String, ByteLevelBPETokenizer) {
        if let path = stage.tokenizer.path {
            let data = try readFile(path)
            return (path, try ByteLevelBPETokenizer(jsonData: Array(data)))
        }
        let url = directory.appendingPathComponent("tokenizer.json")
        if let data = FileManager.default.contents(atPath: url.path), let t = try? ByteLevelBPETokenizer(jsonData: Array(data)) {
            return (url.path, t)
        }
        let spec = stage.tokenizer.train ?? TokenizerTraining()
        emit(.message("training a \(spec.vocabSize)-token \(spec.style.rawValue) tokenizer shared by every trial"))
        let data = try spec.train(on: try stage.data.corpusSource(runDirectory: directory.path))
        try writeAtomically(data, to: url)
        return (url.path, try ByteLevelBPETokenizer(jsonData: Array(data)))
    }

    /// Trains (or resumes) one trial and measures it.
    func runTrial(_ spec: SweepTrial, in trialDir: URL, tokenizerPath: String, vocab: Int, emit: (ProgressEvent) -> Void) throws -> SweepResult {
        let fm = FileManager.default
        try createDirectory(trialDir)
        var trial = spec
        // trial.json fixes the steps of a time budget at the first start; a resume keeps them.
        let specURL = trialDir.appendingPathComponent("trial.json")
        if let data = fm.contents(atPath: specURL.path), let saved = try? JSONDecoder().decode(SweepTrial.self, from: data), saved.id == trial.id {
            trial.training = saved.training
        }
        if trial.training.steps == 0, let seconds = trial.seconds {
            let stepSeconds = calibrate(trial, vocab: vocab)
            let steps = max(1, Int(seconds / stepSeconds))
            trial.training.steps = steps
            trial.training.warmupSteps = min(trial.training.warmupSteps, steps - 1)
            emit(.message(String(format: "time budget %.0f s: %.3f s per step here -> %d steps", seconds, stepSeconds, steps)))
        }
        try writeAtomically(try encodeSorted(trial), to: specURL)
        // Every trial of this shard reads one token cache (shards keep their own, so two
        // processes never write the same cache file at once).
        let cacheLink = trialDir.appendingPathComponent("cache")
        if (try? fm.destinationOfSymbolicLink(atPath: cacheLink.path)) == nil && !fm.fileExists(atPath: cacheLink.path) {
            try fm.createSymbolicLink(atPath: cacheLink.path, withDestinationPath: "../../" + cacheName)
        }

        var p = PretrainStage()
        p.name = "trial"
        p.data = stage.data
        p.tokenizer = TokenizerSettings(path: tokenizerPath)
        p.model = trial.model
        p.training = trial.training
        p.output = trialDir.appendingPathComponent("model.h5").path
        // The trial's checkpoint describes itself as this one-stage recipe.
        let trialRecipe = Recipe(name: "\(recipe.name)-\(trial.id)", runDir: trialDir.path, seed: trial.seed, threads: threads, stages: [.pretrain(p)])
        let run = PretrainRun(
            name: p.name, data: p.data, tokenizer: p.tokenizer, model: p.model, initFrom: nil, training: p.training,
            output: p.output, metrics: trialDir.appendingPathComponent("trial.metrics.jsonl").path,
            runDirectory: trialDir.path, seed: trial.seed, fingerprint: trial.id, recipeJSON: trialRecipe.resolvedJSON,
            resume: fm.fileExists(atPath: p.output) || fm.fileExists(atPath: p.output + ".prev"))

        // Buffers the pool kept from earlier trials (other shapes) go back to the system
        // first, so the peak below is this trial's own.
        BufferPool.shared.drain()
        PeakMemory.reset()
        let start = Date()
        var rates: [Double] = []
        if let threads { Threads.set(threads) }
        _ = try withoutActuallyEscaping(emit) { emit in
            try run.run { event in
                if case .progress(let step, _, let metrics) = event, step > 1, let r = metrics["tokens_per_s"] { rates.append(r) }
                if case .message = event { return }
                emit(event)
            }
        }
        let trainSeconds = Date().timeIntervalSince(start)

        let loaded = try loadModel(from: p.output)
        let config = loaded.model.config
        let m = stage.measure
        let speed = m.serial
            ? Serial.run { inferenceSpeed(loaded.model, prefill: m.prefillTokens, decode: m.decodeTokens, repeats: m.repeats) }
            : inferenceSpeed(loaded.model, prefill: m.prefillTokens, decode: m.decodeTokens, repeats: m.repeats)
        var taskScore: Double?
        if let tasks = stage.measure.tasks {
            taskScore = try scoreTasks(loaded, path: tasks)
        }
        let peak = PeakMemory.currentPeakMB()
        let curves = readCurves(trialDir.appendingPathComponent("trial.metrics.jsonl"))
        let steps = trial.training.steps ?? 0
        let tokens = steps * SweepPlanner.tokensPerStep(trial.training)
        let perToken = config.trainingFlopsPerToken(seqLen: trial.training.seqLen)
        return SweepResult(
            trialId: trial.id, configId: trial.configId, label: trial.label, values: trial.values, solved: trial.solved,
            seed: trial.seed, rung: trial.rung, model: trial.model, steps: steps,
            seqLen: trial.training.seqLen, tokens: tokens, parameters: config.parameterCount,
            embeddingParameters: config.embeddingParameterCount, nonEmbeddingParameters: config.nonEmbeddingParameterCount,
            flopsPerToken: perToken, trainingFlops: perToken * Double(tokens),
            finalValLoss: curves.val.last?[1], bestValLoss: curves.val.map { $0[1] }.min(),
            finalTrainLoss: curves.train.last?[1], trainTokensPerSecond: rates.isEmpty ? nil : median(rates),
            prefillTokensPerSecond: speed.prefill, decodeTokensPerSecond: speed.decode,
            kvCacheBytesPerToken: config.kvCacheBytesPerToken, peakMemoryMB: peak, wallSeconds: trainSeconds,
            taskScore: taskScore, lossCurve: thin(curves.train, to: 200), valCurve: curves.val,
            finished: ISO8601DateFormatter().string(from: Date()), shard: shard.description)
    }

    /// Seconds per optimiser step of this shape: a forward and backward pass on random tokens
    /// (one warm-up, best of two), times grad_accum.
    private func calibrate(_ trial: SweepTrial, vocab: Int) -> Double {
        if let threads { Threads.set(threads) }
        var rng = RNG(seed: 1)
        let model = LlamaModel(config: trial.model.llamaConfig(vocabSize: vocab), rng: &rng)
        let t = trial.training
        let ids = (0..<(t.batchSize * t.seqLen)).map { _ in Int32(rng.next() % UInt64(vocab)) }
        var best = Double.infinity
        for i in 0..<3 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            model.loss(ids: ids, targets: ids, batch: t.batchSize, length: t.seqLen).backward()
            for (_, p) in model.namedParameters() { p.zeroGrad() }
            if i > 0 { best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9) }
        }
        return best * Double(t.gradAccum) * 1.1
    }

    private func scoreTasks(_ loaded: LoadedModel, path: String) throws -> Double {
        let tasks = try TaskReader.read(path: path)
        let verifier = Verifier(stage.measure.verifier ?? VerifierConfig())
        try verifier.validate(tasks)
        guard !tasks.isEmpty else { return 0 }
        let prompts = tasks.map { task -> String in
            switch task.prompt {
            case .text(let s): return s
            case .messages(let m): return m.map(\.content).joined(separator: "\n")
            }
        }
        let samples = try generateText(loaded, prompts: prompts, sampling: SamplingConfig(maxTokens: stage.measure.taskMaxTokens, temperature: 0), stop: [])
        let correct = zip(tasks, samples).filter { verifier.verify($1.completion, for: $0).correct }.count
        return Double(correct) / Double(tasks.count)
    }
}

/// Prefill and decode tokens/s at batch 1 through the KV cache (greedy next token), best of
/// `repeats`.
package func inferenceSpeed(_ model: LlamaModel, prefill: Int, decode: Int, repeats: Int) -> (prefill: Double, decode: Double) {
    let c = model.config
    let p = max(1, min(prefill, c.maxPositionEmbeddings - 1))
    let d = max(1, min(decode, c.maxPositionEmbeddings - p))
    let ids = (0..<p).map { Int32($0 * 7919 % c.vocabSize) }
    func argmaxLast(_ logits: Tensor, rows: Int) -> Int32 {
        let v = c.vocabSize
        let base = logits.data + (rows - 1) * v
        var best = 0
        for i in 1..<v where base[i] > base[best] { best = i }
        return Int32(best)
    }
    var bestPrefill = 0.0, bestDecode = 0.0
    for _ in 0..<max(1, repeats) {
        let cache = KVCache(config: c, batch: 1, capacity: p + d)
        let t0 = DispatchTime.now().uptimeNanoseconds
        var next = GradMode.withoutGrad { argmaxLast(model.logits(ids: ids, batch: 1, length: p, cache: cache), rows: p) }
        let t1 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<d {
            next = GradMode.withoutGrad { argmaxLast(model.logits(ids: [next], batch: 1, length: 1, cache: cache), rows: 1) }
        }
        let t2 = DispatchTime.now().uptimeNanoseconds
        bestPrefill = max(bestPrefill, Double(p) / max(Double(t1 - t0) * 1e-9, 1e-9))
        bestDecode = max(bestDecode, Double(d) / max(Double(t2 - t1) * 1e-9, 1e-9))
    }
    return (bestPrefill, bestDecode)
}

/// This process's peak resident memory, resettable on Linux (clear_refs 5 resets VmHWM), so
/// each trial reports its own peak (after the buffer pool is drained and malloc trimmed).
enum PeakMemory {
    static func reset() {
        #if canImport(Glibc)
        // glibc's malloc_trim (malloc.h is not in the Glibc module): freed heap pages back to
        // the system, so they stop counting as resident.
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") {
            typealias Trim = @convention(c) (Int) -> Int32
            _ = unsafeBitCast(symbol, to: Trim.self)(0)
        }
        #endif
        if let h = FileHandle(forWritingAtPath: "/proc/self/clear_refs") {
            try? h.write(contentsOf: Data("5".utf8))
            try? h.close()
        }
    }

    static func currentPeakMB() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Double($0) }
            return kb.map { $0 / 1024 }
        }
        return nil
    }
}

/// sweep.json: what the report needs to write the best configuration as a recipe.
package struct SweepManifest: Codable, Sendable {
    package var recipe: String
    package var seed: Int
    package var stage: SweepStage
}

struct SweepPlanFile: Codable {
    var valid: [SweepConfig]
    var invalid: [InvalidConfig]
}

/// The append-only results table of one shard: results.jsonl and results.csv.
final class ResultsTable {
    let jsonl: URL, csv: URL
    private var ids: Set<String>

    init(directory: URL, stem: String) throws {
        jsonl = directory.appendingPathComponent(stem + ".jsonl")
        csv = directory.appendingPathComponent(stem + ".csv")
        ids = Set(try SweepResults.read(jsonl).map(\.trialId))
    }

    func appendIfMissing(_ r: SweepResult) throws {
        guard !ids.contains(r.trialId) else { return }
        var line = try encodeSorted(r)
        line.append(0x0A)
        try append(line, to: jsonl, header: nil)
        let row = r.csvRow.map(csvField).joined(separator: ",") + "\n"
        try append(Data(row.utf8), to: csv, header: SweepResult.csvColumns.joined(separator: ",") + "\n")
        ids.insert(r.trialId)
    }

    private func append(_ data: Data, to url: URL, header: String?) throws {
        let fm = FileManager.default
        if !fm.fileExists(atPath: url.path) {
            guard fm.createFile(atPath: url.path, contents: header.map { Data($0.utf8) } ?? Data()) else {
                throw UserError(path: url.path, problem: "cannot create the results file", fix: "check the folder's permissions", kind: .io)
            }
        }
        do {
            let h = try FileHandle(forWritingTo: url)
            defer { try? h.close() }
            try h.seekToEnd()
            try h.write(contentsOf: data)
            try h.synchronize()
        } catch {
            throw UserError(path: url.path, problem: "cannot append a result (\(error.localizedDescription))", fix: "check the disk and permissions", kind: .io)
        }
    }
}

private func csvField(_ s: String) -> String {
    s.contains(",") || s.contains("\"") || s.contains("\n") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
}

/// Reading result tables back (every shard's, merged by trial id).
package enum SweepResults {
    /// The rows of one results JSONL file (a torn last line from a crash is ignored).
    static func read(_ url: URL) throws -> [SweepResult] {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(SweepResult.self, from: Data($0.utf8)) }
    }

    /// Every results*.jsonl row in `directories`, one per trial id (the first seen), in
    /// directory then file order.
    package static func load(directories: [String]) throws -> [SweepResult] {
        var out: [SweepResult] = []
        var seen = Set<String>()
        for dir in directories {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            for name in names.sorted() where name.hasPrefix("results") && name.hasSuffix(".jsonl") {
                for r in try read(URL(fileURLWithPath: dir).appendingPathComponent(name)) where seen.insert(r.trialId).inserted {
                    out.append(r)
                }
            }
        }
        return out
    }
}

// MARK: - Small helpers

func encodeSorted(_ value: some Encodable) throws -> Data {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return try e.encode(value)
}

/// At most `n` points, evenly spaced, the last one kept.
func thin(_ points: [[Double]], to n: Int) -> [[Double]] {
    guard points.count > n else { return points }
    let stride = Double(points.count - 1) / Double(n - 1)
    return (0..<n).map { points[Int((Double($0) * stride).rounded())] }
}

/// (step, loss) and (step, val_loss) pairs of a pretrain metrics log.
func readCurves(_ url: URL) -> (train: [[Double]], val: [[Double]]) {
    guard let text = try? String(contentsOf: url, encoding: .utf8) else { return ([], []) }
    var train: [[Double]] = [], val: [[Double]] = []
    for line in text.split(separator: "\n") {
        guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let step = (o["step"] as? NSNumber)?.doubleValue
        else { continue }
        if let l = (o["loss"] as? NSNumber)?.doubleValue { train.append([step, l]) }
        if let v = (o["val_loss"] as? NSNumber)?.doubleValue { val.append([step, v]) }
    }
    return (train, val)
}
