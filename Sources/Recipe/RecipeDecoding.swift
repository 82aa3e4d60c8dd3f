// From a JSON tree to a resolved `Recipe`, in two passes that both log problems instead of
// throwing: pass 1 reads each object on its own (keys, types, ranges, rules inside one object);
// pass 2 checks what spans stages (names, references, outputs), fills defaults that depend on
// other stages, makes paths absolute and checks that input files exist.

import Foundation
import JSON
import NN
import Platform
import TextData
import Training

private let namePattern = "[A-Za-z0-9_.-]+"


private func isValidName(_ s: String) -> Bool {
    !s.isEmpty && s != "." && s != ".."
        && s.unicodeScalars.allSatisfy {
            ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)))
                || "_.-".unicodeScalars.contains($0)
        }
}

/// Stage names for a raw `stages` array: the explicit `name` when given, else the type for the
/// first unnamed stage of that type, then `<type>_2`, `<type>_3`, ... A default name never
/// depends on other stages' explicit names; a collision is reported as a duplicate. Overrides
/// address stages by these names before the recipe is validated, so this works on the raw tree.
package func stageNames(_ stages: [JSONValue]) -> [String] {
    func field(_ v: JSONValue, _ key: String) -> String? {
        if case .object(let o) = v, case .string(let s)? = o[key] { return s }
        return nil
    }
    var unnamedOfType: [String: Int] = [:]
    return stages.map { stage in
        if let explicit = field(stage, "name") { return explicit }
        let type = field(stage, "type") ?? "stage"
        let n = unnamedOfType[type, default: 0] + 1
        unnamedOfType[type] = n
        return n == 1 ? type : "\(type)_\(n)"
    }
}

/// One stage after pass 1, with what pass 2 needs to know about how it was written.
private struct ReadStage {
    var stage: Stage
    /// Position in the recipe's `stages` array.
    var index: Int
    var path: String
    /// Keys present (non-null) in the stage object.
    var given: Set<String>
}

extension Recipe {
    /// Reads and resolves `root`, logging every problem. The result is meaningful only when the
    /// log stays empty. Relative paths resolve against `baseDirectory`.
    static func read(_ root: JSONValue, baseDirectory: String, checkFiles: Bool, log: IssueLog) -> Recipe {
        let r = ObjectReader<CodingKeys>(root, path: "", log: log)
        var name = "recipe"
        if let s = r.string(.name) {
            if isValidName(s) {
                name = s
            } else {
                log.add(.rule("must match \(namePattern), got \(JSONValue.string(s).canonical)"), at: r.path(.name))
            }
        } else if r.value(.name) == nil {
            r.missing(.name)
        }
        var recipe = Recipe(name: name, runDir: "Checkpoints/\(name)", stages: [])
        if let dir = r.string(.runDir) {
            if dir.isEmpty { log.add(.rule("must not be empty"), at: r.path(.runDir)) } else { recipe.runDir = dir }
        }
        if let seed = r.int(.seed, .atLeast(0)) { recipe.seed = seed }
        recipe.threads = r.int(.threads, .atLeast(1))

        var read: [ReadStage] = []
        var names: [String] = []
        switch r.value(.stages) {
        case nil: r.missing(.stages, hint: "list the stages to run, e.g. [{\"type\": \"pretrain\", ...}]")
        case .array(let items)?:
            if items.isEmpty { log.add(.rule("must list at least one stage"), at: "stages") }
            names = stageNames(items)
            for (i, item) in items.enumerated() {
                if let s = readStage(item, index: i, defaultName: names[i], recipeSeed: recipe.seed, log: log) {
                    read.append(s)
                }
            }
        case let other?: r.wrongType(.stages, "an array of stages", other)
        }
        recipe.runDir = absolute(recipe.runDir, base: baseDirectory)
        recipe.stages = link(
            read, names: names, runDir: recipe.runDir, base: baseDirectory, checkFiles: checkFiles, log: log)
        return recipe
    }
}

// MARK: - Pass 1: one object at a time

