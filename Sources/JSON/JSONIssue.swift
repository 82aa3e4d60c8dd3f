// Problems in JSON a user wrote (a recipe, a teacher object), as values: every problem names
// its JSON path and, when known, where the value was written (file line:column or the --set
// argument), so a document with five mistakes is fixed in one edit instead of five runs.

/// One problem in a JSON document a user wrote: its JSON path, what is wrong, and where the
/// value was written when known.
package struct JSONIssue: Sendable, Equatable, CustomStringConvertible {
    package enum Kind: Sendable, Equatable {
        /// A key the object does not accept, with the closest accepted key when one is close
        /// (or the place the key belongs, `training.lr`), else the keys the object accepts.
        case unknownKey(suggestion: String?, accepted: [String])
        /// A key distill knows but does not accept here, with the reason (`model.vocab_size`).
        case notAllowed(reason: String)
        /// `expected a number, got string "3e-3"`.
        case wrongType(expected: String, got: String)
        /// `must be in (0, 1], got 1.5`.
        case outOfRange(allowed: String, got: String)
        /// A required field is absent (or null).
        case missing(hint: String?)
        /// A string outside a fixed set (stage type, schedule, format, ...).
        case invalidValue(got: String, allowed: [String], suggestion: String?)
        /// A rule between fields or stages (warmup < steps, references, duplicate names).
        case rule(String)
        /// A file the recipe reads does not exist.
        case fileNotFound(String)
        /// The text is not JSON.
        case syntax(String)
        /// A --set argument that cannot be applied.
        case badOverride(String)
    }

    /// JSON path of the offending value ("" for the whole document).
    package var path: String
    package var kind: Kind
    /// Where the value was written, when known.
    package var origin: ValueOrigin?

    package init(path: String, kind: Kind, origin: ValueOrigin? = nil) {
        self.path = path
        self.kind = kind
        self.origin = origin
    }

    package var message: String {
        switch kind {
        case .unknownKey(let suggestion, let accepted):
            if let suggestion { return "unknown key; did you mean \"\(suggestion)\"?" }
            return "unknown key (accepted: \(accepted.joined(separator: ", ")))"
        case .notAllowed(let reason): return reason
        case .wrongType(let expected, let got): return "expected \(expected), got \(got)"
        case .outOfRange(let allowed, let got): return "must be \(allowed), got \(got)"
        case .missing(let hint): return "missing required field" + (hint.map { "; \($0)" } ?? "")
        case .invalidValue(let got, let allowed, let suggestion):
            let list = allowed.map { "\"\($0)\"" }.joined(separator: ", ")
            return "invalid value \"\(got)\"" + (suggestion.map { "; did you mean \"\($0)\"?" } ?? "")
                + " (allowed: \(list))"
        case .rule(let text): return text
        case .fileNotFound(let path): return "file not found: \(path)"
        case .syntax(let reason): return "malformed JSON: \(reason)"
        case .badOverride(let reason): return reason
        }
    }

    package var description: String { (path.isEmpty ? "" : "\(path): ") + message }

    /// `recipe.json:14:15 stages[0].training.lrr: unknown key; did you mean "lr"?`
    package func formatted(file: String?) -> String {
        var prefix = ""
        switch origin {
        case .file(let line, let column)?: prefix = "\(file ?? "recipe"):\(line):\(column) "
        case .override(let argument)?: prefix = "--set \(argument): "
        case nil: prefix = file.map { "\($0): " } ?? ""
        }
        return prefix + description
    }
}

// MARK: - Suggestions

/// Names from other trainers (Hugging Face Trainer, nanoGPT, llm.c, mlx-lm) and their distill key,
/// so `learning_rate` suggests `lr` although they are far apart by edit distance.
private let aliases: [String: String] = [
    "learning_rate": "lr", "learningrate": "lr", "max_steps": "steps", "iters": "steps", "max_iters": "steps",
    "num_steps": "steps", "train_steps": "steps", "micro_batch_size": "batch_size",
    "per_device_train_batch_size": "batch_size",
    "block_size": "seq_len", "context_length": "seq_len", "max_seq_len": "seq_len", "sequence_length": "seq_len",
    "gradient_accumulation_steps": "grad_accum", "gradient_accumulation": "grad_accum",
    "max_grad_norm": "grad_clip", "clip_grad_norm": "grad_clip", "grad_norm_clip": "grad_clip",
    "warmup": "warmup_steps", "warmup_iters": "warmup_steps", "lr_scheduler_type": "schedule",
    "lr_schedule": "schedule",
    "scheduler": "schedule", "adam_beta1": "beta1", "adam_beta2": "beta2", "adam_epsilon": "eps", "epsilon": "eps",
    "eval_interval": "eval_every", "eval_steps": "eval_every", "eval_iters": "eval_batches",
    "save_steps": "checkpoint_every", "save_every": "checkpoint_every", "logging_steps": "log_every",
    "log_interval": "log_every", "n_layer": "num_hidden_layers", "n_layers": "num_hidden_layers",
    "num_layers": "num_hidden_layers", "n_head": "num_attention_heads", "n_heads": "num_attention_heads",
    "num_heads": "num_attention_heads", "n_kv_head": "num_key_value_heads", "n_kv_heads": "num_key_value_heads",
    "num_kv_heads": "num_key_value_heads", "n_embd": "hidden_size", "d_model": "hidden_size", "dim": "hidden_size",
    "ffn_dim": "intermediate_size", "hidden_dim": "intermediate_size", "d_ff": "intermediate_size",
    "max_new_tokens": "max_tokens", "num_tokens": "max_tokens", "prompt": "prompts", "stop_sequences": "stop",
    "files": "train", "paths": "train", "vocab": "vocab_size", "out": "output", "output_dir": "output",
    "output_path": "output", "ckpt": "checkpoint", "model_path": "checkpoint", "dir": "run_dir", "out_dir": "run_dir",
]

/// The accepted word closest to `word`: same word up to case and `-`/`_`, then a known alias,
/// then the smallest edit distance within about a third of the word's length.
package func suggestion(for word: String, among candidates: [String]) -> String? {
    func normal(_ s: String) -> String { s.lowercased().filter { $0 != "_" && $0 != "-" && $0 != " " } }
    let n = normal(word)
    if let same = candidates.first(where: { normal($0) == n }) { return same }
    if let alias = aliases[word.lowercased()], candidates.contains(alias) { return alias }
    var best: (word: String, distance: Int)?
    for c in candidates {
        let d = editDistance(n, normal(c))
        if d < (best?.distance ?? Int.max) { best = (c, d) }
    }
    guard let best, best.distance <= max(2, n.count / 3), best.distance < n.count else { return nil }
    return best.word
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and adjacent swaps
/// each cost 1 (so "lrr" -> "lr" is 1 and "trian" -> "train" is 1).
package func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous2 = [Int](repeating: 0, count: b.count + 1)
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                current[j] = min(current[j], previous2[j - 2] + 1)
            }
        }
        (previous2, previous, current) = (previous, current, previous2)
    }
    return previous[b.count]
}
