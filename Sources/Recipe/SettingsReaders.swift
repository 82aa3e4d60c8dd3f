// The readers of the settings objects several stages share: `data`, `tokenizer`, `model` and
// `training` (one reader for pretraining and fine-tuning). Each starts from the type's defaults
// and logs every problem at its JSON path; the types themselves are declared where they are
// used (TextData, NN, Training).

import JSON
import NN
import TextData
import Training

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
    // The config's own bounds (a billion layers, 10^18 positions), checked here so a dry run
    // refuses them too and nothing is sized by them; the lower bounds were read above.
    for problem in m.llamaConfig(vocabSize: 256).problems() where problem.contains("must be at most") {
        let key = String(problem.prefix { $0 != " " })
        log.add(.rule(problem), at: ModelSettings.CodingKeys(stringValue: key).map { r.path($0) } ?? path)
    }
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
    if r.has(.gradientCheckpointing) {
        var on = false
        r.read(.gradientCheckpointing, into: &on)
        t.gradientCheckpointing = on
    }
    // Upper bounds that keep an absurd value from sizing an allocation or a loop.
    for (key, value, limit) in [
        (TrainingSettings.CodingKeys.batchSize, t.batchSize, 1 << 16), (.gradAccum, t.gradAccum, 1 << 16),
        (.seqLen, t.seqLen, 1 << 20), (.evalBatches, t.evalBatches, 1 << 16),
    ] where value > limit {
        log.add(.outOfRange(allowed: "<= \(limit)", got: String(value)), at: r.path(key))
    }
    return t
}

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
