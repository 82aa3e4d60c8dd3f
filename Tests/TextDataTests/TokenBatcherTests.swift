import Foundation
import JSON
import Testing

@testable import TextData

@Suite struct TokenBatcherTests {
    /// A stream whose token i is i, so that every batch shows where it came from.
    static let stream = (0..<2001).map { Int32($0) }

    static func batcher(
        _ b: Int = 4, _ t: Int = 8, seed: UInt64 = 1, fraction: Double = 0.1, offsets: Bool = false
    ) throws -> TokenBatcher {
        try TokenBatcher(
            tokens: stream, config: .init(batchSize: b, seqLen: t, validationFraction: fraction, randomOffsets: offsets),
            seed: seed)
    }

    static func take(_ n: Int, _ batcher: inout TokenBatcher) -> [TokenBatch] { (0..<n).map { _ in batcher.next() } }

    @Test(arguments: [false, true])
    func targetsAreInputsShiftedByOne(offsets: Bool) throws {
        var b = try Self.batcher(offsets: offsets)
        for batch in Self.take(50, &b) {
            #expect(batch.rows == 4 && batch.seqLen == 8)
            #expect(batch.inputs.count == 32 && batch.targets.count == 32)
            for r in 0..<4 {
                let row = Array(batch.inputs[r * 8..<r * 8 + 8])
                let target = Array(batch.targets[r * 8..<r * 8 + 8])
                // Token i is i: a contiguous run, and targets one ahead.
                #expect(row == Array(row[0]..<row[0] + 8))
                #expect(target == row.map { $0 + 1 })
                if !offsets { #expect(row[0] % 8 == 0) }
            }
        }
    }

    @Test func sameSeedSameBatchesDifferentSeedDifferent() throws {
        var a = try Self.batcher(seed: 42)
        var b = try Self.batcher(seed: 42)
        var c = try Self.batcher(seed: 43)
        let ba = Self.take(30, &a)
        #expect(ba == Self.take(30, &b))
        #expect(ba != Self.take(30, &c))
    }

    @Test(arguments: [false, true])
    func resumeFromSavedCursorContinuesExactly(offsets: Bool) throws {
        // 225 training windows, batch 4: 120 batches cross two epoch ends.
        var straight = try Self.batcher(seed: 9, offsets: offsets)
        let all = Self.take(120, &straight)
        for cut in [0, 1, 56, 57, 100] {
            var first = try Self.batcher(seed: 9, offsets: offsets)
            _ = Self.take(cut, &first)
            let json = first.cursor.jsonString()
            var resumed = try Self.batcher(seed: 9, offsets: offsets)
            try resumed.restore(BatchCursor(jsonString: json, origin: "ckpt.h5"))
            #expect(Self.take(120 - cut, &resumed) == Array(all[cut...]), "cut at \(cut)")
        }
        #expect(throws: DataError.self) { try BatchCursor(jsonString: "{\"epoch\": 1}", origin: "ckpt.h5") }
        // A cursor from another seed or corpus is refused.
        let other = try Self.batcher(seed: 10).cursor
        var target = try Self.batcher(seed: 9)
        #expect(throws: DataError.self) { try target.restore(other) }
        var shorter = try TokenBatcher(tokens: Array(Self.stream[0..<1000]), config: .init(batchSize: 4, seqLen: 8), seed: 9)
        #expect(throws: DataError.self) { try shorter.restore(straight.cursor) }
    }

    @Test func epochsVisitEveryTrainingWindowOnce() throws {
        var b = try Self.batcher(1, 8, seed: 3)
        let windows = b.trainWindows.count
        #expect(windows == 225 && b.validationWindows.count == 25)
        var epochs: [[Int32]] = []
        for _ in 0..<2 {
            epochs.append(Self.take(windows, &b).map { $0.inputs[0] / 8 }.map { $0 })
        }
        #expect(epochs[0].sorted() == b.trainWindows.map { Int32($0) })
        #expect(epochs[1].sorted() == b.trainWindows.map { Int32($0) })
        #expect(epochs[0] != epochs[1])
        #expect(b.cursor.epoch == 1 && b.cursor.position == windows)
    }

    @Test func splitIsDisjointExactAndIndependentOfBatchSizeAndSeed() throws {
        let reference = try Self.batcher(1, 8, seed: 1)
        #expect(Set(reference.trainWindows).isDisjoint(with: reference.validationWindows))
        #expect(reference.trainWindows.count + reference.validationWindows.count == 2000 / 8)
        for (b, seed) in [(2, 1), (16, 1), (4, 77), (100, 5)] as [(Int, UInt64)] {
            let other = try Self.batcher(b, 8, seed: seed)
            #expect(other.validationWindows == reference.validationWindows)
            #expect(other.trainWindows == reference.trainWindows)
        }
        // Spread over the corpus, not a tail.
        #expect(reference.validationWindows.first! < 100 && reference.validationWindows.last! > 150)
        // Another split seed picks other windows.
        let reseeded = try TokenBatcher(
            tokens: Self.stream, config: .init(batchSize: 1, seqLen: 8, splitSeed: 1), seed: 1)
        #expect(reseeded.validationWindows != reference.validationWindows)

        // Training batches never contain a validation token (with or without offsets):
        // validation window w owns tokens w*T+1 ... w*T+T as targets.
        var validationTargets = Set<Int32>()
        for w in reference.validationWindows { for j in 1...8 { validationTargets.insert(Int32(w * 8 + j)) } }
        for offsets in [false, true] {
            var b = try Self.batcher(4, 8, seed: 5, offsets: offsets)
            for batch in Self.take(200, &b) {
                #expect(validationTargets.isDisjoint(with: batch.targets))
            }
        }
    }

    @Test func validationBatchesAreDeterministic() throws {
        var b = try Self.batcher(8, 8)
        let all = b.validationBatches()
        #expect(all.map(\.rows) == [8, 8, 8, 1])
        _ = Self.take(10, &b)
        #expect(b.validationBatches() == all)
        #expect(b.validationBatches(count: 2) == Array(all[0..<2]))
        let firstRows = all.flatMap { batch in (0..<batch.rows).map { batch.inputs[$0 * 8] / 8 } }
        #expect(firstRows == b.validationWindows.map { Int32($0) })
        for batch in all { #expect(batch.targets == batch.inputs.map { $0 + 1 }) }
        // No validation at all.
        let none = try Self.batcher(8, 8, fraction: 0)
        #expect(none.validationBatches().isEmpty && none.trainWindows.count == 250)
    }

    @Test func tooSmallCorpus() throws {
        // 10 windows of 8: 1 held out, 9 left for training.
        let tokens = [Int32](repeating: 1, count: 81)
        #expect(try TokenBatcher(tokens: tokens, config: .init(batchSize: 9, seqLen: 8), seed: 0).trainWindows.count == 9)
        #expect(throws: DataError.insufficient(
            reason: "corpus has 81 tokens; a batch of 10 x (8+1) and 10% held out needs at least 89",
            hint: "use a smaller batch size or sequence length, or add text to the corpus")) {
            try TokenBatcher(tokens: tokens, config: .init(batchSize: 10, seqLen: 8), seed: 0)
        }
        #expect(throws: DataError.self) { try TokenBatcher(tokens: [], config: .init(batchSize: 1, seqLen: 8), seed: 0) }
        #expect(throws: DataError.self) { try TokenBatcher(tokens: tokens, config: .init(batchSize: 0, seqLen: 8), seed: 0) }
        do {
            _ = try TokenBatcher(tokens: tokens, config: .init(batchSize: 64, seqLen: 8), seed: 0)
        } catch let e as DataError {
            #expect(e.kind == .badData)
        }
    }
}
