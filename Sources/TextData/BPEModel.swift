/// The BPE model of a byte-level tokenizer: vocabulary, ranked merges and the merge loop.
///
/// Encoding a piece follows HF `tokenizers` (`Word::merge_all`): start from one symbol per byte,
/// then repeatedly apply the applicable merge with the lowest rank (its index in `merges`),
/// breaking ties by leftmost position, using a min-heap with lazy invalidation. With
/// `ignoreMerges` (Llama-3) a piece that is itself a vocabulary entry is emitted whole.
package struct BPEModel: Sendable {
    /// Token strings (byte-level alphabet) by id; nil where an id is unused.
    package private(set) var tokens: [String?]
    /// Merges in rank order, as token strings.
    package private(set) var merges: [(String, String)]
    package let unknownToken: String?
    package let fuseUnknown: Bool
    package let ignoreMerges: Bool

    let tokenIDs: [String: Int32]
    /// Id of the single-byte token for each byte value, or -1.
    let byteIDs: [Int32]
    /// Token ids by spelled bytes, for `ignoreMerges`.
    let idsByBytes: [ArraySlice<UInt8>: Int32]
    /// `pairKey(a, b)` -> rank; `mergeResult[rank]` is the merged token id.
    let mergeRanks: [UInt64: Int32]
    let mergeResult: [Int32]
    let unknownID: Int32?

    @inline(__always)
    static func pairKey(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }

    /// - Parameters:
    ///   - vocab: (token, id) pairs; ids must be unique and non-negative.
    ///   - merges: pairs of token strings, highest priority first.
    ///   - path: JSON path of the model for error messages.
    package init(
        vocab: [(String, Int32)], merges: [(String, String)], unknownToken: String? = nil,
        fuseUnknown: Bool = false, ignoreMerges: Bool = false, path: String = "model"
    ) throws {
        var tokenIDs: [String: Int32] = [:]
        tokenIDs.reserveCapacity(vocab.count)
        var maxID: Int32 = -1
        for (token, id) in vocab {
            guard id >= 0 else { throw TokenizerError.invalid(path: "\(path).vocab", reason: "negative id \(id) for \(token.debugDescription)") }
            guard tokenIDs.updateValue(id, forKey: token) == nil else {
                throw TokenizerError.invalid(path: "\(path).vocab", reason: "duplicate token \(token.debugDescription)")
            }
            maxID = max(maxID, id)
        }
        guard maxID < 16_000_000 else {
            throw TokenizerError.invalid(path: "\(path).vocab", reason: "id \(maxID) is implausibly large")
        }
        var tokens = [String?](repeating: nil, count: Int(maxID) + 1)
        var idsByBytes: [ArraySlice<UInt8>: Int32] = [:]
        var byteIDs = [Int32](repeating: -1, count: 256)
        for (token, id) in vocab {
            guard tokens[Int(id)] == nil else {
                throw TokenizerError.invalid(path: "\(path).vocab", reason: "id \(id) is used by two tokens")
            }
            tokens[Int(id)] = token
            if let bytes = ByteLevelAlphabet.decode(token) {
                idsByBytes[ArraySlice(bytes)] = id
                if bytes.count == 1 { byteIDs[Int(bytes[0])] = id }
            }
        }
        var mergeRanks: [UInt64: Int32] = [:]
        mergeRanks.reserveCapacity(merges.count)
        var mergeResult: [Int32] = []
        mergeResult.reserveCapacity(merges.count)
        for (rank, (a, b)) in merges.enumerated() {
            let mergePath = "\(path).merges[\(rank)]"
            guard let idA = tokenIDs[a] else {
                throw TokenizerError.invalid(path: mergePath, reason: "token \(a.debugDescription) is not in the vocabulary")
            }
            guard let idB = tokenIDs[b] else {
                throw TokenizerError.invalid(path: mergePath, reason: "token \(b.debugDescription) is not in the vocabulary")
            }
            guard let merged = tokenIDs[a + b] else {
                throw TokenizerError.invalid(path: mergePath, reason: "merged token \((a + b).debugDescription) is not in the vocabulary")
            }
            // As in HF, a repeated pair keeps its last rank.
            mergeRanks[BPEModel.pairKey(idA, idB)] = Int32(rank)
            mergeResult.append(merged)
        }
        var unknownID: Int32?
        if let unk = unknownToken {
            guard let id = tokenIDs[unk] else {
                throw TokenizerError.invalid(path: "\(path).unk_token", reason: "\(unk.debugDescription) is not in the vocabulary")
            }
            unknownID = id
        }
        self.tokens = tokens
        self.merges = merges
        self.unknownToken = unknownToken
        self.fuseUnknown = fuseUnknown
        self.ignoreMerges = ignoreMerges
        self.tokenIDs = tokenIDs
        self.byteIDs = byteIDs
        self.idsByBytes = idsByBytes
        self.mergeRanks = mergeRanks
        self.mergeResult = mergeResult
        self.unknownID = unknownID
    }

    package func id(of token: String) -> Int32? { tokenIDs[token] }

    package func token(of id: Int32) -> String? {
        id >= 0 && Int(id) < tokens.count ? tokens[Int(id)] : nil
    }

    /// Vocabulary entries ordered by id.
    package var vocabByID: [(String, Int32)] {
        tokens.enumerated().compactMap { i, t in t.map { ($0, Int32(i)) } }
    }

    /// Appends the ids of one pre-tokenized piece (raw bytes).
    package func encodeWord(_ bytes: ArraySlice<UInt8>, into out: inout [Int32]) {
        if ignoreMerges, let id = idsByBytes[bytes] {
            out.append(id)
            return
        }
        var ids: [Int32] = []
        ids.reserveCapacity(bytes.count)
        var previousWasUnknown = false
        for b in bytes {
            let id = byteIDs[Int(b)]
            if id >= 0 {
                ids.append(id)
                previousWasUnknown = false
            } else if let unk = unknownID {
                if !(fuseUnknown && previousWasUnknown) { ids.append(unk) }
                previousWasUnknown = true
            }  // else: HF drops a byte that has no token and no unk_token
        }
        if ids.count < 2 {
            out.append(contentsOf: ids)
            return
        }
        let n = ids.count
        var prev = [Int](0..<n).map { $0 - 1 }
        var next = [Int](1...n)
        next[n - 1] = -1
        var alive = [Bool](repeating: true, count: n)
        // Heap entries: rank << 32 | position; the smallest is the next merge to try.
        var heap = MinHeap()
        for i in 0..<(n - 1) {
            if let rank = mergeRanks[BPEModel.pairKey(ids[i], ids[i + 1])] {
                heap.push(UInt64(UInt32(rank)) << 32 | UInt64(i))
            }
        }
        while let top = heap.pop() {
            let rank = Int(top >> 32)
            let pos = Int(top & 0xFFFF_FFFF)
            guard alive[pos] else { continue }
            let right = next[pos]
            guard right >= 0 else { continue }
            // Skip expired entries: the pair at pos must still produce this merge's token.
            guard let currentRank = mergeRanks[BPEModel.pairKey(ids[pos], ids[right])],
                mergeResult[Int(currentRank)] == mergeResult[rank]
            else { continue }
            ids[pos] = mergeResult[rank]
            alive[right] = false
            let after = next[right]
            next[pos] = after
            if after >= 0 { prev[after] = pos }
            let before = prev[pos]
            if before >= 0, let r = mergeRanks[BPEModel.pairKey(ids[before], ids[pos])] {
                heap.push(UInt64(UInt32(r)) << 32 | UInt64(before))
            }
            if after >= 0, let r = mergeRanks[BPEModel.pairKey(ids[pos], ids[after])] {
                heap.push(UInt64(UInt32(r)) << 32 | UInt64(pos))
            }
        }
        var i = 0
        while i >= 0 {
            out.append(ids[i])
            i = next[i]
        }
    }
}

/// A binary min-heap of UInt64 keys.
struct MinHeap {
    private var items: [UInt64] = []

    var isEmpty: Bool { items.isEmpty }

    mutating func push(_ x: UInt64) {
        items.append(x)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if items[parent] <= x { break }
            items[i] = items[parent]
            i = parent
        }
        items[i] = x
    }

    mutating func pop() -> UInt64? {
        guard let last = items.popLast() else { return nil }
        guard !items.isEmpty else { return last }
        let top = items[0]
        let n = items.count
        var i = 0
        while true {
            let l = 2 * i + 1
            if l >= n { break }
            let r = l + 1
            let c = r < n && items[r] < items[l] ? r : l
            if items[c] >= last { break }
            items[i] = items[c]
            i = c
        }
        items[i] = last
        return top
    }
}
