// `distill sweep report DIR...`: merges every shard's results table, ranks the
// configurations, draws the figures (SVGPlot), fits the scaling law when there are enough
// trials, and writes the best configuration as a ready pretraining recipe.

import Charts
import Core
import Foundation
import Platform
import Recipe
import TextData

/// The trials of one configuration at the highest rung it reached, averaged over seeds.
package struct RankedConfig: Sendable {
    package var configId: String
    package var label: String
    package var trials: [SweepResult]
    package var meanLoss: Double
    package var stdLoss: Double
    package var rung: Int
    package var first: SweepResult { trials[0] }
    package var meanDecode: Double { trials.map(\.decodeTokensPerSecond).reduce(0, +) / Double(trials.count) }
}

package enum ReportFormat: String, CaseIterable, Sendable { case html, md }

package struct SweepReport {
    package var results: [SweepResult]
    package var ranked: [RankedConfig]
    package var manifest: SweepManifest?
    package var invalid: [InvalidConfig]
    package var fit: Result<ScalingFit, SweepFitUnavailable>
    /// Steps of the full run the best-config recipe asks for.
    package var fullSteps: Int

    /// Ranks configurations: those that reached a higher rung first, then by mean loss.
    package static func rank(_ results: [SweepResult]) -> [RankedConfig] {
        var groups: [String: [SweepResult]] = [:]
        var order: [String] = []
        for r in results {
            if groups[r.configId] == nil { order.append(r.configId) }
            groups[r.configId, default: []].append(r)
        }
        let ranked = order.map { id -> RankedConfig in
            let all = groups[id]!
            let top = all.map(\.rung).max()!
            let trials = all.filter { $0.rung == top }.sorted { $0.seed < $1.seed }
            let losses = trials.map(\.score)
            let mean = losses.reduce(0, +) / Double(losses.count)
            let sd = losses.count > 1 ? (losses.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(losses.count - 1)).squareRoot() : 0
            return RankedConfig(configId: id, label: trials[0].label, trials: trials, meanLoss: mean, stdLoss: sd, rung: top)
        }
        return ranked.sorted { ($1.rung, $0.meanLoss) < ($0.rung, $1.meanLoss) }
    }

    /// Reads the results of `directories` (the first holds sweep.json and plan.json).
    package init(directories: [String], fullSteps: Int? = nil) throws {
        results = try SweepResults.load(directories: directories)
        ranked = Self.rank(results)
        let first = URL(fileURLWithPath: directories[0])
        manifest = FileManager.default.contents(atPath: first.appendingPathComponent("sweep.json").path).flatMap {
            try? JSONDecoder().decode(SweepManifest.self, from: $0)
        }
        invalid = FileManager.default.contents(atPath: first.appendingPathComponent("plan.json").path).flatMap {
            try? JSONDecoder().decode(SweepPlanFile.self, from: $0)
        }?.invalid ?? []
        let usable = results.filter { $0.score.isFinite }
        fit = ScalingFit.fit(
            n: usable.map { Double($0.nonEmbeddingParameters) }, d: usable.map { Double($0.tokens) }, loss: usable.map(\.score))
        self.fullSteps = fullSteps ?? (ranked.first.map { $0.first.steps * 10 } ?? 1000)
    }

    // MARK: Figures

    func lossVersusParameters() -> SVGPlot {
        var plot = SVGPlot(title: "Validation loss against parameters", xLabel: "non-embedding parameters", yLabel: "best validation loss", xLog: true)
        let kvs = Array(Set(results.map(\.model.numKeyValueHeads))).sorted()
        for (i, kv) in kvs.enumerated() {
            let rs = results.filter { $0.model.numKeyValueHeads == kv }
            plot.series.append(.init(
                name: "kv heads \(kv)", points: rs.map { (Double($0.nonEmbeddingParameters), $0.score) },
                color: SVGPlot.palette[i % SVGPlot.palette.count], labels: rs.map { $0.seed == rs.map(\.seed).min() ? $0.label : "" }))
        }
        return plot
    }

    func lossVersusDecodeSpeed() -> (SVGPlot, [RankedConfig]) {
        var plot = SVGPlot(title: "Validation loss against decode speed (batch 1, KV cache)", xLabel: "decode tokens/s", yLabel: "best validation loss (mean over seeds)", xLog: true)
        let front = paretoFront(lower: ranked.map(\.meanLoss), higher: ranked.map(\.meanDecode)).map { ranked[$0] }
        plot.series.append(.init(name: "configurations", points: ranked.map { ($0.meanDecode, $0.meanLoss) }, color: SVGPlot.palette[0], labels: ranked.map(\.label)))
        var f = SVGPlot.Series(name: "Pareto front", points: front.map { ($0.meanDecode, $0.meanLoss) }, color: SVGPlot.palette[1], line: true)
        f.radius = 5
        plot.series.append(f)
        return (plot, front)
    }

    func bestCurves(count: Int = 5) -> SVGPlot {
        var plot = SVGPlot(title: "Loss curves of the best configurations", xLabel: "step", yLabel: "loss (lines: training, dots: validation)")
        for (i, c) in ranked.prefix(count).enumerated() {
            let color = SVGPlot.palette[i % SVGPlot.palette.count]
            let r = c.first
            plot.series.append(.init(name: "\(i + 1). \(c.label)", points: r.lossCurve.map { ($0[0], $0[1]) }, color: color, line: true, markers: false))
            plot.series.append(.init(name: "", points: r.valCurve.map { ($0[0], $0[1]) }, color: color))
        }
        return plot
    }

    /// Configurations within 15% of the best one's non-embedding parameters, by depth.
    func depthVersusWidth() -> (SVGPlot, [RankedConfig]) {
        var plot = SVGPlot(title: "Depth against width at equal parameters", xLabel: "effective layers (layers x repeat)", yLabel: "best validation loss (mean over seeds)", xLog: true)
        guard let best = ranked.first else { return (plot, []) }
        let n = Double(best.first.nonEmbeddingParameters)
        let peers = ranked.filter { abs(Double($0.first.nonEmbeddingParameters) - n) / n <= 0.15 }
            .sorted { ($0.first.model.numHiddenLayers * $0.first.model.layerRepeat, $0.first.model.hiddenSize) < ($1.first.model.numHiddenLayers * $1.first.model.layerRepeat, $1.first.model.hiddenSize) }
        let kvs = Array(Set(peers.map(\.first.model.numKeyValueHeads))).sorted()
        for (i, kv) in kvs.enumerated() {
            let group = peers.filter { $0.first.model.numKeyValueHeads == kv }
            plot.series.append(.init(
                name: "kv heads \(kv)", points: group.map { (Double($0.first.model.numHiddenLayers * $0.first.model.layerRepeat), $0.meanLoss) },
                color: SVGPlot.palette[i % SVGPlot.palette.count], line: true, labels: group.map { "d\($0.first.model.hiddenSize)" }))
        }
        return (plot, peers)
    }

    // MARK: Best configuration

    /// A pretrain + eval recipe for the best configuration at `fullSteps` steps, with the
    /// sweep's data and tokenizer settings; nil without results or sweep.json.
    package func bestRecipe() -> Recipe? {
        guard let best = ranked.first, let m = manifest else { return nil }
        var p = PretrainStage()
        p.data = m.stage.data
        p.tokenizer = m.stage.tokenizer
        p.model = best.first.model
        var t = m.stage.training
        t.steps = fullSteps
        t.warmupSteps = min(max(t.warmupSteps, fullSteps / 50), fullSteps - 1)
        t.checkpointEvery = max(t.checkpointEvery, 100)
        t.evalEvery = max(t.evalEvery, 100)
        p.training = t
        var e = EvalStage()
        e.data = m.stage.data
        let name = m.recipe + "-best"
        return Recipe(name: name, runDir: "Checkpoints/\(name)", seed: best.first.seed, stages: [.pretrain(p), .eval(e)])
    }

    /// A recipe as a file `distill run` reads: the encoded resolved recipe without the
    /// empty `data.train` list of inline text (the reader wants one of train or text).
    static func recipeFileData(_ recipe: Recipe) throws -> Data {
        guard var root = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(recipe)) as? [String: Any],
            var stages = root["stages"] as? [[String: Any]]
        else { preconditionFailure("a recipe encodes to an object with stages") }
        for i in stages.indices {
            if var data = stages[i]["data"] as? [String: Any], (data["train"] as? [Any])?.isEmpty == true {
                data["train"] = nil
                stages[i]["data"] = data
            }
        }
        root["stages"] = stages
        var out = try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        out.append(0x0A)
        return out
    }

    // MARK: Rendering

    /// Writes the report (and figures, for Markdown) and best-recipe.json into `directory`.
    /// Returns the report's path.
    package func write(to directory: URL, format: ReportFormat) throws -> (report: String, recipe: String?) {
        var recipePath: String?
        if let recipe = bestRecipe() {
            let url = directory.appendingPathComponent("best-recipe.json")
            try writeAtomically(try Self.recipeFileData(recipe), to: url)
            recipePath = url.path
        }
        let text = render(format: format, figureDirectory: format == .md ? directory.appendingPathComponent("figures") : nil, recipePath: recipePath)
        let url = directory.appendingPathComponent(format == .html ? "report.html" : "report.md")
        try writeAtomically(Data(text.utf8), to: url)
        return (url.path, recipePath)
    }

    /// The report text. Markdown references figures written into `figureDirectory`; HTML
    /// inlines them.
    package func render(format: ReportFormat, figureDirectory: URL? = nil, recipePath: String? = nil) -> String {
        var doc = Document(format: format, figureDirectory: figureDirectory)
        let title = "Sweep report" + (manifest.map { ": \($0.recipe)" } ?? "")
        doc.heading(title, level: 1)
        let seeds = Set(results.map(\.seed)).count
        doc.paragraph("\(results.count) finished trials of \(ranked.count) configurations (\(seeds) seed\(seeds == 1 ? "" : "s")), \(invalid.count) invalid combinations skipped. Ranked by best validation loss, averaged over seeds" + (results.contains { $0.rung > 0 } ? "; configurations that reached a later successive-halving rung rank first." : "."))

        doc.heading("Ranking", level: 2)
        var rows: [[String]] = []
        for (i, c) in ranked.enumerated() {
            let r = c.first
            func mean(_ f: (SweepResult) -> Double?) -> String {
                let xs = c.trials.compactMap(f)
                return xs.isEmpty ? "-" : tickLabel(xs.reduce(0, +) / Double(xs.count))
            }
            rows.append([
                String(i + 1), c.label, String(format: "%.4f", c.meanLoss) + (c.trials.count > 1 ? String(format: " ± %.4f", c.stdLoss) : ""),
                String(c.trials.count), tickLabel(Double(r.nonEmbeddingParameters)), tickLabel(Double(r.parameters)),
                tickLabel(Double(r.tokens)), mean { $0.trainTokensPerSecond }, mean { $0.prefillTokensPerSecond }, mean { $0.decodeTokensPerSecond },
                String(r.kvCacheBytesPerToken), mean { $0.peakMemoryMB }, mean { $0.wallSeconds },
                c.trials.contains { $0.taskScore != nil } ? mean { $0.taskScore } : "-",
            ])
        }
        doc.table(["#", "configuration", "val loss", "seeds", "non-emb params", "params", "tokens", "train tok/s", "prefill tok/s", "decode tok/s", "KV B/token", "peak MB", "wall s", "task score"], rows)
        if let best = ranked.first, let solved = best.first.solved { doc.paragraph("Budget solver for the best configuration: \(solved).") }

        doc.heading("Validation loss against parameters", level: 2)
        doc.figure("loss-vs-params", lossVersusParameters())

        doc.heading("Validation loss against decode speed", level: 2)
        let (speedPlot, front) = lossVersusDecodeSpeed()
        doc.figure("loss-vs-decode", speedPlot)
        doc.paragraph("Pareto front (no other configuration is both faster and better): " + front.map { "\($0.label) (\(String(format: "%.4f", $0.meanLoss)), \(tickLabel($0.meanDecode)) tok/s)" }.joined(separator: "; ") + ".")

        doc.heading("Loss curves of the best configurations", level: 2)
        doc.figure("best-curves", bestCurves())

        doc.heading("Depth against width at equal parameters", level: 2)
        let (depthPlot, peers) = depthVersusWidth()
        if peers.count >= 2 {
            doc.figure("depth-vs-width", depthPlot)
            doc.table(["layers", "repeat", "hidden", "heads/kv", "MLP", "non-emb params", "val loss", "decode tok/s"], peers.map { c in
                let m = c.first.model
                return [String(m.numHiddenLayers), String(m.layerRepeat), String(m.hiddenSize), "\(m.numAttentionHeads)/\(m.numKeyValueHeads)", String(m.intermediateSize), tickLabel(Double(c.first.nonEmbeddingParameters)), String(format: "%.4f", c.meanLoss), tickLabel(c.meanDecode)]
            })
        } else {
            doc.paragraph("Fewer than two configurations within 15% of the best one's parameter count.")
        }

        doc.heading("Scaling fit", level: 2)
        switch fit {
        case .success(let f):
            doc.paragraph("\(f.formula) over \(f.points) trials (N: non-embedding parameters, D: training tokens; variable projection with non-negative E, A, B). R² = \(String(format: "%.4f", f.r2)), RMSE = \(String(format: "%.4f", f.rmse)).")
            if f.points < 12 { doc.paragraph("Few trials: treat the exponents as indicative only.") }
        case .failure(let why):
            doc.paragraph("Not fitted: \(why.reason).")
        }

        if !invalid.isEmpty {
            doc.heading("Invalid combinations (skipped)", level: 2)
            doc.table(["combination", "reasons"], invalid.map { bad in
                [bad.values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.json.canonical)" }.joined(separator: " "), bad.reasons.joined(separator: "; ")]
            })
        }

        doc.heading("Best configuration", level: 2)
        if let best = ranked.first {
            doc.paragraph("\(best.label): " + canonicalText(best.first.model))
            if let recipePath {
                doc.paragraph("Written as a recipe for a full run (\(fullSteps) steps): \(recipePath) — `distill run \((recipePath as NSString).lastPathComponent)`.")
            }
        } else {
            doc.paragraph("No finished trials yet.")
        }
        return doc.finish()
    }
}

