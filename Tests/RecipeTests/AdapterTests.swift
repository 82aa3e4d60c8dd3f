// Adapters as files: adapter-only checkpoints that refuse a foreign base, merging, and the
// PEFT directory form checked against peft's own output (tools/make_peft_fixture.py:
// a rank-4 rsLoRA adapter on the tiny_llama fixture, with peft + transformers' loss and
// last-position logits in reference.json).

import Core
import Formats
import Foundation
import ModelIO
import NN
import Pipeline
import Platform
import Testing
import Training

@testable import Recipe

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("FormatsTests/Fixtures")
private let baseHF = fixtures.appendingPathComponent("tiny_llama").path
private let peftDir = fixtures.appendingPathComponent("tiny_llama_peft").path

private struct PEFTReference: Decodable {
    var text: String
    var loss: Double
    var base_loss: Double
    var last_logits: [Double]
}

private func reference() throws -> PEFTReference {
    try JSONDecoder().decode(PEFTReference.self, from: Data(contentsOf: URL(fileURLWithPath: peftDir + "/reference.json")))
}

/// Loss and last-position logits of `loaded` on `text`, as `distill eval` computes them.
private func score(_ checkpoint: String, base: String? = nil, text: String, scratch: Scratch) throws -> (loss: Double, logits: [Float]) {
    let file = scratch.write("text-\(UUID().uuidString).txt", text)
    let r = try evaluateFile(checkpoint: checkpoint, base: base, path: file, jsonl: false, seqLen: nil, batches: 1, lastLogits: true)
    return (r.loss, r.lastLogits!)
}

private func maxDifference(_ a: [Float], _ b: [Double]) -> Double {
    zip(a, b).map { abs(Double($0) - $1) }.max()!
}

/// A whole-model checkpoint of a small random Llama, and a LoRA adapter on it with a
/// non-zero B (a fresh adapter would change nothing).
private func modelAndAdapter(_ scratch: Scratch, lora: LoRAConfig) throws -> (base: String, adapter: String) {
    var rng = RNG(seed: 11)
    let config = LlamaConfig(
        vocabSize: 300, hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2,
        tieWordEmbeddings: false, maxPositionEmbeddings: 64, initializerRange: 0.2)
    let model = LlamaModel(config: config, rng: &rng)
    let tokenizer = try String(contentsOfFile: baseHF + "/tokenizer.json", encoding: .utf8)
    let base = scratch.file("base.h5"), adapter = scratch.file("runs/adapter.h5")
    try writeCheckpoint(
        CheckpointContents(config: config, parameters: model.namedParameters().map { ($0.0, $0.1) }, tokenizer: tokenizer, threads: 1),
        to: URL(fileURLWithPath: base))
    for (_, t) in model.addLoRA(lora, rng: &rng) { for i in 0..<t.count { t.data[i] = Float.random(in: -0.3...0.3, using: &rng) } }
    try FileManager.default.createDirectory(atPath: scratch.file("runs"), withIntermediateDirectories: true)
    try writeCheckpoint(
        adapterContents(model, lora: lora, basePath: base, adapterPath: adapter, threads: 1), to: URL(fileURLWithPath: adapter))
    return (base, adapter)
}

@Suite struct AdapterTests {
    @Test func aPEFTAdapterImportsWithPEFTsLogits() throws {
        let ref = try reference()
        let scratch = Scratch()
        let adapter = scratch.file("imported.h5")
        try importPEFT(directory: peftDir, base: baseHF, to: adapter)
        let loaded = try loadModel(from: adapter)
        let expected = LoRAConfig(rank: 4, alpha: 8, useRSLoRA: true, targetModules: ["q_proj", "v_proj", "up_proj", "down_proj"])
        #expect(loaded.adapter?.lora == (try expected.resolved(layers: 2)))
        #expect(loaded.basePath == URL(fileURLWithPath: baseHF).standardizedFileURL.path)
        let got = try score(adapter, text: ref.text, scratch: scratch)
        #expect(abs(got.loss - ref.loss) < 1e-4)
        #expect(maxDifference(got.logits, ref.last_logits) < 1e-4)
        // The adapter matters: without it the loss is the base's.
        loaded.model.setAdapters(enabled: false)
        #expect(abs(got.loss - ref.base_loss) > 1e-2)
    }

