// Importing a GGUF model: tiny_chat.gguf (tools/make_gguf_chat_fixture.py: Q8_0, F16 and F32
// tensors, a gpt2 tokenizer with the smollm pre-tokenizer, SmolLM2's ChatML template) read
// by distill reproduces what transformers computes when it loads the same file itself
// (tiny_chat.json): last-position logits and loss within 1e-4, the greedy tokens exactly, and
// the chat prompt's text and ids. Hostile or foreign files are refused naming the key or
// tensor, before the weights are read.

import Core
import Foundation
import Formats
import JSON
import ModelIO
import NN
import Platform
import Testing
import TextData

struct TinyChatReference: Decodable {
    struct Chat: Decodable {
        struct Message: Decodable {
            var role: String
            var content: String
        }
        var messages: [Message]
        var text: String
        var ids: [Int32]
    }
    var logits_ids: [Int32]
    var last_logits: [Double]
    var greedy_ids: [Int32]
    var loss_ids: [Int32]
    var loss: Double
    var chat: Chat

    static func load() throws -> TinyChatReference {
        try JSONDecoder().decode(TinyChatReference.self, from: Data(contentsOf: try ggufFixture("tiny_chat.json")))
    }
}

@Suite struct GGUFImportTests {
    @Test func logitsLossAndGreedyTokensMatchTransformers() throws {
        let ref = try TinyChatReference.load()
        let loaded = try loadModel(from: try ggufFixture("tiny_chat.gguf").path)
        let model = loaded.model
        let t = ref.logits_ids.count
        let logits = GradMode.withoutGrad { model.logits(ids: ref.logits_ids, batch: 1, length: t) }
        let last = logits.slice(axis: 1, (t - 1)..<t).values
        let worst = zip(last, ref.last_logits).map { abs(Double($0) - $1) }.max()!
        #expect(last.count == ref.last_logits.count && worst < 1e-4, "last-position logits differ by up to \(worst)")
        let n = ref.loss_ids.count
        let loss = GradMode.withoutGrad {
            model.loss(ids: ref.loss_ids, targets: Array(ref.loss_ids.dropFirst()) + [-100], batch: 1, length: n).item
        }
        #expect(abs(Double(loss) - ref.loss) < 1e-4, "loss \(loss) vs transformers \(ref.loss)")
        let greedy = model.generate(
            prompts: [ref.logits_ids], sampling: SamplingConfig(maxTokens: ref.greedy_ids.count, temperature: 0))[0]
        #expect(greedy == ref.greedy_ids)
    }

    /// The file's template is recognised as ChatML with SmolLM2's default system message, and
    /// the prompt distill renders is transformers' apply_chat_template, text and ids.
    @Test func theChatTemplateRendersAsTransformersDoes() throws {
        let ref = try TinyChatReference.load()
        let loaded = try loadModel(from: try ggufFixture("tiny_chat.gguf").path)
        let style = try #require(loaded.chat)
        #expect(style == ChatStyle(template: .chatml, defaultSystem: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"))
        let text = style.prompt(ref.chat.messages.map { ChatMessage(role: $0.role, content: $0.content) })
        #expect(text == ref.chat.text)
        #expect(try loaded.requireTokenizer().encode(text, addSpecialTokens: false) == ref.chat.ids)
    }

    /// Chat prompts with the default system message in common, 3 seeded samples each: the
    /// shared prefill (the common prefix once, each prompt once) gives the unshared path's
    /// tokens, and log-probabilities within 1e-5 of their size.
    @Test func sharedPrefillGivesTheUnsharedSamples() throws {
        let loaded = try loadModel(from: try ggufFixture("tiny_chat.gguf").path)
        let style = try #require(loaded.chat)
        let tokenizer = try loaded.requireTokenizer()
        let questions = ["What is 2 plus 2?", "Name a colour.", "Write a haiku about the sea, please."]
        let distinct = questions.map {
            tokenizer.encode(style.prompt([ChatMessage(role: "user", content: $0)]), addSpecialTokens: false)
        }
        #expect(PrefillPlan(prompts: distinct, sharing: .commonPrefix).shared > 10)
        let prompts = distinct.flatMap { Array(repeating: $0, count: 3) }
        let seeds = prompts.indices.map { UInt64(7 * $0) }
        let s = SamplingConfig(maxTokens: 12, temperature: 0.8, stopTokens: loaded.endOfText.map { [$0] } ?? [])
        let model = loaded.model
        let base = model.generateWithLogProbs(
            prompts: prompts, sampling: s, rowSeeds: seeds, logProbs: true, sharing: .none)
        let shared = model.generateWithLogProbs(prompts: prompts, sampling: s, rowSeeds: seeds, logProbs: true)
        #expect(shared.ids == base.ids)
        // Relative to the log-probability's size: a float logit of magnitude 10 has ulps of 1e-6.
        let worst = zip(shared.logProbs.joined(), base.logProbs.joined()).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
        #expect(worst < 1e-5)
    }