/// Markdown or HTML assembled section by section.
private struct Document {
    let format: ReportFormat
    let figureDirectory: URL?
    var body = ""

    init(format: ReportFormat, figureDirectory: URL?) {
        self.format = format
        self.figureDirectory = figureDirectory
    }

    mutating func heading(_ text: String, level: Int) {
        if format == .md { body += String(repeating: "#", count: level) + " " + text + "\n\n" } else { body += "<h\(level)>\(escapeXML(text))</h\(level)>\n" }
    }

    mutating func paragraph(_ text: String) {
        if format == .md { body += text + "\n\n" } else { body += "<p>\(escapeXML(text))</p>\n" }
    }

    mutating func table(_ header: [String], _ rows: [[String]]) {
        if format == .md {
            func cell(_ s: String) -> String { s.replacingOccurrences(of: "|", with: "\\|") }
            body += "| " + header.map(cell).joined(separator: " | ") + " |\n"
            body += "|" + header.map { _ in "---" }.joined(separator: "|") + "|\n"
            for r in rows { body += "| " + r.map(cell).joined(separator: " | ") + " |\n" }
            body += "\n"
        } else {
            body += "<table>\n<tr>" + header.map { "<th>\(escapeXML($0))</th>" }.joined() + "</tr>\n"
            for r in rows { body += "<tr>" + r.map { "<td>\(escapeXML($0))</td>" }.joined() + "</tr>\n" }
            body += "</table>\n"
        }
    }

    mutating func figure(_ name: String, _ plot: SVGPlot) {
        let svg = plot.render()
        if format == .md, let dir = figureDirectory {
            try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try? writeAtomically(svg, to: dir.appendingPathComponent(name + ".svg").path)
            body += "![\(plot.title)](figures/\(name).svg)\n\n"
        } else if format == .md {
            body += "```svg\n" + svg + "```\n\n"
        } else {
            body += "<figure>\n" + svg + "</figure>\n"
        }
    }

    func finish() -> String {
        guard format == .html else { return body }
        return """
            <!DOCTYPE html>
            <html><head><meta charset="utf-8"><title>distill sweep report</title>
            <style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
            table{border-collapse:collapse;font-size:12px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
            th{background:#f2f2f2}td:nth-child(2){text-align:left}figure{margin:1em 0}</style></head><body>

            """ + body + "</body></html>\n"
    }
}