private func readStage(_ v: JSONValue, index: Int, defaultName: String, recipeSeed: Int, log: IssueLog) -> ReadStage? {
    let path = "stages[\(index)]"
    guard case .object(let o) = v else {
        log.add(.wrongType(expected: "a stage object", got: v.quoted), at: path)
        return nil
    }
    let given = Set(o.entries.filter { if case .null = $0.value { return false } else { return true } }.map(\.key))
    let typePath = JSONPath.child(path, "type")
    guard let typeValue = o["type"], typeValue != .null else {
        log.add(
            .missing(hint: "one of " + StageType.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")),
            at: typePath)
        return nil
    }
    guard case .string(let typeName) = typeValue else {
        log.add(.wrongType(expected: "a string", got: typeValue.quoted), at: typePath)
        return nil
    }
    guard let type = StageType(rawValue: typeName) else {
        let available = StageType.allCases.map(\.rawValue)
        if StageType.planned.contains(typeName) {
            log.add(
                .rule(
                    "stage type \"\(typeName)\" is not available in this version (available: \(available.joined(separator: ", ")))"
                ), at: typePath)
        } else {
            log.add(
                .invalidValue(
                    got: typeName, allowed: available, suggestion: suggestion(for: typeName, among: available)),
                at: typePath)
        }
        return nil
    }
    let stage: Stage
    switch type {
    case .pretrain: stage = .pretrain(readPretrain(v, path: path, name: defaultName, log: log))
    case .eval: stage = .eval(readEval(v, path: path, name: defaultName, log: log))
    case .generate: stage = .generate(readGenerate(v, path: path, name: defaultName, seed: recipeSeed, log: log))
    case .export: stage = .export(readExport(v, path: path, name: defaultName, log: log))
    case .merge: stage = .merge(readMerge(v, path: path, name: defaultName, log: log))
    case .sample: stage = .sample(readSample(v, path: path, name: defaultName, seed: recipeSeed, log: log))
    case .sft: stage = .sft(readSFT(v, path: path, name: defaultName, log: log))
    case .dpo: stage = .dpo(readDPO(v, path: path, name: defaultName, log: log))
    case .kd: stage = .kd(readKD(v, path: path, name: defaultName, log: log))
    case .sweep: stage = .sweep(readSweep(v, path: path, name: defaultName, seed: recipeSeed, log: log))
    }
    return ReadStage(stage: stage, index: index, path: path, given: given)
}

/// The keys every stage shares: `name` (validated in pass 2) and `output`.
func readCommon<K: CodingKey & CaseIterable & RawRepresentable<String>>(
    _ r: ObjectReader<K>, name nameKey: K, output outputKey: K, into s: inout some StageSettings
) {
    if let n = r.string(nameKey) { s.name = n }
    if let out = r.string(outputKey) {
        if out.isEmpty || out.hasPrefix("/") || out.hasPrefix("~") || out.split(separator: "/").contains("..") {
            r.log.add(
                .rule("must be a relative path inside the run directory, got \(JSONValue.string(out).canonical)"),
                at: r.path(outputKey))
        } else {
            s.output = out
        }
    }
}

private func readPretrain(_ v: JSONValue, path: String, name: String, log: IssueLog) -> PretrainStage {
    let r = ObjectReader<PretrainStage.CodingKeys>(
        v, path: path, log: log, alsoAllowed: ["type"],
        nested: [
            ("training", keys(TrainingSettings.CodingKeys.self)), ("model", keys(ModelSettings.CodingKeys.self)),
            ("data", keys(DataSettings.CodingKeys.self)), ("tokenizer", keys(TokenizerSettings.CodingKeys.self)),
        ])
    var s = PretrainStage()
    s.name = name
    readCommon(r, name: .name, output: .output, into: &s)
    if let data = r.object(.data, { readData($0, path: $1, requireSource: true, log: log) }) {
        s.data = data
    } else {
        r.missing(.data, hint: "give {\"train\": [files]} or {\"text\": \"...\"}")
    }
    s.initFrom =
        r.object(.initFrom) { v, p in
            let ir = ObjectReader<InitSettings.CodingKeys>(v, path: p, log: log)
            guard let text = ir.string(.checkpoint) else {
                if !ir.has(.checkpoint) { ir.missing(.checkpoint, hint: "\"@stage\" or a checkpoint file") }
                return nil
            }
            return InitSettings(checkpoint: CheckpointSource(text))
        } ?? nil
    let tokenizer = r.object(.tokenizer) { readTokenizer($0, path: $1, log: log) }
    let model = r.object(.model) { readModel($0, path: $1, log: log) }
    if r.has(.initFrom) {
        // The checkpoint fixes architecture and vocabulary; a second description could only disagree.
        for key in [PretrainStage.CodingKeys.model, .tokenizer] where r.has(key) {
            log.add(
                .notAllowed(reason: "comes from the init checkpoint; remove \"\(key.rawValue)\" or \"init\""),
                at: r.path(key), atKey: true)
        }
        s.model = nil
        s.tokenizer = nil
    } else {
        s.model = model ?? ModelSettings()
        s.tokenizer = tokenizer ?? TokenizerSettings()
    }
    if let training = r.object(.training, { readTraining($0, path: $1, log: log) }) {
        s.training = training
        if let model = s.model, training.seqLen > model.maxPositionEmbeddings {
            log.add(
                .outOfRange(
                    allowed: "<= model.max_position_embeddings (\(model.maxPositionEmbeddings))",
                    got: String(training.seqLen)),
                at: JSONPath.child(r.path(.training), "seq_len"))
        }
    } else {
        r.missing(.training, hint: "at least {\"steps\": N}")
    }
    return s
}

func readData(_ v: JSONValue, path: String, requireSource: Bool, log: IssueLog) -> DataSettings {
    let r = ObjectReader<DataSettings.CodingKeys>(v, path: path, log: log)
    var d = DataSettings()
    if let files = r.strings(.train, acceptSingle: true) {
        if files.isEmpty { log.add(.rule("must list at least one file"), at: r.path(.train)) }
        for (i, f) in files.enumerated() where f.isEmpty {
            log.add(.rule("must not be empty"), at: JSONPath.index(r.path(.train), i))
        }
        d.train = files
    }
    d.text = r.string(.text)
    if r.has(.train) && r.has(.text) {
        log.add(.rule("give either \"train\" files or inline \"text\", not both"), at: path)
    } else if requireSource && r.isValid && !r.has(.train) && !r.has(.text) {
        r.missing(.train, hint: "list the text files, or give inline \"text\"")
    }
    r.read(.format, into: &d.format)
    r.read(.textField, into: &d.textField)
    r.read(.validationFraction, into: &d.validationFraction, .closed(0, 0.5))
    return d
}

func readTokenizer(_ v: JSONValue, path: String, log: IssueLog) -> TokenizerSettings {
    let r = ObjectReader<TokenizerSettings.CodingKeys>(
        v, path: path, log: log, nested: [("train", keys(TokenizerTraining.CodingKeys.self))])
    if r.has(.path) && r.has(.train) {
        log.add(.rule("give either \"path\" (an existing tokenizer.json) or \"train\", not both"), at: path)
    }
    if let p = r.string(.path) { return TokenizerSettings(path: p) }
    var t = TokenizerTraining()
    if let v = r.value(.train) {
        let tr = ObjectReader<TokenizerTraining.CodingKeys>(v, path: r.path(.train), log: log)
        tr.read(.specialTokens, into: &t.specialTokens)
        let minimum = 256 + t.specialTokens.count
        tr.read(.vocabSize, into: &t.vocabSize, .atLeast(Double(minimum)))
        if !tr.has(.vocabSize), t.vocabSize < minimum { t.vocabSize = minimum }
        tr.read(.style, into: &t.style)
    }
    return TokenizerSettings(train: t)
}

func readModel(_ v: JSONValue, path: String, log: IssueLog) -> ModelSettings {
    let r = ObjectReader<ModelSettings.CodingKeys>(
        v, path: path, log: log,
        notAllowed: [
            "vocab_size":
                "vocab_size comes from the tokenizer (tokenizer.train.vocab_size or the tokenizer file); remove it"
        ])
    var m = ModelSettings()
    r.read(.hiddenSize, into: &m.hiddenSize, .atLeast(1))
    r.read(.intermediateSize, into: &m.intermediateSize, .atLeast(1))
    r.read(.numHiddenLayers, into: &m.numHiddenLayers, .atLeast(1))
    r.read(.numAttentionHeads, into: &m.numAttentionHeads, .atLeast(1))
    m.numKeyValueHeads = m.numAttentionHeads
    r.read(.numKeyValueHeads, into: &m.numKeyValueHeads, .atLeast(1))
    if m.numAttentionHeads % m.numKeyValueHeads != 0 {
        log.add(
            .rule(
                "num_attention_heads (\(m.numAttentionHeads)) must be a multiple of num_key_value_heads (\(m.numKeyValueHeads))"
            ),
            at: r.path(r.has(.numKeyValueHeads) ? .numKeyValueHeads : .numAttentionHeads))
    }
    if let d = r.int(.headDim, .atLeast(2)) {
        m.headDim = d
        if d % 2 != 0 {
            log.add(.rule("must be even (rotary embeddings rotate pairs), got \(d)"), at: r.path(.headDim))
        }
    } else if !r.has(.headDim) {
        m.headDim = m.hiddenSize / m.numAttentionHeads
        if m.hiddenSize % m.numAttentionHeads != 0 || m.headDim % 2 != 0 {
            log.add(
                .rule(
                    "hidden_size / num_attention_heads = \(m.hiddenSize) / \(m.numAttentionHeads) is not an even integer; set head_dim"
                ),
                at: r.path(.hiddenSize))
        }
    }
    r.read(.rmsNormEps, into: &m.rmsNormEps, .positive)
    r.read(.ropeTheta, into: &m.ropeTheta, .positive)
    r.read(.tieWordEmbeddings, into: &m.tieWordEmbeddings)
    r.read(.maxPositionEmbeddings, into: &m.maxPositionEmbeddings, .atLeast(1))
    r.read(.initializerRange, into: &m.initializerRange, .positive)
    r.read(.layerRepeat, into: &m.layerRepeat, .atLeast(1))
    return m
}

/// A `training` object. Pretraining (and the sweep) needs `steps` and takes no `epochs`;
/// fine-tuning takes `steps` or `epochs`. Unset keys keep the family's defaults
/// (`TrainingSettings.pretraining(steps:)`, `.fineTuning`).
func readTraining(_ v: JSONValue, path: String, log: IssueLog, fineTuning: Bool = false) -> TrainingSettings {
    let r = ObjectReader<TrainingSettings.CodingKeys>(v, path: path, log: log)
    let steps = r.int(.steps, .atLeast(1))
    var t: TrainingSettings
    if fineTuning {
        t = .fineTuning
        t.steps = steps
        r.read(.epochs, into: &t.epochs, .positive)
        if r.has(.steps) && r.has(.epochs) { log.add(.rule("give either \"steps\" or \"epochs\", not both"), at: path) }
    } else {
        if steps == nil && !r.has(.steps) { r.missing(.steps) }
        t = .pretraining(steps: steps ?? 1)
        if r.has(.epochs) {
            log.add(.notAllowed(reason: "pretraining runs for training.steps; epochs is for sft, dpo and kd"), at: r.path(.epochs), atKey: true)
        }
    }
    r.read(.batchSize, into: &t.batchSize, .atLeast(1))
    r.read(.seqLen, into: &t.seqLen, .atLeast(fineTuning ? 2 : 1))
    r.read(.gradAccum, into: &t.gradAccum, .atLeast(1))
    r.read(.lr, into: &t.lr, .positive)
    r.read(.minLRRatio, into: &t.minLRRatio, .closed(0, 1))
    if let w = r.int(.warmupSteps, .atLeast(0)) {
        if let steps = t.steps, w >= steps {
            log.add(.outOfRange(allowed: "< steps (\(steps))", got: String(w)), at: r.path(.warmupSteps))
        } else {
            t.warmupSteps = w
        }
    }
    r.read(.schedule, into: &t.schedule)
    r.read(.weightDecay, into: &t.weightDecay, .atLeast(0))
    r.read(.noDecay, into: &t.noDecay)
    r.read(.beta1, into: &t.beta1, .halfOpen(0, 1))
    r.read(.beta2, into: &t.beta2, .halfOpen(0, 1))
    r.read(.eps, into: &t.eps, .positive)
    r.read(.gradClip, into: &t.gradClip, .atLeast(0))
    r.read(.evalEvery, into: &t.evalEvery, .atLeast(0))
    r.read(.evalBatches, into: &t.evalBatches, .atLeast(1))
    r.read(.checkpointEvery, into: &t.checkpointEvery, .atLeast(0))
    r.read(.logEvery, into: &t.logEvery, .atLeast(1))
    return t
}

private func readEval(_ v: JSONValue, path: String, name: String, log: IssueLog) -> EvalStage {
    let r = ObjectReader<EvalStage.CodingKeys>(
        v, path: path, log: log, alsoAllowed: ["type"], nested: [("data", keys(DataSettings.CodingKeys.self))])
    var s = EvalStage()
    s.name = name
    readCommon(r, name: .name, output: .output, into: &s)
    if let c = r.string(.checkpoint) { s.checkpoint = CheckpointSource(c) }
    if let d = r.object(.data, { readData($0, path: $1, requireSource: true, log: log) }) { s.data = d }
    r.read(.split, into: &s.split)
    r.read(.batches, into: &s.batches, .atLeast(1))
    r.read(.seqLen, into: &s.seqLen, .atLeast(1))
    return s
}

private func readGenerate(_ v: JSONValue, path: String, name: String, seed: Int, log: IssueLog) -> GenerateStage {
    let r = ObjectReader<GenerateStage.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"])
    var s = GenerateStage()
    s.name = name
    s.seed = seed
    readCommon(r, name: .name, output: .output, into: &s)
    if let c = r.string(.checkpoint) { s.checkpoint = CheckpointSource(c) }
    if let prompts = r.strings(.prompts, acceptSingle: true) {
        if prompts.isEmpty { log.add(.rule("must list at least one prompt"), at: r.path(.prompts)) }
        s.prompts = prompts
    } else if !r.has(.prompts) {
        r.missing(.prompts, hint: "e.g. [\"Once upon a time\"]")
    }
    r.read(.maxTokens, into: &s.maxTokens, .atLeast(1))
    r.read(.temperature, into: &s.temperature, .atLeast(0))
    r.read(.topK, into: &s.topK, .atLeast(0))
    r.read(.topP, into: &s.topP, .leftOpen(0, 1))
    r.read(.seed, into: &s.seed, .atLeast(0))
    if let stop = r.strings(.stop, acceptSingle: true) { s.stop = stop }
    return s
}

private func readExport(_ v: JSONValue, path: String, name: String, log: IssueLog) -> ExportStage {
    let r = ObjectReader<ExportStage.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"])
    var s = ExportStage()
    s.name = name
    readCommon(r, name: .name, output: .output, into: &s)
    if let c = r.string(.checkpoint) { s.checkpoint = CheckpointSource(c) }
    if let f = r.string(.format), ExportFormat(rawValue: f) == nil, ExportFormat.planned.contains(f) {
        let available = ExportFormat.allCases.map(\.rawValue).joined(separator: ", ")
        log.add(.rule("export format \"\(f)\" is not available in this version (available: \(available))"), at: r.path(.format))
    } else {
        r.read(.format, into: &s.format)
    }
    return s
}

private func readMerge(_ v: JSONValue, path: String, name: String, log: IssueLog) -> MergeStage {
    let r = ObjectReader<MergeStage.CodingKeys>(v, path: path, log: log, alsoAllowed: ["type"])
    var s = MergeStage()
    s.name = name
    readCommon(r, name: .name, output: .output, into: &s)
    if let c = r.string(.checkpoint) { s.checkpoint = CheckpointSource(c) }
    if let b = r.string(.base) { s.base = CheckpointSource(b) }
    return s
}

// MARK: - Pass 2: across stages

/// `path` made absolute against `base` (with `~` expanded and `.`/`..` removed).
func absolute(_ path: String, base: String) -> String {
    let expanded = (path as NSString).expandingTildeInPath
    let url =
        expanded.hasPrefix("/")
        ? URL(fileURLWithPath: expanded)
        : URL(fileURLWithPath: base, isDirectory: true).appendingPathComponent(expanded)
    return url.standardizedFileURL.path
}

/// `names` are the names of all stages as written, including those that could not be read, so
/// a reference to a later or broken stage is reported as such.
private func link(
    _ stages: [ReadStage], names allNames: [String], runDir: String, base: String, checkFiles: Bool, log: IssueLog
) -> [Stage] {
    var out: [Stage] = []
    var firstByName: [String: Int] = [:]
    var writerOfOutput: [String: String] = [:]

    func checkFile(_ path: String, at jsonPath: String) -> String {
        let abs = absolute(path, base: base)
        if checkFiles && !FileManager.default.fileExists(atPath: abs) { log.add(.fileNotFound(abs), at: jsonPath) }
        return abs
    }

    /// Resolves a checkpoint source of the stage at `index`: defaults to the latest earlier
    /// checkpoint-producing stage when not given; checks references; makes files absolute.
    /// Returns nil (after logging) when the source is unusable.
    func source(_ src: CheckpointSource, given: Bool, index: Int, at jsonPath: String) -> CheckpointSource? {
        if !given {
            guard let producer = out.last(where: \.producesCheckpoint) else {
                log.add(
                    .missing(hint: "no earlier stage produces a checkpoint; name a checkpoint file or \"@stage\""),
                    at: jsonPath)
                return nil
            }
            return .stage(producer.name)
        }
        switch src {
        case .file(let path):
            if path.isEmpty {
                log.add(.rule("must not be empty"), at: jsonPath)
                return nil
            }
            return .file(checkFile(path, at: jsonPath))
        case .stage(let name):
            if let earlier = out.first(where: { $0.name == name }) {
                if earlier.producesCheckpoint { return src }
                log.add(
                    .rule("stage \"\(name)\" (\(earlier.type.rawValue)) does not produce a checkpoint"), at: jsonPath)
            } else if allNames[..<index].contains(name) {
                // That stage could not be read; its own problems are reported.
            } else if allNames[index...].contains(name) {
                log.add(
                    .rule("\"@\(name)\" is not an earlier stage; stages run in order and may only read earlier ones"),
                    at: jsonPath)
            } else {
                let hint =
                    suggestion(for: name, among: Array(allNames[..<index])).map { "; did you mean \"@\($0)\"?" } ?? ""
                log.add(.rule("\"@\(name)\" does not name an earlier stage\(hint)"), at: jsonPath)
            }
            return nil
        }
    }

    for read in stages {
        var stage = read.stage
        let i = read.index
        let name = stage.name
        let namePath = JSONPath.child(read.path, "name")
        if !isValidName(name) {
            log.add(.rule("must match \(namePattern), got \(JSONValue.string(name).canonical)"), at: namePath)
        } else if let first = firstByName[name] {
            log.add(
                .rule("duplicate stage name \"\(name)\" (also stages[\(first)]); give each stage a unique \"name\""),
                at: namePath)
        } else {
            firstByName[name] = i
        }
        let outputPath = JSONPath.child(read.path, "output")
        let output = absolute(stage.output, base: runDir)
        if let other = writerOfOutput[output] {
            log.add(
                .rule(
                    "stage \"\(other)\" writes \(JSONValue.string(stage.output).canonical) too; give one of them another \"output\""
                ), at: outputPath)
        }
        writerOfOutput[output] = name
        let ckPath = JSONPath.child(read.path, "checkpoint")
        let linker = StageLinker(
            path: read.path, given: read.given, file: checkFile, source: { source($0, given: $1, index: i, at: $2) })

        switch stage {
        case .pretrain(var s):
            s.output = output
            s.data.train = s.data.train.enumerated().map {
                checkFile($1, at: JSONPath.index(JSONPath.child(read.path, "data.train"), $0))
            }
            if let p = s.tokenizer?.path {
                s.tokenizer?.path = checkFile(p, at: JSONPath.child(read.path, "tokenizer.path"))
            }
            if let initFrom = s.initFrom,
                let resolved = source(
                    initFrom.checkpoint, given: true, index: i, at: JSONPath.child(read.path, "init.checkpoint"))
            {
                s.initFrom?.checkpoint = resolved
            }
            stage = .pretrain(s)
        case .eval(var s):
            s.output = output
            let checkpoint = source(s.checkpoint, given: read.given.contains("checkpoint"), index: i, at: ckPath)
            s.checkpoint = checkpoint ?? s.checkpoint
            var pretrain: PretrainStage?
            if case .stage(let n)? = checkpoint, case .pretrain(let p)? = out.first(where: { $0.name == n }) {
                pretrain = p
            }
            if read.given.contains("data") {
                s.data.train = s.data.train.enumerated().map {
                    checkFile($1, at: JSONPath.index(JSONPath.child(read.path, "data.train"), $0))
                }
            } else if let pretrain {
                s.data = pretrain.data
            } else if checkpoint != nil {
                log.add(
                    .missing(hint: "required unless checkpoint is a pretrain stage (whose data is then used)"),
                    at: JSONPath.child(read.path, "data"))
            }
            if let seqLen = s.seqLen, let model = pretrain?.model, seqLen > model.maxPositionEmbeddings {
                log.add(
                    .outOfRange(
                        allowed: "<= max_position_embeddings of \"\(pretrain!.name)\" (\(model.maxPositionEmbeddings))",
                        got: String(seqLen)),
                    at: JSONPath.child(read.path, "seq_len"))
            }
            stage = .eval(s)
        case .generate(var s):
            s.output = output
            s.checkpoint =
                source(s.checkpoint, given: read.given.contains("checkpoint"), index: i, at: ckPath) ?? s.checkpoint
            stage = .generate(s)
        case .export(var s):
            s.output = output
            s.checkpoint =
                source(s.checkpoint, given: read.given.contains("checkpoint"), index: i, at: ckPath) ?? s.checkpoint
            stage = .export(s)
        case .merge(var s):
            s.output = output
            s.checkpoint =
                source(s.checkpoint, given: read.given.contains("checkpoint"), index: i, at: ckPath) ?? s.checkpoint
            if let base = s.base {
                s.base = source(base, given: true, index: i, at: JSONPath.child(read.path, "base")) ?? base
            }
            stage = .merge(s)
        case .sample(var s):
            s.output = output
            if !s.tasks.isEmpty { s.tasks = checkFile(s.tasks, at: JSONPath.child(read.path, "tasks")) }
            s.cache = absolute(s.cache, base: runDir)
            if case .checkpoint(var t) = s.teacher {
                let at = JSONPath.child(JSONPath.child(read.path, "teacher"), "checkpoint")
                let given = !t.checkpoint.isEmpty
                if let resolved = source(CheckpointSource(t.checkpoint), given: given, index: i, at: at) {
                    t.checkpoint = resolved.description
                }
                s.teacher = .checkpoint(t)
            }
            stage = .sample(s)
        case .sft(var s):
            s.output = output
            s.linkShared(linker)
            stage = .sft(s)
        case .dpo(var s):
            s.output = output
            s.linkShared(linker)
            stage = .dpo(s)
        case .kd(var s):
            s.output = output
            s.link(linker)
            stage = .kd(s)
        case .sweep(var s):
            s.output = output
            s.data.train = s.data.train.enumerated().map {
                checkFile($1, at: JSONPath.index(JSONPath.child(read.path, "data.train"), $0))
            }
            if let p = s.tokenizer.path { s.tokenizer.path = checkFile(p, at: JSONPath.child(read.path, "tokenizer.path")) }
            if let p = s.measure.tasks { s.measure.tasks = checkFile(p, at: JSONPath.child(read.path, "measure.tasks")) }
            stage = .sweep(s)
        }
        out.append(stage)
    }
    return out
}

// MARK: - Reading one settings object on its own

/// A `training` object read as a recipe reads it (the sweeper checks each configuration's
/// overrides this way); its problems come back as issues.
package func readTrainingSettings(_ v: JSONValue, path: String) -> (TrainingSettings, [JSONIssue]) {
    let log = IssueLog(sources: SourceMap())
    let t = readTraining(v, path: path, log: log)
    return (t, log.issues)
}

/// A `model` object read as a recipe reads it.
package func readModelSettings(_ v: JSONValue, path: String) -> (ModelSettings, [JSONIssue]) {
    let log = IssueLog(sources: SourceMap())
    let m = readModel(v, path: path, log: log)
    return (m, log.issues)
}
