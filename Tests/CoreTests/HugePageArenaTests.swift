// The arena that holds a model's weights: buffers back to back in huge-page regions, alive
// as long as their storages, whatever happens to the arena object.

import Core
import Testing

@Suite struct HugePageArenaTests {
    @Test func buffersAreAlignedDisjointAndFillRegionsInOrder() {
        let arena = HugePageArena(regionBytes: 4 << 20)
        // 1.5 MiB each: two fit in a 4 MiB region, the third opens a second one.
        let tensors = (0..<3).map { _ in Tensor.empty([384, 1 << 10], in: arena) }
        #expect(arena.regionCount == 2)
        let starts = tensors.map { Int(bitPattern: $0.data) }
        #expect(starts.allSatisfy { $0 % 64 == 0 })
        #expect(starts[1] - starts[0] == 384 << 12)  // back to back
        for (i, t) in tensors.enumerated() { t.data.update(repeating: Float(i), count: t.count) }
        for (i, t) in tensors.enumerated() { #expect(t.values.allSatisfy { $0 == Float(i) }) }
    }

    @Test func aBufferLargerThanARegionGetsItsOwnAndTheCurrentOneKeepsFilling() {
        let arena = HugePageArena(regionBytes: 4 << 20)
        let small = Tensor.empty([10, 100], in: arena)
        let large = Tensor.empty([3, 1 << 20], in: arena)  // 12 MiB
        let next = Tensor.empty([10, 100], in: arena)
        #expect(arena.regionCount == 2)
        #expect(Int(bitPattern: next.data) - Int(bitPattern: small.data) == 4032)  // 4000 bytes rounded to 64
        large.data.update(repeating: 7, count: large.count)
        #expect(large.data[large.count - 1] == 7)
    }

    @Test func storagesOutliveTheArenaObject() {
        var arena: HugePageArena? = HugePageArena(regionBytes: 2 << 20)
        let t = Tensor.empty([1, 5], in: arena)
        t.data.update(from: [1, 2, 3, 4, 5], count: 5)
        arena = nil
        // Had the region gone with the arena, the next one of its size would likely reuse (or
        // the read below fault on) its memory.
        let other = HugePageArena(regionBytes: 2 << 20)
        let u = Tensor.empty([1, 5], in: other)
        u.data.update(repeating: 9, count: 5)
        _ = Tensor.empty([1 << 20])  // pool traffic after the arena is gone
        #expect(t.values == [1, 2, 3, 4, 5])
        #expect(u.values == [9, 9, 9, 9, 9])
        #expect((t * t).sum().item == 55)
    }

    @Test func arenaBuffersNeverComeFromOrGoToThePool() {
        let size = 12_347  // no other test allocates this size
        let arena = HugePageArena()
        let before = BufferPool.shared.systemAllocations(count: size)
        do { _ = Tensor.empty([1, size], in: arena) }
        _ = Tensor.empty([size], in: nil)  // a pool buffer of that size: not the arena's, recycled
        #expect(BufferPool.shared.systemAllocations(count: size) == before + 1)
        #expect(arena.regionCount == 1)
    }

    @Test func vectorsStayInThePoolSoPackedMatricesFreeTheirRegions() {
        let arena = HugePageArena(regionBytes: 2 << 20)
        let norm = Tensor.empty([576], in: arena)
        #expect(arena.regionCount == 0)
        norm.data.update(repeating: 1, count: 576)
        #expect(norm.sum().item == 576)
    }
}
