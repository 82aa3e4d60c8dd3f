// What `distill serve` serves: models by name, each on its own engine and lane, and adapters
// by name, each a lane over its parent's packed weights (shared, not copied) with its own
// adapter tensors beside them.

import Foundation
import ModelIO
import NN
import Platform
import Teacher
import TextData

/// A model (or adapter) to serve, as `NAME=PATH` on the command line.
package struct ServedPath: Sendable, Equatable {
    package var name: String
    package var path: String
    /// For an adapter: the served model it runs on (nil: the only one).
    package var parent: String?

    package init(name: String, path: String, parent: String? = nil) {
        (self.name, self.path, self.parent) = (name, path, parent)
    }

    /// `NAME=PATH`, or for an adapter `NAME=PATH@MODEL` naming its parent.
    package init(argument: String, adapter: Bool) throws {
        let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
        let what = adapter ? "--adapter" : "--model"
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw UserError(
                path: what, problem: "\"\(argument)\" is not NAME=PATH",
                fix: adapter ? "write --adapter NAME=ADAPTER.h5 (or NAME=ADAPTER.h5@MODEL)" : "write --model NAME=MODEL_PATH",
                kind: .usage)
        }
        guard parts[0].allSatisfy({ $0.isLetter || $0.isNumber || "-_.:/".contains($0) }), !parts[0].hasPrefix("route:"),
            !parts[0].hasPrefix("cascade:")
        else {
            throw UserError(
                path: what, problem: "model name \"\(parts[0])\" has characters clients cannot send safely",
                fix: "use letters, digits and - _ . : / (not starting with route: or cascade:)", kind: .usage)
        }
        name = parts[0]
        if adapter, let at = parts[1].lastIndex(of: "@") {
            path = String(parts[1][..<at])
            parent = String(parts[1][parts[1].index(after: at)...])
        } else {
            path = parts[1]
        }
    }
}

/// One name clients can ask for.
package struct CatalogEntry: Sendable {
    package var name: String
    /// The served model an adapter runs on.
    package var parent: String?
    package var tokenizer: ByteLevelBPETokenizer
    package var style: ChatStyle?
    /// End of text, and with a chat template its end of turn.
    package var endOfText: Int32?
    package var endOfTurn: Int32?
    /// Positions a request's prompt and completion share at most.
    package var capacity: Int
    package var created: Int
}

/// The loaded models and the scheduler that runs them.
package final class Catalog: @unchecked Sendable {
    package let entries: [String: CatalogEntry]
    /// Names in the order given.
    package let names: [String]
    package let scheduler: Scheduler
    /// Each name's decode engine (an adapter's runs beside its parent's weights).
    package let engines: [String: DecodeEngine]
    /// Each name's checksum of its weights and tokenizer (`CheckpointTeacher.checksum`, an
    /// adapter's including its adapter), when asked for: the identity routers are trained for.
    package let checksums: [String: String]

    /// Loads `models` on `weights` and `adapters` onto their parents. `slots` sequences per
    /// lane of `context` positions each (at most the model's own context); `log` hears progress.
    /// `checksums` computes every name's checksum (one pass over its weights).
    package init(
        models: [ServedPath], adapters: [ServedPath], weights: InferenceWeights, slots: Int, context: Int, queueLimit: Int,
        checksums: Bool = false, log: (String) -> Void
    ) throws {
        let names = models.map(\.name) + adapters.map(\.name)
        if let repeated = Dictionary(grouping: names, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw UserError(path: "--model/--adapter", problem: "the name \(repeated) is given twice", fix: "give each a name of its own", kind: .usage)
        }
        for adapter in adapters {
            if let parent = adapter.parent, !models.contains(where: { $0.name == parent }) {
                throw UserError(
                    path: "--adapter \(adapter.name)", problem: "names the model \(parent), which is not served",
                    fix: "serve it with --model \(parent)=PATH", kind: .usage)
            }
            if adapter.parent == nil && models.count != 1 {
                throw UserError(
                    path: "--adapter \(adapter.name)", problem: "does not say which of the \(models.count) models it runs on",
                    fix: "write --adapter \(adapter.name)=\(adapter.path)@MODEL", kind: .usage)
            }
        }
        let now = Int(Date().timeIntervalSince1970)
        var entries: [String: CatalogEntry] = [:]
        var lanes: [Scheduler.Lane] = []
        var engines: [String: DecodeEngine] = [:], sums: [String: String] = [:]
        var planned = 0.0
        for spec in models {
            let started = Date()
            let loaded = try loadModel(from: spec.path)
            let tokenizer = try loaded.requireTokenizer()
            let style = loaded.chatStyle()
            if let style { try style.template.check(tokenizer) }
            let engine = try loaded.decodeEngine(weights)
            let capacity = min(context, loaded.model.config.maxPositionEmbeddings)
            // Every lane's KV cache is allocated at its first request: plan for all of them now.
            let c = loaded.model.config
            let cache = 2 * c.effectiveLayers * slots * capacity * c.numKeyValueHeads * c.headDim * MemoryLayout<Float>.size
            let lanesOfModel = 1 + adapters.filter { ($0.parent ?? spec.name) == spec.name }.count
            planned += Double(engine.weightBytes + lanesOfModel * cache)
            try MemoryBudget.require(
                planned,
                for: "serving with --max-batch \(slots) and --context \(capacity) (a \(MemoryBudget.format(Double(cache))) KV cache per model and adapter)",
                path: spec.path, fix: "lower --max-batch or --context, or serve quantized weights (--weights q8_0)")
            let entry = CatalogEntry(
                name: spec.name, parent: nil, tokenizer: tokenizer, style: style, endOfText: loaded.endOfText,
                endOfTurn: style.flatMap { tokenizer.id(for: $0.template.endOfTurn) }, capacity: capacity, created: now)
            entries[spec.name] = entry
            engines[spec.name] = engine
            if checksums { sums[spec.name] = CheckpointTeacher.checksum(loaded.model, tokenizerJSON: loaded.tokenizerJSON ?? "") }
            lanes.append(Scheduler.Lane(name: spec.name, engine: engine, tokenizer: tokenizer, slots: slots, capacity: capacity))
            log(
                "loaded \(spec.name) from \(spec.path) (\(weights.rawValue) weights, \(engine.weightBytes >> 20) MiB) in "
                    + String(format: "%.1f s", Date().timeIntervalSince(started)))
            for adapter in adapters where (adapter.parent ?? spec.name) == spec.name {
                let info = try attachAdapterFile(adapter.path, to: loaded)
                let adapted = DecodeEngine(sharing: engine, adaptersOf: loaded.model)
                if checksums { sums[adapter.name] = CheckpointTeacher.checksum(loaded.model, tokenizerJSON: loaded.tokenizerJSON ?? "") }
                engines[adapter.name] = adapted
                loaded.model.removeAdapters()
                var a = entry
                (a.name, a.parent) = (adapter.name, spec.name)
                entries[adapter.name] = a
                lanes.append(Scheduler.Lane(name: adapter.name, engine: adapted, tokenizer: tokenizer, slots: slots, capacity: capacity))
                log("attached \(adapter.name) (LoRA r\(info.lora.rank)) from \(adapter.path) to \(spec.name)")
            }
        }
        self.names = names
        self.entries = entries
        self.engines = engines
        self.checksums = sums
        scheduler = Scheduler(lanes: lanes, queueLimit: queueLimit)
    }
}
