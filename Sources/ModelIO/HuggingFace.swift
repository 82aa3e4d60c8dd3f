// Hugging Face model directories: config.json + model.safetensors (or a sharded
// model.safetensors.index.json with its shards) + an optional tokenizer.json, as
// `LlamaForCausalLM.save_pretrained` writes them and `from_pretrained` reads them.
//
// Reading accepts exactly the models distill computes like transformers does
// (docs/formats.md, "Hugging Face model directories"): model_type "llama", SiLU, no biases, RoPE unscaled
// or scaled as Llama 3 ("llama3"; LlamaConfig.swift reads both spellings). Any
// other config is refused with every problem listed at once. Tensor names and shapes must
// match `LlamaConfig.parameterShapes`; missing, unexpected and mis-shaped tensors are
// reported together, from the safetensors headers alone, before any tensor is read.
// Weights stored as F16 / BF16 / F64 are converted to Float32. Tied models: lm_head.weight
// may be absent; if present it must equal model.embed_tokens.weight and is dropped.
// Old checkpoints' `rotary_emb.inv_freq` buffers (recomputed from rope_theta) are ignored.
//
// Writing produces a directory transformers 5 loads as LlamaForCausalLM: config.json
// (architectures, model_type, hidden_act, no biases, dtype float32 and LlamaConfig's own
// keys), model.safetensors (F32, metadata {"format": "pt"}), tokenizer.json when given and
// generation_config.json. A new directory appears whole (written beside it, then renamed);
// into an existing directory every file is replaced atomically, config.json last.

import Core
import Formats
import Foundation
import JSON
import NN
import Platform
import TextData

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A JSON value on one line, for messages.
private func compact(_ value: JSONValue) -> String {
    value.serialized().split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        .joined(separator: " ")
}

/// A refused or unreadable Hugging Face model directory.
package struct HFModelError: Error, CustomStringConvertible, Sendable {
    package enum Kind: Sendable, Hashable {
        /// A required file is missing or a file cannot be read or written.
        case io
        /// config.json is not valid JSON or lacks required keys.
        case invalidConfig
        /// A valid config for a model distill does not compute (architecture, activation,
        /// biases, a rope type other than default and llama3) or that fails `LlamaConfig.problems()`.
        case unsupportedConfig
        /// model.safetensors.index.json is malformed or points outside the directory.
        case invalidIndex
        /// Tensor names or shapes differ from the config's parameters.
        case tensorMismatch
        /// tie_word_embeddings is true but lm_head.weight differs from embed_tokens.
        case tiedWeightsDiffer
    }

    package var kind: Kind
    /// The file concerned (or the directory).
    package var file: String
    package var hint: String
    /// One line per problem, when there are several.
    package var problems: [String]

    package init(_ kind: Kind, file: String, hint: String, problems: [String] = []) {
        self.kind = kind
        self.file = file
        self.hint = hint
        self.problems = problems
    }

    package var description: String {
        var text = "\(file): \(hint)"
        let shown = problems.prefix(20)
        for problem in shown { text += "\n  - \(problem)" }
        if problems.count > shown.count { text += "\n  ... and \(problems.count - shown.count) more" }
        return text
    }
}

