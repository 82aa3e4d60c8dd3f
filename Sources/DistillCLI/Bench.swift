import ArgumentParser
import Core
import Foundation
import JSON
import ModelIO
import NN
import Training

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks (ratios against a peer measured in the same run).",
        subcommands: [Kernels.self, Train.self, Prefill.self, Decode.self])

    struct Kernels: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Matmul through the Tensor API against raw sgemm, and fused GQA attention.")

        @Flag(help: "Print the result as JSON.") var json = false
        @Option(help: "Timed samples per contender (alternating; the median is reported).") var repeats = 10
        @OptionGroup var compute: ComputeOptions

        func validate() throws {
            if repeats < 1 { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
        }

        func run() throws {
            compute.apply()
            if !json { print("BLAS core \(BLAS.runtime.core), \(Threads.count) threads, \(repeats) samples each") }
            let result = KernelBench.run(repeats: repeats) { line in if !json { print(line) } }
            if json { try printJSON(result) }
        }
    }
}

extension Bench {
    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Full training steps (forward, backward, AdamW) of a reference configuration.",
            discussion: """
                S, M, L and SmolLM2-135M are the reference configurations (tools/bench_configs.json); \
                FILE is a JSON object with the same keys (vocab, dim, layers, heads, kv_heads, ffn, seq, batch). \
                Compare against a PyTorch peer run in the same session, alternating (tools/README.md).
                """)

        @Option(help: "S, M, L, SmolLM2-135M or a JSON file with the same keys.") var config = "S"
        @Option(help: "Seconds of timed steps (at least 3 steps run).") var seconds = 10.0
        @Flag(help: "Print the result as JSON.") var json = false
        @Flag(help: "Train LoRA adapters on a frozen base instead of the whole model (alpha = 2 x rank).")
        var lora = false
        @Option(help: "LoRA rank (with --lora).") var loraRank = 16
        @Option(
            help: "Comma-separated modules to adapt (with --lora), as peft's target_modules list: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (every layer's), a module path or its tail (layers.0.mlp.down_proj), or all-linear.")
        var loraTargets = "q_proj,v_proj"
        @Option(help: "A regex a module path (model.layers.3.self_attn.q_proj) must match in full, in place of --lora-targets (with --lora).")
        var loraPattern: String?
        @Flag(
            help: "With --lora: also train the whole model in the same process, one step of each in turn, and report LoRA's speed-up per token (the median of the per-pair ratios).")
        var againstFull = false
        @Option(
            help: "With --lora: how the frozen base is held, f32 or packed: bf16 (its products in bf16 with f32 sums) or, QLoRA, q8_0, q4_0 or q4_1, quantized at the start (the embedding and tied head in q8_0 under the 4-bit formats).")
        var baseWeights = WeightFormat.f32
        @Flag(help: "Activation checkpointing: each layer runs again in the backward pass instead of keeping its activations.")
        var gradientCheckpointing = false
        @Flag(
            help: "DPO steps (sigmoid loss, beta 0.1) on batch / 2 random preference pairs instead of next-token steps; the reference log-probs are computed once before them, as the dpo stage caches them.")
        var dpo = false
        @OptionGroup var compute: ComputeOptions

        /// The adapters to train, nil for full training.
        var loraConfig: LoRAConfig? {
            guard lora else { return nil }
            let targets = loraTargets.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            return LoRAConfig(rank: loraRank, alpha: Double(2 * loraRank), targetModules: targets, targetPattern: loraPattern)
        }

        /// The preset, or the configuration in the file `--config` names.
        func benchConfig() throws -> BenchConfig {
            if let preset = BenchConfig.presets[config] ?? BenchConfig.presets[config.uppercased()] { return preset }
            guard let data = FileManager.default.contents(atPath: config) else {
                throw usageError("--config \(config): not S, M, L or SmolLM2-135M, and no readable file by that name")
            }
            let bc: BenchConfig
            do {
                bc = try JSONDecoder().decode(BenchConfig.self, from: data)
            } catch let DecodingError.keyNotFound(key, _) {
                throw usageError("\(config): missing \"\(key.stringValue)\"; \(Self.keysHint)")
            } catch let DecodingError.typeMismatch(_, context) {
                throw usageError("\(config): \(context.codingPath.map(\.stringValue).joined(separator: ".")) must be an integer; \(Self.keysHint)")
            } catch {
                throw usageError("\(config): not a JSON object of integers; \(Self.keysHint)")
            }
            let problems = bc.problems()
            guard problems.isEmpty else { throw usageError("\(config): " + problems.joined(separator: "; ")) }
            return bc
        }

        static let keysHint =
            "a bench configuration is {\"vocab\", \"dim\", \"layers\", \"heads\", \"kv_heads\", \"ffn\", \"seq\", \"batch\"} (integers), as in tools/bench_configs.json"

        func validate() throws {
            if !(seconds >= 0) { throw ValidationError("--seconds must be >= 0, got \(seconds)") }
            if againstFull && !lora { throw ValidationError("--against-full compares LoRA with full training: add --lora") }
            if baseWeights != .f32 && !lora {
                throw ValidationError("--base-weights \(baseWeights.rawValue) holds a frozen base, which only LoRA has: add --lora")
            }
            if baseWeights != .f32 && againstFull {
                throw ValidationError("--against-full compares f32 LoRA with full training: drop --base-weights, or --against-full")
            }
            if dpo && againstFull { throw ValidationError("--against-full times next-token steps: drop --dpo, or --against-full") }
            if let problems = loraConfig?.problems(), !problems.isEmpty {
                throw ValidationError("--lora-rank/--lora-targets/--lora-pattern: " + problems.joined(separator: "; "))
            }
        }

        func run() throws {
            compute.apply()
            let bc = try benchConfig()
            let adapters: LoRAConfig?
            do {
                adapters = try loraConfig?.resolved(layers: bc.layers)
            } catch {
                throw usageError("--lora-targets/--lora-pattern: \(error)")
            }
            if let adapters, againstFull {
                let result = try TrainBench.runPaired(name: config, config: bc, seconds: seconds, lora: adapters) { line in
                    if !json { print(line) }
                }
                if json { return try printJSON(result) }
                print(
                    String(
                        format: "%@ LoRA r%d on %d modules (%@) against full training, %d pairs: LoRA %.0f tokens/s, full %.0f tokens/s (medians); LoRA is %.3fx faster per token (quartiles %.3f-%.3f)",
                        result.config, loraRank, adapters.adaptedModules?.count ?? 0, adapters.targetDescription, result.pairs,
                        result.loraTokensPerSecond, result.fullTokensPerSecond, result.speedup, result.speedupQuartiles[0],
                        result.speedupQuartiles[1]))
                return
            }
            if dpo && bc.batch % 2 != 0 {
                throw usageError("--dpo: \(config) has batch \(bc.batch); DPO needs an even batch (chosen and rejected rows)")
            }
            let result = try TrainBench.run(
                name: config, config: bc, seconds: seconds, lora: adapters, baseWeights: baseWeights,
                gradientCheckpointing: gradientCheckpointing, dpo: dpo
            ) { line in
                if !json { print(line) }
            }
            if json {
                try printJSON(result)
            } else {
                print(
                    String(
                        format: "%@%@%@%@: %.0f tokens/s, %.1f ms/step, MFU %.1f%% of %.0f GFLOP/s sgemm%@, peak memory %.0f MiB",
                        result.config,
                        adapters.map {
                            " LoRA r\(loraRank) on \($0.adaptedModules?.count ?? 0) modules (\($0.targetDescription)), \(baseWeights.rawValue) base"
                        } ?? "", gradientCheckpointing ? ", gradient checkpointing" : "",
                        result.referenceMs.map {
                            String(format: ", DPO on %d pairs (reference pass %.0f ms, setup peak %.0f MiB)", bc.batch / 2, $0, result.setupPeakMemoryMB)
                        } ?? "", result.tokensPerSecond, result.stepMs, result.mfu * 100, result.sgemmPeakGflops,
                        baseWeights == .bf16 ? " (f32's; the bf16 base's products can run at up to twice it)" : "",
                        result.peakMemoryMB))
            }
        }
    }
}

