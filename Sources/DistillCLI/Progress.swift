import Foundation
import JSON
import Pipeline

/// Training progress for people: on a terminal one line rewritten in place (step, metrics,
/// tokens/s, ETA); otherwise plain lines as events arrive, for logs. On stdout, or on stderr
/// for a command whose stdout is JSON.
final class ProgressDisplay {
    private let toStandardError: Bool
    private let live: Bool
    private var lineOpen = false
    private var started: (stage: String, step: Int, time: Double)?

    init(toStandardError: Bool = false) {
        self.toStandardError = toStandardError
        live = isatty(toStandardError ? STDERR_FILENO : STDOUT_FILENO) != 0
    }

    private func write(_ text: String, newline: Bool = true) {
        if toStandardError {
            FileHandle.standardError.write(Data((text + (newline ? "\n" : "")).utf8))
        } else {
            Swift.print(text, terminator: newline ? "\n" : "")
            if !newline { fflush(nil) }  // all streams: stdout is a C global Swift 6 will not touch
        }
    }

    private func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

    func show(stage: String, step: Int, total: Int?, metrics: [String: Double]) {
        if started?.stage != stage { started = (stage, step, now()) }
        var parts = ["\(stage) step \(step)\(total.map { "/\($0)" } ?? "")"]
        for key in metrics.keys.sorted() {
            let v = metrics[key]!
            switch key {
            case "tokens_per_s": parts.append(String(format: "%.0f tok/s", v))
            case "calls_per_s": parts.append(String(format: "%.2f calls/s", v))
            case "pass_rate": parts.append(String(format: "pass rate %.1f%%", 100 * v))
            case "samples_per_s": parts.append(String(format: "%.2f samples/s", v))
            default: parts.append("\(key) \(String(format: "%.4g", v))")
            }
        }
        if let total, let s = started, step > s.step {
            let perStep = (now() - s.time) / Double(step - s.step)
            parts.append("ETA " + duration(perStep * Double(total - step)))
        }
        let line = "  " + parts.joined(separator: "  ")
        if live {
            write("\r\u{1B}[K" + line, newline: false)
            lineOpen = true
        } else {
            write(line)
        }
    }

    func print(_ line: String) {
        finish()
        write(line)
    }

    /// Ends a line left open by a live update.
    func finish() {
        if lineOpen {
            write("")
            lineOpen = false
        }
    }

    private func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) : String(format: "%dm%02ds", s / 60, s % 60)
    }
}

/// Runs `runner` showing progress (or JSON events); the progress line is closed before an
/// error reaches the reporter.
func execute(_ runner: Runner, json: Bool) throws {
    let progress = ProgressDisplay()
    defer { progress.finish() }
    _ = try runner.runLocked { event in
        if json {
            try? printJSONLine(RunEventLine(event))
        } else if case .stageProgress(let name, .progress(let step, let total, let metrics)) = event {
            progress.show(stage: name, step: step, total: total, metrics: metrics)
        } else if let line = event.text {
            progress.print(line)
        }
    }
}

extension StageOutputs {
    var summaryText: String { summary.keys.sorted().map { "\($0)=\(summary[$0]!)" }.joined(separator: " ") }
}

extension RunEvent {
    /// One line for the terminal, or nil for events not shown.
    var text: String? {
        switch self {
        case .stageSkipped(let name, let reason): return "skip   \(name): \(reason)"
        case .stageStarted(let name, let type, let reason, let resume):
            return "\(resume ? "resume" : "run   ") \(name) (\(type.rawValue)): \(reason)"
        case .stageProgress(let name, .progress(let step, let total, let metrics)):
            let of = total.map { "/\($0)" } ?? ""
            return "  \(name) step \(step)\(of) "
                + metrics.keys.sorted().map { "\($0)=\(String(format: "%.4g", metrics[$0]!))" }.joined(separator: " ")
        case .stageProgress(let name, .checkpointCommitted(let path, let step)):
            return "  \(name) checkpoint at step \(step): \(path)"
        case .stageProgress(let name, .message(let text)): return "  \(name): \(text)"
        case .stageFinished(let name, let outputs): return "done   \(name) \(outputs.summaryText)"
        case .stageFailed: return nil  // the error that ends the run is printed once, on stderr
        case .notice(let text): return "note   \(text)"
        }
    }
}

/// A run event as one JSON object.
struct RunEventLine: Encodable {
    var event: String
    var stage: String
    var type: String?
    var reason: String?
    var resume: Bool?
    var step: Int?
    var total: Int?
    var metrics: [String: Double]?
    var path: String?
    var message: String?
    var outputs: StageOutputs?

    init(_ e: RunEvent) {
        switch e {
        case .stageSkipped(let name, let reason): (event, stage, self.reason) = ("skipped", name, reason)
        case .stageStarted(let name, let type, let reason, let resume):
            (event, stage, self.type, self.reason, self.resume) = ("started", name, type.rawValue, reason, resume)
        case .stageProgress(let name, .progress(let step, let total, let metrics)):
            (event, stage, self.step, self.total, self.metrics) = ("progress", name, step, total, metrics)
        case .stageProgress(let name, .checkpointCommitted(let path, let step)):
            (event, stage, self.path, self.step) = ("checkpoint", name, path, step)
        case .stageProgress(let name, .message(let text)): (event, stage, message) = ("message", name, text)
        case .stageFinished(let name, let outputs): (event, stage, self.outputs) = ("finished", name, outputs)
        case .stageFailed(let name, let error): (event, stage, message) = ("failed", name, "\(error)")
        case .notice(let text): (event, stage, message) = ("notice", "", text)
        }
    }
}
