import Core
import Foundation
import FoundationXML
import ModelIO
import NN
import Pipeline
import Platform
import Testing

@testable import Recipe
@testable import Sweep

/// A finished trial with made-up measurements.
func fakeResult(_ id: String, config: String, layers: Int, hidden: Int, kv: Int, seed: Int, loss: Double, decode: Double, tokens: Int = 10000) -> SweepResult {
    var m = ModelSettings()
    m.numHiddenLayers = layers
    m.hiddenSize = hidden
    m.numKeyValueHeads = kv
    m.headDim = hidden / 4
    let c = m.llamaConfig(vocabSize: 300)
    return SweepResult(
        trialId: id, configId: config, label: SweepPlanner.label(m), values: [:], solved: nil, seed: seed, rung: 0, model: m,
        steps: 10, seqLen: 16, tokens: tokens, parameters: c.parameterCount, embeddingParameters: c.embeddingParameterCount,
        nonEmbeddingParameters: c.nonEmbeddingParameterCount, flopsPerToken: c.trainingFlopsPerToken(seqLen: 16),
        trainingFlops: 0, finalValLoss: loss, bestValLoss: loss, finalTrainLoss: loss + 0.1, trainTokensPerSecond: 1000,
        prefillTokensPerSecond: 5000, decodeTokensPerSecond: decode, kvCacheBytesPerToken: c.kvCacheBytesPerToken,
        peakMemoryMB: 100, wallSeconds: 3, taskScore: nil, lossCurve: [[1, loss + 1], [10, loss + 0.1]],
        valCurve: [[10, loss]], finished: "2026-01-01T00:00:00Z", shard: "0/1")
}