    @Test func exportedPEFTReadsBackTensorForTensor() throws {
        let scratch = Scratch()
        let adapter = scratch.file("imported.h5")
        try importPEFT(directory: peftDir, base: baseHF, to: adapter)
        let out = scratch.file("peft")
        let base = try exportPEFT(try loadModel(from: adapter), to: out)
        #expect(base == URL(fileURLWithPath: baseHF).standardizedFileURL.path, "an HF base is referenced, not copied")
        let original = try PEFTAdapter.read(at: URL(fileURLWithPath: peftDir), config: try loadModel(from: baseHF).model.config)
        let again = try PEFTAdapter.read(at: URL(fileURLWithPath: out), config: try loadModel(from: baseHF).model.config)
        #expect(again.lora == original.lora)
        #expect(again.tensors.map(\.name) == original.tensors.map(\.name))
        for (a, b) in zip(again.tensors, original.tensors) { #expect(a.tensor.values == b.tensor.values, "\(a.name)") }
        #expect(again.basePath.map { URL(fileURLWithPath: $0, relativeTo: URL(fileURLWithPath: out + "/")).standardizedFileURL.path } == base)
    }

    @Test func aDistillBaseIsExportedBesideTheAdapter() throws {
        let scratch = Scratch()
        let lora = LoRAConfig(rank: 2, alpha: 4, targetModules: ["k_proj", "o_proj", "gate_proj"])
        let (_, adapter) = try modelAndAdapter(scratch, lora: lora)
        let out = scratch.file("peft")
        let base = try exportPEFT(try loadModel(from: adapter), to: out)
        #expect(base == out + "/base")
        let config = try String(contentsOfFile: out + "/adapter_config.json", encoding: .utf8)
        #expect(config.contains("\"base_model_name_or_path\":\"base\"") || config.contains("\"base_model_name_or_path\": \"base\""))
        // The exported base plus the exported adapter compute what distill computed.
        let reimported = scratch.file("again.h5")
        try importPEFT(directory: out, base: base, to: reimported)
        let text = "The keeper wrote in her log every evening."
        let a = try score(adapter, text: text, scratch: scratch), b = try score(reimported, text: text, scratch: scratch)
        #expect(abs(a.loss - b.loss) < 1e-6)
        #expect(maxDifference(a.logits, b.logits.map(Double.init)) < 1e-5)
    }

    @Test func mergedLogitsEqualAdapterLogits() throws {
        let scratch = Scratch()
        let lora = LoRAConfig(rank: 4, alpha: 8, useRSLoRA: true, targetModules: LoRAConfig.moduleNames)
        let (base, adapter) = try modelAndAdapter(scratch, lora: lora)
        let merged = scratch.file("merged.h5")
        try mergeAdapter(try loadModel(from: adapter), to: merged)
        #expect(try loadModel(from: merged).adapter == nil)
        let text = "In the spring the fog came early and stayed late."
        let a = try score(adapter, text: text, scratch: scratch), m = try score(merged, text: text, scratch: scratch)
        let b = try score(base, text: text, scratch: scratch)
        #expect(maxDifference(a.logits, m.logits.map(Double.init)) < 1e-5)
        #expect(maxDifference(a.logits, b.logits.map(Double.init)) > 1e-2, "the adapter must change the logits")
        // `export hf` of an adapter writes the merged model.
        let hf = scratch.file("hf")
        try exportHF(try loadModel(from: adapter), to: hf)
        let h = try score(hf, text: text, scratch: scratch)
        #expect(maxDifference(a.logits, h.logits.map(Double.init)) < 1e-5)
    }

    @Test func anAdapterRefusesAnotherBase() throws {
        let scratch = Scratch()
        let (base, adapter) = try modelAndAdapter(scratch, lora: LoRAConfig())
        // Same config, one weight changed: the checksum differs.
        let contents = try readCheckpoint(at: URL(fileURLWithPath: base))
        contents.parameters[3].tensor.data[0] += 1e-3
        let other = scratch.file("other.h5")
        try writeCheckpoint(contents, to: URL(fileURLWithPath: other))
        #expect {
            try loadModel(from: adapter, base: other)
        } throws: { error in
            guard let e = error as? CheckpointError else { return false }
            return e.kind == .wrongBase && e.description.contains("checksum") && e.description.contains(other)
                && e.category == .data
        }
        // A model of another shape.
        #expect {
            try loadModel(from: adapter, base: baseHF)
        } throws: { ($0 as? CheckpointError)?.kind == .wrongBase }
        // The recorded base, moved away: the error says to name it.
        try FileManager.default.moveItem(atPath: base, toPath: scratch.file("moved.h5"))
        #expect {
            try loadModel(from: adapter)
        } throws: { error in
            guard let e = error as? UserError else { return false }
            return e.exitCode == 74 && e.description.contains("--base") && e.description.contains(adapter)
        }
        #expect(try loadModel(from: adapter, base: scratch.file("moved.h5")).adapter != nil)
    }

    @Test func theBasePathIsRecordedRelativeToTheAdapter() throws {
        let scratch = Scratch()
        let (_, adapter) = try modelAndAdapter(scratch, lora: LoRAConfig())
        let contents = try readCheckpoint(at: URL(fileURLWithPath: adapter))
        #expect(contents.metadata[AdapterMetadata.basePath] == "../base.h5")
        // The whole folder moves: the adapter still finds its base.
        let moved = scratch.file("elsewhere")
        try FileManager.default.createDirectory(atPath: moved, withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: scratch.file("runs"), toPath: moved + "/runs")
        try FileManager.default.moveItem(atPath: scratch.file("base.h5"), toPath: moved + "/base.h5")
        #expect(try loadModel(from: moved + "/runs/adapter.h5").basePath == moved + "/base.h5")
    }

    @Test func anAdapterCheckpointKeepsItsTrainingState() throws {
        let scratch = Scratch()
        var rng = RNG(seed: 3)
        let config = LlamaConfig(
            vocabSize: 50, hiddenSize: 16, intermediateSize: 24, numHiddenLayers: 1, numAttentionHeads: 2, numKeyValueHeads: 1,
            tieWordEmbeddings: true, maxPositionEmbeddings: 32)
        let model = LlamaModel(config: config, rng: &rng)
        let lora = LoRAConfig(rank: 2, alpha: 5, dropout: 0.1, targetModules: ["v_proj"])
        let adapters = model.addLoRA(lora, rng: &rng)
        let moments = ["m": adapters.map { (name: $0.0, tensor: Tensor.randn($0.1.shape, rng: &rng)) }]
        let path = scratch.file("a.h5")
        try writeCheckpoint(
            adapterContents(
                model, lora: lora, basePath: nil, adapterPath: path, threads: 2, optimizer: OptimizerState(kind: "adamw", step: 7, moments: moments),
                step: 7, tokensSeen: 700, rng: ["data": rng], dataCursor: "{}"),
            to: URL(fileURLWithPath: path))
        let back = try readCheckpoint(at: URL(fileURLWithPath: path))
        let info = try AdapterInfo(back, path: path)
        #expect(info == AdapterInfo(lora: try lora.resolved(layers: 1), baseChecksum: modelChecksum(model), basePath: nil))
        #expect(back.step == 7 && back.tokensSeen == 700 && back.optimizer?.step == 7)
        #expect(back.parameters.map(\.name) == adapters.map(\.0))
        #expect(back.optimizer?.moments["m"]?.map(\.tensor.values) == moments["m"]!.map(\.tensor.values))
        // No recorded base and none given: the error says what to do.
        #expect {
            try loadModel(from: path)
        } throws: { ($0 as? UserError)?.description.contains("--base") == true }
    }

    @Test func theBaseChecksumSeesEveryWeightAndOnlyTheBase() throws {
        var rng = RNG(seed: 5)
        let config = LlamaConfig(
            vocabSize: 40, hiddenSize: 16, intermediateSize: 24, numHiddenLayers: 2, numAttentionHeads: 2, numKeyValueHeads: 2,
            tieWordEmbeddings: true, maxPositionEmbeddings: 32)
        let model = LlamaModel(config: config, rng: &rng)
        let before = modelChecksum(model)
        #expect(before.hasPrefix("xxh64:") && before.count == 22)
        for (_, t) in model.addLoRA(LoRAConfig(), rng: &rng) { t.data[0] = 1 }
        #expect(modelChecksum(model) == before, "adapters are not part of the base")
        for (_, p) in model.namedParameters() {
            let saved = p.data[p.count - 1]
            p.data[p.count - 1] = saved + 1
            #expect(modelChecksum(model) != before)
            p.data[p.count - 1] = saved
        }
    }

    @Test(arguments: [
        ("\"use_dora\": true", "use_dora"),
        ("\"rank_pattern\": {\"q_proj\": 8}", "rank_pattern"),
        ("\"layers_pattern\": \"blocks\"", "layers_pattern"),
        ("\"exclude_modules\": [\"q_proj\"]", "exclude_modules"),
        ("\"modules_to_save\": [\"lm_head\"]", "modules_to_save"),
        ("\"bias\": \"all\"", "bias"),
        ("\"peft_type\": \"IA3\"", "IA3"),
    ])
    func unsupportedPEFTSettingsAreRefusedByName(_ setting: String, _ named: String) throws {
        let scratch = Scratch()
        let dir = scratch.file("peft")
        try FileManager.default.copyItem(atPath: peftDir, toPath: dir)
        var config = try String(contentsOfFile: dir + "/adapter_config.json", encoding: .utf8)
        let key = String(setting.prefix { $0 != ":" })
        // Replace the key's line (peft writes one key per line) or add it.
        var lines = config.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if let i = lines.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix(key) }) {
            lines[i] = "  " + setting + (lines[i].hasSuffix(",") ? "," : "")
        } else {
            lines.insert("  " + setting + ",", at: 1)
        }
        config = lines.joined(separator: "\n")
        try config.write(toFile: dir + "/adapter_config.json", atomically: true, encoding: .utf8)
        #expect {
            try importPEFT(directory: dir, base: baseHF, to: scratch.file("a.h5"))
        } throws: { error in
            guard let e = error as? HFModelError else { return false }
            return e.kind == .unsupportedConfig && e.description.contains(named)
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.file("a.h5")))
    }

    @Test func aPEFTAdapterForAnotherModelIsRefusedWithEveryProblem() throws {
        let scratch = Scratch()
        let (base, _) = try modelAndAdapter(scratch, lora: LoRAConfig())  // hidden 32, MLP 48: not the fixture's 64
        #expect {
            try importPEFT(directory: peftDir, base: base, to: scratch.file("a.h5"))
        } throws: { error in
            guard let e = error as? HFModelError else { return false }
            return e.kind == .tensorMismatch && e.problems.contains { $0.contains("up_proj.lora_B.weight has shape [64, 4], expected [48, 4]") }
        }
    }

    @Test func mergeAndPEFTExportStagesRunInARecipe() throws {
        let scratch = Scratch()
        let lora = LoRAConfig(rank: 2, alpha: 4, targetModules: ["q_proj", "down_proj"])
        let (_, adapter) = try modelAndAdapter(scratch, lora: lora)
        let recipe = try scratch.load(
            """
            {"name": "adapters", "run_dir": "run", "stages": [
              {"type": "merge", "checkpoint": "\(adapter)"},
              {"type": "export", "format": "peft", "checkpoint": "\(adapter)", "output": "peft"},
              {"type": "export", "checkpoint": "@merge", "output": "hf"}
            ]}
            """)
        _ = try Runner(recipe: recipe, registry: .builtIn()).runLocked { _ in }
        let text = "Two boats in the harbour and one far out."
        let a = try score(adapter, text: text, scratch: scratch)
        let merged = try score(scratch.file("run/merged.h5"), text: text, scratch: scratch)
        let hf = try score(scratch.file("run/hf"), text: text, scratch: scratch)
        #expect(maxDifference(a.logits, merged.logits.map(Double.init)) < 1e-5)
        #expect(maxDifference(a.logits, hf.logits.map(Double.init)) < 1e-5)
        let peft = try PEFTAdapter.read(at: URL(fileURLWithPath: scratch.file("run/peft")), config: try loadModel(from: adapter).model.config)
        #expect(peft.lora == (try lora.resolved(layers: 2)))
        // A whole model is not an adapter: the stage says so.
        let wrong = try scratch.load(
            """
            {"name": "wrong", "run_dir": "run2", "stages": [{"type": "merge", "checkpoint": "\(scratch.file("run/merged.h5"))"}]}
            """)
        #expect {
            _ = try Runner(recipe: wrong, registry: .builtIn()).runLocked { _ in }
        } throws: { "\($0)".contains("is a whole model, not an adapter") }
    }
}