package enum HFModelDirectory {
    package static let configFile = "config.json"
    package static let weightsFile = "model.safetensors"
    package static let indexFile = "model.safetensors.index.json"
    package static let tokenizerFile = "tokenizer.json"
    package static let generationConfigFile = "generation_config.json"

    // MARK: Reading

    /// Reads a Hugging Face Llama directory. `tensors` holds exactly
    /// `config.parameterShapes` (so no lm_head.weight when embeddings are tied).
    package static func read(at directory: URL) throws -> (
        config: LlamaConfig, tensors: [String: Tensor], tokenizerJSON: Data?
    ) {
        let config = try readConfig(at: directory.appendingPathComponent(configFile))
        let files = try openWeights(in: directory)
        // Where each tensor lives; duplicates across shards are refused.
        var location: [String: (file: SafetensorsFile, entry: SafetensorsEntry)] = [:]
        for file in files {
            for entry in file.entries {
                if let other = location[entry.name] {
                    throw HFModelError(
                        .tensorMismatch, file: file.path,
                        hint: "tensor '\(entry.name)' is also stored in \(other.file.path)")
                }
                location[entry.name] = (file, entry)
            }
        }
        for name in location.keys where name.hasSuffix(".rotary_emb.inv_freq") { location[name] = nil }

        var (problems, hasTiedHead) = config.tensorProblems(location.mapValues(\.entry.shape))
        for (name, _) in config.parameterShapes {
            if let found = location[name], !found.entry.dtype.isReadable {
                problems.append("\(name) is stored as \(found.entry.dtype.rawValue); distill reads F32, F16, BF16, F64")
            }
        }
        if hasTiedHead, let head = location["lm_head.weight"], head.entry.shape != [config.vocabSize, config.hiddenSize] {
            problems.append(
                "lm_head.weight has shape \(head.entry.shape), expected \([config.vocabSize, config.hiddenSize])")
        }
        if !problems.isEmpty {
            throw HFModelError(
                .tensorMismatch, file: directory.path,
                hint:
                    "the weights do not match config.json (\(problems.count) problem\(problems.count == 1 ? "" : "s"))",
                problems: problems)
        }

        // The f32 weights (and a tied head's copy, read to compare) must fit before any is read.
        try MemoryBudget.require(
            weightBytes(config) + (hasTiedHead ? Double(config.vocabSize * config.hiddenSize) * 4 : 0),
            for: "loading its weights in f32 (\(config.parameterCount) parameters)", path: directory.path,
            fix: "use a smaller model")
        var tensors: [String: Tensor] = [:]
        let arena = HugePageArena()  // the weights in load order, on huge pages (HugePageArena)
        for (name, _) in config.parameterShapes {
            let found = location[name]!
            tensors[name] = try found.file.read(name, in: arena)
        }
        if hasTiedHead, let head = location["lm_head.weight"] {
            let embedding = tensors["model.embed_tokens.weight"]!
            let lmHead = try head.file.read("lm_head.weight")
            if let index = (0..<embedding.count).first(where: { embedding.data[$0] != lmHead.data[$0] }) {
                throw HFModelError(
                    .tiedWeightsDiffer, file: head.file.path,
                    hint: "tie_word_embeddings is true but lm_head.weight differs from model.embed_tokens.weight"
                        + " (first at flat index \(index): \(lmHead.data[index]) vs \(embedding.data[index]));"
                        + " set tie_word_embeddings to false in config.json to keep both")
            }
        }

        let tokenizerURL = directory.appendingPathComponent(tokenizerFile)
        var tokenizerJSON: Data?
        if FileManager.default.fileExists(atPath: tokenizerURL.path) {
            do {
                tokenizerJSON = try Data(contentsOf: tokenizerURL)
            } catch {
                throw HFModelError(.io, file: tokenizerURL.path, hint: "cannot read (\(error.localizedDescription))")
            }
        }
        return (config, tensors, tokenizerJSON)
    }

    /// The chat template a directory ships: chat_template.jinja, else tokenizer_config.json's
    /// `chat_template` (a string, or a list of named templates of which "default" is taken).
    package static func chatTemplate(in directory: URL) throws -> String? {
        let jinja = directory.appendingPathComponent("chat_template.jinja").path
        if FileManager.default.fileExists(atPath: jinja) {
            return String(decoding: try readFile(jinja), as: UTF8.self)
        }
        let configPath = directory.appendingPathComponent("tokenizer_config.json").path
        guard FileManager.default.fileExists(atPath: configPath) else { return nil }
        let json: JSONValue
        do { json = try JSONValue.parse(try readFile(configPath)) } catch let e as JSONSyntaxError {
            throw HFModelError(.invalidConfig, file: configPath, hint: "line \(e.line), column \(e.column): \(e.reason)")
        }
        guard case .object(let root) = json else { return nil }
        switch root["chat_template"] {
        case .string(let text)?: return text
        case .array(let named)?:
            for case .object(let entry) in named {
                if case .string("default")? = entry["name"], case .string(let text)? = entry["template"] { return text }
            }
            return nil
        default: return nil
        }
    }

    /// Reads and checks config.json: every reason to refuse it is listed at once.
    package static func readConfig(at url: URL) throws -> LlamaConfig {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw HFModelError(.io, file: url.path, hint: "cannot read config.json (\(error.localizedDescription))")
        }
        let json: JSONValue
        do {
            json = try JSONValue.parse(data)
        } catch {
            throw HFModelError(.invalidConfig, file: url.path, hint: "not valid JSON: \(error)")
        }
        guard case .object(let root) = json else {
            throw HFModelError(.invalidConfig, file: url.path, hint: "expected a JSON object, found \(json.typeName)")
        }
        let required = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"]
        var missing: [String] = []
        for key in required {
            switch root[key] {
            case .int?: break
            case nil, .null?: missing.append("missing key \"\(key)\"")
            case let other?: missing.append("\"\(key)\" must be an integer, found \(other.typeName)")
            }
        }
        if !missing.isEmpty {
            throw HFModelError(.invalidConfig, file: url.path, hint: "config.json is incomplete", problems: missing)
        }

        var problems: [String] = []
        switch root["model_type"] {
        case .string("llama")?: break
        case .string(let other)?:
            problems.append("model_type is \"\(other)\"; distill computes only \"llama\" (LlamaForCausalLM)")
        default: problems.append("model_type must be \"llama\", found \(root["model_type"]?.typeName ?? "nothing")")
        }
        switch root["hidden_act"] {
        case nil, .string("silu")?: break
        case let other?: problems.append("hidden_act is \(compact(other)); distill's MLP is SwiGLU with \"silu\"")
        }
        for key in ["attention_bias", "mlp_bias"] {
            switch root[key] {
            case nil, .null?, .bool(false)?: break
            case let other?: problems.append("\(key) is \(compact(other)); distill's Llama has no biases")
            }
        }
        if case .int(let tp)? = root["pretraining_tp"], tp != 1 {
            problems.append("pretraining_tp is \(tp); only 1 is supported")
        }

        // Rope types other than "default" and "llama3" are refused by the decoder, naming the key.
        let config: LlamaConfig
        do {
            config = try JSONDecoder().decode(LlamaConfig.self, from: data)
        } catch let error as RopeConfigError {
            throw HFModelError(
                .unsupportedConfig, file: url.path, hint: "distill cannot load this model",
                problems: problems + [error.description])
        } catch {
            throw HFModelError(.invalidConfig, file: url.path, hint: "cannot decode as a Llama config: \(error)")
        }
        problems += config.problems()
        if !problems.isEmpty {
            throw HFModelError(
                .unsupportedConfig, file: url.path, hint: "distill cannot load this model", problems: problems)
        }
        return config
    }

    /// The safetensors files of a directory: model.safetensors, else the shards named by
    /// model.safetensors.index.json (each checked to be a plain file name in the directory,
    /// and every tensor of the weight map found in its shard).
    private static func openWeights(in directory: URL) throws -> [SafetensorsFile] {
        let single = directory.appendingPathComponent(weightsFile)
        let index = directory.appendingPathComponent(indexFile)
        if FileManager.default.fileExists(atPath: single.path) {
            return [try SafetensorsFile(path: single.path)]
        }
        guard FileManager.default.fileExists(atPath: index.path) else {
            throw HFModelError(
                .io, file: directory.path,
                hint: "no \(weightsFile) or \(indexFile) (distill reads safetensors weights, not pytorch_model.bin)")
        }
        let json: JSONValue
        do {
            json = try JSONValue.parse(try Data(contentsOf: index))
        } catch {
            throw HFModelError(.invalidIndex, file: index.path, hint: "cannot read or parse: \(error)")
        }
        guard case .object(let root) = json, case .object(let map)? = root["weight_map"] else {
            throw HFModelError(.invalidIndex, file: index.path, hint: "expected an object with a \"weight_map\" object")
        }
        var shardOf: [String: String] = [:]
        var shards: [String] = []
        for (name, value) in map.entries {
            guard case .string(let shard) = value else {
                throw HFModelError(.invalidIndex, file: index.path, hint: "weight_map[\"\(name)\"] is not a file name")
            }
            guard !shard.isEmpty, !shard.contains("/"), !shard.contains("\\"), shard != ".", shard != ".." else {
                throw HFModelError(
                    .invalidIndex, file: index.path,
                    hint: "weight_map[\"\(name)\"] = \"\(shard)\" is not a plain file name in the model directory")
            }
            guard shardOf.updateValue(shard, forKey: name) == nil else {
                throw HFModelError(.invalidIndex, file: index.path, hint: "weight_map lists \"\(name)\" twice")
            }
            if !shards.contains(shard) { shards.append(shard) }
        }
        let files = try shards.map { try SafetensorsFile(path: directory.appendingPathComponent($0).path) }
        var problems: [String] = []
        for file in files {
            let shard = URL(fileURLWithPath: file.path).lastPathComponent
            for entry in file.entries where shardOf[entry.name] != shard {
                problems.append(
                    "\(shard) holds \(entry.name), which weight_map puts in \(shardOf[entry.name] ?? "no shard")")
            }
            for (name, owner) in shardOf where owner == shard && file.entry(name) == nil {
                problems.append("weight_map puts \(name) in \(shard), which does not hold it")
            }
        }
        if !problems.isEmpty {
            throw HFModelError(
                .invalidIndex, file: index.path, hint: "weight_map disagrees with the shards",
                problems: problems.sorted())
        }
        return files
    }

    // MARK: Writing

    /// Writes a directory that transformers loads as LlamaForCausalLM. `tensors` must hold
    /// exactly `config.parameterShapes` (a tied model may also pass an lm_head.weight equal
    /// to the embedding; it is not written). Refused before anything is written when the
    /// config has problems or the tensors do not match.
    package static func write(config: LlamaConfig, tensors: [String: Tensor], tokenizerJSON: Data?, to directory: URL)
        throws
    {
        let problems = config.problems()
        if !problems.isEmpty {
            throw HFModelError(.unsupportedConfig, file: directory.path, hint: "invalid config", problems: problems)
        }
        if config.layerRepeat != 1 {
            throw HFModelError(
                .unsupportedConfig, file: directory.path,
                hint:
                    "layer_repeat is \(config.layerRepeat): transformers' Llama has no layer sharing; train with layer_repeat 1 to export, or keep the distill checkpoint"
            )
        }
        var (mismatches, tiedHead) = config.tensorProblems(tensors.mapValues(\.shape))
        if tiedHead, let head = tensors["lm_head.weight"], let embedding = tensors["model.embed_tokens.weight"],
            head.shape != embedding.shape || head.values != embedding.values
        {
            mismatches.append("lm_head.weight differs from model.embed_tokens.weight although tie_word_embeddings is true")
        }
        if !mismatches.isEmpty {
            throw HFModelError(
                .tensorMismatch, file: directory.path, hint: "the tensors do not match the config", problems: mismatches
            )
        }
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent(indexFile).path) {
            throw HFModelError(
                .io, file: directory.path,
                hint:
                    "the directory holds a sharded checkpoint (\(indexFile)) that would shadow the new weights; export into an empty directory"
            )
        }

        let configData = try configJSON(config)
        let generationData = generationConfigJSON(config)
        let parent = directory.deletingLastPathComponent()
        let fresh = !FileManager.default.fileExists(atPath: directory.path)
        // A new directory is assembled beside its destination and renamed into place; staging
        // folders of exports killed earlier are removed first.
        if fresh { _ = try? sweepOrphanedTemporaries(in: parent) }
        let staging =
            fresh
            ? parent.appendingPathComponent(temporaryName(for: directory.lastPathComponent)) : directory
        do {
            try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        } catch {
            throw HFModelError(.io, file: staging.path, hint: "cannot create directory (\(error.localizedDescription))")
        }
        do {
            let ordered = config.parameterShapes.map { (name: $0.name, tensor: tensors[$0.name]!) }
            try Safetensors.write(
                ordered, metadata: ["format": "pt"], dtype: .f32, to: staging.appendingPathComponent(weightsFile).path)
            if let tokenizerJSON {
                try writeData(tokenizerJSON, to: staging.appendingPathComponent(tokenizerFile))
            }
            try writeData(generationData, to: staging.appendingPathComponent(generationConfigFile))
            try writeData(configData, to: staging.appendingPathComponent(configFile))
            if fresh {
                guard rename(staging.path, directory.path) == 0 else {
                    throw HFModelError(
                        .io, file: directory.path,
                        hint: "cannot rename \(staging.path) into place (\(String(cString: strerror(errno))))")
                }
                let fd = open(parent.path, O_RDONLY | O_CLOEXEC)
                if fd >= 0 {
                    _ = fsync(fd)
                    close(fd)
                }
            }
        } catch {
            if fresh { try? FileManager.default.removeItem(at: staging) }
            if let error = error as? SafetensorsError {
                throw HFModelError(.io, file: error.file, hint: error.hint)
            }
            throw error
        }
    }

    /// config.json as transformers writes it for LlamaForCausalLM: the architecture keys,
    /// then LlamaConfig's own keys, sorted, two-space indented.
    package static func configJSON(_ config: LlamaConfig) throws -> Data {
        // Sorted at every level, so an export is byte-for-byte the same from run to run (the
        // encoder's own key order of nested objects such as rope_parameters is not).
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let encoded = try encoder.encode(config)
        guard case .object(let own) = try JSONValue.parse(encoded) else {
            preconditionFailure("LlamaConfig encodes as a JSON object")
        }
        var entries: [(key: String, value: JSONValue)] = [
            ("architectures", .array([.string("LlamaForCausalLM")])),
            ("model_type", .string("llama")),
            ("hidden_act", .string("silu")),
            ("attention_bias", .bool(false)),
            ("attention_dropout", .double(0)),
            ("mlp_bias", .bool(false)),
            ("pretraining_tp", .int(1)),
            ("dtype", .string("float32")),
            ("use_cache", .bool(true)),
        ]
        entries += own.entries.filter { entry in !entries.contains { $0.key == entry.key } }.map {
            (key: $0.key, value: floatKeys.contains($0.key) ? asDouble($0.value) : $0.value)
        }
        entries.sort { $0.key < $1.key }
        return Data(JSONValue.object(JSONValue.JSONObject(entries)).serialized().utf8)
    }

    /// Keys Python reads as floats; JSONEncoder writes 10000.0 as 10000.
    private static let floatKeys: Set<String> = [
        "rms_norm_eps", "rope_theta", "initializer_range", "rope_parameters", "factor", "low_freq_factor",
        "high_freq_factor",
    ]

    private static func asDouble(_ value: JSONValue) -> JSONValue {
        switch value {
        case .int(let i): return .double(Double(i))
        case .object(let object):
            return .object(
                JSONValue.JSONObject(
                    object.entries.map {
                        (key: $0.key, value: floatKeys.contains($0.key) ? asDouble($0.value) : $0.value)
                    }))
        default: return value
        }
    }

    private static func generationConfigJSON(_ config: LlamaConfig) -> Data {
        var entries: [(key: String, value: JSONValue)] = [("_from_model_config", .bool(true))]
        if let bos = config.bosTokenId { entries.append(("bos_token_id", .int(bos))) }
        if let eos = config.eosTokenId { entries.append(("eos_token_id", .int(eos))) }
        return Data(JSONValue.object(JSONValue.JSONObject(entries)).serialized().utf8)
    }

    private static func writeData(_ data: Data, to url: URL) throws {
        do {
            try Safetensors.writeAtomically(to: url.path) { sink in
                try data.withUnsafeBytes { try sink($0) }
            }
        } catch let error as SafetensorsError {
            throw HFModelError(.io, file: url.path, hint: error.hint)
        }
    }
}

extension HFModelError: UserFacingError {
    package var errorKind: ErrorKind { kind == .io ? .io : .badData }
}
