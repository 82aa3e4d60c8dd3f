// Work sharing for the non-BLAS kernels. OpenBLAS owns the cores during an sgemm; distill's
// own kernels run between sgemms on the same number of threads, so the two never compete.

import Dispatch
import Foundation
import Synchronization

/// The process-wide thread count: how many cores distill's kernels and OpenBLAS use.
public enum Threads {
    private static let value = Atomic<Int>(defaultCount())

    /// `DISTILL_THREADS` when set to a positive integer, else the number of active cores.
    static func defaultCount() -> Int {
        if let s = ProcessInfo.processInfo.environment["DISTILL_THREADS"], let n = Int(s), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    public static var count: Int { value.load(ordering: .relaxed) }

    /// Sets the thread count for distill's kernels and for OpenBLAS. Results of every
    /// kernel are identical for a given count; runs meant to be bit-identical must use
    /// the same count.
    public static func set(_ n: Int) {
        precondition(n >= 1, "thread count must be >= 1, got \(n)")
        value.store(n, ordering: .relaxed)
        BLAS.setThreads(n)
    }
}

/// Splits `0..<count` into at most `Threads.count` contiguous chunks of at least `grain`
/// items and runs `body` on each chunk, in parallel when there is more than one. Chunk
/// boundaries depend only on `count`, `grain` and the thread count, so any per-chunk
/// reduction is deterministic.
@inline(__always)
package func parallelChunks(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
    guard count > 0 else { return }
    let workers = Serial.isActive ? 1 : min(Threads.count, max(1, count / max(1, grain)))
    if workers <= 1 {
        body(0..<count)
        return
    }
    let per = (count + workers - 1) / workers
    // concurrentPerform returns only after every iteration has run, so `body` never
    // outlives this call; the kernels it runs write disjoint memory by construction.
    withoutActuallyEscaping(body) { body in
        let shared = UncheckedSendable(body)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let lo = w * per
            let hi = min(count, lo + per)
            if lo < hi { shared.value(lo..<hi) }
        }
    }
}

/// Carries a value the compiler cannot prove Sendable across a fork-join boundary whose
/// safety the caller establishes (disjoint writes, join before return).
package struct UncheckedSendable<T>: @unchecked Sendable {
    package let value: T
    package init(_ value: T) { self.value = value }
}

/// A per-thread switch that makes every kernel run on the calling thread alone: used when
/// distill already runs independent work on each core (data-parallel replicas), where
/// splitting each op again would only add synchronisation.
public enum Serial {
    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        precondition(pthread_key_create(&k, nil) == 0, "pthread_key_create failed")
        return k
    }()

    /// Whether the calling thread runs kernels serially.
    public static var isActive: Bool { pthread_getspecific(key) != nil }

    /// Runs `body` with this thread's kernels serial.
    public static func run<R>(_ body: () throws -> R) rethrows -> R {
        let previous = pthread_getspecific(key)
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
        defer { pthread_setspecific(key, previous) }
        return try body()
    }
}

/// Runs `tasks` bodies at once, one per thread, each with serial kernels, and returns when
/// all are done. The caller must make them write disjoint memory.
public func runConcurrently(_ tasks: Int, _ body: (Int) -> Void) {
    withoutActuallyEscaping(body) { body in
        let shared = UncheckedSendable(body)
        DispatchQueue.concurrentPerform(iterations: tasks) { i in Serial.run { shared.value(i) } }
    }
}
