import Core
import Foundation
import JSON
import NN
import Platform
import TextData
import Verify

/// Settings of the `checkpoint` teacher: a distill model (HDF5 checkpoint or Hugging Face
/// directory) run by the built-in engine. Defaults as documented in docs/teacher.md.
package struct CheckpointTeacherConfig: Sendable, Equatable, Codable {
    /// `"@stage"` (an earlier stage of the recipe) or a checkpoint path; absolute after loading.
    package var checkpoint: String
    /// Samples per task (k), 1...1000; sample i is drawn with seed `seed + i`.
    package var samples: Int = 1
    package var seed: Int = 0
    /// >= 0; 0 is greedy.
    package var temperature: Double = 0.8
    /// (0, 1]; 1 turns nucleus sampling off.
    package var topP: Double = 1.0
    /// >= 0; 0 turns top-k off.
    package var topK: Int = 0
    /// >= 1.
    package var maxTokens: Int = 256
    /// Generation of a sample stops at the first of these strings, which is cut off.
    package var stop: [String] = []
    /// Keep the log-probability of every sampled token.
    package var logprobs: Bool = false
    /// Rows generated together, 1...1024.
    package var batchSize: Int = 16
    /// The chat template for tasks with messages or tools; nil: the model's own (ChatML when it
    /// records none).
    package var template: ChatTemplate?
    /// The weights the engine runs on: f32 (nil), converted at load (bf16, q8_0, q4_0, q4_1), or a
    /// quantized GGUF file's own blocks (file).
    package var weights: InferenceWeights?
    /// Constrained sampling: every sample is a sentence of this grammar, written from each
    /// task's tools (nil: unconstrained).
    package var grammar: SamplingGrammar?

    package init(checkpoint: String) { self.checkpoint = checkpoint }

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case checkpoint, samples, seed, temperature, stop, logprobs, template, weights, grammar
        case topP = "top_p"
        case topK = "top_k"
        case maxTokens = "max_tokens"
        case batchSize = "batch_size"
    }
}

/// The grammars a checkpoint teacher can keep its samples to (docs/teacher.md, *Constrained sampling*).
package enum SamplingGrammar: String, Sendable, Equatable, Codable, CaseIterable {
    /// A Python list of calls to the task's tools, typed by their schemas (Verify's CallGrammar).
    case pythonCalls = "python-calls"
}

