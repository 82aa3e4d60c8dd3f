// The memory a command may plan on, and the one refusal when an estimate exceeds it.
//
// Commands that allocate in proportion to a model or a batch (training, evaluation,
// generation, imports) estimate what they need from the config and the settings before
// allocating, and refuse with the estimate and the limit (exit 2, docs/architecture.md)
// instead of being killed part-way. The estimates are lower bounds: they only have to catch
// what cannot possibly fit.

import Foundation

package enum MemoryBudget {
    /// The bytes distill may plan to use and where that figure comes from: the machine's
    /// physical memory, lowered by a cgroup v2 limit (`/sys/fs/cgroup/memory.max`, a
    /// container's) and by `DISTILL_MEMORY_LIMIT` (bytes, with an optional K/M/G suffix;
    /// to leave room for other work, and for tests).
    package static var limit: (bytes: Double, source: String) {
        var best = (bytes: Double(ProcessInfo.processInfo.physicalMemory), source: "this machine's memory")
        if let text = try? String(contentsOfFile: "/sys/fs/cgroup/memory.max", encoding: .utf8),
            let bytes = Double(text.trimmingCharacters(in: .whitespacesAndNewlines)), bytes < best.bytes
        {
            best = (bytes, "the cgroup's memory.max")
        }
        if let text = ProcessInfo.processInfo.environment["DISTILL_MEMORY_LIMIT"], let bytes = parseBytes(text),
            bytes < best.bytes
        {
            best = (bytes, "DISTILL_MEMORY_LIMIT")
        }
        return best
    }

    /// Refuses (exit 2) when `need` bytes exceed the limit. `what` says what needs them and
    /// how the figure is made up ("training this model needs at least"), `path` names the
    /// model, file or recipe, `fix` what to make smaller.
    package static func require(_ need: Double, for what: String, path: String, fix: String) throws(UserError) {
        let (have, source) = limit
        guard need > have else { return }
        throw UserError(
            path: path, problem: "\(what) needs at least \(format(need)), more than \(source) (\(format(have)))",
            fix: fix, kind: .usage)
    }

    /// Bytes to run a Llama-family model forward over `rows` sequences of `positions` tokens
    /// without gradients: its float32 weights, the KV cache (keys and values of every layer
    /// and position, `kvWidth` = KV heads x head dimension), one layer's activations, and
    /// the logits (of every position with `allLogits`, as a loss evaluation needs, else of
    /// the last). A lower bound, not a prediction. (Plain numbers: Platform knows no config.)
    package static func inferenceBytes(
        parameters: Int, layers: Int, kvWidth: Int, hidden: Int, intermediate: Int, vocabulary: Int, rows: Int,
        positions: Int, allLogits: Bool
    ) -> Double {
        let tokens = Double(rows) * Double(positions)
        let cache = 2 * Double(layers) * Double(kvWidth) * tokens * 4
        let activations = tokens * Double(6 * hidden + 3 * intermediate) * 4
        let logits = Double(rows) * Double(allLogits ? positions : 1) * Double(vocabulary) * 4
        return Double(parameters) * 4 + cache + activations + logits
    }

    /// "1.5 GiB", "12.0 MiB", "800 bytes".
    package static func format(_ bytes: Double) -> String {
        if bytes >= Double(1 << 30) { return String(format: "%.1f GiB", bytes / Double(1 << 30)) }
        if bytes >= Double(1 << 20) { return String(format: "%.1f MiB", bytes / Double(1 << 20)) }
        if bytes >= 1024 { return String(format: "%.1f KiB", bytes / 1024) }
        return String(format: "%.0f bytes", bytes)
    }

    private static func parseBytes(_ text: String) -> Double? {
        var digits = text.trimmingCharacters(in: .whitespaces).uppercased()
        var scale = 1.0
        for (suffix, factor) in [("K", 1024.0), ("M", 1024.0 * 1024), ("G", 1024.0 * 1024 * 1024)]
        where digits.hasSuffix(suffix) {
            digits.removeLast()
            scale = factor
        }
        guard let value = Double(digits), value.isFinite, value > 0 else { return nil }
        return value * scale
    }
}
