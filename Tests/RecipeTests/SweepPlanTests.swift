import Foundation
import NN
import Testing

@testable import Recipe
@testable import Sweep

/// A sweep recipe over inline text (no files), with `body` spliced into the stage.
func sweepRecipe(_ body: String, seed: Int = 1) -> String {
    """
    {"name": "s", "run_dir": "run", "seed": \(seed), "stages": [
      {"type": "sweep", "data": {"text": "a b c"},
       "training": {"steps": 40, "batch_size": 4, "seq_len": 16},
       \(body)}
    ]}
    """
}

func sweepStage(_ body: String, seed: Int = 1, in scratch: Scratch = Scratch()) throws -> SweepStage {
    guard case .sweep(let s) = try scratch.load(sweepRecipe(body, seed: seed)).stages[0] else {
        preconditionFailure("not a sweep stage")
    }
    return s
}

/// Non-embedding parameters written out by hand: per layer q and o (C x H*D each), k and v
/// (C x G*D each), gate, up and down (C x F each), two norms; plus the final norm.
func handCount(c: Int, f: Int, l: Int, h: Int, g: Int, d: Int) -> Int {
    l * (2 * c * h * d + 2 * c * g * d + 3 * c * f + 2 * c) + c
}

@Suite struct SweepPlanTests {
    @Test func parameterBudgetSolvesTheMLPWidth() throws {
        let s = try sweepStage("""
            "model": {"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2},
            "axes": {"num_hidden_layers": [2, 4]},
            "budget": {"parameters": 100000, "solve": "intermediate_size", "tolerance": 0.05}
            """)
        let (valid, invalid) = SweepPlanner.configurations(s, vocabSize: 300, seed: 1)
        #expect(invalid.isEmpty)
        #expect(valid.count == 2)
        for c in valid {
            let m = c.model
            #expect(m.intermediateSize % 8 == 0)
            let n = handCount(c: 64, f: m.intermediateSize, l: m.numHiddenLayers, h: 4, g: 2, d: 16)
            #expect(n == m.llamaConfig(vocabSize: 300).nonEmbeddingParameterCount)
            // Nearest multiple of 8: one step of 8 either way is farther from the budget.
            for other in [m.intermediateSize - 8, m.intermediateSize + 8] {
                let alt = handCount(c: 64, f: other, l: m.numHiddenLayers, h: 4, g: 2, d: 16)
                #expect(abs(alt - 100000) >= abs(n - 100000))
            }
            #expect(abs(Double(n - 100000)) / 100000 <= 0.05)
            #expect(c.solved?.contains("intermediate_size \(m.intermediateSize)") == true)
        }
        // Twice the layers at the same budget leave a narrower MLP.
        #expect(valid[0].model.intermediateSize > valid[1].model.intermediateSize)
    }

    @Test func parameterBudgetSolvesTheWidthWithAnMLPRatio() throws {
        let s = try sweepStage("""
            "model": {"num_attention_heads": 4, "mlp_ratio": 2.5},
            "axes": {"num_hidden_layers": [2, 8]},
            "budget": {"parameters": 200000, "solve": "hidden_size", "count": "total", "tolerance": 0.2}
            """)
        let (valid, _) = SweepPlanner.configurations(s, vocabSize: 300, seed: 1)
        #expect(valid.count == 2)
        for c in valid {
            let m = c.model
            #expect(m.hiddenSize % 8 == 0 && m.headDim * 4 == m.hiddenSize && m.headDim % 2 == 0)
            #expect(m.intermediateSize == Int((2.5 * Double(m.hiddenSize) / 8).rounded()) * 8)
            let total = m.llamaConfig(vocabSize: 300).parameterCount
            // No other width on the same grid is closer.
            for other in stride(from: 8, through: 512, by: 8) where other != m.hiddenSize {
                var alt = m
                alt.hiddenSize = other
                alt.headDim = other / 4
                alt.intermediateSize = max(8, Int((2.5 * Double(other) / 8).rounded()) * 8)
                #expect(abs(alt.llamaConfig(vocabSize: 300).parameterCount - 200000) >= abs(total - 200000))
            }
        }
        #expect(valid[0].model.hiddenSize > valid[1].model.hiddenSize)
    }

