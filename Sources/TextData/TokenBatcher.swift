import Core
import Foundation
import JSON

// Batches of next-token prediction windows cut from one token stream.
//
// Windows. The stream t[0..<N] is cut into W = (N - 1) / T windows; window i covers
// t[i*T ..< i*T + T + 1]: inputs are its first T tokens, targets its last T (inputs shifted
// by one). Consecutive windows share one boundary token, so every token is a target once.
//
// Split. A fixed number of windows, round(validationFraction * W) and at least one when the
// fraction is positive, goes to validation: the windows whose index has the smallest hash
// under `splitSeed`. Validation windows are thus spread over the whole corpus (representative
// of every part of it, where a contiguous tail would be one scene or one topic), the split is
// exact in size, and it depends only on (N, T, fraction, splitSeed): not on the batch size,
// not on the training seed. Changing T changes the windows and therefore the split.
//
// Order. Each epoch visits every training window once in a Fisher-Yates permutation drawn
// from RNG(seed, epoch); a batch that crosses an epoch end takes its remaining rows from the
// next epoch, so every batch is full. With `randomOffsets`, a training window whose successor
// is also a training window starts at a random offset in [0, T) into it (drawn from the
// cursor's generator), which shows the model more token alignments without ever reading a
// validation token.
//
// Shapes: B = batch size, T = sequence length; batches are flattened row-major.

/// Inputs and next-token targets, each [B, T] flattened row-major.
package struct TokenBatch: Sendable, Equatable {
    /// Rows in this batch (B; a final validation batch may have fewer).
    package var rows: Int
    package var seqLen: Int
    package var inputs: [Int32]  // [B, T]
    package var targets: [Int32]  // [B, T]

    package init(rows: Int, seqLen: Int, inputs: [Int32], targets: [Int32]) {
        precondition(inputs.count == rows * seqLen && targets.count == rows * seqLen, "a batch holds rows * seqLen ids")
        self.rows = rows
        self.seqLen = seqLen
        self.inputs = inputs
        self.targets = targets
    }
}

/// Where a batcher is in its batch sequence; stored in checkpoints (as JSON) so that a resumed
/// run draws exactly the batches an uninterrupted run would have drawn.
package struct BatchCursor: Codable, Sendable, Equatable {
    /// Completed passes over the training windows.
    package var epoch: Int
    /// Windows of the current epoch already consumed.
    package var position: Int
    /// The generator for random offsets.
    package var rng: RNG
    /// The batcher's seed and training window count, checked on restore so that a cursor is
    /// never applied to a different corpus or split.
    package var seed: UInt64
    package var trainWindows: Int
}

extension BatchCursor {
    /// Compact JSON, as checkpoints store it.
    package func jsonString() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        // Encoding plain integers and arrays of them cannot fail.
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }

    /// Reads a cursor saved by `jsonString()`.
    /// - Throws: `DataError.malformed` naming `origin` (for example the checkpoint path).
    package init(jsonString: String, origin: String) throws {
        do {
            self = try JSONDecoder().decode(BatchCursor.self, from: Data(jsonString.utf8))
        } catch {
            throw DataError.malformed(
                file: origin, line: 1, column: 1, reason: "unreadable data cursor (\(error))",
                hint: "the checkpoint is damaged; resume from an earlier one or restart")
        }
    }
}

