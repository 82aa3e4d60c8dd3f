// The fan-out every request-per-sample teacher shares: each task sampled `samples` times,
// at most `concurrency` calls in flight, results in task, then sample order.

import Verify


/// Runs `one(task, taskIndex, sampleIndex)` for every task and sample index with at most
/// `concurrency` calls in flight. `onSample` sees each sample as it finishes (for progress).
func sampleEach(
    _ tasks: [TeacherTask], samples: Int, concurrency: Int, onSample: @Sendable (TeacherSample) -> Void,
    _ one: @escaping @Sendable (TeacherTask, Int, Int) async throws -> TeacherSample
) async throws -> [TeacherSample] {
    let jobs = tasks.indices.flatMap { t in (0..<samples).map { (t, $0) } }
    var results: [TeacherSample?] = Array(repeating: nil, count: jobs.count)
    try await withThrowingTaskGroup(of: (Int, TeacherSample).self) { group in
        var next = 0
        func launch() {
            let j = next
            let (t, s) = jobs[j]
            next += 1
            group.addTask { (j, try await one(tasks[t], t, s)) }
        }
        while next < min(max(concurrency, 1), jobs.count) { launch() }
        while let (j, sample) = try await group.next() {
            results[j] = sample
            onSample(sample)
            if next < jobs.count { launch() }
        }
    }
    return results.map { $0! }
}
