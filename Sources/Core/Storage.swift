// Float32 buffers and the pool that recycles them. A training step allocates the same
// sizes every step; the pool hands the previous step's buffers back instead of asking the
// system allocator (which maps and faults fresh pages for large blocks each time).

import Foundation
import Synchronization

/// A contiguous, 64-byte aligned Float32 buffer. Returned to the pool when released.
public final class Storage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    /// The arena region this storage lies in, when it is not the pool's.
    private let region: HugePageArena.Region?

    /// Uninitialised storage: the caller writes every element before reading. Debug builds
    /// fill it with NaN, so a kernel that reads an element it never wrote poisons its
    /// result in the tests instead of reading a recycled buffer's stale values or fresh zeros.
    public init(uninitialized count: Int) {
        precondition(count >= 0, "negative storage size \(count)")
        self.count = count
        self.pointer = BufferPool.shared.take(count)
        self.region = nil
        #if DEBUG
            pointer.update(repeating: .nan, count: count)
        #endif
    }

    /// Zero-filled storage.
    public convenience init(zeroed count: Int) {
        self.init(uninitialized: count)
        pointer.update(repeating: 0, count: count)
    }

    /// Uninitialised storage in `arena` (for a model's weights), NaN-filled in debug builds.
    public init(uninitialized count: Int, in arena: HugePageArena) {
        precondition(count >= 0, "negative storage size \(count)")
        self.count = count
        (pointer, region) = arena.take(count)
        #if DEBUG
            pointer.update(repeating: .nan, count: count)
        #endif
    }

    deinit { if region == nil { BufferPool.shared.give(pointer, count) } }

    public var buffer: UnsafeMutableBufferPointer<Float> { .init(start: pointer, count: count) }
}

/// Size-keyed free lists of Float32 buffers, capped in total bytes.
package final class BufferPool: Sendable {
    package static let shared = BufferPool(capacityBytes: defaultCapacity())

    private struct Pointer: @unchecked Sendable { let raw: UnsafeMutablePointer<Float> }
    private struct State {
        var free: [Int: [Pointer]] = [:]
        var cachedBytes = 0
        var systemAllocations: [Int: Int] = [:]
    }
    private let state = Mutex(State())
    private let capacityBytes: Int

    init(capacityBytes: Int) { self.capacityBytes = capacityBytes }

    /// `DISTILL_POOL_MB` overrides the default cap of 4 GiB.
    static func defaultCapacity() -> Int {
        if let s = ProcessInfo.processInfo.environment["DISTILL_POOL_MB"], let mb = Int(s), mb >= 0 {
            return mb << 20
        }
        return 4 << 30
    }

    func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        let recycled: Pointer? = state.withLock { s in
            guard var list = s.free[count], let p = list.popLast() else { return nil }
            s.free[count] = list.isEmpty ? nil : list
            s.cachedBytes -= Self.bytes(count)
            return p
        }
        if let recycled { return recycled.raw }
        state.withLock { $0.systemAllocations[count, default: 0] += 1 }
        var raw: UnsafeMutableRawPointer?
        let status = posix_memalign(&raw, 64, Self.bytes(count))
        guard status == 0, let raw else {
            fatalError("out of memory allocating \(Self.bytes(count)) bytes (posix_memalign: \(status))")
        }
        return raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    func give(_ pointer: UnsafeMutablePointer<Float>, _ count: Int) {
        let kept = state.withLock { s -> Bool in
            guard s.cachedBytes + Self.bytes(count) <= capacityBytes else { return false }
            s.free[count, default: []].append(Pointer(raw: pointer))
            s.cachedBytes += Self.bytes(count)
            return true
        }
        if !kept { free(pointer) }
    }

    /// Releases every cached buffer to the system.
    package func drain() {
        let all = state.withLock { s -> [Pointer] in
            let all = s.free.values.flatMap { $0 }
            s.free = [:]
            s.cachedBytes = 0
            return all
        }
        for p in all { free(p.raw) }
    }

    package var cachedBytes: Int { state.withLock { $0.cachedBytes } }

    /// Releases every cached buffer and asks the C library to hand its free memory back
    /// (glibc's `malloc_trim`, found at run time: Swift's Glibc module does not declare it),
    /// after a large structure is dropped for good (an f32 base once it is packed), so that
    /// the resident set is what is in use rather than what once was.
    package func releaseToSystem() {
        drain()
        typealias Trim = @convention(c) (Int) -> Int32
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") { _ = unsafeBitCast(symbol, to: Trim.self)(0) }
    }

    /// How many buffers of `count` floats were taken from the system allocator (not
    /// recycled) so far.
    package func systemAllocations(count: Int) -> Int { state.withLock { $0.systemAllocations[count, default: 0] } }

    private static func bytes(_ count: Int) -> Int { max(count, 1) * MemoryLayout<Float>.stride }
}

/// Regions for long-lived buffers (a model's weights), placed back to back and advised to the
/// kernel as transparent huge pages. A decode step streams every weight once per token; from
/// buffers allocated one by one on 4 KiB pages it crosses a page every 4 KiB (a TLB miss, and
/// a stop for the hardware prefetcher). Measured on SmolLM2-135M in f32 at batch 1, the
/// weights read into one region: decode 40 -> 49 tokens/s on small pages, 53 on huge pages
/// (docs/training.md, *Speed: `distill bench decode`*). A buffer is never freed on its own:
/// a region is freed with the last storage in it. One thread fills an arena (a loader, an
/// engine being built); the storages it hands out are then shared like any other.
public final class HugePageArena: @unchecked Sendable {
    /// One allocation, 2 MiB aligned, filled front to back.
    final class Region: @unchecked Sendable {
        let base: UnsafeMutableRawPointer
        let capacity: Int
        var used = 0

        init(bytes: Int) {
            capacity = (max(bytes, 1) + HugePageArena.page - 1) / HugePageArena.page * HugePageArena.page
            var raw: UnsafeMutableRawPointer?
            let status = posix_memalign(&raw, HugePageArena.page, capacity)
            guard status == 0, let raw else {
                fatalError("out of memory allocating \(capacity) bytes (posix_memalign: \(status))")
            }
            base = raw
            #if os(Linux)
                _ = madvise(base, capacity, 14)  // MADV_HUGEPAGE: a hint, so its failure changes nothing
            #endif
        }

        deinit { free(base) }
    }

    static let page = 2 << 20
    /// A new region's size unless one buffer needs more (a whole number of huge pages): at
    /// most a buffer's size of a region is left unused when that buffer does not fit.
    public let regionBytes: Int
    private var current: Region?

    public init(regionBytes: Int = 64 << 20) {
        precondition(regionBytes > 0, "a region of \(regionBytes) bytes")
        self.regionBytes = regionBytes
    }

    /// How many regions buffers were placed in.
    public private(set) var regionCount = 0

    /// `count` floats, 64-byte aligned, and the region that holds them.
    func take(_ count: Int) -> (UnsafeMutablePointer<Float>, Region) {
        let bytes = (max(count, 1) * MemoryLayout<Float>.stride + 63) & ~63
        if current.map({ $0.used + bytes > $0.capacity }) ?? true {
            let region = Region(bytes: max(bytes, regionBytes))
            regionCount += 1
            // A buffer bigger than a region gets one of its own; the current one keeps filling.
            if bytes > regionBytes && current != nil {
                return (region.base.bindMemory(to: Float.self, capacity: max(count, 1)), region)
            }
            current = region
        }
        let region = current!
        defer { region.used += bytes }
        return ((region.base + region.used).bindMemory(to: Float.self, capacity: max(count, 1)), region)
    }
}
