// Verdict tables: the JSONL round trip and its errors (file, line and JSON path), the RouteLLM
// CSV round trip, and building a table from run directories old and new: an eval written
// before prompt tokens, latency and parameter counts were recorded, a sample stage written
// before canonical answers were, failed calls, and names two runs share.

import Foundation
import JSON
import Platform
import Testing

@testable import Route

private func scratch(_ name: String) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-\(name)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

private func write(_ text: String, _ dir: URL, _ name: String) throws -> String {
    let url = dir.appendingPathComponent(name)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try text.write(to: url, atomically: true, encoding: .utf8)
    return url.path
}

@Suite struct VerdictTableTests {
    @Test func tablesRoundTripThroughJSONL() throws {
        var table = handTable
        table.rows[0].models["W"]!.samples[0].latency = 0.25
        table.rows[0].models["W"]!.samples[0].logprobMean = -0.5
        table.rows[0].models["W"]!.samples[0].logprobMin = -2
        (table.rows[0].models["W"]!.samples[0].logprobQ10, table.rows[0].models["W"]!.samples[0].logprobQ25) = (-1.5, -1)
        table.rows[0].models["W"]!.samples[0].logprobMedian = -0.25
        table.rows[0].models["W"]!.samples[1].credit = 0.5
        table.rows[1].prompt = nil
        let dir = try scratch("verdicts")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = try write(table.jsonl(), dir, "v.jsonl")
        #expect(try VerdictTable.read(path: path) == table)
        // n and c are written for people; the first row's W has 3 of 4 correct.
        let line = table.jsonl().split(separator: "\n")[1]
        #expect(line.contains(#""W":{"n":4,"c":3,"samples":[{"correct":true,"answer":"a","credit":null,"tokens_in":10"#))
        #expect(line.contains(#"{"correct":true,"answer":"a","credit":0.5,"#))
        #expect(line.contains(#""logprob_mean":-0.5,"logprob_min":-2.0,"logprob_q10":-1.5,"logprob_q25":-1.0,"logprob_median":-0.25}"#))
        // A table written before credit and the quantiles (no such keys) reads them as null.
        let older = table.jsonl().replacingOccurrences(
            of: #","logprob_q10":-1.5,"logprob_q25":-1.0,"logprob_median":-0.25"#, with: ""
        ).replacingOccurrences(of: #""credit":0.5,"#, with: "")
        let back = try VerdictTable.read(path: try write(older, dir, "older.jsonl"))
        #expect(back.rows[0].models["W"]!.samples[0].logprobQ10 == nil && back.rows[0].models["W"]!.samples[0].logprobMean == -0.5)
        #expect(back.rows[0].models["W"]!.samples[1].credit == nil)
    }

    @Test func badTablesNameTheLineAndThePath() throws {
        let dir = try scratch("verdicts-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let lines = handTable.jsonl().split(separator: "\n").map(String.init)
        func error(_ text: String) throws -> DataError {
            let path = try write(text, dir, "bad.jsonl")
            do {
                _ = try VerdictTable.read(path: path)
            } catch let e as DataError {
                return e
            }
            Issue.record("no error for \(text.prefix(80))")
            return .insufficient(reason: "", hint: "")
        }
        // No header.
        var e = try error(lines[1] + "\n")
        #expect("\(e)".contains("bad.jsonl:1:1: the first line is not a verdict table header"))
        // A wrong type deep in a row: line 3, with its JSON path; exit 65.
        let wrongType = lines[2].replacingOccurrences(
            of: #"{"correct":false,"answer":"a""#, with: #"{"correct":"no","answer":"a""#)
        e = try error([lines[0], lines[1], wrongType].joined(separator: "\n"))
        #expect("\(e)".contains("bad.jsonl:3:1: models.W.samples[0].correct: expected a boolean, found a string"))
        #expect(e.exitCode == 65)
        // n disagreeing with the samples.
        e = try error(
            [lines[0], lines[1].replacingOccurrences(of: #""n":4"#, with: #""n":5"#)].joined(separator: "\n"))
        #expect("\(e)".contains("models.W.n: says 5 samples, the list has 4"))
        // A credit outside 0...1.
        e = try error(
            [lines[0], lines[1].replacingOccurrences(of: #""credit":null"#, with: #""credit":1.5"#)].joined(separator: "\n"))
        #expect("\(e)".contains("bad.jsonl:2:1: models.W.samples[0].credit: credit 1.5 is outside 0...1"))
        // A model the header does not list; a task twice.
        e = try error(
            [lines[0], lines[1].replacingOccurrences(of: #""S":{"#, with: #""X":{"#)].joined(separator: "\n"))
        #expect("\(e)".contains("model \"X\" is not in the header"))
        e = try error([lines[0], lines[1], lines[1]].joined(separator: "\n"))
        #expect("\(e)".contains("bad.jsonl:3:") && "\(e)".contains("(the first is line 2)"))
        // A missing file is an I/O error (exit 74).
        do {
            _ = try VerdictTable.read(path: dir.appendingPathComponent("none.jsonl").path)
            Issue.record("no error for a missing file")
        } catch let e as DataError {
            #expect(e.exitCode == 74)
        }
    }

    @Test func routeLLMCSVRoundTrips() throws {
        var table = handTable
        table.rows[0].prompt = "Plain, with a comma"
        table.rows[1].prompt = "She said \"hi\"\nand left"
        table.rows[2].prompt = nil  // no prompt: left out
        table.rows[3].models["S"] = nil  // a model missing: left out
        let (text, skipped) = RouteLLMCSV.write(table)
        #expect(skipped == 2)
        let records = try RouteLLMCSV.read(text)
        // RouteLLM's layout: prompt, then one True/False column per model (the first sample's verdict).
        #expect(
            records == [
                ["prompt", "W", "S"], ["Plain, with a comma", "True", "True"],
                ["She said \"hi\"\nand left", "False", "True"],
            ])
        #expect(
            text.hasPrefix(
                "prompt,W,S\r\n\"Plain, with a comma\",True,True\r\n\"She said \"\"hi\"\"\nand left\",False,True\r\n"))
        // A chosen pair of columns.
        #expect(try RouteLLMCSV.read(RouteLLMCSV.write(table, models: ["S"]).text)[0] == ["prompt", "S"])
        // Damaged quoting is named.
        #expect(throws: UserError.self) { try RouteLLMCSV.read("prompt,W\n\"open,True\n") }
        #expect(throws: UserError.self) { try RouteLLMCSV.read("prompt,W\n\"a\"b,True\n") }
    }

    /// A run directory as the eval and sample stages wrote it before the verdict fields existed,
    /// beside a new eval written with them.
    func runDirectories() throws -> (root: URL, old: URL, new: URL) {
        let root = try scratch("verdict-runs")
        let tasks = try write(
            """
            {"id": "q1", "prompt": "2+2?", "answer": "4"}
            {"id": "q2", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "3+3?"}], "answer": "6"}
            """, root, "tasks.jsonl")
        let old = root.appendingPathComponent("old"), new = root.appendingPathComponent("new")
        let report = { (parameters: String) in
            """
            {"tasks": "\(tasks)", "task_count": 2, "arms": [{"name": "base", "model": "m.gguf", "checksum": "xxh64:ab"\(parameters), "metrics": {}}]}
            """
        }
        _ = try write(report(""), old, "eval.json")
        _ = try write(
            """
            {"arm":"base","task_id":"q1","greedy":{"correct":true,"canonical":"4","tokens":2},"samples":[{"seed":0,"text":"#### 4","correct":true,"canonical":"4","reason":"","tokens":3,"finish_reason":"stop"},{"seed":1,"text":"no","correct":false,"canonical":null,"reason":"","tokens":5,"finish_reason":"stop"}],"correct":1,"vote":{}}
            {"arm":"base","task_id":"q2","greedy":{"correct":false,"canonical":null,"tokens":2},"samples":[{"seed":0,"text":"#### 7","correct":false,"canonical":"7","reason":"","tokens":4,"finish_reason":"stop"},{"seed":1,"text":"#### 6","correct":true,"canonical":"6","reason":"","tokens":4,"finish_reason":"stop"}],"correct":1,"vote":{}}
            """, old, "eval.tasks.jsonl")
        _ = try write(
            """
            {"task_id":"q1","sample":0,"seed":0,"teacher":"checkpoint xxh64:cd","settings":{},"text":"#### 4","correct":true,"reason":"","verifier":"exact","finish_reason":"stop","prompt_tokens":7,"completion_tokens":3,"latency":1.5,"logprobs":[-1.0,-3.0]}
            {"task_id":"q1","sample":1,"seed":1,"teacher":"checkpoint xxh64:cd","settings":{},"error":"timeout","reason":"no response","attempts":2}
            {"task_id":"q2","sample":0,"seed":0,"teacher":"checkpoint xxh64:cd","settings":{},"text":"#### 6","correct":true,"reason":"","verifier":"exact","finish_reason":"stop","prompt_tokens":9,"completion_tokens":3,"latency":1.5}
            """, old, "sample/samples.jsonl")
        _ = try write(
            #"{"recipe": "{\"stages\":[{\"type\":\"sample\",\"name\":\"sample\",\"output\":\"/elsewhere/sample\",\"tasks\":\"\#(tasks)\"}]}"}"#,
            old, "run.json")
        _ = try write(report(#", "parameters": 1234"#), new, "eval.json")
        _ = try write(#"{"tasks": 2, "teacher_parameters": 99}"#, new, "sample/stats.json")
        _ = try write(
            #"{"task_id":"q2","sample":0,"seed":0,"teacher":"checkpoint xxh64:ef","text":"6","correct":true,"credit":1,"canonical":"6","prompt_tokens":3,"completion_tokens":1,"latency":0.5}"#,
            new, "sample/samples.jsonl")
        _ = try write(
            """
            {"arm":"base","task_id":"q1","samples":[{"seed":0,"text":"4","correct":true,"credit":1,"canonical":"4","tokens":3,"prompt_tokens":11,"latency":0.5}],"correct":1}
            """, new, "eval.tasks.jsonl")
        return (root, old, new)
    }

    @Test func oldAndNewRunDirectoriesBuildOneTable() throws {
        let (root, old, new) = try runDirectories()
        defer { try? FileManager.default.removeItem(at: root) }
        var lines: [String] = []
        let (table, notes) = try VerdictSources.build(paths: [old.path, new.path]) { lines.append($0) }
        #expect(lines.count == 4)
        // "base" and "sample" are in both runs: each takes its run directory's name.
        #expect(table.models.map(\.name) == ["old/base", "old/sample", "new/base", "new/sample"])
        // Parameter counts: from the new eval report and the new sample stage's stats.json.
        #expect(table.models.map(\.parameters) == [nil, nil, 1234, 99])
        #expect(table.rows[1].models["new/sample"]?.samples.map(\.answer) == ["6"])
        #expect(table.models[1].identity == "checkpoint xxh64:cd" && table.models[1].kind == "sample")
        #expect(table.rows.map(\.taskID) == ["q1", "q2"])
        // Prompts from the task files: a plain prompt, a conversation's last user message.
        #expect(table.rows.map(\.prompt) == ["2+2?", "3+3?"])
        // The old eval: no prompt tokens, no latency; its canonical answers and token counts.
        let oldBase = try #require(table.rows[0].models["old/base"])
        #expect(oldBase.n == 2 && oldBase.c == 1)
        #expect(oldBase.samples.map(\.answer) == ["4", nil] && oldBase.samples.map(\.tokensOut) == [3, 5])
        #expect(oldBase.samples.allSatisfy { $0.tokensIn == nil && $0.latency == nil && $0.credit == nil })
        // The old sample stage: no canonical answers (null), the failed call left out, logprobs summarised.
        let sample = try #require(table.rows[0].models["old/sample"])
        #expect(sample.n == 1 && sample.samples[0].answer == nil && sample.samples[0].tokensIn == 7)
        #expect(sample.samples[0].logprobMean == -2 && sample.samples[0].logprobMin == -3)
        // Quantiles of [-3, -1] (sorted), linear between them: q10 -2.8, q25 -2.5, median -2.
        #expect(abs(sample.samples[0].logprobQ10! - -2.8) < 1e-12 && sample.samples[0].logprobQ25 == -2.5)
        #expect(sample.samples[0].logprobMedian == -2)
        #expect(notes.contains { $0.contains("1 failed teacher calls left out") })
        // The new eval: prompt tokens and latency recorded.
        let newBase = try #require(table.rows[0].models["new/base"])
        #expect(newBase.samples[0].tokensIn == 11 && newBase.samples[0].latency == 0.5 && newBase.samples[0].credit == 1)
        #expect(sample.samples[0].credit == nil && table.rows[1].models["new/sample"]?.samples[0].credit == 1)
        #expect(table.rows[1].models["new/base"] == nil)
        // A second eval in a subfolder of the same run, with the same arm name: named by its folder.
        _ = try write(
            #"{"tasks": null, "arms": [{"name": "base", "model": "m", "checksum": null}]}"#, new, "cmp/eval.json")
        _ = try write(#"{"arm": "base", "task_id": "q2", "samples": []}"#, new, "cmp/eval.tasks.jsonl")
        let both = try VerdictSources.build(paths: [old.path, new.path]).table
        #expect(both.models.map(\.name) == ["old/base", "old/sample", "new/base", "new/cmp/base", "new/sample"])
        // The built table survives its own file.
        let path = try write(table.jsonl(), root, "v.jsonl")
        #expect(try VerdictTable.read(path: path) == table)
    }

    /// --reverify: recorded texts judged again with the task file and verifier settings the
    /// source records, filling canonical answers old files lack and correcting old verdicts.
    @Test func reverifyJudgesRecordedTextsAgain() throws {
        let (root, old, new) = try runDirectories()
        defer { try? FileManager.default.removeItem(at: root) }
        // A sample an older verifier credited wrongly.
        let samples = old.appendingPathComponent("sample/samples.jsonl")
        let line = #####"{"task_id":"q2","sample":1,"seed":1,"teacher":"checkpoint xxh64:cd","text":"#### 5","correct":true}"#####
        try (String(contentsOf: samples, encoding: .utf8) + "\n" + line + "\n").write(to: samples, atomically: true, encoding: .utf8)
        let recorded = try VerdictSources.build(paths: [old.path]).table
        #expect(recorded.rows[1].models["sample"]?.samples.map(\.correct) == [true, true])
        let (table, _) = try VerdictSources.build(paths: [old.path], reverify: true)
        #expect(table.rows[0].models["sample"]?.samples.map(\.answer) == ["4"])
        #expect(table.rows[1].models["sample"]?.samples.map(\.answer) == ["6", "5"])
        #expect(table.rows[1].models["sample"]?.samples.map(\.correct) == [true, false])
        // Credit, which the old files lack, comes with today's verdicts.
        #expect(recorded.rows[1].models["sample"]?.samples.map(\.credit) == [nil, nil])
        #expect(table.rows[1].models["sample"]?.samples.map(\.credit) == [1, 0])
        #expect(table.rows[0].models["base"]?.samples.map(\.credit) == [1, 0])
        #expect(table.rows[0].models["base"]?.samples.map(\.answer) == ["4", nil])
        // The new run's sample stage has no run.json: nothing says what to judge it against.
        #expect { try VerdictSources.build(paths: [new.path], reverify: true) } throws: {
            ($0 as? UserError)?.problem.contains("task file is not recorded") == true
        }
    }

    @Test func runDirectoriesWithoutSamplesAreRefused() throws {
        let dir = try scratch("verdict-empty")
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect {
            try VerdictSources.build(paths: [dir.path])
        } throws: { ($0 as? UserError)?.kind == .usage }
        #expect {
            try VerdictSources.build(paths: [dir.appendingPathComponent("missing").path])
        } throws: { ($0 as? UserError)?.kind == .io }
        // A row naming an arm its report does not have: the line and the fix.
        _ = try write(#"{"tasks": null, "arms": [{"name": "a", "model": "m", "checksum": null}]}"#, dir, "eval.json")
        _ = try write(#"{"arm": "b", "task_id": "q", "samples": []}"#, dir, "eval.tasks.jsonl")
        #expect {
            try VerdictSources.build(paths: [dir.path])
        } throws: { "\($0)".contains("eval.tasks.jsonl:1:") && "\($0)".contains("arm \"b\" is not in") }
    }
}