extension Bench {
    struct Prefill: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generation with the prefill shared and not: P prompts x k samples over a common block.",
            discussion: """
                One batch of --prompts x --samples rows (random ids: --common-tokens shared by every prompt, the \
                rest of --prompt-tokens its own) is generated with each prefill sharing in turn (none, identical \
                prompts, identical prompts and the common prefix), alternating for --repeats rounds; the medians \
                are reported. --max-tokens 1 times the prefill alone.
                """)

        @OptionGroup var model: ModelOption
        @Option(help: "Distinct prompts.") var prompts = 4
        @Option(help: "Rows (samples) per prompt.") var samples = 4
        @Option(help: "Tokens per prompt.") var promptTokens = 1000
        @Option(help: "Leading tokens every prompt shares.") var commonTokens = 500
        @Option(help: "Tokens generated per row (1: the prefill and the first token).") var maxTokens = 1
        @Option(help: "Rounds, each running every mode once.") var repeats = 3
        @Flag(help: "Print the result as JSON.") var json = false
        @OptionGroup var compute: ComputeOptions

        var settings: PrefillBenchSettings {
            var s = PrefillBenchSettings()
            (s.prompts, s.samples, s.promptTokens, s.commonTokens) = (prompts, samples, promptTokens, commonTokens)
            (s.maxTokens, s.repeats) = (maxTokens, repeats)
            return s
        }

        func validate() throws {
            let problems = settings.problems()
            if !problems.isEmpty { throw ValidationError(problems.joined(separator: "; ")) }
        }

        func run() throws {
            compute.apply()
            let loaded = try model.load()
            let c = loaded.model.config
            let problems = settings.problems(maxPositions: c.maxPositionEmbeddings)
            guard problems.isEmpty else { throw usageError(problems.joined(separator: "; ")) }
            if !json {
                print(
                    "\(model.checkpoint): \(prompts) prompts x \(samples) samples of \(promptTokens) tokens "
                        + "(\(commonTokens) common), \(maxTokens) generated, \(Threads.count) threads")
            }
            let result = PrefillBench.run(model: loaded.model, settings: settings) { line in if !json { print(line) } }
            if json { return try printJSON(result) }
            for m in result.modes {
                let differ = m.sameTokens ? "" : String(format: ", %d of %d rows' tokens differ from none's", m.rowsDiffering, result.rows)
                print(
                    String(
                        format: "%@: %d prefill tokens, %.2f s, %.2f samples/s, %.2fx, log-probabilities within %.1e of none's%@",
                        m.sharing, m.prefillTokens, m.seconds, m.samplesPerSecond, m.speedup, m.maxLogProbDifference, differ))
            }
        }
    }

    struct Decode: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Prefill and decode speed of the decode engine on one or more weight formats.",
            discussion: """
                --batch rows of random prompts of --prompt-tokens are prefilled together, then each row decodes \
                --decode-tokens tokens (greedy, or sampled with --temperature and --top-k). The formats of \
                --weights (comma-separated: f32, bf16, q8_0, q4_0, q4_1 converted at load, file for a quantized GGUF's \
                own blocks) alternate within each of --repeats rounds; medians are reported, with the share of \
                the decode time spent choosing tokens. tools/bench_decode.py runs llama.cpp beside it.
                """)

        @OptionGroup var model: ModelOption
        @Option(help: "Weight formats, comma-separated (\(InferenceWeights.names)).") var weights = "f32"
        @Option(help: "Rows decoded together.") var batch = 1
        @Option(help: "Tokens per prompt.") var promptTokens = 128
        @Option(help: "Tokens decoded per row.") var decodeTokens = 128
        @Option(help: "0 for greedy; otherwise sampled at this temperature.") var temperature = 0.0
        @Option(help: "Keep the k most likely tokens when sampling (0: all).") var topK = 40
        @Option(help: "Rounds, each running every format once.") var repeats = 3
        @Flag(help: "Print the result as JSON.") var json = false
        @OptionGroup var compute: ComputeOptions

        var settings: DecodeBenchSettings {
            var s = DecodeBenchSettings()
            (s.batch, s.promptTokens, s.decodeTokens) = (batch, promptTokens, decodeTokens)
            (s.temperature, s.topK, s.repeats) = (temperature, topK, repeats)
            return s
        }

        var formats: [InferenceWeights] { weights.split(separator: ",").compactMap { InferenceWeights(rawValue: String($0)) } }

        func validate() throws {
            var problems = settings.problems()
            let names = weights.split(separator: ",").map(String.init)
            for name in names where InferenceWeights(rawValue: name) == nil {
                problems.append("--weights: unknown format '\(name)'; use \(InferenceWeights.names)")
            }
            if names.isEmpty { problems.append("--weights: name at least one format (\(InferenceWeights.names))") }
            if !problems.isEmpty { throw ValidationError(problems.joined(separator: "; ")) }
        }

        func run() throws {
            compute.apply()
            let loaded = try model.load()
            let c = loaded.model.config
            let problems = settings.problems(maxPositions: c.maxPositionEmbeddings)
            guard problems.isEmpty else { throw usageError(problems.joined(separator: "; ")) }
            let engines = try formats.map { ($0.rawValue, try loaded.decodeEngine($0)) }
            if !json {
                print(
                    "\(model.checkpoint): batch \(batch), \(promptTokens) prompt tokens, \(decodeTokens) decoded, "
                        + "\(temperature == 0 ? "greedy" : "temperature \(temperature) top-k \(topK)"), "
                        + "\(Threads.count) threads, \(KernelLevel.current) kernels")
            }
            let result = DecodeBench.run(engines: engines, settings: settings) { line in if !json { print(line) } }
            if json { return try printJSON(result) }
            for r in result.results {
                print(
                    String(
                        format: "%@: %.0f MB of weights, prefill %.1f tok/s, decode %.1f tok/s, sampling %.1f%% of decode",
                        r.weights, Double(r.weightBytes) / 1e6, r.prefillTokensPerSecond, r.decodeTokensPerSecond,
                        100 * r.samplingShare))
            }
        }
    }
}
