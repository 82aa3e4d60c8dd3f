import Foundation
import JSON
import Platform
import TextData
import Verify

#if canImport(Glibc)
    import Glibc
#endif

/// Settings of the `command` teacher: an external program that reads the rendered prompt on
/// stdin and prints the completion on stdout. Defaults as documented in docs/teacher.md.
package struct CommandTeacherConfig: Sendable, Equatable, Codable {
    /// The program's argv (no shell): the program, found on PATH, then its arguments. Task
    /// text never goes into it; the prompt is on stdin and the seed in `DISTILL_SEED`.
    package var command: [String]
    /// Samples per task (k), 1...1000; sample i gets `DISTILL_SEED=seed+i`.
    package var samples: Int = 1
    package var seed: Int = 0
    /// Seconds one run may take before SIGTERM (then SIGKILL a second later); > 0.
    package var timeoutSeconds: Double = 60
    /// Programs running at once, 1...256.
    package var concurrency: Int = 4
    /// Runs per sample including the first, 1...20; a nonzero exit or a timeout is retried.
    package var maxAttempts: Int = 1
    /// The chat template that renders tasks with messages or tools.
    package var template: ChatTemplate = .chatml

    package init(command: [String]) { self.command = command }

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case command, samples, seed, concurrency, template
        case timeoutSeconds = "timeout_seconds"
        case maxAttempts = "max_attempts"
    }

    package func problems() -> [String] {
        var out: [String] = []
        if command.isEmpty || command[0].isEmpty {
            out.append("command must be the program's argv, e.g. [\"python3\", \"teacher.py\"]")
        }
        if !(1...1000).contains(samples) { out.append("samples must be within 1...1000, got \(samples)") }
        if seed < 0 { out.append("seed must be >= 0, got \(seed)") }
        if !(timeoutSeconds > 0) { out.append("timeout_seconds must be > 0, got \(timeoutSeconds)") }
        if !(1...256).contains(concurrency) { out.append("concurrency must be within 1...256, got \(concurrency)") }
        if !(1...20).contains(maxAttempts) { out.append("max_attempts must be within 1...20, got \(maxAttempts)") }
        return out
    }
}

/// The `command` teacher. Each sample runs the program once (through `/usr/bin/env` for the
/// PATH lookup, never a shell) with the rendered prompt on stdin and `DISTILL_SEED` set; its
/// stdout, trailing newlines dropped, is the completion. A nonzero exit, a signal or a timeout
/// is a failure whose reason ends with the last lines of its stderr. Results are cached like
/// the other teachers' (key: the argv, the rendered prompt and the seed).
package struct CommandTeacher: TeacherBackend {
    package let config: CommandTeacherConfig
    package let cache: CallCache
    package let counters = CallCounters()

    package init(config: CommandTeacherConfig, cache: CallCache) throws {
        try refuseProblems(config.problems())
        self.config = config
        self.cache = cache
    }

    package var name: String { "command \(JSONValue.array(config.command.map { .string($0) }).compact())" }
    package var samplesPerTask: Int { config.samples }
    package var settings: JSONValue { .obj(["timeout_seconds": .double(config.timeoutSeconds)]) }

    package func validate(_ tasks: [TeacherTask]) throws {}

    package func cacheKey(prompt: String, seed: Int) -> String {
        name + "\n" + JSONValue.obj(["prompt": .string(prompt), "seed": .int(seed)]).compact(sortedKeys: true)
    }

    package func sample(
        _ tasks: [TeacherTask], onSample: @escaping @Sendable (TeacherSample) -> Void = { _ in }
    ) async throws -> [TeacherSample] {
        try await sampleEach(tasks, samples: config.samples, concurrency: config.concurrency, onSample: onSample) {
            try await self.sampleOne($0, taskIndex: $1, sampleIndex: $2)
        }
    }

    package func sampleOne(_ task: TeacherTask, taskIndex: Int, sampleIndex: Int) async throws -> TeacherSample {
        let seed = config.seed + sampleIndex
        let prompt = PromptRendering.render(task, chat: ChatStyle(template: config.template)).text
        let key = cacheKey(prompt: prompt, seed: seed)
        var sample = TeacherSample(
            taskIndex: taskIndex, taskID: task.id, sampleIndex: sampleIndex, seed: seed,
            result: .failure(TeacherCallError(kind: .exitStatus, message: "not run", attempts: 0)), cached: false,
            requests: 0)
        if let hit = try cache.lookup(key) {
            sample.result = .success(TeacherCompletion(text: hit.response, latency: hit.latency))
            sample.cached = true
            counters.add(cacheHits: 1, completed: 1)
            return sample
        }
        let config = self.config
        for attempt in 1...config.maxAttempts {
            let started = Date()
            let outcome = await withCheckedContinuation { continuation in
                DispatchQueue.global().async {
                    continuation.resume(returning: Self.run(config, prompt: prompt, seed: seed))
                }
            }
            let latency = cachedLatency(Date().timeIntervalSince(started))
            sample.requests = attempt
            counters.add(requests: 1)
            switch outcome {
            case .success(let text):
                try cache.store(key, teacher: name, CachedCall(response: text, latency: latency))
                sample.result = .success(TeacherCompletion(text: text, latency: latency))
                counters.add(completed: 1)
                return sample
            case .failure(let failure):
                sample.result = .failure(
                    TeacherCallError(kind: failure.kind, message: failure.message, attempts: attempt))
                if attempt == config.maxAttempts {
                    counters.add(completed: 1, failure: failure.kind)
                } else {
                    counters.add(retries: 1)
                }
            }
        }
        return sample
    }

    /// One run of the program: its stdout, or a classified failure.
    static func run(_ config: CommandTeacherConfig, prompt: String, seed: Int) -> Result<String, FailureBox> {
        var program = Subprocess(config.command, timeout: config.timeoutSeconds)
        program.input = prompt
        program.environment = ["DISTILL_SEED": String(seed)]
        let outcome: Subprocess.Outcome
        switch program.run() {
        case .success(let o): outcome = o
        case .failure(let error): return .failure(FailureBox(.exitStatus, nil, error.problem))
        }
        let tail = Subprocess.lastLines(outcome.stderr)
        let said = tail.isEmpty ? "" : "; stderr: \(tail)"
        switch outcome.ending {
        case .timedOut:
            return .failure(
                FailureBox(.timeout, nil, "no output within \(Subprocess.formatSeconds(config.timeoutSeconds))\(said)"))
        case .signal(let signal): return .failure(FailureBox(.exitStatus, nil, "killed by signal \(signal)\(said)"))
        case .exited(127): return .failure(FailureBox(.exitStatus, nil, "\(config.command[0]) not found on PATH\(said)"))
        case .exited(0):
            var text = outcome.stdout
            while text.last?.isNewline == true { text.removeLast() }
            return .success(text)
        case .exited(let status): return .failure(FailureBox(.exitStatus, nil, "exited \(status)\(said)"))
        }
    }
}
