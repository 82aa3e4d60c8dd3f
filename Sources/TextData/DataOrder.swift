// The order in which fine-tuning visits its items (SFT/KD rows, DPO pairs): a held-out share
// drawn once from the seed, then per epoch a permutation drawn from (seed, epoch) cut into
// micro-batches. A data cursor is then just the number of micro-batches consumed, so a
// resumed run continues with the same batches.

import Core

/// Deterministic split of `n` items: `fraction` of them (at least one when the fraction is
/// positive and there are two or more items) held out, drawn with `seed`. Both lists sorted.
package func holdOut(_ n: Int, fraction: Double, seed: UInt64) -> (train: [Int], validation: [Int]) {
    var held = fraction > 0 && n >= 2 ? max(1, Int((Double(n) * fraction).rounded())) : 0
    held = min(held, max(0, n - 1))
    let order = permutation(n, seed: seed)
    return (order[held...].sorted(), order[..<held].sorted())
}

/// A Fisher-Yates permutation of 0..<n from `seed`.
package func permutation(_ n: Int, seed: UInt64) -> [Int] {
    var rng = RNG(seed: seed)
    var p = Array(0..<n)
    if n > 1 {
        for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
    }
    return p
}

/// Which items micro-batch `n` holds: epoch e = n / batchesPerEpoch visits the items in the
/// order of a permutation seeded with (seed, e).
package struct EpochOrder {
    package let count: Int
    package let batchSize: Int
    package let seed: UInt64
    private var cached: (epoch: Int, order: [Int]) = (-1, [])

    package init(count: Int, batchSize: Int, seed: UInt64) {
        precondition(count >= 1 && batchSize >= 1, "an epoch needs items (\(count)) and a batch size (\(batchSize))")
        self.count = count
        self.batchSize = batchSize
        self.seed = seed
    }

    package var batchesPerEpoch: Int { (count + batchSize - 1) / batchSize }

    package mutating func items(ofBatch n: Int) -> [Int] {
        let epoch = n / batchesPerEpoch, j = n % batchesPerEpoch
        if cached.epoch != epoch {
            cached = (epoch, permutation(count, seed: seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(epoch + 1)))
        }
        return Array(cached.order[(j * batchSize)..<min((j + 1) * batchSize, count)])
    }
}
