// A verdict table as the benchmark CSV of RouteLLM (Ong et al. 2024, the lm-sys project): a header
// `prompt,<model>,<model>,...`, then one row per task with its prompt text and, per model, `True`
// or `False`, so RouteLLM's evaluation code (which reads these files with pandas and compares the
// strong and weak columns by name) can score routers on distill's data. RouteLLM keeps one
// response per model and prompt; distill writes the verdict of each model's first sample (the
// lowest seed). Fields are quoted as RFC 4180 says (commas, quotes, line breaks).

import Foundation
import Platform

package enum RouteLLMCSV {
    /// The CSV of `table` over `models` (all of the table's, in its order, when nil), and the
    /// tasks left out: those without a prompt text (a router needs it) and those where one of the
    /// models has no sample.
    package static func write(_ table: VerdictTable, models: [String]? = nil) -> (text: String, skipped: Int) {
        let names = models ?? table.models.map(\.name)
        var out = (["prompt"] + names).map(field).joined(separator: ",") + "\r\n"
        var skipped = 0
        for row in table.rows {
            guard let prompt = row.prompt else {
                skipped += 1
                continue
            }
            let verdicts = names.compactMap { row.models[$0]?.samples.first?.correct }
            guard verdicts.count == names.count else {
                skipped += 1
                continue
            }
            out += ([field(prompt)] + verdicts.map { $0 ? "True" : "False" }).joined(separator: ",") + "\r\n"
        }
        return (out, skipped)
    }

    /// One field: quoted (quotes doubled) when it holds a comma, a quote or a line break.
    static func field(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// The records of an RFC 4180 CSV text (quoted fields may hold commas, doubled quotes and
    /// line breaks; CRLF or LF line ends). Throws a `bad_data` error naming the line of an
    /// unterminated quote or text after a closing quote.
    package static func read(_ text: String, file: String = "CSV") throws -> [[String]] {
        var records: [[String]] = []
        var record: [String] = []
        var field = ""
        var quoted = false, afterQuote = false, line = 1, quoteLine = 1
        var chars = Array(text).makeIterator()
        var pending: Character? = nil
        func next() -> Character? {
            if let p = pending {
                pending = nil
                return p
            }
            return chars.next()
        }
        func endRecord() {
            record.append(field)
            records.append(record)
            record = []
            field = ""
            afterQuote = false
        }
        while let c = next() {
            if quoted {
                if c == "\"" {
                    if let d = next() {
                        if d == "\"" {
                            field.append("\"")
                        } else {
                            quoted = false
                            afterQuote = true
                            pending = d
                        }
                    } else {
                        quoted = false
                        afterQuote = true
                    }
                } else {
                    if c == "\n" || c == "\r\n" { line += 1 }
                    field.append(c)
                }
                continue
            }
            switch c {
            case ",":
                record.append(field)
                field = ""
                afterQuote = false
            case "\n", "\r\n":
                endRecord()
                line += 1
            case "\"" where field.isEmpty && !afterQuote:
                quoted = true
                quoteLine = line
            default:
                if afterQuote {
                    throw UserError(
                        path: "\(file):\(line)", problem: "text after a closing quote",
                        fix: "quote the whole field and double the quotes inside it", kind: .badData)
                }
                field.append(c)
            }
        }
        if quoted {
            throw UserError(
                path: "\(file):\(quoteLine)", problem: "a quoted field is never closed",
                fix: "end the field with a quote", kind: .badData)
        }
        if !field.isEmpty || !record.isEmpty || afterQuote { endRecord() }
        return records
    }
}
