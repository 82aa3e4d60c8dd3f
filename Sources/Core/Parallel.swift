// Work sharing for the non-BLAS kernels. OpenBLAS owns the cores during an sgemm; distill's
// own kernels run between sgemms on the same number of threads, so the two never compete.

import CKernels
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
    let level = dk_thread_level()
    if level >= 0 {
        // A thread's own kernel level (`KernelLevel.with`) holds on the workers it hands chunks to.
        let inner = body
        return parallelChunks(count, workers: workers, per: per) { chunk in
            let previous = dk_thread_level()
            dk_set_thread_level(level)
            inner(chunk)
            dk_set_thread_level(previous)
        }
    }
    parallelChunks(count, workers: workers, per: per, body)
}

@inline(__always)
private func parallelChunks(_ count: Int, workers: Int, per: Int, _ body: (Range<Int>) -> Void) {
    if Spinning.isActive {
        SpinPool.shared.run(workers) { w in
            let lo = w * per
            let hi = min(count, lo + per)
            if lo < hi { body(lo..<hi) }
        }
        return
    }
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
    private static let flag = ThreadFlag()

    /// Whether the calling thread runs kernels serially.
    public static var isActive: Bool { flag.isSet }

    /// Runs `body` with this thread's kernels serial.
    public static func run<R>(_ body: () throws -> R) rethrows -> R { try flag.with(body) }
}

/// A flag set for the calling thread while a body runs (and restored after, so uses nest).
final class ThreadFlag: Sendable {
    private let key: pthread_key_t

    init() {
        var k = pthread_key_t()
        precondition(pthread_key_create(&k, nil) == 0, "pthread_key_create failed")
        key = k
    }

    var isSet: Bool { pthread_getspecific(key) != nil }

    func with<R>(_ body: () throws -> R) rethrows -> R {
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

/// A per-thread switch that makes `parallelChunks` hand its chunks to `SpinPool`'s workers,
/// which wait for work spinning rather than asleep: the decode engine runs a few hundred pieces
/// of parallel work per token, each tens of microseconds long, and waking sleeping threads
/// for each (as `DispatchQueue.concurrentPerform` does) took a sixth of a step in the kernel's
/// scheduler. Chunks are the same as without it, so results are too.
public enum Spinning {
    private static let flag = ThreadFlag()

    public static var isActive: Bool { flag.isSet }

    /// Runs `body` with this thread's parallel work on the spinning workers.
    public static func run<R>(_ body: () throws -> R) rethrows -> R { try flag.with(body) }
}

/// Worker threads that run chunk 1, 2, ... of one job at a time while the caller runs chunk 0.
/// Between jobs a worker spins (with the CPU's pause hint) for about `spinLimit` pauses, a
/// few tens of microseconds, then sleeps on its semaphore until the next job wakes it. A job
/// submitted while another thread's job runs falls back to `concurrentPerform`.
final class SpinPool: @unchecked Sendable {
    static let shared = SpinPool()

    /// Pauses a waiting worker spins before it sleeps.
    static let spinLimit = 2000

    private final class Worker: @unchecked Sendable {
        let sleeping = Atomic<Bool>(false)
        let wake = DispatchSemaphore(value: 0)
    }

    private let generation = Atomic<Int>(0)
    private let remaining = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    /// Set by the submitting thread before `generation` moves; read by workers after.
    private var job: ((Int) -> Void)?
    private var participants = 0
    private var workers: [Worker] = []
    private let starting = Mutex(())

    /// Runs `body(w)` for w in 0..<count, w = 0 on the calling thread; returns when all are done.
    func run(_ count: Int, _ body: (Int) -> Void) {
        guard count > 1 else { return body(0) }
        guard busy.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged else {
            withoutActuallyEscaping(body) { body in
                let shared = UncheckedSendable(body)
                DispatchQueue.concurrentPerform(iterations: count) { shared.value($0) }
            }
            return
        }
        defer { busy.store(false, ordering: .sequentiallyConsistent) }
        ensureWorkers(count - 1)
        withoutActuallyEscaping(body) { body in
            job = body
            participants = count - 1
            // Every worker acknowledges every job (those beyond `participants` at once), so none
            // can still be reading `job` or `participants` when the next job sets them.
            remaining.store(workers.count, ordering: .sequentiallyConsistent)
            generation.add(1, ordering: .sequentiallyConsistent)
            for worker in workers where worker.sleeping.exchange(false, ordering: .sequentiallyConsistent) {
                worker.wake.signal()
            }
            body(0)
            while remaining.load(ordering: .sequentiallyConsistent) > 0 { dk_pause() }
            job = nil
        }
    }

    private func ensureWorkers(_ n: Int) {
        guard workers.count < n else { return }
        starting.withLock { _ in
            while workers.count < n {
                let worker = Worker(), index = workers.count
                workers.append(worker)
                let seen = generation.load(ordering: .sequentiallyConsistent)
                let thread = Thread { [unowned self] in self.work(worker, index: index, seen: seen) }
                thread.name = "distill-spin-\(index + 1)"
                thread.start()
            }
        }
    }

    private func work(_ worker: Worker, index: Int, seen start: Int) {
        var seen = start
        while true {
            var spins = 0
            while generation.load(ordering: .sequentiallyConsistent) == seen {
                if spins < Self.spinLimit {
                    spins += 1
                    dk_pause()
                    continue
                }
                worker.sleeping.store(true, ordering: .sequentiallyConsistent)
                // A job published after the flag was set finds it and signals; one published
                // before is seen here. A signal left over from that race only wakes the loop
                // once more.
                if generation.load(ordering: .sequentiallyConsistent) != seen {
                    worker.sleeping.store(false, ordering: .sequentiallyConsistent)
                    break
                }
                worker.wake.wait()
                spins = 0
            }
            seen = generation.load(ordering: .sequentiallyConsistent)
            if index < participants, let job { job(index + 1) }
            remaining.subtract(1, ordering: .sequentiallyConsistent)
        }
    }
}
