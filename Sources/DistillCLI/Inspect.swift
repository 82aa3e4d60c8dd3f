import ArgumentParser
import Core
import Foundation
import JSON
import ModelIO
import NN

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print what a distill checkpoint holds (without loading its tensors).",
        discussion: """
            Parameter counts: "embedding" is model.embed_tokens.weight plus lm_head.weight when the \
            embeddings are untied; "non-embedding" is everything else. Exit status 65 when the file \
            is not a (valid) distill checkpoint, 74 when it cannot be read.
            """)

    @Argument(help: "The checkpoint (.h5) to inspect.") var checkpoint: String
    @Flag(help: "Print the report as JSON.") var json = false
    @Flag(help: "List every dataset with its shape and recorded checksum.") var tensors = false

    func run() throws {
        let url = URL(fileURLWithPath: checkpoint)
        let report = try InspectReport(url: url, listTensors: tensors)
        if json {
            try printJSON(report)
        } else {
            print(report.text)
        }
    }
}

extension InspectReport {
    var text: String {
        let m = model
        let shape = "\(m.layers) layers, hidden \(m.hidden), MLP \(m.intermediate), heads \(m.heads) "
        let attention = "(kv \(m.kvHeads), head dim \(m.headDim)), vocab \(m.vocab), "
        let embeddings = (m.tiedEmbeddings ? "tied" : "untied") + " embeddings, \(m.maxPositions) positions"
        var optimizerLine = "none"
        if let optimizer {
            let moments = optimizer.moments.joined(separator: ", ")
            optimizerLine = "\(optimizer.kind) at step \(grouped(optimizer.step)), moments \(moments)"
        }
        var recipeLine = "none"
        if let recipe { recipeLine = (recipe.name ?? "(unnamed)") + ", \(grouped(recipe.bytes)) bytes" }
        var tokenizerLine = "none"
        if let tokenizer {
            let tokens = tokenizer.vocabSize.map { "\(grouped($0)) tokens, " } ?? ""
            tokenizerLine = tokens + "\(grouped(tokenizer.bytes)) bytes"
        }
        var lines = [
            "checkpoint  \(path)",
            "format      \(format) v\(formatVersion), kind \(kind), written by distill \(distillVersion) at \(created)",
            "progress    step \(grouped(step)), \(grouped(tokensSeen)) tokens seen, threads \(threads)",
            "model       " + shape + attention + embeddings,
            kind == CheckpointKind.adapter.rawValue
                ? "parameters  \(grouped(parameters.total)) in the adapter (the base's model is above)"
                : "parameters  \(grouped(parameters.total)) (embedding \(grouped(parameters.embedding)), "
                    + "non-embedding \(grouped(parameters.nonEmbedding)))",
            "optimizer   " + optimizerLine,
            "rng         " + (rngStreams.isEmpty ? "none" : rngStreams.joined(separator: ", ")),
            "data cursor " + (dataCursor ? "present" : "none"),
            "recipe      " + recipeLine,
            "tokenizer   " + tokenizerLine,
        ]
        var shownMetadata = metadata
        if let baseChecksum {
            let at = shownMetadata.removeValue(forKey: AdapterMetadata.basePath).map { ", at \($0)" } ?? ""
            lines.append("base        \(baseChecksum)" + at)
        }
        if let json = shownMetadata[AdapterMetadata.lora], let lora = try? LoRAConfig(metadataJSON: json, path: path) {
            shownMetadata[AdapterMetadata.lora] = nil
            let scale = lora.useRSLoRA ? "alpha/sqrt(r), rsLoRA" : "alpha/r"
            lines.append(
                "lora        r \(lora.rank), alpha \(lora.alpha) (scale \(lora.scale), \(scale)), dropout \(lora.dropout), on "
                    + lora.targetDescription + (lora.adaptedModules.map { " (\($0.count) modules)" } ?? ""))
        }
        if !shownMetadata.isEmpty {
            let pairs = shownMetadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            lines.append("metadata    " + pairs.joined(separator: ", "))
        }
        let hint = tensors == nil ? " (--tensors lists them)" : ""
        lines.append("checksums   \(checksumAlgorithm) per dataset" + hint)
        if let tensors {
            let pathWidth = tensors.map(\.path.count).max() ?? 0
            let shapeWidth = tensors.map { "\($0.shape)".count }.max() ?? 0
            for tensor in tensors {
                let path = padded(tensor.path, to: pathWidth)
                let shape = padded("\(tensor.shape)", to: shapeWidth)
                lines.append("  \(path)  \(shape)  \(tensor.dtype)  \(tensor.checksum)")
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// 1234567 as "1,234,567".
private func grouped(_ n: Int) -> String {
    let digits = Array(String(n.magnitude))
    var out = n < 0 ? "-" : ""
    for (i, digit) in digits.enumerated() {
        if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(digit)
    }
    return out
}

private func padded(_ text: String, to width: Int) -> String {
    text + String(repeating: " ", count: max(0, width - text.count))
}
