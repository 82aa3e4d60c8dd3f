import Foundation
import JSON
import Platform

// Reading and writing Hugging Face `tokenizer.json`.
//
// Supported (anything else throws `TokenizerError.unsupported` naming the JSON path):
// - model: `BPE` with `vocab`, `merges` ("a b" strings or ["a", "b"] pairs), `unk_token`,
//   `fuse_unk`, `ignore_merges`; `dropout` must be null/0, `byte_fallback` false, and no
//   `continuing_subword_prefix` / `end_of_word_suffix`.
// - normalizer: null, `NFC`, or a `Sequence` of those.
// - pre_tokenizer: `ByteLevel` (`add_prefix_space`, `use_regex`), optionally preceded inside a
//   `Sequence` by `Split` (regex or string pattern, any behavior, `invert`) and `Digits`.
// - post_processor: null, `ByteLevel` (no effect on ids), `TemplateProcessing` (single
//   template), `RobertaProcessing` / `BertProcessing` (cls + sequence + sep), or a `Sequence`.
// - decoder: `ByteLevel` or null.
// - added_tokens: all flags (`single_word`, `lstrip`, `rstrip`, `normalized`, `special`).
// - truncation / padding: kept and written back; never applied by `encode`.

private let familyHint = "distill reads byte-level BPE tokenizers (GPT-2 / Llama-3 / Qwen2 family)"

