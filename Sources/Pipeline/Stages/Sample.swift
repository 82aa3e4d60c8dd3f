// The `sample` stage: asks a teacher for k samples of every task (each call cached and
// committed before use), verifies them, and writes samples.jsonl, sft.jsonl, pairs.jsonl and
// stats.json into the stage's folder. A killed stage resumes by running again: every finished
// call comes from the cache, and the outputs, written at the end from the samples in task
// order, are the same bytes as an uninterrupted run's.

import Core
import Foundation
import JSON
import ModelIO
import Platform
import Recipe
import Teacher
import Verify

struct SampleExecutor: StageExecutor {
    func run(_ stage: Stage, context: RunContext, emit: (StageEvent) -> Void) throws -> StageOutputs {
        guard case .sample(let s) = stage else { preconditionFailure("executor for sample got a \(stage.type) stage") }
        if let threads = context.threads { Threads.set(threads) }
        let tasks = TaskReader.subset(try TaskReader.read(path: s.tasks), count: s.maxTasks, seed: s.pairs.seed)
        let verifier = Verifier(s.verifier)
        try verifier.validate(tasks)
        let fm = FileManager.default
        try fm.createDirectory(atPath: s.output, withIntermediateDirectories: true)
        try fm.createDirectory(
            atPath: (s.cache as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let cache = try CallCache(path: s.cache)

        let teacher: any TeacherBackend
        var parameters: Int?
        switch s.teacher {
        case .openai(let c): teacher = try OpenAITeacher(config: c, cache: cache)
        case .command(let c): teacher = try CommandTeacher(config: c, cache: cache)
        case .checkpoint(let c):
            let loaded = try loadModel(from: context.path(of: CheckpointSource(c.checkpoint)))
            let tokenizer = try loaded.requireTokenizer()
            parameters = loaded.model.config.parameterCount
            teacher = try CheckpointTeacher(
                config: c, model: loaded.model, tokenizer: tokenizer, tokenizerJSON: loaded.tokenizerJSON ?? "",
                endOfText: loaded.endOfText, modelChat: loaded.chat, blocks: loaded.fileBlocks, cache: cache)
        }
        // The teacher sees each task through the stage's teacher prompt; verdicts, rows and pairs
        // use the task itself.
        let prompt = s.teacherPrompt ?? TeacherPrompt()
        let examples = try prompt.loadExamples()
        let teacherTasks = tasks.map { prompt.apply($0, examples: examples) }
        try teacher.validate(teacherTasks)
        let cached = try cache.count()
        emit(
            .message(
                "\(tasks.count) tasks x \(teacher.samplesPerTask) samples from \(teacher.name) (cache: \(cached) calls in \(s.cache))"
            ))

        // Samples arrive on the teacher's threads and are verified on up to one thread per core
        // (a command verifier runs a program per sample); verdicts are recorded and reported
        // here, on the executor's thread, the only one that may call `emit`.
        let total = tasks.count * teacher.samplesPerTask
        let started = Date()
        var lastReport = Date.distantPast
        var verified: [VerifiedSample] = []
        var correct = 0, answered = 0, submitted = 0
        let queue = SampleQueue()
        let verifying = OperationQueue()
        verifying.maxConcurrentOperationCount = ProcessInfo.processInfo.activeProcessorCount
        func submit(_ sample: TeacherSample) {
            submitted += 1
            let task = tasks[sample.taskIndex]
            verifying.addOperation {
                var v = VerifiedSample(
                    sample: sample, verdict: nil, verifier: verifier.kind(for: task)?.rawValue ?? "none")
                if case .success(let completion) = sample.result {
                    v.verdict = verifier.verify(completion.text, for: task)
                }
                queue.push(.verified(v))
            }
        }
        func record(_ v: VerifiedSample) {
            if let verdict = v.verdict {
                answered += 1
                if verdict.correct { correct += 1 }
            }
            verified.append(v)
            let now = Date()
            if verified.count == total || verified.count == 1 || now.timeIntervalSince(lastReport) >= 1 {
                lastReport = now
                let seconds = max(now.timeIntervalSince(started), 1e-9)
                emit(
                    .progress(
                        step: verified.count, total: total,
                        metrics: [
                            "pass_rate": answered > 0 ? Double(correct) / Double(answered) : 0,
                            "calls_per_s": Double(verified.count) / seconds,
                        ]))
            }
        }
        var finished = false
        if let local = teacher as? CheckpointTeacher {
            // The engine runs on this thread; verdicts that are ready are recorded between batches.
            _ = try local.sampleSync(teacherTasks) { sample in
                submit(sample)
                while let item = queue.tryPop() { if case .verified(let v) = item { record(v) } }
            }
            finished = true
        } else {
            Task {
                do {
                    _ = try await teacher.sample(teacherTasks) { queue.push(.sample($0)) }
                    queue.push(.finished(nil))
                } catch {
                    queue.push(.finished(error))
                }
            }
        }
        while !(finished && verified.count == submitted) {
            switch queue.pop() {
            case .sample(let sample): submit(sample)
            case .verified(let v): record(v)
            case .finished(let error?):
                verifying.waitUntilAllOperationsAreFinished()
                throw error
            case .finished(nil): finished = true
            }
        }
        let seconds = Date().timeIntervalSince(started)
        verified.sort { ($0.sample.taskIndex, $0.sample.sampleIndex) < ($1.sample.taskIndex, $1.sample.sampleIndex) }

        var outputs = SampleOutputs.build(
            tasks: tasks, samples: verified, teacher: teacher.name, settings: teacher.settings, pairing: s.pairs,
            samplesPerTask: teacher.samplesPerTask)
        outputs.stats.teacherParameters = parameters
        let dir = URL(fileURLWithPath: s.output)
        let files = zip(
            SampleStage.files, [outputs.samplesJSONL, outputs.sftJSONL, outputs.pairsJSONL, outputs.stats.json()])
        for (name, text) in files { try writeAtomically(text, to: dir.appendingPathComponent(name).path) }

        let c = teacher.counters
        for line in outputs.stats.summaryLines() { emit(.message(line)) }
        if let reused = (teacher as? CheckpointTeacher)?.prefixCache.reusedTokens, reused > 0 {
            emit(.message("prefix cache: \(reused) prompt tokens copied from earlier batches instead of prefilled"))
        }
        emit(
            .message(
                "\(c.requests) calls made, \(c.cacheHits) from the cache, \(c.retries) retries, "
                    + String(format: "%.1f s (%.2f samples/s)", seconds, Double(total) / max(seconds, 1e-9))))
        let st = outputs.stats
        var summary: [String: SummaryValue] = [
            "samples": .int(st.samples), "correct": .int(st.correct), "pass_rate": .double(st.passRate),
            "sft_rows": .int(st.sftRows), "pairs": .int(st.pairs), "mixed_prompts": .int(st.mixedPrompts),
            "requests": .int(c.requests), "cache_hits": .int(c.cacheHits), "retries": .int(c.retries),
            "failed_calls": .int(st.failedCalls), "seconds": .double(seconds),
        ]
        if let p1 = st.passAtK.first { summary["pass_at_1"] = .double(p1.value) }
        // The outputs above are written for inspection, but a stage whose calls failed is not
        // done: the next run retries exactly the failed ones (finished calls come from the cache).
        if Double(st.failedCalls) > (s.maxFailedFraction ?? 0) * Double(total) {
            throw UserError(
                path: teacher.name,
                problem: "\(st.failedCalls) of \(total) teacher calls failed after their retries (the reasons are in \(SampleStage.files[0]))",
                fix: "check the teacher and run again: only the failed calls are repeated (or allow some with max_failed_fraction)",
                kind: .io)
        }
        return StageOutputs(
            files: [s.output] + SampleStage.files.map { dir.appendingPathComponent($0).path }, summary: summary)
    }
}

/// Hands samples from the teacher's tasks to the executor's thread.
private final class SampleQueue: @unchecked Sendable {
    // @unchecked: `items` is only touched with `condition` locked.
    enum Item {
        case sample(TeacherSample)
        case verified(VerifiedSample)
        case finished((any Error)?)
    }

    private let condition = NSCondition()
    private var items: [Item] = []

    func push(_ item: Item) {
        condition.lock()
        items.append(item)
        condition.signal()
        condition.unlock()
    }

    /// The next item, or nil at once when there is none.
    func tryPop() -> Item? {
        condition.lock()
        defer { condition.unlock() }
        return items.isEmpty ? nil : items.removeFirst()
    }

    func pop() -> Item {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty { condition.wait() }
        return items.removeFirst()
    }
}
