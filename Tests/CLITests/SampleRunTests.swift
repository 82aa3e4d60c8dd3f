// `distill run` with a pretrain stage and a sample stage whose checkpoint teacher is the
// model just trained: the outputs exist, read back through TextData's SFT and preference
// readers with the teacher's tokenizer, and a forced re-run takes every sample from the cache
// and writes the same bytes.

import Foundation
import JSON
import ModelIO
import Testing
import TextData

@testable import Recipe

@Suite(.serialized) struct SampleRunTests {
    @Test func aCheckpointTeacherSamplesThroughARecipe() throws {
        let root = try scratchDirectory("sample-run")
        defer { try? FileManager.default.removeItem(at: root) }
        let tasks = root.appendingPathComponent("tasks.jsonl")
        try (0..<6).map { #"{"id": "t\#($0)", "prompt": "Ada took the", "pattern": "[aeiou]"}"# }
            .joined(separator: "\n").write(to: tasks, atomically: true, encoding: .utf8)
        var recipe = tinyRecipe(runDir: root.appendingPathComponent("run").path, steps: 6)
        recipe.removeLast(3)  // "\n]}": the end of the stages array
        recipe += """
            ,
              {"type": "sample", "tasks": "\(tasks.path)",
               "teacher": {"type": "checkpoint", "samples": 4, "temperature": 1.2, "max_tokens": 6, "batch_size": 5},
               "verifier": {"type": "regex", "mode": "search"}, "pairs": {"strategy": "all", "max_per_prompt": 2}}
            ]}
            """
        let recipeURL = root.appendingPathComponent("recipe.json")
        try Data(recipe.utf8).write(to: recipeURL)
        let first = try startRun(recipeURL)
        first.waitUntilExit()
        #expect(first.terminationStatus == 0)

        let out = root.appendingPathComponent("run/sample")
        func read(_ name: String) -> String {
            (try? String(contentsOf: out.appendingPathComponent(name), encoding: .utf8)) ?? "missing"
        }
        let samples = read("samples.jsonl")
        #expect(samples.split(separator: "\n").count == 24)
        #expect(samples.contains(#""teacher":"checkpoint xxh64:"#))
        let stats = read("stats.json")
        #expect(stats.contains("\"samples\" : 24"))
        // The checkpoint teacher's parameter count, for verdict tables (docs/routing.md).
        let parameters = loadModelConfigParameters(root.appendingPathComponent("run/base.h5").path)
        #expect(stats.contains("\"teacher_parameters\" : \(parameters)"), "\(stats)")
        // Each answered sample carries its canonical answer (regex search: the first vowel).
        #expect(samples.contains(#""canonical":""#))

        // The outputs read back with the teacher's tokenizer.
        let loaded = try loadModel(from: root.appendingPathComponent("run/base.h5").path)
        let tokenizer = try loaded.requireTokenizer()
        let sft = try SFTData.read(
            path: out.appendingPathComponent("sft.jsonl").path, format: SFTFormat(eosToken: "<|endoftext|>"),
            tokenizer: tokenizer)
        let pairs = try PreferenceData.read(
            path: out.appendingPathComponent("pairs.jsonl").path, format: SFTFormat(eosToken: "<|endoftext|>"),
            tokenizer: tokenizer)
        #expect(sft.count == read("sft.jsonl").split(separator: "\n").count)
        #expect(pairs.count == read("pairs.jsonl").split(separator: "\n").count)
        #expect(!sft.isEmpty, "a random 6-step model writes a vowel now and then")

        // Forced re-run (run.json removed): all from the cache, the same bytes.
        let before = SampleStage.files.map(read)
        try FileManager.default.removeItem(at: root.appendingPathComponent("run/run.json"))
        let second = try startRun(recipeURL)
        second.waitUntilExit()
        #expect(second.terminationStatus == 0)
        #expect(SampleStage.files.map(read) == before)
        let state = try String(contentsOf: root.appendingPathComponent("run/run.json"), encoding: .utf8)
        #expect(state.contains("\"cache_hits\":24") || state.contains("\"cache_hits\" : 24"))
    }

    @Test func usageMistakesExitWithTwo() throws {
        let root = try scratchDirectory("sample-usage")
        defer { try? FileManager.default.removeItem(at: root) }
        let noSample = root.appendingPathComponent("r.json")
        try Data(tinyRecipe(runDir: root.appendingPathComponent("run").path, steps: 4).utf8).write(to: noSample)
        for arguments in [
            ["sample"], ["sample", noSample.path, "--tasks", "t.jsonl"], ["sample", noSample.path],
            [
                "sample", "--tasks", "t.jsonl", "--out", root.path, "--teacher-json",
                #"{"type": "checkpoint", "samples": 0}"#,
            ],
        ] {
            let p = Process()
            p.executableURL = distillBinary()
            p.arguments = arguments
            let err = Pipe()
            p.standardOutput = FileHandle.nullDevice
            p.standardError = err
            try p.run()
            let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            #expect(p.terminationStatus == 2, "\(arguments): \(message)")
            if arguments.count == 2 { #expect(message.contains("has no sample stage")) }
            if arguments.count == 8 {
                #expect(message.contains("stages[0].teacher.samples: samples must be within 1...1000, got 0"))
            }
        }
    }

    /// Failed teacher calls fail the stage (exit 74, not done); the next run repeats only them.
    @Test func failedCallsFailTheStageAndAreRetriedNextRun() throws {
        let root = try scratchDirectory("sample-failures")
        defer { try? FileManager.default.removeItem(at: root) }
        let tasks = root.appendingPathComponent("tasks.jsonl")
        try #"{"id": "a", "prompt": "p", "answer": "4"}\#n{"id": "b", "prompt": "q", "answer": "4"}\#n"#
            .write(to: tasks, atomically: true, encoding: .utf8)
        let broken = root.appendingPathComponent("broken").path
        let calls = root.appendingPathComponent("calls.log").path
        try Data().write(to: URL(fileURLWithPath: broken))
        // Seeds 2 and 3 fail while the flag file exists; every call is logged.
        let script = "echo $DISTILL_SEED >> \(calls); if [ -e \(broken) ] && [ $DISTILL_SEED -ge 2 ]; then exit 3; fi; echo 4"
        let recipe = root.appendingPathComponent("r.json")
        try """
        {"name": "r", "run_dir": "\(root.appendingPathComponent("run").path)", "stages": [
          {"type": "sample", "tasks": "\(tasks.path)",
           "teacher": {"type": "command", "command": ["sh", "-c", \(JSONValue.string(script).compact())], "samples": 4, "max_attempts": 1}}]}
        """.write(to: recipe, atomically: true, encoding: .utf8)
        let first = try distill(["run", recipe.path])
        #expect(first.status == 74)
        #expect(first.err.contains("4 of 8 teacher calls failed"), "\(first.err)")
        let state = try String(contentsOf: root.appendingPathComponent("run/run.json"), encoding: .utf8)
        #expect(state.contains("\"failed\""))
        try FileManager.default.removeItem(atPath: broken)
        let second = try distill(["run", recipe.path])
        #expect(second.status == 0, "\(second.err)")
        // 8 calls the first time, then only the 4 that failed.
        #expect(try String(contentsOfFile: calls, encoding: .utf8).split(separator: "\n").count == 12)
        let stats = try String(contentsOf: root.appendingPathComponent("run/sample/stats.json"), encoding: .utf8)
        #expect(stats.contains("\"correct\" : 8") && stats.contains("\"failed_calls\" : 0"), "\(stats)")
    }

    @Test func aCommandTeacherWithACommandVerifierVerifiesConcurrently() throws {
        let root = try scratchDirectory("sample-command")
        defer { try? FileManager.default.removeItem(at: root) }
        let tasks = root.appendingPathComponent("tasks.jsonl")
        try #"{"id": "a", "prompt": "p", "check": ["x"]}\#n{"id": "b", "prompt": "q", "check": ["y"]}\#n"#
            .write(to: tasks, atomically: true, encoding: .utf8)
        let log = root.appendingPathComponent("checks.log").path
        // The checker logs its start and end, takes 0.3 s, and accepts even seeds.
        let checker =
            "echo s $(date +%s.%N) >> \(log); sleep 0.3; echo e $(date +%s.%N) >> \(log); grep -q 'answer [02468]'"
        let teacher = #"{"type": "command", "command": ["sh", "-c", "echo answer $DISTILL_SEED"], "samples": 4}"#
        let verifier = #"{"type": "command", "command": ["sh", "-c", "\#(checker)"]}"#
        let p = Process()
        p.executableURL = distillBinary()
        p.arguments = [
            "sample", "--tasks", tasks.path, "--out", root.appendingPathComponent("out").path, "--teacher-json",
            teacher,
            "--verifier-json", verifier,
        ]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let stats = try String(contentsOf: root.appendingPathComponent("out/stats.json"), encoding: .utf8)
        #expect(stats.contains("\"correct\" : 4") && stats.contains("\"mixed_prompts\" : 2"))
        let sft = try String(contentsOf: root.appendingPathComponent("out/sft.jsonl"), encoding: .utf8)
        #expect(
            sft == #"{"prompt":"p","completion":"answer 0"}\#n{"prompt":"p","completion":"answer 2"}\#n"#
                + #"{"prompt":"q","completion":"answer 0"}\#n{"prompt":"q","completion":"answer 2"}\#n"#)
        // Checks overlapped: at some moment two were running (the machine has >= 2 cores).
        var running = 0, most = 0
        let events = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map {
            ($0.split(separator: " ")[0], Double($0.split(separator: " ")[1])!)
        }.sorted { $0.1 < $1.1 }
        #expect(events.count == 16)
        for (kind, _) in events {
            running += kind == "s" ? 1 : -1
            most = max(most, running)
        }
        if ProcessInfo.processInfo.activeProcessorCount >= 2 { #expect(most >= 2) }
    }
}

/// The teacher prompt: the teacher (a command that answers with the prompt it was given) sees
/// the system message, the worked examples and the tools in the user turn; the rows keep the
/// task's own form (its messages and tools, none of the examples).
@Suite struct TeacherPromptRunTests {
    @Test func theTeacherSeesExamplesAndTheRowsDoNot() throws {
        let root = try scratchDirectory("teacher-prompt")
        defer { try? FileManager.default.removeItem(at: root) }
        let tasks = root.appendingPathComponent("tasks.jsonl"), shots = root.appendingPathComponent("shots.jsonl")
        try #"{"id": "t", "messages": [{"role": "user", "content": "Area of 5 by 3?"}], "tools": [{"name": "area", "parameters": {"type": "object", "properties": {"w": {"type": "number"}}}}], "pattern": "(?s).*"}"#
            .appending("\n").write(to: tasks, atomically: true, encoding: .utf8)
        try #"{"messages": [{"role": "user", "content": "Is 7 prime?"}, {"role": "assistant", "content": "[is_prime(n=7)]"}], "tools": [{"name": "is_prime"}]}"#
            .appending("\n").write(to: shots, atomically: true, encoding: .utf8)
        let r = try distill([
            "sample", "--tasks", tasks.path, "--out", root.appendingPathComponent("out").path,
            "--teacher-json", #"{"type": "command", "command": ["cat"], "samples": 1}"#,
            "--verifier-json", #"{"type": "regex", "mode": "search"}"#,
            "--teacher-prompt-json", #"{"system": "Call functions.", "examples": "\#(shots.path)", "tools_in": "user"}"#,
        ])
        #expect(r.status == 0, "\(r.err)")
        let prompt = """
            <|im_start|>system
            Call functions.<|im_end|>
            <|im_start|>user
            <tools>
            {"name": "is_prime"}
            </tools>

            Is 7 prime?<|im_end|>
            <|im_start|>assistant
            [is_prime(n=7)]<|im_end|>
            <|im_start|>user
            <tools>
            {"name": "area", "parameters": {"type": "object", "properties": {"w": {"type": "number"}}}}
            </tools>

            Area of 5 by 3?<|im_end|>
            <|im_start|>assistant

            """
        let sample = try String(contentsOf: root.appendingPathComponent("out/samples.jsonl"), encoding: .utf8)
        // The command teacher's answer is its input, less the final newline.
        #expect(sample.contains(JSONValue.string(String(prompt.dropLast())).compact()), "\(sample)")
        let sft = try String(contentsOf: root.appendingPathComponent("out/sft.jsonl"), encoding: .utf8)
        #expect(sft.hasPrefix(#"{"prompt":[{"role":"user","content":"Area of 5 by 3?"}],"completion":"#), "\(sft)")
        let row = try JSONValue.parse(Array(sft.utf8))
        guard case .object(let o) = row else { throw CocoaError(.fileReadCorruptFile) }
        #expect(o["prompt"]?.compact() == #"[{"role":"user","content":"Area of 5 by 3?"}]"#)
        #expect(o["tools"]?.compact() == #"[{"name":"area","parameters":{"type":"object","properties":{"w":{"type":"number"}}}}]"#)

        // A bad examples file is refused naming its line.
        try #"{"messages": [{"role": "user", "content": "no answer"}]}"#.appending("\n").write(to: shots, atomically: true, encoding: .utf8)
        let bad = try distill([
            "sample", "--tasks", tasks.path, "--out", root.appendingPathComponent("out2").path,
            "--teacher-json", #"{"type": "command", "command": ["cat"], "samples": 1}"#,
            "--teacher-prompt-json", #"{"examples": "\#(shots.path)", "tools_in": "usr"}"#,
        ])
        #expect(bad.status == 2 && bad.err.contains("tools_in") && bad.err.contains("user"), "\(bad.err)")
        let worse = try distill([
            "sample", "--tasks", tasks.path, "--out", root.appendingPathComponent("out3").path,
            "--teacher-json", #"{"type": "command", "command": ["cat"], "samples": 1}"#,
            "--teacher-prompt-json", #"{"examples": "\#(shots.path)"}"#,
        ])
        #expect(worse.status == 65 && worse.err.contains("shots.jsonl:1"), "\(worse.err)")
    }
}

/// A checkpoint's parameter count, as the sample stage reports its teacher's.
private func loadModelConfigParameters(_ path: String) -> Int {
    (try? loadModel(from: path).model.config.parameterCount) ?? -1
}