package struct TokenBatcher: Sendable {
    /// Batch geometry and split; all sizes in tokens.
    package struct Config: Codable, Sendable, Equatable {
        package var batchSize: Int
        package var seqLen: Int
        /// Fraction of windows held out for validation, in [0, 0.5].
        package var validationFraction: Double = 0.1
        /// Seeds the split only (independent of the training seed).
        package var splitSeed: UInt64 = 0
        package var randomOffsets: Bool = false

        package init(
            batchSize: Int, seqLen: Int, validationFraction: Double = 0.1, splitSeed: UInt64 = 0,
            randomOffsets: Bool = false
        ) {
            self.batchSize = batchSize
            self.seqLen = seqLen
            self.validationFraction = validationFraction
            self.splitSeed = splitSeed
            self.randomOffsets = randomOffsets
        }
    }

    package let config: Config
    package let seed: UInt64
    private let tokens: [Int32]
    /// Window indices, ascending.
    package let trainWindows: [Int]
    package let validationWindows: [Int]
    /// isTrain[i] for every window i.
    private let isTrain: [Bool]
    private var cursorState: BatchCursor
    private var order: [Int]

    /// - Throws: `DataError.badConfig` for impossible sizes, `DataError.insufficient` when the
    ///   stream is too short for one training batch plus the validation windows.
    package init(tokens: [Int32], config: Config, seed: UInt64) throws {
        let b = config.batchSize
        let t = config.seqLen
        guard b >= 1, t >= 1 else {
            throw DataError.badConfig(
                reason: "batch size \(b) and sequence length \(t) must both be at least 1", hint: "fix the settings")
        }
        guard (0...0.5).contains(config.validationFraction) else {
            throw DataError.badConfig(
                reason: "validation fraction \(config.validationFraction) is outside [0, 0.5]",
                hint: "use a value such as 0.1")
        }
        let windows = tokens.count > 0 ? (tokens.count - 1) / t : 0
        let trainCount = windows - Self.validationCount(windows: windows, fraction: config.validationFraction)
        guard trainCount >= b else {
            // The smallest window count that leaves b training windows.
            var w = b
            while w - Self.validationCount(windows: w, fraction: config.validationFraction) < b { w += 1 }
            let held = config.validationFraction > 0 ? " and \(Int(config.validationFraction * 100))% held out" : ""
            throw DataError.insufficient(
                reason: "corpus has \(tokens.count) tokens; a batch of \(b) x (\(t)+1)\(held) needs at least \(w * t + 1)",
                hint: "use a smaller batch size or sequence length, or add text to the corpus")
        }
        self.config = config
        self.seed = seed
        self.tokens = tokens

        var isTrain = [Bool](repeating: true, count: windows)
        let valCount = windows - trainCount
        if valCount > 0 {
            let ranked = (0..<windows).map { (Self.splitHash(UInt64($0), config.splitSeed), $0) }.sorted { $0 < $1 }
            for (_, i) in ranked.prefix(valCount) { isTrain[i] = false }
        }
        self.isTrain = isTrain
        self.trainWindows = (0..<windows).filter { isTrain[$0] }
        self.validationWindows = (0..<windows).filter { !isTrain[$0] }
        self.cursorState = BatchCursor(
            epoch: 0, position: 0, rng: RNG(seed: seed ^ 0x6F66_6673_6574_7321), seed: seed,
            trainWindows: trainWindows.count)
        self.order = []
        self.order = permutation(epoch: 0)
    }

    static func validationCount(windows: Int, fraction: Double) -> Int {
        guard fraction > 0, windows > 0 else { return 0 }
        return max(1, Int((fraction * Double(windows)).rounded()))
    }

    /// SplitMix64 finalizer of (index, seed): a fixed pseudo-random rank per window.
    static func splitHash(_ index: UInt64, _ seed: UInt64) -> UInt64 {
        var x = index &+ seed &* 0x9E37_79B9_7F4A_7C15 &+ 0xD1B5_4A32_D192_ED03
        x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
        return x ^ (x >> 31)
    }

    /// Training windows in the order epoch `epoch` visits them.
    private func permutation(epoch: Int) -> [Int] {
        var rng = RNG(seed: Self.splitHash(UInt64(epoch), seed))
        var p = trainWindows
        var i = p.count - 1
        while i > 0 {
            let j = Int(rng.next() % UInt64(i + 1))
            p.swapAt(i, j)
            i -= 1
        }
        return p
    }

    /// The current position; save it with a checkpoint.
    package var cursor: BatchCursor { cursorState }

    /// Continues from a saved cursor.
    /// - Throws: `DataError.badConfig` when the cursor belongs to another seed or split.
    package mutating func restore(_ cursor: BatchCursor) throws {
        guard cursor.seed == seed, cursor.trainWindows == trainWindows.count,
            cursor.position >= 0, cursor.position <= trainWindows.count, cursor.epoch >= 0
        else {
            throw DataError.badConfig(
                reason: "the saved data cursor (seed \(cursor.seed), \(cursor.trainWindows) training windows) "
                    + "does not match this corpus and settings (seed \(seed), \(trainWindows.count) windows)",
                hint: "resume with the corpus, tokenizer, sequence length and seed the run started with")
        }
        cursorState = cursor
        order = permutation(epoch: cursor.epoch)
    }

    /// The next training batch.
    package mutating func next() -> TokenBatch {
        let b = config.batchSize
        let t = config.seqLen
        var inputs = [Int32](repeating: 0, count: b * t)  // [B, T]
        var targets = [Int32](repeating: 0, count: b * t)  // [B, T]
        for row in 0..<b {
            if cursorState.position == order.count {
                cursorState.epoch += 1
                cursorState.position = 0
                order = permutation(epoch: cursorState.epoch)
            }
            let w = order[cursorState.position]
            cursorState.position += 1
            var start = w * t
            if config.randomOffsets, w + 1 < isTrain.count, isTrain[w + 1] {
                start += Int(cursorState.rng.next() % UInt64(t))
            }
            copyWindow(start: start, row: row, inputs: &inputs, targets: &targets)
        }
        return TokenBatch(rows: b, seqLen: t, inputs: inputs, targets: targets)
    }

    /// Validation batches in window order: the first `count` batches of B rows, or all of
    /// them when `count` is nil; the last batch may have fewer rows. Always the same batches.
    package func validationBatches(count: Int? = nil) -> [TokenBatch] {
        let b = config.batchSize
        let t = config.seqLen
        var out: [TokenBatch] = []
        var i = 0
        while i < validationWindows.count, count.map({ out.count < $0 }) ?? true {
            let rows = min(b, validationWindows.count - i)
            var inputs = [Int32](repeating: 0, count: rows * t)  // [rows, T]
            var targets = [Int32](repeating: 0, count: rows * t)  // [rows, T]
            for r in 0..<rows {
                copyWindow(start: validationWindows[i + r] * t, row: r, inputs: &inputs, targets: &targets)
            }
            out.append(TokenBatch(rows: rows, seqLen: t, inputs: inputs, targets: targets))
            i += rows
        }
        return out
    }

    private func copyWindow(start: Int, row: Int, inputs: inout [Int32], targets: inout [Int32]) {
        let t = config.seqLen
        precondition(start + t < tokens.count, "window [\(start), \(start + t + 1)) past stream end \(tokens.count)")
        for j in 0..<t {
            inputs[row * t + j] = tokens[start + j]
            targets[row * t + j] = tokens[start + j + 1]
        }
    }
}