// MARK: - Adapters on modules chosen by pattern

private let peftPatternDir = fixtures.appendingPathComponent("tiny_llama_peft_pattern").path
/// The fixture's regex (tools/make_peft_fixture.py PATTERN): layer 0's down_proj, layer 1's q and v.
private let fixturePattern = #".*\.0\.mlp\.down_proj|.*\.1\.self_attn\.(q|v)_proj"#
private let patternModules = ["model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]

private struct PatternReference: Decodable {
    var text: String
    var loss: Double
    var last_logits: [Double]
    var adapted_modules: [String]
}

/// A copy of the pattern fixture in `scratch` with adapter_config.json's `key` set to `json`.
private func patternFixture(_ scratch: Scratch, setting edits: [String: String], dropping: (String) -> Bool = { _ in false }) throws -> String {
    let dir = scratch.file("peft-\(UUID().uuidString)")
    try FileManager.default.copyItem(atPath: peftPatternDir, toPath: dir)
    var config = try String(contentsOfFile: dir + "/adapter_config.json", encoding: .utf8)
    var lines = config.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    for (key, json) in edits {
        let i = try #require(lines.firstIndex { $0.trimmingCharacters(in: .whitespaces).hasPrefix("\"\(key)\"") })
        lines[i] = "  \"\(key)\": \(json)" + (lines[i].hasSuffix(",") ? "," : "")
    }
    config = lines.joined(separator: "\n")
    try config.write(toFile: dir + "/adapter_config.json", atomically: true, encoding: .utf8)
    let tensors = try SafetensorsFile(path: dir + "/adapter_model.safetensors").readAll()
    try Safetensors.write(
        tensors.filter { !dropping($0.key) }.sorted { $0.key < $1.key }.map { (name: $0.key, tensor: $0.value) },
        metadata: ["format": "pt"], to: dir + "/adapter_model.safetensors")
    return dir
}

extension AdapterTests {
    @Test func aRegexPEFTAdapterOnSomeLayersImportsWithPEFTsLogits() throws {
        let ref = try JSONDecoder().decode(
            PatternReference.self, from: Data(contentsOf: URL(fileURLWithPath: peftPatternDir + "/reference.json")))
        #expect(ref.adapted_modules == patternModules)
        let scratch = Scratch()
        let adapter = scratch.file("imported.h5")
        try importPEFT(directory: peftPatternDir, base: baseHF, to: adapter)
        let loaded = try loadModel(from: adapter)
        #expect(loaded.adapter?.lora.adaptedModules == ref.adapted_modules && loaded.adapter?.lora.targetPattern == fixturePattern)
        #expect(loaded.model.adaptedModulePaths() == ref.adapted_modules)
        let got = try score(adapter, text: ref.text, scratch: scratch)
        #expect(abs(got.loss - ref.loss) < 1e-4)
        #expect(maxDifference(got.logits, ref.last_logits) < 1e-4)

        // The same modules chosen by a list of paths and tails (peft's suffix rule) read the same.
        let listed = try patternFixture(
            scratch, setting: ["target_modules": #"["model.layers.0.mlp.down_proj", "layers.1.self_attn.q_proj", "1.self_attn.v_proj"]"#])
        let again = try PEFTAdapter.read(at: URL(fileURLWithPath: listed), config: loaded.model.config)
        #expect(again.lora.adaptedModules == patternModules)
        // A choice the tensors do not match is refused, naming both sides.
        let other = try patternFixture(scratch, setting: ["target_modules": #"["q_proj", "v_proj"]"#, "layers_to_transform": "[1]"])
        #expect {
            try PEFTAdapter.read(at: URL(fileURLWithPath: other), config: loaded.model.config)
        } throws: { error in
            guard let e = error as? HFModelError, e.kind == .tensorMismatch else { return false }
            return e.problems.contains { $0.contains("model.layers.0.mlp.down_proj has LoRA tensors, but target_modules does not select it") }
                && !e.problems.contains { $0.contains("layers.1.self_attn.q_proj") }
        }
        // layers_to_transform with tensors for those layers only.
        let layer1 = try patternFixture(
            scratch, setting: ["target_modules": #"["q_proj", "v_proj"]"#, "layers_to_transform": "1"],
            dropping: { $0.contains("layers.0.") })
        #expect(try PEFTAdapter.read(at: URL(fileURLWithPath: layer1), config: loaded.model.config).lora.adaptedModules == Array(patternModules.dropFirst()))
    }

    @Test func aPatternAdapterRoundTripsMergesAndExports() throws {
        let scratch = Scratch()
        let lora = LoRAConfig(rank: 2, alpha: 4, targetPattern: fixturePattern)
        let (_, adapter) = try modelAndAdapter(scratch, lora: lora)
        // The checkpoint records the regex as written and the modules it chose.
        let contents = try readCheckpoint(at: URL(fileURLWithPath: adapter))
        #expect(contents.parameters.count == 6)
        let json = try #require(contents.metadata[AdapterMetadata.lora])
        let fields = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(fields["target_modules"] as? String == fixturePattern && fields["adapted_modules"] as? [String] == patternModules)
        let loaded = try loadModel(from: adapter)
        #expect(loaded.adapter?.lora == LoRAConfig(rank: 2, alpha: 4, targetPattern: fixturePattern, adaptedModules: patternModules))
        #expect(loaded.model.adaptedModulePaths() == patternModules)
        #expect(loaded.model.adapterParameters().map(\.0) == contents.parameters.map(\.name))

        // Merged logits are the adapter's.
        let text = "The fog came early and stayed late."
        let merged = scratch.file("merged.h5")
        try mergeAdapter(loaded, to: merged)
        let a = try score(adapter, text: text, scratch: scratch), m = try score(merged, text: text, scratch: scratch)
        #expect(maxDifference(a.logits, m.logits.map(Double.init)) < 1e-5)

        // PEFT export names exactly these modules (full paths: the layers differ), and reads back.
        let out = scratch.file("peft")
        let base = try exportPEFT(try loadModel(from: adapter), to: out)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/adapter_config.json")))
        #expect((config as? [String: Any])?["target_modules"] as? [String] == patternModules)
        let reimported = scratch.file("again.h5")
        try importPEFT(directory: out, base: base, to: reimported)
        #expect(try loadModel(from: reimported).adapter?.lora.adaptedModules == patternModules)
        let b = try score(reimported, text: text, scratch: scratch)
        #expect(maxDifference(a.logits, b.logits.map(Double.init)) < 1e-5)

        // GGUF: only the adapted modules' tensors.
        let gguf = scratch.file("a.gguf")
        try exportGGUFAdapter(try loadModel(from: adapter), dtype: .f32, to: gguf)
        #expect(
            try GGUFFile(path: gguf).tensors.map(\.name).sorted() == [
                "blk.0.ffn_down.weight.lora_a", "blk.0.ffn_down.weight.lora_b", "blk.1.attn_q.weight.lora_a",
                "blk.1.attn_q.weight.lora_b", "blk.1.attn_v.weight.lora_a", "blk.1.attn_v.weight.lora_b",
            ])
    }

    @Test func anAdapterFromBeforeResolvedModulesStillLoads() throws {
        let scratch = Scratch()
        let lora = LoRAConfig(rank: 2, alpha: 4, targetModules: ["v_proj", "up_proj"])
        let (_, adapter) = try modelAndAdapter(scratch, lora: lora)
        let text = "Two boats in the harbour."
        let before = try score(adapter, text: text, scratch: scratch)
        // The metadata as older distill wrote it: no adapted_modules.
        var contents = try readCheckpoint(at: URL(fileURLWithPath: adapter))
        contents.metadata[AdapterMetadata.lora] =
            #"{"lora_alpha":4.0,"lora_dropout":0.0,"r":2,"target_modules":["v_proj","up_proj"],"use_rslora":false}"#
        let old = scratch.file("runs/old.h5")
        try writeCheckpoint(contents, to: URL(fileURLWithPath: old))
        let loaded = try loadModel(from: old)
        #expect(loaded.adapter?.lora == (try lora.resolved(layers: 2)))
        let after = try score(old, text: text, scratch: scratch)
        #expect(maxDifference(after.logits, before.logits.map(Double.init)) == 0)
    }
}

extension AdapterTests {
    @Test func anSFTStageTrainsTheModulesItsPatternChooses() throws {
        let scratch = Scratch()
        var rows = ""
        for i in 0..<8 { rows += #"{"prompt": "What is \#(i) + 1?", "completion": " \#(i + 1)."}"# + "\n" }
        scratch.write("rows.jsonl", rows)
        let text = String(repeating: "What is one and one? Two. The keeper wrote in her log. ", count: 20)
        // A 2-layer base (from the first recipe's pretrain stage), then sft with `targets`.
        func recipe(_ name: String, _ targets: String) throws -> Recipe {
            let pretrain = """
                {"type": "pretrain", "data": {"text": "\(text)"},
                 "tokenizer": {"train": {"vocab_size": 280, "special_tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]}},
                 "model": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                           "num_key_value_heads": 1, "max_position_embeddings": 32},
                 "training": {"steps": 1, "batch_size": 2, "seq_len": 16, "eval_every": 0, "checkpoint_every": 0}},
                """
            return try scratch.load(
                """
                {"name": "\(name)", "run_dir": "\(name)", "stages": [\(name == "ok" ? pretrain : "")
                  {"type": "sft", "model": "\(name == "ok" ? "@pretrain" : scratch.file("ok/base.h5"))", "data": {"train": "rows.jsonl", "validation_fraction": 0},
                   "lora": {"r": 2, "alpha": 4, "target_modules": \(targets)},
                   "training": {"steps": 2, "batch_size": 2, "seq_len": 16, "lr": 0.01, "eval_every": 0, "checkpoint_every": 0}}
                ]}
                """)
        }
        let pattern = #"".*\\.0\\.mlp\\.down_proj|.*\\.1\\.self_attn\\.(q|v)_proj""#
        _ = try Runner(recipe: try recipe("ok", pattern), registry: .builtIn()).runLocked { _ in }
        let trained = try loadModel(from: scratch.file("ok/sft.h5"))
        #expect(trained.adapter?.lora.targetPattern == fixturePattern && trained.adapter?.lora.adaptedModules == patternModules)
        #expect(trained.model.adaptedModulePaths() == patternModules)
        // Every B left zero at the start moved: each chosen module trained.
        for (name, t) in trained.model.adapterParameters() where name.hasSuffix("lora_B.weight") {
            #expect(t.values.contains { $0 != 0 }, "\(name) did not train")
        }
        // A module the model lacks (2 layers) passes validation but stops the stage before training.
        #expect {
            _ = try Runner(recipe: try recipe("deep", #"["layers.5.mlp.down_proj"]"#), registry: .builtIn()).runLocked { _ in }
        } throws: { error in
            guard let e = error as? RunError else { return false }
            return e.exitCode == 2 && e.description.contains("lora.target_modules")
                && e.description.contains("\"layers.5.mlp.down_proj\" matches no module of the model (2 layers)")
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.file("deep/sft.h5")))
    }
}