    /// The checkpoint holds the same weights and records the source, its digest, its tensor
    /// types and the chat style; loading it gives the same model.
    @Test func importWritesACheckpointThatRecordsItsSource() throws {
        try scratch { dir in
            let source = try ggufFixture("tiny_chat.gguf").path
            let output = dir.appendingPathComponent("tiny.h5").path
            _ = try importModel(from: source, to: output)
            let original = try loadModel(from: source)
            let imported = try loadModel(from: output)
            #expect(modelChecksum(imported.model, includingAdapters: true) == modelChecksum(original.model, includingAdapters: true))
            let metadata = try #require(imported.checkpoint?.metadata)
            #expect(metadata["source_sha256"] == (try fileSHA256(source)))
            #expect(metadata["source_tensor_types"] == "F16:1,F32:5,Q8_0:14")
            #expect(metadata["imported_from"] == source)
            #expect(imported.chat == original.chat)
            #expect(imported.tokenizerJSON == original.tokenizerJSON)
            // A named template replaces an unrecognised one; the same family keeps the default system message.
            _ = try importModel(from: source, to: output, template: .chatml)
            #expect(try loadModel(from: output).chat == original.chat)
        }
    }

    /// Rotary rows: deinterleaving undoes the export's interleaving exactly.
    @Test func rotaryRowOrderRoundTrips() {
        var rng = RNG(seed: 3)
        let w = Tensor.randn([2 * 8, 5], std: 1, rng: &rng)
        let back = LlamaGGUF.deinterleaveRotaryRows(LlamaGGUF.interleaveRotaryRows(w, heads: 2), heads: 2)
        #expect(back.values == w.values)
    }

    // MARK: Refusals

    /// tiny_chat.gguf rewritten (tensors as F32) after `edit` changes its metadata and tensors.
    func rewritten(
        in dir: URL, _ edit: (inout [(key: String, value: GGUFValue)], inout [(name: String, tensor: Tensor)]) -> Void
    ) throws -> String {
        let file = try GGUFFile(path: try ggufFixture("tiny_chat.gguf").path)
        var metadata = file.metadata.filter { $0.key != GGUF.alignmentKey }
        var tensors: [(name: String, tensor: Tensor)] = try file.tensors.map { ($0.name, try file.read($0.name)) }
        edit(&metadata, &tensors)
        var writer = GGUFWriter()
        for (key, value) in metadata { writer.add(key, value) }
        for (name, tensor) in tensors { writer.add(tensor: name, tensor) }
        let path = dir.appendingPathComponent("edited-\(UUID().uuidString).gguf").path
        try writer.write(to: path)
        return path
    }

