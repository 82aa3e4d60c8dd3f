// Tests for Sources/Formats/HuggingFace.swift: the tiny Llama directories saved by
// transformers (Fixtures/tiny_llama, tiny_llama_untied, made by tools/make_hf_fixture.py
// whose reference.json repeats the first values of every tensor), config refusals,
// tensor mismatches, shards, tied embeddings, and export followed by re-import.

import Core
import Foundation
import JSON
import ModelIO
import Platform
import Testing
import TextData

@testable import Formats

// MARK: - Helpers

/// A fresh directory removed when the test ends.
private func withScratchDirectory<R>(_ body: (URL) throws -> R) throws -> R {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("distill-hf-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try body(directory)
}

private func fixtureURL(_ name: String) throws -> URL {
    try #require(Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures"))
}

private struct Reference: Decodable {
    var text: String
    var ids: [Int]
    var prompt: String
    var prompt_ids: [Int]
    var greedy_ids: [Int]
    var first4: [String: [Double]]
    var parameters: Int

    static func load(_ directory: URL) throws -> Reference {
        try JSONDecoder().decode(
            Reference.self, from: Data(contentsOf: directory.appendingPathComponent("reference.json")))
    }
}

/// Runs `body`, expecting an HFModelError of `kind`, and returns it.
@discardableResult
private func expectHFError(
    _ kind: HFModelError.Kind, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> HFModelError? {
    do {
        try body()
        Issue.record("expected HFModelError.\(kind), nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as HFModelError {
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected HFModelError.\(kind), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// A copy of a fixture directory (config, weights, tokenizer) that a test may change.
private func copyFixture(_ name: String, into scratch: URL) throws -> URL {
    let source = try fixtureURL(name)
    let copy = scratch.appendingPathComponent(name)
    try FileManager.default.copyItem(at: source, to: copy)
    return copy
}

/// Sets and removes keys of config.json.
private func editConfig(_ directory: URL, set: [String: Any] = [:], remove: [String] = []) throws {
    let url = directory.appendingPathComponent("config.json")
    var object = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    for (key, value) in set { object[key] = value }
    for key in remove { object[key] = nil }
    try JSONSerialization.data(withJSONObject: object).write(to: url)
}

/// Rewrites model.safetensors with `tensors` in the fixture's order plus any extras.
private func rewriteWeights(_ directory: URL, _ tensors: [(name: String, tensor: Tensor)]) throws {
    try Safetensors.write(
        tensors, metadata: ["format": "pt"], to: directory.appendingPathComponent("model.safetensors").path)
}

private func weights(_ directory: URL) throws -> [(name: String, tensor: Tensor)] {
    let file = try SafetensorsFile(path: directory.appendingPathComponent("model.safetensors").path)
    return try file.entries.map { ($0.name, try file.read($0.name)) }
}

private func sameValues(_ a: Tensor?, _ b: Tensor?) -> Bool {
    guard let a, let b else { return false }
    return a.shape == b.shape && a.values.map(\.bitPattern) == b.values.map(\.bitPattern)
}

// MARK: - Reading the transformers fixtures

@Suite struct HuggingFaceRead {
    @Test(arguments: ["tiny_llama", "tiny_llama_untied"])
    func fixtureMatchesReference(name: String) throws {
        let directory = try fixtureURL(name)
        let reference = try Reference.load(directory)
        let model = try HFModelDirectory.read(at: directory)
        let tied = name == "tiny_llama"

        let c = model.config
        #expect(c.vocabSize == 300)
        #expect(c.hiddenSize == 32 && c.intermediateSize == 64)
        #expect(c.numHiddenLayers == (tied ? 2 : 1))
        #expect(c.numAttentionHeads == 4 && c.numKeyValueHeads == 2 && c.headDim == 8)
        #expect(c.ropeTheta == 10000 && c.rmsNormEps == 1e-5 && c.maxPositionEmbeddings == 128)
        #expect(c.tieWordEmbeddings == tied)
        #expect(c.bosTokenId == 0 && c.eosTokenId == 0)

        // Exactly the config's parameters, with the shapes it names.
        let expected = c.parameterShapes
        #expect(Set(model.tensors.keys) == Set(expected.map(\.name)))
        for (parameter, shape) in expected { #expect(model.tensors[parameter]?.shape == shape, "\(parameter)") }
        #expect(expected.map { $0.shape.reduce(1, *) }.reduce(0, +) == reference.parameters)
        #expect((model.tensors["lm_head.weight"] != nil) == !tied)

        // The first values of every tensor as transformers saved them.
        #expect(Set(reference.first4.keys) == Set(model.tensors.keys))
        for (parameter, values) in reference.first4 {
            let tensor = try #require(model.tensors[parameter])
            #expect(Array(tensor.values.prefix(4)) == values.map { Float($0) }, "\(parameter)")
        }
        // And the whole file, tensor by tensor.
        for (parameter, tensor) in try weights(directory) {
            #expect(sameValues(model.tensors[parameter], tensor), "\(parameter)")
        }

        // The tokenizer comes along and encodes like HF `tokenizers` did.
        let tokenizerJSON = try #require(model.tokenizerJSON)
        let tokenizer = try ByteLevelBPETokenizer(jsonData: tokenizerJSON)
        #expect(tokenizer.encode(reference.text).map(Int.init) == reference.ids)
        #expect(tokenizer.encode(reference.prompt).map(Int.init) == reference.prompt_ids)
        #expect(reference.greedy_ids.count == 32)
    }

    @Test func tokenizerIsOptional() throws {
        try withScratchDirectory { scratch in
            let directory = try copyFixture("tiny_llama", into: scratch)
            try FileManager.default.removeItem(at: directory.appendingPathComponent("tokenizer.json"))
            #expect(try HFModelDirectory.read(at: directory).tokenizerJSON == nil)
        }
    }

    @Test func missingFilesAreNamed() throws {
        try withScratchDirectory { scratch in
            let directory = try copyFixture("tiny_llama", into: scratch)
            try FileManager.default.removeItem(at: directory.appendingPathComponent("model.safetensors"))
            let error = expectHFError(.io) { _ = try HFModelDirectory.read(at: directory) }
            #expect(error?.hint.contains("model.safetensors") == true)
            try FileManager.default.removeItem(at: directory.appendingPathComponent("config.json"))
            expectHFError(.io) { _ = try HFModelDirectory.read(at: directory) }
        }
    }

    /// Weights stored as BF16 (as many Hub checkpoints are) are widened to Float32.
    @Test func halfPrecisionWeightsAreConverted() throws {
        try withScratchDirectory { scratch in
            let directory = try copyFixture("tiny_llama", into: scratch)
            let original = try weights(directory)
            try Safetensors.write(
                original, metadata: ["format": "pt"], dtype: .f16,
                to: directory.appendingPathComponent("model.safetensors").path)
            let model = try HFModelDirectory.read(at: directory)
            for (parameter, tensor) in original {
                let read = try #require(model.tensors[parameter])
                #expect(
                    read.values == tensor.values.map { HalfPrecision.float(fromBits: HalfPrecision.bits(from: $0)) },
                    "\(parameter)")
            }
        }
    }
}

// MARK: - Config refusals

struct HFConfigCase: CustomTestStringConvertible, Sendable {
    var label: String
    /// JSON-encoded replacement values for config keys ("null" sets null; absent removes).
    var edits: [String: String?]
    var kind: HFModelError.Kind
    /// Text each reported problem list must contain.
    var mentions: [String]
    var testDescription: String { label }
}

private let hfConfigCases: [HFConfigCase] = [
    HFConfigCase(label: "qwen2", edits: ["model_type": "\"qwen2\""], kind: .unsupportedConfig, mentions: ["qwen2"]),
    HFConfigCase(
        label: "no model_type", edits: ["model_type": nil], kind: .unsupportedConfig, mentions: ["model_type"]),
    HFConfigCase(label: "gelu", edits: ["hidden_act": "\"gelu\""], kind: .unsupportedConfig, mentions: ["hidden_act"]),
    HFConfigCase(
        label: "attention bias", edits: ["attention_bias": "true"], kind: .unsupportedConfig,
        mentions: ["attention_bias"]),
    HFConfigCase(label: "mlp bias", edits: ["mlp_bias": "true"], kind: .unsupportedConfig, mentions: ["mlp_bias"]),
    HFConfigCase(
        label: "linear rope scaling", edits: ["rope_scaling": #"{"type": "linear", "factor": 2.0}"#],
        kind: .unsupportedConfig, mentions: ["rope_scaling.type is \"linear\""]),
    HFConfigCase(
        label: "yarn rope type", edits: ["rope_parameters": #"{"rope_theta": 10000.0, "rope_type": "yarn", "factor": 4.0}"#],
        kind: .unsupportedConfig, mentions: ["rope_parameters.rope_type is \"yarn\""]),
    HFConfigCase(
        label: "llama3 without its factors", edits: ["rope_parameters": #"{"rope_theta": 500000.0, "rope_type": "llama3"}"#],
        kind: .unsupportedConfig, mentions: ["rope_parameters.factor is missing"]),
    HFConfigCase(
        label: "llama3 with low_freq_factor above high_freq_factor",
        edits: [
            "rope_parameters":
                #"{"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0}"#
        ],
        kind: .unsupportedConfig, mentions: ["high_freq_factor"]),
    HFConfigCase(
        label: "everything at once",
        edits: [
            "model_type": "\"mistral\"", "hidden_act": "\"relu\"", "mlp_bias": "true", "num_key_value_heads": "3",
            "rope_scaling": #"{"rope_type": "dynamic", "factor": 2.0}"#,
        ],
        kind: .unsupportedConfig, mentions: ["mistral", "hidden_act", "mlp_bias", "rope_scaling.rope_type"]),
    HFConfigCase(
        label: "missing keys", edits: ["vocab_size": nil, "hidden_size": nil], kind: .invalidConfig,
        mentions: ["vocab_size", "hidden_size"]),
    HFConfigCase(
        label: "non-integer size", edits: ["num_hidden_layers": "\"two\""], kind: .invalidConfig,
        mentions: ["num_hidden_layers"]),
]

@Suite struct HuggingFaceConfig {
    @Test(arguments: hfConfigCases)
    func refused(_ c: HFConfigCase) throws {
        try withScratchDirectory { scratch in
            let directory = try copyFixture("tiny_llama", into: scratch)
            var set: [String: Any] = [:]
            for case (let key, let json?) in c.edits {
                set[key] = try JSONSerialization.jsonObject(with: Data(json.utf8), options: .fragmentsAllowed)
            }
            try editConfig(directory, set: set, remove: c.edits.filter { $0.value == nil }.map(\.key))
            let error = expectHFError(c.kind) { _ = try HFModelDirectory.read(at: directory) }
            let text = error.map { "\($0)" } ?? ""
            #expect(text.contains("config.json"))
            for mention in c.mentions { #expect(text.contains(mention), "\(text)") }
            if c.mentions.count > 1 { #expect(error?.problems.count ?? 0 >= c.mentions.count) }
        }
    }

    @Test func notJSON() throws {
        try withScratchDirectory { scratch in
            let directory = try copyFixture("tiny_llama", into: scratch)
            try Data("{\"vocab_size\": ".utf8).write(to: directory.appendingPathComponent("config.json"))
            expectHFError(.invalidConfig) { _ = try HFModelDirectory.read(at: directory) }
        }
    }

    /// Llama 3's scaling in the older spelling (rope_scaling beside a top-level rope_theta, as
    /// Llama 3.1's own config.json has it) reads as the rope_parameters transformers 5 wrote.
    @Test func llama3ScalingInTheOlderSpelling() throws {
        try withScratchDirectory { scratch in
            let directory = try copyFixture("tiny_llama3", into: scratch)
            let original = try HFModelDirectory.read(at: directory).config
            #expect(original.ropeScaling?.originalMaxPositionEmbeddings == 64)
            try editConfig(
                directory,
                set: [
                    "rope_theta": 10000.0,
                    "rope_scaling": [
                        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                        "original_max_position_embeddings": 64,
                    ],
                ], remove: ["rope_parameters"])
            #expect(try HFModelDirectory.read(at: directory).config == original)
        }
    }

    /// Keys transformers writes with their defaults are accepted (null biases, default rope type).
    @Test func acceptsDefaults() throws {
        try withScratchDirectory { scratch in
            let directory = try copyFixture("tiny_llama", into: scratch)
            try editConfig(
                directory, set: ["attention_bias": NSNull(), "rope_scaling": NSNull()], remove: ["hidden_act"])
            #expect(try HFModelDirectory.read(at: directory).config.numHiddenLayers == 2)
        }
    }
}

// MARK: - Tensor mismatches and tied embeddings

@Suite struct HuggingFaceTensors {
    @Test func mismatchesAreListedTogether() throws {
        try withScratchDirectory { scratch in
            let directory = try copyFixture("tiny_llama", into: scratch)
            var tensors = try weights(directory)
            tensors.removeAll { $0.name == "model.layers.1.mlp.up_proj.weight" }
            let index = try #require(tensors.firstIndex { $0.name == "model.norm.weight" })
            tensors[index].tensor = Tensor.zeros([31])
            tensors.append(("model.layers.0.self_attn.q_proj.bias", Tensor.zeros([32])))
            try rewriteWeights(directory, tensors)

            let error = expectHFError(.tensorMismatch) { _ = try HFModelDirectory.read(at: directory) }
            let problems = error?.problems ?? []
            #expect(problems.count == 3, "\(problems)")
            #expect(problems.contains { $0.hasPrefix("missing model.layers.1.mlp.up_proj.weight") })
            #expect(problems.contains { $0.contains("model.norm.weight has shape [31], expected [32]") })
            #expect(problems.contains { $0.hasPrefix("unexpected model.layers.0.self_attn.q_proj.bias") })
        }
    }

    @Test func untiedModelNeedsItsHead() throws {
        try withScratchDirectory { scratch in
            let directory = try copyFixture("tiny_llama_untied", into: scratch)
            try rewriteWeights(directory, try weights(directory).filter { $0.name != "lm_head.weight" })
            let error = expectHFError(.tensorMismatch) { _ = try HFModelDirectory.read(at: directory) }
            #expect(error?.problems == ["missing lm_head.weight [300, 32]"])
        }
    }

    /// A tied model saved with an explicit lm_head (some exporters do this): equal to the
    /// embedding, it is dropped; different, the directory is refused.
    @Test func tiedHeadIsDroppedOrRefused() throws {
        try withScratchDirectory { scratch in
            let directory = try copyFixture("tiny_llama", into: scratch)
            let tensors = try weights(directory)
            let embedding = try #require(tensors.first { $0.name == "model.embed_tokens.weight" }?.tensor)
            try rewriteWeights(directory, tensors + [("lm_head.weight", embedding.copy())])
            let model = try HFModelDirectory.read(at: directory)
            #expect(model.tensors["lm_head.weight"] == nil)
            #expect(model.tensors.count == model.config.parameterShapes.count)

            let different = embedding.copy()
            different.data[37] += 1
            try rewriteWeights(directory, tensors + [("lm_head.weight", different)])
            let error = expectHFError(.tiedWeightsDiffer) { _ = try HFModelDirectory.read(at: directory) }
            #expect(error?.hint.contains("flat index 37") == true)
            #expect(error?.hint.contains("tie_word_embeddings") == true)

            try rewriteWeights(directory, tensors + [("lm_head.weight", Tensor.zeros([300, 16]))])
            expectHFError(.tensorMismatch) { _ = try HFModelDirectory.read(at: directory) }
        }
    }

    @Test func rotaryBuffersOfOldCheckpointsAreIgnored() throws {
        try withScratchDirectory { scratch in
            let directory = try copyFixture("tiny_llama", into: scratch)
            let extra = ("model.layers.0.self_attn.rotary_emb.inv_freq", Tensor.zeros([4]))
            try rewriteWeights(directory, try weights(directory) + [extra])
            let model = try HFModelDirectory.read(at: directory)
            #expect(model.tensors.count == model.config.parameterShapes.count)
        }
    }

    /// Bad safetensors inside a model directory surface as SafetensorsError naming the file.
    @Test func damagedWeightsNameTheFile() throws {
        try withScratchDirectory { scratch in
            let directory = try copyFixture("tiny_llama", into: scratch)
            let url = directory.appendingPathComponent("model.safetensors")
            let data = try Data(contentsOf: url)
            try data.prefix(data.count - 4).write(to: url)
            do {
                _ = try HFModelDirectory.read(at: directory)
                Issue.record("a truncated model.safetensors was accepted")
            } catch let error as SafetensorsError {
                #expect(error.kind == .gap || error.kind == .offsetsOutOfBounds, "\(error)")
                #expect(error.file == url.path)
            }
        }
    }
}

// MARK: - Shards

@Suite struct HuggingFaceShards {
    /// Writes the fixture's weights as two shards with an index, as save_pretrained does
    /// for large models.
    private func shard(_ directory: URL, index: (_ map: inout [String: String]) -> Void = { _ in }) throws {
        let tensors = try weights(directory)
        let half = tensors.count / 2
        let names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        var map: [String: String] = [:]
        for (i, part) in [Array(tensors[..<half]), Array(tensors[half...])].enumerated() {
            try Safetensors.write(part, metadata: ["format": "pt"], to: directory.appendingPathComponent(names[i]).path)
            for (name, _) in part { map[name] = names[i] }
        }
        index(&map)
        let json = try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": 0], "weight_map": map])
        try json.write(to: directory.appendingPathComponent("model.safetensors.index.json"))
        try FileManager.default.removeItem(at: directory.appendingPathComponent("model.safetensors"))
    }

    @Test func shardedEqualsSingleFile() throws {
        try withScratchDirectory { scratch in
            let directory = try copyFixture("tiny_llama", into: scratch)
            let single = try HFModelDirectory.read(at: directory)
            try shard(directory)
            let sharded = try HFModelDirectory.read(at: directory)
            #expect(sharded.config == single.config)
            #expect(Set(sharded.tensors.keys) == Set(single.tensors.keys))
            for (name, tensor) in single.tensors { #expect(sameValues(sharded.tensors[name], tensor), "\(name)") }
        }
    }

    @Test func indexMustStayInsideTheDirectory() throws {
        try withScratchDirectory { scratch in
            let directory = try copyFixture("tiny_llama", into: scratch)
            try shard(directory) { $0["model.norm.weight"] = "../model-00002-of-00002.safetensors" }
            let error = expectHFError(.invalidIndex) { _ = try HFModelDirectory.read(at: directory) }
            #expect(error?.hint.contains("plain file name") == true)
        }
    }

    @Test func indexMustAgreeWithShards() throws {
        try withScratchDirectory { scratch in
            let directory = try copyFixture("tiny_llama", into: scratch)
            try shard(directory) { map in
                let first = map["model.embed_tokens.weight"]!
                map["model.norm.weight"] = first
            }
            let error = expectHFError(.invalidIndex) { _ = try HFModelDirectory.read(at: directory) }
            #expect(error?.problems.count == 2, "\(error.map { "\($0)" } ?? "")")
        }
    }
}

// MARK: - Export

@Suite struct HuggingFaceWrite {
    @Test(arguments: ["tiny_llama", "tiny_llama_untied", "tiny_llama3"])
    func exportThenImportIsIdentical(name: String) throws {
        try withScratchDirectory { scratch in
            let original = try HFModelDirectory.read(at: fixtureURL(name))
            let out = scratch.appendingPathComponent("export")
            try HFModelDirectory.write(
                config: original.config, tensors: original.tensors, tokenizerJSON: original.tokenizerJSON, to: out)
            let files = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
            #expect(files == ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path) == ["export"])

            let back = try HFModelDirectory.read(at: out)
            #expect(back.config == original.config)
            #expect(back.tokenizerJSON == original.tokenizerJSON)
            #expect(Set(back.tensors.keys) == Set(original.tensors.keys))
            for (parameter, tensor) in original.tensors {
                #expect(sameValues(back.tensors[parameter], tensor), "\(parameter)")
            }

            // Tensors in parameter order, F32, with the metadata transformers looks for.
            let file = try SafetensorsFile(path: out.appendingPathComponent("model.safetensors").path)
            #expect(file.metadata == ["format": "pt"])
            #expect(file.entries.map(\.name) == original.config.parameterShapes.map(\.name))
            #expect(file.entries.allSatisfy { $0.dtype == .f32 })

            // Writing again into the existing directory replaces the files in place.
            try HFModelDirectory.write(config: original.config, tensors: original.tensors, tokenizerJSON: nil, to: out)
            #expect(try HFModelDirectory.read(at: out).config == original.config)
            let again = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
            #expect(again == files, "no temporary files are left behind")
        }
    }

    /// The keys transformers needs to build LlamaForCausalLM, with floats written as floats.
    @Test func configJSONSaysLlama() throws {
        let config = try HFModelDirectory.read(at: fixtureURL("tiny_llama")).config
        let data = try HFModelDirectory.configJSON(config)
        let object = try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["architectures"] as? [String] == ["LlamaForCausalLM"])
        #expect(object["model_type"] as? String == "llama")
        #expect(object["hidden_act"] as? String == "silu")
        #expect(object["attention_bias"] as? Bool == false)
        #expect(object["mlp_bias"] as? Bool == false)
        #expect(object["dtype"] as? String == "float32")
        #expect(object["tie_word_embeddings"] as? Bool == true)
        #expect(object["num_key_value_heads"] as? Int == 2)
        #expect(object["bos_token_id"] as? Int == 0 && object["eos_token_id"] as? Int == 0)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"rope_theta\": 10000.0"))
        #expect(text.contains("\"rms_norm_eps\": 1e-05"))
    }

    /// A llama3-scaled model's rope_parameters are the object transformers 5 wrote for it:
    /// same keys, floats as floats, original_max_position_embeddings an integer.
    @Test func llama3RopeParametersAreTransformers() throws {
        let directory = try fixtureURL("tiny_llama3")
        let config = try HFModelDirectory.read(at: directory).config
        let ours = try #require(JSONSerialization.jsonObject(with: HFModelDirectory.configJSON(config)) as? [String: Any])
        let theirs = try #require(
            JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("config.json")))
                as? [String: Any])
        let rope = try #require(ours["rope_parameters"] as? NSDictionary)
        #expect(rope == theirs["rope_parameters"] as? NSDictionary, "\(rope)")
        let text = String(decoding: try HFModelDirectory.configJSON(config), as: UTF8.self)
        #expect(text.contains("\"factor\": 8.0") && text.contains("\"original_max_position_embeddings\": 64"))
    }

    @Test func refusesTensorsThatDoNotMatch() throws {
        try withScratchDirectory { scratch in
            let original = try HFModelDirectory.read(at: fixtureURL("tiny_llama"))
            let out = scratch.appendingPathComponent("export")
            var tensors = original.tensors
            tensors["model.norm.weight"] = nil
            tensors["extra.weight"] = Tensor.zeros([1])
            let error = expectHFError(.tensorMismatch) {
                try HFModelDirectory.write(config: original.config, tensors: tensors, tokenizerJSON: nil, to: out)
            }
            #expect(error?.problems.count == 2)
            #expect(!FileManager.default.fileExists(atPath: out.path), "nothing is written")

            // A tied model may pass its head when it equals the embedding; it is not stored.
            tensors = original.tensors
            tensors["lm_head.weight"] = original.tensors["model.embed_tokens.weight"]!.copy()
            try HFModelDirectory.write(config: original.config, tensors: tensors, tokenizerJSON: nil, to: out)
            let file = try SafetensorsFile(path: out.appendingPathComponent("model.safetensors").path)
            #expect(file.entry("lm_head.weight") == nil)
            tensors["lm_head.weight"]!.data[0] += 1
            expectHFError(.tensorMismatch) {
                try HFModelDirectory.write(config: original.config, tensors: tensors, tokenizerJSON: nil, to: out)
            }
        }
    }
}

/// Opt-in export for the manual transformers check (not in CI):
///   DISTILL_HF_EXPORT=/tmp/distill-hf-export swift test --filter HuggingFaceExportCheck
///   /tmp/distill-ref/bin/python tools/make_hf_fixture.py --check-export /tmp/distill-hf-export/tiny_llama
/// (`--against .../tiny_llama3` for DIR/tiny_llama3)
/// Writes DIR/tiny_llama, DIR/tiny_llama_untied and DIR/tiny_llama3, each read from the fixture and exported,
/// and DIR/tiny_llama_f16.safetensors (the tied weights as F16).
@Suite struct HuggingFaceExportCheck {
    @Test func exportFixtures() throws {
        guard let dir = ProcessInfo.processInfo.environment["DISTILL_HF_EXPORT"] else { return }
        for name in ["tiny_llama", "tiny_llama_untied", "tiny_llama3"] {
            let model = try HFModelDirectory.read(at: fixtureURL(name))
            try HFModelDirectory.write(
                config: model.config, tensors: model.tensors, tokenizerJSON: model.tokenizerJSON,
                to: URL(fileURLWithPath: dir).appendingPathComponent(name))
        }
        // An F16 file for safetensors.torch to read back.
        let model = try HFModelDirectory.read(at: fixtureURL("tiny_llama"))
        try Safetensors.write(
            model.config.parameterShapes.map { ($0.name, model.tensors[$0.name]!) }, metadata: ["format": "pt"],
            dtype: .f16, to: URL(fileURLWithPath: dir).appendingPathComponent("tiny_llama_f16.safetensors").path)
    }
}