extension ByteLevelBPETokenizer {
    /// Loads a tokenizer.json file.
    package init(contentsOf url: URL) throws {
        if let problem = notARegularFile(url.path) { throw TokenizerError.io(path: url.path, reason: problem) }
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw TokenizerError.io(path: url.path, reason: "cannot read tokenizer file (\(error.localizedDescription))")
        }
        do {
            try self.init(jsonData: data)
        } catch let error as TokenizerError {
            // Prefix the file so the message names both the file and the JSON path.
            throw TokenizerError.invalid(path: url.path, reason: error.description)
        }
    }

    /// Parses the bytes of a tokenizer.json document.
    package init<Bytes: Collection>(jsonData: Bytes) throws where Bytes.Element == UInt8 {
        let json: JSONValue
        do { json = try JSONValue.parse(jsonData) } catch let e as JSONSyntaxError {
            throw TokenizerError.malformedJSON(line: e.line, column: e.column, reason: e.reason)
        }
        try self.init(json: json)
    }

    /// Builds a tokenizer from a parsed tokenizer.json document.
    package init(json: JSONValue) throws {
        do { try self.init(parsing: json) } catch let e as JSONShapeError {
            throw TokenizerError.invalid(path: e.path, reason: e.reason)
        }
    }

    private init(parsing json: JSONValue) throws {
        let root = JSONNode(json, path: "")
        guard case .object = json else {
            throw TokenizerError.invalid(path: "(root)", reason: "expected an object, found \(json.typeName)")
        }
        let model = try Self.parseModel(root["model"])
        let added = try Self.parseAddedTokens(root["added_tokens"])
        let normalization = try Self.parseNormalizer(root["normalizer"])
        let steps = try Self.parsePreTokenizer(root["pre_tokenizer"])
        let template = try Self.parsePostProcessor(root["post_processor"])
        let decoder = try Self.parseDecoder(root["decoder"])
        var components = Components()
        if root.has("version") { components.version = root["version"].value }
        components.truncation = root["truncation"].value
        components.padding = root["padding"].value
        components.normalizer = root["normalizer"].value
        components.preTokenizer = root["pre_tokenizer"].value
        components.postProcessor = root["post_processor"].value
        components.decoder = root["decoder"].value
        self.init(
            model: model, addedTokens: added, normalization: normalization,
            preTokenizer: PreTokenizer(steps: steps), decoderKind: decoder, template: template,
            components: components)
    }

    // MARK: Writing

    /// The tokenizer as a tokenizer.json document, in HF's key order; vocab ordered by id.
    package func jsonValue() -> JSONValue {
        let vocab = JSONValue.JSONObject(model.vocabByID.map { (key: $0.0, value: JSONValue.int(Int($0.1))) })
        let merges = JSONValue.array(model.merges.map { .array([.string($0.0), .string($0.1)]) })
        let modelJSON = JSONValue.obj([
            "type": .string("BPE"),
            "dropout": .null,
            "unk_token": model.unknownToken.map { .string($0) } ?? .null,
            "continuing_subword_prefix": .null,
            "end_of_word_suffix": .null,
            "fuse_unk": .bool(model.fuseUnknown),
            "byte_fallback": .bool(false),
            "ignore_merges": .bool(model.ignoreMerges),
            "vocab": .object(vocab),
            "merges": merges,
        ])
        let added = JSONValue.array(
            addedTokens.map { t in
                .obj([
                    "id": .int(Int(t.id)),
                    "content": .string(t.content),
                    "single_word": .bool(t.singleWord),
                    "lstrip": .bool(t.lstrip),
                    "rstrip": .bool(t.rstrip),
                    "normalized": .bool(t.normalized),
                    "special": .bool(t.special),
                ])
            })
        return .obj([
            "version": components.version,
            "truncation": components.truncation,
            "padding": components.padding,
            "added_tokens": added,
            "normalizer": components.normalizer,
            "pre_tokenizer": components.preTokenizer,
            "post_processor": components.postProcessor,
            "decoder": components.decoder,
            "model": modelJSON,
        ])
    }

    /// UTF-8 bytes of the tokenizer.json document.
    package func jsonData() -> Data { Data(jsonValue().serialized().utf8) }

    /// Writes tokenizer.json atomically (temporary file in the same directory, then rename).
    package func write(to url: URL) throws {
        do {
            try writeAtomically(jsonData(), to: url)
        } catch {
            throw TokenizerError.io(path: url.path, reason: "cannot write tokenizer file (\(error.problem))")
        }
    }

    // MARK: Parsing components

    static func unsupported(_ typeNode: JSONNode, _ what: String? = nil) -> TokenizerError {
        let found: String
        if let what {
            found = what
        } else if case .string(let s) = typeNode.value {
            found = s.debugDescription
        } else {
            found = typeNode.value.typeName
        }
        return .unsupported(path: typeNode.path, found: found, hint: familyHint)
    }

    static func parseModel(_ node: JSONNode) throws -> BPEModel {
        guard case .object = node.value else {
            throw TokenizerError.invalid(path: node.path, reason: "expected an object, found \(node.value.typeName)")
        }
        let type = try node.typeTag() ?? (node.has("merges") ? "BPE" : nil)
        guard type == "BPE" else { throw unsupported(node["type"]) }
        if !node["dropout"].isNull, try node["dropout"].double() != 0 {
            throw unsupported(node["dropout"], "BPE dropout")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = try node[key].optionalString(), !s.isEmpty {
                throw unsupported(node[key], "\(s.debugDescription)")
            }
        }
        if try node["byte_fallback"].bool(default: false) {
            throw unsupported(node["byte_fallback"], "true")
        }
        var vocab: [(String, Int32)] = []
        let entries = try node["vocab"].object()
        vocab.reserveCapacity(entries.count)
        for (key, value) in entries {
            let id = try value.int()
            guard id >= 0, id <= Int(Int32.max) else {
                throw TokenizerError.invalid(path: value.path, reason: "id \(id) out of range")
            }
            vocab.append((key, Int32(id)))
        }
        var merges: [(String, String)] = []
        let mergeNodes = node["merges"].isNull ? [] : try node["merges"].array()
        merges.reserveCapacity(mergeNodes.count)
        for m in mergeNodes {
            switch m.value {
            case .string(let line):
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw TokenizerError.invalid(path: m.path, reason: "expected \"a b\", found \(line.debugDescription)")
                }
                merges.append((String(parts[0]), String(parts[1])))
            case .array(let pair):
                guard pair.count == 2, case .string(let a) = pair[0], case .string(let b) = pair[1] else {
                    throw TokenizerError.invalid(path: m.path, reason: "expected a pair of strings")
                }
                merges.append((a, b))
            default:
                throw TokenizerError.invalid(path: m.path, reason: "expected a string or a pair, found \(m.value.typeName)")
            }
        }
        return try BPEModel(
            vocab: vocab, merges: merges, unknownToken: try node["unk_token"].optionalString(),
            fuseUnknown: try node["fuse_unk"].bool(default: false),
            ignoreMerges: try node["ignore_merges"].bool(default: false), path: node.path)
    }

    static func parseAddedTokens(_ node: JSONNode) throws -> [AddedToken] {
        if node.isNull { return [] }
        var seen = Set<Int32>()
        return try node.array().map { t in
            let id = try t["id"].int()
            guard id >= 0, id < 16_000_000 else { throw TokenizerError.invalid(path: t["id"].path, reason: "id \(id) out of range") }
            guard seen.insert(Int32(id)).inserted else {
                throw TokenizerError.invalid(path: t["id"].path, reason: "duplicate added token id \(id)")
            }
            let special = try t["special"].bool(default: false)
            return AddedToken(
                id: Int32(id), content: try t["content"].string(),
                singleWord: try t["single_word"].bool(default: false),
                lstrip: try t["lstrip"].bool(default: false), rstrip: try t["rstrip"].bool(default: false),
                normalized: try t["normalized"].bool(default: !special), special: special)
        }
    }

    static func parseNormalizer(_ node: JSONNode) throws -> Normalization {
        if node.isNull { return .none }
        switch try node.typeTag() {
        case "NFC": return .nfc
        case "Sequence":
            var result = Normalization.none
            for child in try node["normalizers"].array() where try parseNormalizer(child) == .nfc {
                result = .nfc
            }
            return result
        default:
            throw unsupported(node["type"])
        }
    }

    static func parsePreTokenizer(_ node: JSONNode) throws -> [PreTokenizerStep] {
        if node.isNull { throw unsupported(node, "null (no ByteLevel pre-tokenizer)") }
        var steps: [PreTokenizerStep] = []
        var byteLevelPath: String?
        func collect(_ n: JSONNode) throws {
            if let p = byteLevelPath {
                throw TokenizerError.unsupported(
                    path: n.path, found: "a pre-tokenizer after ByteLevel (\(p))", hint: "ByteLevel must come last")
            }
            switch try n.typeTag() {
            case "Sequence":
                for child in try n["pretokenizers"].array() { try collect(child) }
            case "ByteLevel":
                steps.append(
                    .byteLevel(
                        addPrefixSpace: try n["add_prefix_space"].bool(default: true),
                        useRegex: try n["use_regex"].bool(default: true)))
                byteLevelPath = n.path
            case "Split":
                let patternNode = n["pattern"]
                let pattern: SplitPattern
                if patternNode.has("Regex") {
                    let source = try patternNode["Regex"].string()
                    do {
                        pattern = try SplitPattern.forRegex(source)
                    } catch {
                        throw TokenizerError.invalid(path: patternNode["Regex"].path, reason: "invalid regex: \(error)")
                    }
                } else if patternNode.has("String") {
                    pattern = .literal(Array(try patternNode["String"].string().utf8))
                } else {
                    throw TokenizerError.invalid(path: patternNode.path, reason: "expected {\"Regex\": ...} or {\"String\": ...}")
                }
                let behaviorName = try n["behavior"].string()
                guard let behavior = SplitBehavior.allCases.first(where: { $0.rawValue.lowercased() == behaviorName.lowercased() })
                else {
                    throw TokenizerError.invalid(path: n["behavior"].path, reason: "unknown behavior \(behaviorName.debugDescription)")
                }
                steps.append(.split(pattern, behavior, invert: try n["invert"].bool(default: false)))
            case "Digits":
                steps.append(
                    .split(.digits(individual: try n["individual_digits"].bool(default: false)), .isolated, invert: false))
            default:
                throw unsupported(n["type"])
            }
        }
        try collect(node)
        guard byteLevelPath != nil else {
            throw TokenizerError.unsupported(path: node.path, found: "a pipeline without ByteLevel", hint: familyHint)
        }
        return steps
    }

    static func parsePostProcessor(_ node: JSONNode) throws -> [TemplateItem] {
        if node.isNull { return [.sequence] }
        switch try node.typeTag() {
        case "ByteLevel":
            return [.sequence]
        case "Sequence":
            var template: [TemplateItem] = [.sequence]
            for child in try node["processors"].array() {
                // Each processor wraps the output of the previous one.
                let outer = try parsePostProcessor(child)
                template = outer.flatMap { $0 == .sequence ? template : [$0] }
            }
            return template
        case "TemplateProcessing":
            var specials: [String: [Int32]] = [:]
            let specialNode = node["special_tokens"]
            if !specialNode.isNull {
                for (name, entry) in try specialNode.object() {
                    specials[name] = try entry["ids"].array().map { Int32(try $0.int()) }
                }
            }
            var template: [TemplateItem] = []
            for item in try node["single"].array() {
                if item.has("SpecialToken") {
                    let name = try item["SpecialToken"]["id"].string()
                    guard let ids = specials[name] else {
                        throw TokenizerError.invalid(
                            path: item["SpecialToken"]["id"].path,
                            reason: "\(name.debugDescription) is not listed in post_processor.special_tokens")
                    }
                    template.append(.ids(ids))
                } else if item.has("Sequence") {
                    template.append(.sequence)
                } else {
                    throw TokenizerError.invalid(path: item.path, reason: "expected SpecialToken or Sequence")
                }
            }
            guard template.filter({ $0 == .sequence }).count == 1 else {
                throw TokenizerError.invalid(path: node["single"].path, reason: "the single template must contain the sequence once")
            }
            return template
        case "RobertaProcessing", "BertProcessing":
            func id(_ key: String) throws -> Int32 {
                let pair = try node[key].array()
                guard pair.count == 2 else { throw TokenizerError.invalid(path: node[key].path, reason: "expected [token, id]") }
                return Int32(try pair[1].int())
            }
            return [.ids([try id("cls")]), .sequence, .ids([try id("sep")])]
        default:
            throw unsupported(node["type"])
        }
    }

    static func parseDecoder(_ node: JSONNode) throws -> DecoderKind {
        if node.isNull { return .none }
        switch try node.typeTag() {
        case "ByteLevel": return .byteLevel
        default: throw unsupported(node["type"])
        }
    }
}