@Suite struct SweepReportTests {
    func folder() throws -> (Scratch, URL) {
        let scratch = Scratch()
        let dir = URL(fileURLWithPath: scratch.file("run/sweep"))
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let recipe = try scratch.load(sweepRecipe(#""axes": {"num_hidden_layers": [2, 4, 8]}"#))
        guard case .sweep(let stage) = recipe.stages[0] else { preconditionFailure() }
        try Data(canonicalText(SweepManifest(recipe: "s", seed: 1, stage: stage)).utf8).write(to: dir.appendingPathComponent("sweep.json"))
        // Two shards' tables; the 8-layer configuration has two seeds.
        let shard0 = [
            fakeResult("t1", config: "c2", layers: 2, hidden: 64, kv: 4, seed: 1, loss: 2.5, decode: 900),
            fakeResult("t2", config: "c8", layers: 8, hidden: 32, kv: 1, seed: 1, loss: 2.1, decode: 400),
        ]
        let shard1 = [
            fakeResult("t3", config: "c4", layers: 4, hidden: 48, kv: 2, seed: 1, loss: 2.3, decode: 1000),
            fakeResult("t4", config: "c8", layers: 8, hidden: 32, kv: 1, seed: 2, loss: 2.3, decode: 420),
        ]
        for (name, rows) in [("results.shard-0-of-2.jsonl", shard0), ("results.shard-1-of-2.jsonl", shard1)] {
            let text = try rows.map { String(decoding: try encodeSorted($0), as: UTF8.self) }.joined(separator: "\n") + "\n"
            try Data(text.utf8).write(to: dir.appendingPathComponent(name))
        }
        return (scratch, dir)
    }

    @Test func ranksMergedShardsByMeanLoss() throws {
        let (scratch, dir) = try folder()
        _ = scratch
        let report = try SweepReport(directories: [dir.path])
        #expect(report.results.count == 4)
        // c8: mean(2.1, 2.3) = 2.2 < c4 2.3 < c2 2.5.
        #expect(report.ranked.map(\.configId) == ["c8", "c4", "c2"])
        #expect(abs(report.ranked[0].meanLoss - 2.2) < 1e-12 && abs(report.ranked[0].stdLoss - 0.1414213562) < 1e-9)
        // Front: c8 (best loss) and c4 (fastest, better than c2); c2 is dominated by c4.
        let (_, front) = report.lossVersusDecodeSpeed()
        #expect(front.map(\.configId) == ["c8", "c4"])
        guard case .failure(let why) = report.fit else {
            Issue.record("a fit from three configurations")
            return
        }
        #expect(why.reason.contains("needs at least 4 finished trials with 4 or more distinct parameter counts (have 4 trials, 3 distinct N"))
    }

    @Test func writesAReadableReportAndARunnableBestRecipe() throws {
        let (scratch, dir) = try folder()
        let report = try SweepReport(directories: [dir.path], fullSteps: 500)
        let html = report.render(format: .html)
        #expect(html.hasPrefix("<!DOCTYPE html>") && html.hasSuffix("</body></html>\n"))
        let svgs = html.components(separatedBy: "<svg ").dropFirst().map { "<svg " + $0.components(separatedBy: "</svg>")[0] + "</svg>" }
        // No two configurations within 15% of the best one's size: no depth figure, a sentence.
        #expect(svgs.count == 3 && html.contains("Fewer than two configurations within 15%"))
        for svg in svgs { #expect(XMLParser(data: Data(svg.utf8)).parse()) }
        let md = report.render(format: .md)
        let rows = md.split(separator: "\n").filter { $0.hasPrefix("| 1 |") || $0.hasPrefix("| 2 |") || $0.hasPrefix("| 3 |") }
        #expect(rows.count == 3 && rows[0].contains("L8 d32 h4/kv1") && rows[0].contains("2.2000 ± 0.1414"))
        #expect(md.contains("Pareto front"))

        let written = try report.write(to: dir, format: .html)
        #expect(FileManager.default.fileExists(atPath: written.report))
        let recipe = try Recipe.load(file: try #require(written.recipe))
        guard case .pretrain(let p) = recipe.stages[0] else {
            Issue.record("not a pretrain stage")
            return
        }
        #expect(p.model?.numHiddenLayers == 8 && p.model?.hiddenSize == 32 && p.training.steps == 500)
        #expect(recipe.stages.count == 2 && recipe.name == "s-best")
        _ = scratch
    }

    /// The stage under `distill run`: trains, records its outputs, and is skipped next time.
    @Test func runsAsARecipeStage() throws {
        let scratch = Scratch()
        let text = String(repeating: "the cat sat on the mat and the dog ran to the park. ", count: 40)
        let recipe = try scratch.load(#"""
            {"name": "s", "run_dir": "run", "seed": 2, "stages": [
              {"type": "sweep", "data": {"text": "\#(text)"}, "tokenizer": {"train": {"vocab_size": 270}},
               "model": {"hidden_size": 16, "intermediate_size": 16, "num_attention_heads": 2, "max_position_embeddings": 32},
               "training": {"steps": 2, "batch_size": 2, "seq_len": 16, "eval_batches": 1},
               "axes": {"num_hidden_layers": [1]}, "measure": {"prefill_tokens": 4, "decode_tokens": 2, "repeats": 1}}
            ]}
            """#)
        let runner = Runner(recipe: recipe, registry: .builtIn())
        let first = try runner.run { _ in }
        #expect(first.stages["sweep"]?.outputs?.summary["results"] == .int(1))
        #expect(FileManager.default.fileExists(atPath: scratch.file("run/sweep/results.csv")))
        var skipped = false
        _ = try runner.run { if case .stageSkipped = $0 { skipped = true } }
        #expect(skipped)
    }

    /// Successive halving end to end: three configurations train 2 steps, the best two go on
    /// to 4 steps; the report ranks those two first.
    @Test func halvingPromotesTheBestConfigurations() throws {
        let scratch = Scratch()
        let text = String(repeating: "a small red fox jumps over the lazy brown dog near the river bank. ", count: 40)
        let recipe = try scratch.load(#"""
            {"name": "h", "run_dir": "run", "seed": 3, "stages": [
              {"type": "sweep", "data": {"text": "\#(text)"}, "tokenizer": {"train": {"vocab_size": 270}},
               "model": {"hidden_size": 16, "intermediate_size": 16, "num_attention_heads": 2, "max_position_embeddings": 32},
               "training": {"steps": 4, "batch_size": 2, "seq_len": 16, "eval_batches": 1, "lr": 0.01},
               "axes": {"num_hidden_layers": [1, 2, 3]}, "strategy": "halving", "rungs": 2, "eta": 2,
               "measure": {"prefill_tokens": 4, "decode_tokens": 2, "repeats": 1}}
            ]}
            """#)
        guard case .sweep(let stage) = recipe.stages[0] else { preconditionFailure() }
        let summary = try SweepRunner(recipe: recipe, stage: stage, threads: 1, shard: .all).run { _ in }
        #expect(summary.ran == 5 && summary.waiting == nil)
        let results = try SweepResults.load(directories: [summary.directory])
        let rung0 = results.filter { $0.rung == 0 }, rung1 = results.filter { $0.rung == 1 }
        #expect(rung0.count == 3 && rung0.allSatisfy { $0.steps == 2 })
        #expect(rung1.count == 2 && rung1.allSatisfy { $0.steps == 4 })
        // The promoted ones are the two best of rung 0.
        let best2 = Set(rung0.sorted { $0.score < $1.score }.prefix(2).map(\.configId))
        #expect(Set(rung1.map(\.configId)) == best2)
        let report = try SweepReport(directories: [summary.directory])
        #expect(report.ranked.prefix(2).allSatisfy { $0.rung == 1 } && report.ranked[2].rung == 0)
        // Sharded halving stops at the rung boundary while other shards' trials are missing.
        let scratch2 = Scratch()
        let recipe2 = try scratch2.load(#"""
            {"name": "h", "run_dir": "run", "seed": 3, "stages": [
              {"type": "sweep", "data": {"text": "\#(text)"}, "tokenizer": {"train": {"vocab_size": 270}},
               "model": {"hidden_size": 16, "intermediate_size": 16, "num_attention_heads": 2, "max_position_embeddings": 32},
               "training": {"steps": 4, "batch_size": 2, "seq_len": 16, "eval_batches": 1, "lr": 0.01},
               "axes": {"num_hidden_layers": [1, 2, 3]}, "strategy": "halving", "rungs": 2, "eta": 2,
               "measure": {"prefill_tokens": 4, "decode_tokens": 2, "repeats": 1}}
            ]}
            """#)
        let shard0 = try SweepRunner(recipe: recipe2, stage: stage.with(output: scratch2.file("run/sweep")), threads: 1, shard: SweepShard(index: 0, count: 2)).run { _ in }
        #expect(shard0.ran == 2 && shard0.waiting?.contains("waits for 1 trial(s) of rung 1") == true)
        _ = scratch
    }

    /// Transformers' Llama has no layer sharing: export says so instead of writing a model
    /// that loads with half its depth.
    @Test func huggingFaceExportRefusesSharedLayers() throws {
        var c = LlamaConfig(vocabSize: 20, hiddenSize: 8, intermediateSize: 16, numHiddenLayers: 1, numAttentionHeads: 2)
        c.layerRepeat = 2
        let tensors = Dictionary(uniqueKeysWithValues: c.parameterShapes.map { ($0.name, Tensor.zeros($0.shape)) })
        let scratch = Scratch()
        #expect {
            try HFModelDirectory.write(config: c, tensors: tensors, tokenizerJSON: nil, to: URL(fileURLWithPath: scratch.file("hf")))
        } throws: { error in
            "\(error)".contains("layer_repeat is 2")
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.file("hf")))
    }
}

extension SweepStage {
    func with(output: String) -> SweepStage {
        var s = self
        s.output = output
        return s
    }
}

/// Recipes written before `layer_repeat` existed keep their resolved JSON (and fingerprints).
@Test func layerRepeatIsWrittenOnlyWhenUsed() throws {
    var m = ModelSettings()
    #expect(!canonicalText(m).contains("layer_repeat"))
    m.layerRepeat = 2
    let text = canonicalText(m)
    #expect(text.contains("\"layer_repeat\":2"))
    #expect(try JSONDecoder().decode(ModelSettings.self, from: Data(text.utf8)) == m)
}