    func expectRefusal(_ words: [String], sourceLocation: SourceLocation = #_sourceLocation, _ edit: (inout [(key: String, value: GGUFValue)], inout [(name: String, tensor: Tensor)]) -> Void) throws {
        try scratch { dir in
            let path = try rewritten(in: dir, edit)
            do {
                _ = try readGGUFModel(path: path)
                Issue.record("expected a refusal naming \(words)", sourceLocation: sourceLocation)
            } catch {
                let message = "\(error)"
                for w in words {
                    #expect(message.contains(w), "\(message) should name \(w)", sourceLocation: sourceLocation)
                }
                #expect(exitCode(for: error) == 65 || exitCode(for: error) == 2, "\(message)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test func anUnchangedRewriteImports() throws {
        try scratch { dir in
            let path = try rewritten(in: dir) { _, _ in }
            #expect(try readGGUFModel(path: path).config.numHiddenLayers == 2)
        }
    }

    @Test func foreignArchitecturesAndAdaptersAreRefusedNamingTheKey() throws {
        func set(_ key: String, _ value: GGUFValue) -> (inout [(key: String, value: GGUFValue)], inout [(name: String, tensor: Tensor)]) -> Void {
            { m, _ in m = m.filter { $0.key != key } + [(key, value)] }
        }
        try expectRefusal(["general.architecture", "qwen2"], set("general.architecture", .string("qwen2")))
        try expectRefusal(["general.type", "adapter"], set("general.type", .string("adapter")))
        try expectRefusal(["llama.rope.scaling.type", "yarn"], set("llama.rope.scaling.type", .string("yarn")))
        try expectRefusal(["llama.rope.dimension_count", "partial"], set("llama.rope.dimension_count", .uint32(8)))
        try expectRefusal(["llama.attention.value_length"], set("llama.attention.value_length", .uint32(8)))
        try expectRefusal(["llama.attention.head_count", "positive"], set("llama.attention.head_count", .array(.int32([4, 4]))))
        try expectRefusal(["llama.block_count", "missing"]) { m, _ in m = m.filter { $0.key != "llama.block_count" } }
    }

    // MARK: Llama 3's rope scaling (rope_freqs.weight)

    /// tiny_chat (head_dim 16, theta 100000, context 256) given llama.cpp's divisors for a
    /// scaling reads back as that scaling: Llama 3.2's released parameters, and a small original
    /// context that puts pair 3 in the smoothed band. Low 2, high 16, context 4096 has the band
    /// edges (4096 / 2, 4096 / 16) and s of low 1, high 8, context 2048, which is found first:
    /// another spelling of the same frequencies. Divisors all 1 are no scaling.
    @Test(arguments: [
        RopeScaling(factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192),
        RopeScaling(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 512),
        RopeScaling(factor: 16, lowFreqFactor: 2, highFreqFactor: 16, originalMaxPositionEmbeddings: 1 << 12),
    ])
    func llama3ScalingIsRecoveredFromTheFactors(_ scaling: RopeScaling) throws {
        let factors = scaling.frequencyFactors(RopeTable.inverseFrequencies(headDim: 16, theta: 100_000))
        try scratch { dir in
            let path = try rewritten(in: dir) { _, t in t.insert(("rope_freqs.weight", Tensor(shape: [8], values: factors)), at: 0) }
            let config = try readGGUFModel(path: path).config
            let found = try #require(config.ropeScaling)
            if scaling.lowFreqFactor == 2 {
                #expect(found == RopeScaling(factor: 16, lowFreqFactor: 1, highFreqFactor: 8, originalMaxPositionEmbeddings: 2048))
                let plain = RopeTable.inverseFrequencies(headDim: 16, theta: 100_000)
                #expect(found.scale(plain) == scaling.scale(plain))
            } else {
                #expect(found == scaling)
            }
            let ones = try rewritten(in: dir) { _, t in t.append(("rope_freqs.weight", Tensor.full([8], 1))) }
            #expect(try readGGUFModel(path: ones).config.ropeScaling == nil)
        }
    }

    /// Factors that are no Llama 3 scaling are refused naming the tensor, as are a wrong length
    /// and a factor that is not positive.
    @Test func otherFactorsAreRefused() throws {
        var rng = RNG(seed: 12)
        let random = Tensor.randn([8], std: 1, rng: &rng).values.map { 1 + abs($0) * 4 }
        try expectRefusal(["rope_freqs.weight", "not Llama 3's scaling"]) { _, t in
            t.append(("rope_freqs.weight", Tensor(shape: [8], values: random)))
        }
        // Llama 3's divisors for other pairs than the file's (theta 10000, not 100000).
        let shifted = RopeScaling(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 512)
            .frequencyFactors(RopeTable.inverseFrequencies(headDim: 16, theta: 10_000))
        try expectRefusal(["rope_freqs.weight", "not Llama 3's scaling"]) { _, t in
            t.append(("rope_freqs.weight", Tensor(shape: [8], values: shifted)))
        }
        try expectRefusal(["rope_freqs.weight", "shape", "[8]"]) { _, t in t.append(("rope_freqs.weight", Tensor.full([16], 1))) }
        try expectRefusal(["rope_freqs.weight", "positive"]) { _, t in
            t.append(("rope_freqs.weight", Tensor(shape: [8], values: [1, 1, 1, 0, 8, 8, 8, 8])))
        }
    }

    /// tiny_llama3 exported by distill (F32) and imported again: the same config, scaling
    /// included, and the same logits bit for bit, so transformers' within 1e-4. The F16 file
    /// gguf-py wrote as llama.cpp's converter does reads as the same config.
    /// A quantized export read back keeps its blocks as the file stores them: the same bytes as
    /// quantizing the model's own matrices (so q and k rows come back in the rotate-half order
    /// as whole blocks), and the engine on them (`--weights file`) equals the engine quantizing
    /// at load, logit for logit. tiny_chat.gguf's own Q8_0 tensors run the same way, within the
    /// int8 activations' rounding of its f32 logits.
    @Test("a quantized export keeps its blocks", arguments: [GGUFExportType.q8_0, .q4_0, .q4_1])
    func quantizedExportKeepsItsBlocks(dtype: GGUFExportType) throws {
        let loaded = try loadModel(from: try ggufFixture("tiny_chat.gguf").path)
        #expect(loaded.fileBlocks.count == 1 + 7 * loaded.model.config.numHiddenLayers - 1)  // its Q8_0 tensors (one is F16)
        let format = try #require(WeightFormat(rawValue: dtype.rawValue))
        try scratch { out in
            let path = out.appendingPathComponent("q.gguf").path
            try exportGGUF(loaded, dtype: dtype, to: path)
            let back = try loadModel(from: path)
            let parameters = Dictionary(uniqueKeysWithValues: loaded.model.namedParameters())
            for (name, blocks) in back.fileBlocks {
                let original = PackedMatrix(parameters[name]!, format: WeightFormat.forMatrix(name, format))
                #expect(blocks.format == original.format, "\(name)")
                withExtendedLifetime((blocks, original)) {
                    #expect(Array(blocks.blockBytes!) == Array(original.blockBytes!), "\(name)")
                }
            }
            #expect(back.fileBlocks.count == 1 + 7 * loaded.model.config.numHiddenLayers)  // every matrix
            let ids = try TinyChatReference.load().logits_ids
            func logits(_ engine: DecodeEngine) -> [Float] {
                let state = DecodeState(engine: engine, slots: 1, capacity: ids.count)
                let out = state.step(ids: ids, slots: Array(repeating: 0, count: ids.count), outputs: [ids.count - 1])
                return Array(UnsafeBufferPointer(start: out, count: engine.config.vocabSize))
            }
            let weights = try #require(InferenceWeights(rawValue: dtype.rawValue))
            #expect(logits(try back.decodeEngine(.file)) == logits(try loaded.decodeEngine(weights)))
        }
        let f32 = logits(ofFile: loaded, .f32), file = logits(ofFile: loaded, .file)
        let scale = f32.map(abs).max()!
        #expect(zip(f32, file).map { abs($0 - $1) }.max()! < 0.05 * scale)
    }

    private func logits(ofFile loaded: LoadedModel, _ weights: InferenceWeights) -> [Float] {
        let ids: [Int32] = [1, 5, 9, 3, 7, 2]
        let state = DecodeState(engine: try! loaded.decodeEngine(weights), slots: 1, capacity: ids.count)
        let out = state.step(ids: ids, slots: Array(repeating: 0, count: ids.count), outputs: [ids.count - 1])
        return Array(UnsafeBufferPointer(start: out, count: loaded.model.config.vocabSize))
    }

    /// `--weights file` needs a file with quantized tensors: a checkpoint is refused with the fix.
    @Test func fileWeightsNeedAQuantizedFile() throws {
        let loaded = try loadModel(from: try ggufFixture("tiny_chat.gguf").path)
        var plain = loaded
        plain.fileBlocks = [:]
        #expect(throws: UserError.self) { try plain.decodeEngine(.file) }
    }

    @Test func llama3ExportImportRoundTrip() throws {
        let (model, ref) = try HFReferenceTests.load("tiny_llama3")
        let dir = try #require(Bundle.module.url(forResource: "tiny_llama3", withExtension: nil, subdirectory: "Fixtures"))
        let tokenizer = try ByteLevelBPETokenizer(jsonData: try #require(try HFModelDirectory.read(at: dir).tokenizerJSON))
        try scratch { out in
            let path = out.appendingPathComponent("llama3.gguf").path
            try writeGGUF(model: model, tokenizer: tokenizer, to: path)
            let imported = try readGGUFModel(path: path)
            // GGUF stores rms_norm_eps as float32.
            var expected = model.config
            expected.rmsNormEps = Double(Float(expected.rmsNormEps))
            #expect(imported.config == expected)
            let back = try LlamaModel(config: imported.config, parameters: imported.parameters)
            let t = ref.ids.count
            let ours = GradMode.withoutGrad { back.logits(ids: ref.ids, batch: 1, length: t).values }
            let original = GradMode.withoutGrad { model.logits(ids: ref.ids, batch: 1, length: t).values }
            #expect(ours == original)
            let last = Array(ours.suffix(model.config.vocabSize))
            let worst = zip(last, ref.last_logits).map { abs(Double($0) - $1) }.max()!
            #expect(worst < 1e-4, "last-position logits differ from transformers' by up to \(worst)")
        }
        var expected = model.config
        expected.rmsNormEps = Double(Float(expected.rmsNormEps))
        #expect(try readGGUFModel(path: ggufFixture("tiny_llama3_f16.gguf").path).config == expected)
    }

    @Test func tensorsMustBeTheConfigsTensors() throws {
        try expectRefusal(["blk.2.attn_q.weight", "2-layer"]) { _, t in t.append(("blk.2.attn_q.weight", Tensor.full([64, 64], 0))) }
        try expectRefusal(["blk.1.ffn_up.weight", "shape"]) { _, t in
            t = t.map { $0.name == "blk.1.ffn_up.weight" ? ($0.name, Tensor.full([64, 64], 0)) : $0 }
        }
        try expectRefusal(["lacks", "blk.0.attn_k.weight"]) { _, t in t = t.filter { $0.name != "blk.0.attn_k.weight" } }
        try expectRefusal(["blk.0.attn_norm.weight", "non-finite"]) { _, t in
            t = t.map { $0.name == "blk.0.attn_norm.weight" ? ($0.name, Tensor.full([64], .nan)) : $0 }
        }
    }
}

/// A Hugging Face directory's template: chat_template.jinja, else tokenizer_config.json's
/// `chat_template` (a string, or the "default" of a named list).
@Suite struct HFChatTemplateTests {
    @Test func readFromTokenizerConfigOrJinjaFile() throws {
        try scratch { dir in
            let source = try #require(Bundle.module.url(forResource: "tiny_llama", withExtension: nil, subdirectory: "Fixtures"))
            let model = dir.appendingPathComponent("m")
            try FileManager.default.copyItem(at: source, to: model)
            #expect(try loadModel(from: model.path).chat == nil)
            let chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
            let config = model.appendingPathComponent("tokenizer_config.json")
            let named = JSONValue.obj(["chat_template": .array([.obj(["name": .string("tool_use"), "template": .string("x")]), .obj(["name": .string("default"), "template": .string(chatml)])])])
            try Data(named.serialized().utf8).write(to: config)
            #expect(try loadModel(from: model.path).chat == ChatStyle(template: .chatml))
            try Data("{% for m in messages %}{{ m['content'] }}{% endfor %}".utf8).write(to: model.appendingPathComponent("chat_template.jinja"))
            #expect(try loadModel(from: model.path).chat == nil)
            try Data("{\"chat_template\": ".utf8).write(to: config)
            try FileManager.default.removeItem(at: model.appendingPathComponent("chat_template.jinja"))
            #expect(throws: HFModelError.self) { try loadModel(from: model.path) }
        }
    }
}