/// The `checkpoint` teacher: samples a distill model with the decode engine (on the weights
/// `weights` names), batched over prompts x samples, each sample from its own seeded generator.
///
/// A sample depends only on the model, the rendered prompt, the settings and its seed: row
/// generators are seeded with XXH64(prompt, seed), not with the row's place in the batch.
/// Jobs (task-major, then sample) are cut into fixed batches of `batch_size`; a batch with
/// any uncached sample is generated whole, so a resumed run computes every sample in the same
/// batch as an uninterrupted run would. Results are committed to the cache before use.
///
/// The job order keeps a task's samples together, so the engine, which prefills each distinct
/// prompt of a batch once (and their common prefix once), prefills a task once per batch it
/// falls in: once when `batch_size` is a multiple of `samples`. Shared prefill gives the tokens
/// of the unshared path, so a sample still depends on nothing else.
package struct CheckpointTeacher: TeacherBackend {
    package let config: CheckpointTeacherConfig
    package let cache: CallCache
    package let counters = CallCounters()
    private let tokenizer: ByteLevelBPETokenizer
    private let stopTokens: [Int32]
    /// How tasks with messages or tools are rendered: `config.template` resolved against the model's style.
    package let chat: ChatStyle
    /// `xxh64:…` over the configuration, weights and tokenizer (and the weight format when not
    /// f32): the model's part of every cache key.
    package let checksum: String
    /// The decode engine over the model's weights as `config.weights` says.
    package let engine: DecodeEngine
    /// The tokenizer's trie for constrained sampling, when `config.grammar` asks for it.
    private let constrained: ConstrainedVocabulary?
    /// The whole chunks of the prefix the last batch's prompts shared (a system message and
    /// worked examples), copied into the next batch instead of prefilled again.
    package let prefixCache = PrefixCache()

    /// Throws `DataError.badConfig` for settings out of range, or `weights: file` without
    /// `blocks` (a quantized GGUF file's own tensors). `checksum` and `engine`, when given, are
    /// another teacher's of the same model and weights, reused rather than computed again.
    package init(
        config: CheckpointTeacherConfig, model: LlamaModel, tokenizer: ByteLevelBPETokenizer, tokenizerJSON: String,
        endOfText: Int32?, modelChat: ChatStyle? = nil, blocks: [String: PackedMatrix] = [:], cache: CallCache,
        checksum: String? = nil, engine: DecodeEngine? = nil
    ) throws {
        var problems = config.problems()
        let weights = config.weights ?? .f32
        if weights == .file && blocks.isEmpty && engine == nil {
            problems.append(
                "weights \"file\" runs a quantized GGUF file's own Q8_0, Q4_0 or Q4_1 tensors, and this model has none; "
                    + "use \"q8_0\", \"q4_0\" or \"q4_1\" to quantize it at load")
        }
        try refuseProblems(problems)
        self.config = config
        self.engine = engine ?? DecodeEngine(model: model, weights: weights, blocks: blocks)
        chat = ChatStyle.resolved(config.template, model: modelChat) ?? ChatStyle(template: .chatml)
        self.cache = cache
        self.tokenizer = tokenizer
        var stops: [Int32] = []
        if let endOfText { stops.append(endOfText) }
        for special in ["<|endoftext|>", chat.template.endOfTurn] {
            if let id = tokenizer.id(for: special), tokenizer.isSpecial(id), !stops.contains(id) { stops.append(id) }
        }
        stopTokens = stops
        constrained = config.grammar.map { _ in
            ConstrainedVocabulary(tokenizer, vocabulary: model.config.vocabSize, stopTokens: stops)
        }
        self.checksum =
            checksum ?? Self.checksum(model, tokenizerJSON: tokenizerJSON) + (weights == .f32 ? "" : "+\(weights.rawValue)")
    }

    /// XXH64 (two seeds, 128 bits) over the config, every parameter's name, shape and values in
    /// name order, the enabled LoRA adapters (scale, names, shapes, values; nothing for a model
    /// without, so its checksum is what it was before adapters counted) and the tokenizer: equal
    /// for the same weights whatever file they came from, and different for a base with and
    /// without its adapter.
    package static func checksum(_ model: LlamaModel, tokenizerJSON: String) -> String {
        var a = XXH64(seed: 0), b = XXH64(seed: 0x5EED)
        func add(_ bytes: [UInt8]) {
            a.update(bytes)
            b.update(bytes)
        }
        let c = model.config
        add(
            Array(
                "\(c.vocabSize) \(c.hiddenSize) \(c.intermediateSize) \(c.numHiddenLayers) \(c.numAttentionHeads) \(c.numKeyValueHeads) \(c.headDim) \(c.rmsNormEps) \(c.ropeTheta) \(c.tieWordEmbeddings)\n"
                    .utf8))
        // Only when set, so the checksums of unscaled models stay what they were.
        if let s = c.ropeScaling {
            let text = "llama3 \(s.factor) \(s.lowFreqFactor) \(s.highFreqFactor) \(s.originalMaxPositionEmbeddings)\n"
            add(Array(text.utf8))
        }
        for (name, tensor) in model.namedParameters().sorted(by: { $0.0 < $1.0 }) {
            add(Array("\(name) \(tensor.shape)\n".utf8))
            add(Array(UnsafeRawBufferPointer(start: tensor.data, count: tensor.count * MemoryLayout<Float>.size)))
        }
        for (i, layer) in model.layers.enumerated() {
            for (name, module) in layer.modules {
                guard let lora = module as? LoRALinear, lora.enabled else { continue }
                for (part, tensor) in [("lora_A", lora.a), ("lora_B", lora.b)] {
                    add(Array("model.layers.\(i).\(name).\(part) \(tensor.shape) scale \(lora.scale)\n".utf8))
                    add(Array(UnsafeRawBufferPointer(start: tensor.data, count: tensor.count * MemoryLayout<Float>.size)))
                }
            }
        }
        add(Array(tokenizerJSON.utf8))
        return "xxh64:" + hexDigits(a.finalize()) + hexDigits(b.finalize())
    }

    package var name: String { "checkpoint \(checksum)" }
    package var samplesPerTask: Int { config.samples }
    package var settings: JSONValue {
        .obj([
            "temperature": .double(config.temperature), "top_p": .double(config.topP), "top_k": .int(config.topK),
            "max_tokens": .int(config.maxTokens), "stop": .array(config.stop.map { .string($0) }),
            "logprobs": .bool(config.logprobs),
        ])
    }

    /// Tasks with messages or tools need the template's special tokens in the tokenizer.
    package func validate(_ tasks: [TeacherTask]) throws {
        guard let task = tasks.first(where: { PromptRendering.render($0, chat: chat).chat }) else {
            return
        }
        do {
            try chat.template.check(tokenizer)
        } catch let error as DataError {
            throw DataError.malformed(
                file: task.file, line: task.line, column: 1,
                reason: "task \"\(task.id)\" needs the \(chat.template.rawValue) chat template, but \(error)",
                hint: "give the teacher a tokenizer with those special tokens, or use plain \"prompt\" tasks")
        }
    }

    /// The cache key of one sample.
    package func cacheKey(prompt: String, seed: Int) -> String {
        var request = JSONValue.obj([
            "prompt": .string(prompt), "temperature": .double(config.temperature), "top_p": .double(config.topP),
            "top_k": .int(config.topK), "max_tokens": .int(config.maxTokens),
            "stop": .array(config.stop.map { .string($0) }), "logprobs": .bool(config.logprobs), "seed": .int(seed),
        ])
        // Unconstrained samples keep the keys they had before grammars existed.
        if let grammar = config.grammar, case .object(var o) = request {
            o.entries.append((key: "grammar", value: .string(grammar.rawValue)))
            request = .object(o)
        }
        return "checkpoint \(checksum)\n" + request.compact(sortedKeys: true)
    }

    private struct Job {
        var taskIndex: Int, sampleIndex: Int, seed: Int
        var prompt: String
        var chat: Bool
        var key: String
        /// The task's grammar under constrained sampling.
        var grammar: ByteGrammar?
    }

    /// Each task's grammar under `config.grammar` (nil without one); throws for a task the
    /// grammar cannot be written for.
    private func grammars(_ tasks: [TeacherTask]) throws -> [ByteGrammar?] {
        guard let kind = config.grammar else { return tasks.map { _ in nil } }
        return try tasks.map { task in
            switch kind {
            case .pythonCalls:
                guard let grammar = CallGrammar.pythonCalls(tools: task.tools ?? task.toolsInMessages ?? []) else {
                    throw DataError.malformed(
                        file: task.file, line: task.line, column: 1,
                        reason: "task \"\(task.id)\" has no named tools, so grammar \"\(kind.rawValue)\" has no call to allow",
                        hint: "give every task its \"tools\", or drop the teacher's \"grammar\"")
                }
                return grammar
            }
        }
    }

    package func sample(
        _ tasks: [TeacherTask], onSample: @escaping @Sendable (TeacherSample) -> Void = { _ in }
    ) async throws -> [TeacherSample] {
        try sampleSync(tasks, onSample: onSample)
    }

    /// `sample`, on the calling thread.
    package func sampleSync(_ tasks: [TeacherTask], onSample: (TeacherSample) -> Void = { _ in }) throws
        -> [TeacherSample]
    {
        let rendered = tasks.map { PromptRendering.render($0, chat: chat) }
        let grammars = try grammars(tasks)
        var jobs: [Job] = []
        for t in tasks.indices {
            for s in 0..<config.samples {
                let seed = config.seed + s
                jobs.append(
                    Job(
                        taskIndex: t, sampleIndex: s, seed: seed, prompt: rendered[t].text, chat: rendered[t].chat,
                        key: cacheKey(prompt: rendered[t].text, seed: seed), grammar: grammars[t]))
            }
        }
        var out: [TeacherSample] = []
        out.reserveCapacity(jobs.count)
        for start in stride(from: 0, to: jobs.count, by: config.batchSize) {
            let batch = Array(jobs[start..<min(start + config.batchSize, jobs.count)])
            var results: [TeacherCompletion?] = try batch.map { job in
                try cache.lookup(job.key).flatMap { Self.parse($0.response, latency: $0.latency) }
            }
            var fresh = [Bool](repeating: false, count: batch.count)
            if results.contains(where: { $0 == nil }) {
                let generated = try generate(batch)
                for i in batch.indices where results[i] == nil {
                    try cache.store(
                        batch[i].key, teacher: name,
                        CachedCall(response: Self.encode(generated[i]), latency: generated[i].latency))
                    results[i] = generated[i]
                    fresh[i] = true
                }
            }
            for (i, job) in batch.enumerated() {
                let sample = TeacherSample(
                    taskIndex: job.taskIndex, taskID: tasks[job.taskIndex].id, sampleIndex: job.sampleIndex,
                    seed: job.seed, result: .success(results[i]!), cached: !fresh[i], requests: fresh[i] ? 1 : 0)
                counters.add(requests: fresh[i] ? 1 : 0, cacheHits: fresh[i] ? 0 : 1, completed: 1)
                onSample(sample)
                out.append(sample)
            }
        }
        return out
    }

    /// One batch through the engine.
    private func generate(_ batch: [Job]) throws -> [TeacherCompletion] {
        let started = Date()
        let prompts = batch.map { job -> [Int32] in
            // A plain prompt gets the tokenizer's template prefix (BOS), as SFT rows do; a rendered
            // conversation carries its own.
            let ids = tokenizer.encode(job.prompt, addSpecialTokens: !job.chat)
            return ids.isEmpty ? [stopTokens.first ?? 0] : ids
        }
        // The KV cache of the batch's longest prompt plus max_tokens must fit before it is allocated.
        let c = engine.config
        try MemoryBudget.require(
            MemoryBudget.inferenceBytes(
                parameters: c.parameterCount, layers: c.numHiddenLayers * max(1, c.layerRepeat),
                kvWidth: c.numKeyValueHeads * c.headDim, hidden: c.hiddenSize, intermediate: c.intermediateSize,
                vocabulary: c.vocabSize, rows: prompts.count,
                positions: (prompts.map(\.count).max() ?? 0) + config.maxTokens, allLogits: false),
            for: "generating \(prompts.count) samples at once (weights, KV cache, activations and logits)",
            path: config.checkpoint, fix: "lower the teacher's batch_size or max_tokens")
        let sampling = SamplingConfig(
            maxTokens: config.maxTokens, temperature: config.temperature, topK: config.topK, topP: config.topP,
            stopTokens: stopTokens)
        let seeds = batch.map { XXH64.hash(Array($0.prompt.utf8), seed: UInt64($0.seed)) }
        let stop = config.stop
        // The rows of one task share its masks.
        var constraints: [(any TokenConstraint)?]?
        if let constrained {
            var masks: [Int: GrammarMasks] = [:]
            constraints = batch.map { job in
                guard let grammar = job.grammar else { return nil }
                let shared = masks[job.taskIndex] ?? constrained.masks(for: grammar)
                masks[job.taskIndex] = shared
                return GrammarConstraint(shared)
            }
        }
        let (ids, logprobs) = engine.generate(
            prompts: prompts, sampling: sampling, rowSeeds: seeds, logProbs: config.logprobs, prefixCache: prefixCache,
            constraints: constraints
        ) { _, generated in
            guard !stop.isEmpty else { return false }
            let text = tokenizer.decode(generated)
            return stop.contains { text.contains($0) }
        }
        let latency = cachedLatency(Date().timeIntervalSince(started))
        return batch.indices.map { r in
            var text = tokenizer.decode(ids[r].filter { !stopTokens.contains($0) })
            // A constrained row that completed its sentence stopped, with or without a stop token.
            let closed = (constraints?[r] as? GrammarConstraint)?.isFinished == true
            var finish = closed || ids[r].last.map { stopTokens.contains($0) } == true ? "stop" : "length"
            for s in stop {
                if let range = text.range(of: s) {
                    text = String(text[..<range.lowerBound])
                    finish = "stop"
                }
            }
            return TeacherCompletion(
                text: text, finishReason: finish, promptTokens: prompts[r].count, completionTokens: ids[r].count,
                latency: latency, logprobs: config.logprobs ? logprobs[r] : nil)
        }
    }

    /// The cached form of a completion (the latency is cached beside it).
    static func encode(_ c: TeacherCompletion) -> String {
        var entries: [(key: String, value: JSONValue)] = [
            ("text", .string(c.text)), ("finish_reason", c.finishReason.map { .string($0) } ?? .null),
            ("prompt_tokens", .int(c.promptTokens ?? 0)), ("completion_tokens", .int(c.completionTokens ?? 0)),
        ]
        if let lp = c.logprobs { entries.append(("logprobs", .array(lp.map { .double($0) }))) }
        return JSONValue.object(JSONValue.JSONObject(entries)).compact()
    }

    static func parse(_ text: String, latency: Double) -> TeacherCompletion? {
        guard case .object(let o)? = try? JSONValue.parse(Array(text.utf8)), case .string(let t)? = o["text"] else {
            return nil
        }
        var c = TeacherCompletion(
            text: t, finishReason: o["finish_reason"]?.stringValue,
            promptTokens: o["prompt_tokens"]?.numberValue.map { Int($0) },
            completionTokens: o["completion_tokens"]?.numberValue.map { Int($0) }, latency: latency)
        if case .array(let lp)? = o["logprobs"] { c.logprobs = lp.map { $0.numberValue ?? 0 } }
        return c
    }
}

extension CheckpointTeacherConfig {
    /// Problems with the settings, each naming the key, the value and the accepted range.
    package func problems() -> [String] {
        var out: [String] = []
        if checkpoint.isEmpty { out.append("checkpoint must name a checkpoint file or \"@stage\"") }
        if !(1...1000).contains(samples) { out.append("samples must be within 1...1000, got \(samples)") }
        if seed < 0 { out.append("seed must be >= 0, got \(seed)") }
        if !(temperature >= 0) { out.append("temperature must be >= 0, got \(temperature)") }
        if !(topP > 0 && topP <= 1) { out.append("top_p must be within (0, 1], got \(topP)") }
        if topK < 0 { out.append("top_k must be >= 0, got \(topK)") }
        if maxTokens < 1 { out.append("max_tokens must be >= 1, got \(maxTokens)") }
        if !(1...1024).contains(batchSize) { out.append("batch_size must be within 1...1024, got \(batchSize)") }
        if stop.contains("") { out.append("stop strings must not be empty") }
        return out
    }
}