    @Test func invalidCombinationsAreListedWithTheirReasons() throws {
        let s = try sweepStage("""
            "model": {"num_attention_heads": 4, "intermediate_size": 64},
            "axes": {"hidden_size": [64, 66], "num_key_value_heads": [1, 3]}
            """)
        let (valid, invalid) = SweepPlanner.configurations(s, vocabSize: 300, seed: 1)
        #expect(valid.map(\.label) == ["L4 d64 h4/kv1 ff64"])
        #expect(invalid.count == 3)
        let byValues = Dictionary(uniqueKeysWithValues: invalid.map { bad in
            (bad.values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "), bad.reasons.joined(separator: "; "))
        })
        #expect(byValues["hidden_size=64 num_key_value_heads=3"]?.contains("num_attention_heads (4) must be a multiple of num_key_value_heads (3)") == true)
        #expect(byValues["hidden_size=66 num_key_value_heads=1"]?.contains("66 / 4 is not an even integer") == true)
        // A budget out of reach is a reason too, with the numbers.
        let tight = try sweepStage("""
            "model": {"hidden_size": 64, "num_attention_heads": 4},
            "axes": {"num_hidden_layers": [1, 64]},
            "budget": {"parameters": 60000, "tolerance": 0.05}
            """)
        let (ok, bad) = SweepPlanner.configurations(tight, vocabSize: 300, seed: 1)
        #expect(ok.count == 1 && bad.count == 1)
        #expect(bad[0].reasons[0].contains("below what this shape needs without its MLP"))
    }

    @Test func trialIdsAreStable() throws {
        let a = try sweepStage(#""axes": {"num_hidden_layers": [1, 2]}, "seeds": [1, 2]"#)
        let b = try sweepStage(#""seeds":[1,2],   "axes": {"num_hidden_layers":[1,2]}"#)
        let ta = SweepPlanner.trials(SweepPlanner.configurations(a, vocabSize: 300, seed: 1).valid, rung: 0, stage: a, vocabSize: 300)
        let tb = SweepPlanner.trials(SweepPlanner.configurations(b, vocabSize: 300, seed: 1).valid, rung: 0, stage: b, vocabSize: 300)
        #expect(ta.map(\.id) == tb.map(\.id))
        #expect(Set(ta.map(\.id)).count == 4)
        #expect(ta[0].configId == ta[1].configId && ta[0].configId != ta[2].configId)
        // Pinned: a change here re-runs every user's finished trials, so it must be deliberate.
        #expect(ta[0].id == "a94555ceaec1")
        // Another learning rate is another trial.
        let c = try sweepStage(#""axes": {"num_hidden_layers": [1, 2], "training.lr": [0.001]}, "seeds": [1, 2]"#)
        let tc = SweepPlanner.trials(SweepPlanner.configurations(c, vocabSize: 300, seed: 1).valid, rung: 0, stage: c, vocabSize: 300)
        #expect(Set(tc.map(\.id)).isDisjoint(with: ta.map(\.id)))
        #expect(tc[0].training.lr == 0.001)
    }

    @Test(arguments: [1, 2, 3, 5, 7])
    func shardsPartitionTheTrials(count: Int) {
        let items = Array(0..<23)
        let parts = (0..<count).map { SweepShard(index: $0, count: count).select(items) }
        #expect(parts.flatMap { $0 }.sorted() == items)
        #expect(Set(parts.flatMap { $0 }).count == items.count)
        #expect(parts.map(\.count).max()! - parts.map(\.count).min()! <= 1)
    }

    @Test func shardsComeFromArgumentsOrSlurm() {
        #expect(SweepShard("1/4") == SweepShard(index: 1, count: 4))
        #expect(SweepShard("4/4") == nil && SweepShard("x") == nil && SweepShard("0/0") == nil)
        #expect(SweepShard.fromEnvironment(["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"]) == SweepShard(index: 3, count: 4))
        #expect(SweepShard.fromEnvironment(["SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "4"]) == SweepShard(index: 1, count: 4))
        #expect(SweepShard.fromEnvironment([:]) == nil)
        #expect(SweepShard(index: 1, count: 3).resultsStem == "results.shard-1-of-3")
    }

    @Test func randomStrategyDrawsASeededSubset() throws {
        let body = #""axes": {"num_hidden_layers": [1, 2, 3], "num_key_value_heads": [1, 2, 4]}, "strategy": "random", "samples": 4"#
        func labels(_ seed: Int) throws -> [String] {
            SweepPlanner.configurations(try sweepStage(body, seed: seed), vocabSize: 300, seed: seed).valid.map(\.label)
        }
        let all = SweepPlanner.configurations(try sweepStage(#""axes": {"num_hidden_layers": [1, 2, 3], "num_key_value_heads": [1, 2, 4]}"#), vocabSize: 300, seed: 1).valid.map(\.label)
        #expect(all.count == 9)
        #expect(try labels(1) == labels(1))
        #expect(try labels(1).count == 4 && Set(try labels(1)).isSubset(of: all))
        #expect(try (1...5).map(labels).contains { $0 != (try labels(1)) })
    }

    @Test func budgetsGiveTheSteps() throws {
        let tokens = try sweepStage(#""axes": {"num_hidden_layers": [1]}, "budget": {"tokens": 6400}"#)
        let t = SweepPlanner.trials(SweepPlanner.configurations(tokens, vocabSize: 300, seed: 1).valid, rung: 0, stage: tokens, vocabSize: 300)
        #expect(t[0].training.steps == 100)  // 6400 / (4 x 16)
        let flops = try sweepStage(#""axes": {"num_hidden_layers": [1, 4]}, "budget": {"flops": 1e12}"#)
        let f = SweepPlanner.trials(SweepPlanner.configurations(flops, vocabSize: 300, seed: 1).valid, rung: 0, stage: flops, vocabSize: 300)
        for trial in f {
            let perToken = trial.model.llamaConfig(vocabSize: 300).trainingFlopsPerToken(seqLen: 16)
            #expect(trial.training.steps == Int((1e12 / perToken / 64).rounded()))
        }
        #expect(f[0].training.steps! > f[1].training.steps!)
        // Successive halving: the last rung trains the full budget, earlier ones 1/eta^k of it.
        let halving = try sweepStage(#""axes": {"num_hidden_layers": [1, 2, 3]}, "strategy": "halving", "rungs": 3, "eta": 2"#)
        let configs = SweepPlanner.configurations(halving, vocabSize: 300, seed: 1).valid
        #expect((0..<3).map { SweepPlanner.trials(configs, rung: $0, stage: halving, vocabSize: 300)[0].training.steps } == [10, 20, 40])
        let kept = SweepPlanner.survivors(configs, results: [configs[0].id: 3.0, configs[1].id: 2.0, configs[2].id: 2.5], eta: 2)
        #expect(kept.map(\.id) == [configs[1].id, configs[2].id])
    }

    /// A time budget leaves the steps to the trial's first start and is part of the id; halving
    /// gives earlier rungs a fraction of the time.
    @Test func timeBudgetDefersTheSteps() throws {
        let s = try sweepStage(#""axes": {"num_hidden_layers": [1, 2]}, "budget": {"seconds": 30}, "strategy": "halving", "rungs": 2, "eta": 3"#)
        let configs = SweepPlanner.configurations(s, vocabSize: 300, seed: 1).valid
        let first = SweepPlanner.trials(configs, rung: 0, stage: s, vocabSize: 300)
        let last = SweepPlanner.trials(configs, rung: 1, stage: s, vocabSize: 300)
        #expect(first.allSatisfy { $0.training.steps == 0 && $0.seconds == 10 })
        #expect(last.allSatisfy { $0.training.steps == 0 && $0.seconds == 30 })
        #expect(Set(first.map(\.id)).isDisjoint(with: last.map(\.id)))
    }

    @Test func recipeProblemsNameTheirPlace() throws {
        let text = sweepRecipe("""
            "axes": {"num_hiden_layers": [2], "training.lrr": [1], "hidden_size": ["x"]},
            "budget": {"tokens": 10, "seconds": 5}, "configs": [{"num_attention_heads": 1.5}]
            """)
        let error = recipeError { try Scratch().load(text) }
        let lines = error?.lines ?? []
        #expect(lines.contains { $0.contains("stages[0].axes.num_hiden_layers: unknown key; did you mean \"num_hidden_layers\"?") })
        #expect(lines.contains { $0.contains("stages[0].axes.training.lrr: unknown key; did you mean \"training.lr\"?") })
        #expect(lines.contains { $0.contains("stages[0].axes.hidden_size[0]: expected an integer") })
        #expect(lines.contains { $0.contains("stages[0].budget: give at most one training budget") })
        #expect(lines.contains { $0.contains("stages[0].configs[0].num_attention_heads: expected an integer") })
        #expect(lines.allSatisfy { $0.hasPrefix("recipe.json:") })
    }
}
