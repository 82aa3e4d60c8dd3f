import Foundation

/// Training progress for people: on a terminal one line rewritten in place (step, metrics,
/// tokens/s, ETA); otherwise plain lines as events arrive, for logs.
final class ProgressDisplay {
    private let live = isatty(STDOUT_FILENO) != 0
    private var lineOpen = false
    private var started: (stage: String, step: Int, time: Double)?

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
            default: parts.append("\(key) \(String(format: "%.4g", v))")
            }
        }
        if let total, let s = started, step > s.step {
            let perStep = (now() - s.time) / Double(step - s.step)
            parts.append("ETA " + duration(perStep * Double(total - step)))
        }
        let line = "  " + parts.joined(separator: "  ")
        if live {
            Swift.print("\r\u{1B}[K" + line, terminator: "")
            fflush(nil)  // all streams: stdout is a C global Swift 6 will not touch
            lineOpen = true
        } else {
            Swift.print(line)
        }
    }

    func print(_ line: String) {
        finish()
        Swift.print(line)
    }

    /// Ends a line left open by a live update.
    func finish() {
        if lineOpen {
            Swift.print("")
            lineOpen = false
        }
    }

    private func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) : String(format: "%dm%02ds", s / 60, s % 60)
    }
}
