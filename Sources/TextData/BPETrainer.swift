/// Learns a byte-level BPE tokenizer from text, deterministically.
///
/// The vocabulary is laid out as HF's `BpeTrainer` does with `initial_alphabet =
/// ByteLevel.alphabet()`: special tokens first (ids 0..<k), then the 256 single-byte tokens (id
/// `k + byte`, in byte order), then one token per merge in the order learned. The text is
/// pre-tokenized exactly as `encode` will pre-tokenize it (special tokens are cut out first and
/// never contribute to merges), words are counted, and each step merges the most frequent
/// adjacent pair.
///
/// Tie-breaking: among pairs with the same count, the pair with the smallest (left id, right
/// id) wins, i.e. the lexicographically smallest pair of token ids. The result depends only on
/// the texts and the configuration, not on hashing or thread count.
///
/// Pair counts are updated incrementally: a merge only revisits the words that contain the
/// pair (tracked per pair), and a max-heap with lazy invalidation yields the next best pair.

import JSON
package struct BPETrainer: Sendable {
    /// Pre-tokenization schemes the trainer can write.
    package enum Style: String, Codable, Sendable, CaseIterable {
        /// ByteLevel with the GPT-2 regex (what `tiny_llama.py` trains).
        case gpt2
        /// Split with the Llama-3 regex, then ByteLevel without regex; `ignore_merges` on.
        case llama3
        /// NFC, Split with the Qwen2 regex (single digits), then ByteLevel without regex.
        case qwen2
    }

    package struct Config: Codable, Sendable, Equatable {
        /// Target size including special tokens and the 256 byte tokens. Training stops earlier
        /// when no pair reaches `minFrequency`.
        package var vocabSize: Int = 4096
        /// Special tokens, given ids 0..<count in this order.
        package var specialTokens: [String] = ["<|endoftext|>"]
        /// A pair must occur at least this often (weighted by word counts) to be merged.
        package var minFrequency: Int = 2
        package var style: Style = .gpt2
        /// When set (it must be one of `specialTokens`), a `TemplateProcessing` post-processor
        /// prepends it to every encoded sequence, as Llama tokenizers do.
        package var bosToken: String? = nil

        package init(
            vocabSize: Int = 4096, specialTokens: [String] = ["<|endoftext|>"], minFrequency: Int = 2,
            style: Style = .gpt2, bosToken: String? = nil
        ) {
            self.vocabSize = vocabSize
            self.specialTokens = specialTokens
            self.minFrequency = minFrequency
            self.style = style
            self.bosToken = bosToken
        }
    }

    package var config: Config

    package init(_ config: Config = Config()) { self.config = config }

    /// Trains on one text.
    package func train(_ text: String) throws -> ByteLevelBPETokenizer { try train(texts: [text]) }

    /// Trains on several documents (words never span two documents).
    package func train<Texts: Sequence>(texts: Texts) throws -> ByteLevelBPETokenizer where Texts.Element == String {
        let specials = config.specialTokens
        let k = specials.count
        guard Set(specials).count == k, !specials.contains("") else {
            throw TokenizerError.badTrainingConfig(reason: "special tokens must be distinct and non-empty")
        }
        guard config.vocabSize >= k + 256 else {
            throw TokenizerError.badTrainingConfig(
                reason: "vocabSize \(config.vocabSize) is smaller than \(k) special tokens + 256 byte tokens")
        }
        if let bos = config.bosToken, !specials.contains(bos) {
            throw TokenizerError.badTrainingConfig(reason: "bosToken \(bos.debugDescription) is not among specialTokens")
        }

        // Token spellings (raw bytes) by id; special tokens are spelled by their content.
        var spelled: [[UInt8]] = specials.map { Array($0.utf8) }
        for b in 0..<256 { spelled.append([UInt8(b)]) }
        var idBySpelling: [[UInt8]: Int32] = [:]
        for (i, s) in spelled.enumerated() where i >= k || ByteLevelAlphabet.decode(specials[i]) != nil {
            idBySpelling[i >= k ? s : ByteLevelAlphabet.decode(specials[i])!] = Int32(i)
        }

        // 1. Count words with the same pipeline encode uses (merges empty).
        let skeleton = try ByteLevelBPETokenizer(json: document(spelled: spelled, merges: []))
        var wordCounts: [ArraySlice<UInt8>: Int] = [:]
        var buffer = ScalarBuffer()
        for text in texts {
            skeleton.forEachPiece(of: text, buffer: &buffer) { piece in
                if case .bytes(let bytes) = piece { wordCounts[bytes, default: 0] += 1 }
            }
        }
        // Sorted so that the word order (and so every intermediate state) is reproducible.
        let sortedWords = wordCounts.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        var words: [[Int32]] = sortedWords.map { w in w.key.map { Int32(k) + Int32($0) } }
        let freqs: [Int] = sortedWords.map(\.value)

        // 2. Initial pair counts and the words each pair occurs in.
        var pairCounts: [UInt64: Int] = [:]
        var wordsWithPair: [UInt64: [Int32]] = [:]
        for (w, word) in words.enumerated() where word.count >= 2 {
            for i in 0..<(word.count - 1) {
                let key = BPEModel.pairKey(word[i], word[i + 1])
                pairCounts[key, default: 0] += freqs[w]
                if wordsWithPair[key]?.last != Int32(w) { wordsWithPair[key, default: []].append(Int32(w)) }
            }
        }
        var heap = PairHeap()
        for (key, count) in pairCounts { heap.push(count: count, key: key) }

        // 3. Merge until the vocabulary is full.
        var merges: [(Int32, Int32)] = []
        var lastVisit = [Int](repeating: -1, count: words.count)
        var step = 0
        while spelled.count < config.vocabSize, let top = heap.pop() {
            guard pairCounts[top.key] == top.count else { continue }  // stale entry
            if top.count < max(config.minFrequency, 1) { break }
            let a = Int32(truncatingIfNeeded: top.key >> 32)
            let b = Int32(truncatingIfNeeded: top.key & 0xFFFF_FFFF)
            let newSpelling = spelled[Int(a)] + spelled[Int(b)]
            let newID: Int32
            if let existing = idBySpelling[newSpelling] {
                newID = existing  // same bytes reached through another pair: reuse, as HF does
            } else {
                newID = Int32(spelled.count)
                spelled.append(newSpelling)
                idBySpelling[newSpelling] = newID
            }
            merges.append((a, b))
            step += 1

            var delta: [UInt64: Int] = [:]
            for w32 in wordsWithPair.removeValue(forKey: top.key) ?? [] {
                let w = Int(w32)
                if lastVisit[w] == step { continue }
                lastVisit[w] = step
                var word = words[w]
                guard word.count >= 2 else { continue }
                let f = freqs[w]
                var merged: [Int32] = []
                merged.reserveCapacity(word.count)
                var i = 0
                var changed = false
                while i < word.count {
                    if i + 1 < word.count, word[i] == a, word[i + 1] == b {
                        merged.append(newID)
                        i += 2
                        changed = true
                    } else {
                        merged.append(word[i])
                        i += 1
                    }
                }
                guard changed else { continue }
                for j in 0..<(word.count - 1) { delta[BPEModel.pairKey(word[j], word[j + 1]), default: 0] -= f }
                if merged.count >= 2 {
                    for j in 0..<(merged.count - 1) {
                        let key = BPEModel.pairKey(merged[j], merged[j + 1])
                        delta[key, default: 0] += f
                        if merged[j] == newID || merged[j + 1] == newID, wordsWithPair[key]?.last != w32 {
                            wordsWithPair[key, default: []].append(w32)
                        }
                    }
                }
                word = merged
                words[w] = word
            }
            for (key, d) in delta where d != 0 {
                let count = pairCounts[key, default: 0] + d
                if count > 0 {
                    pairCounts[key] = count
                    heap.push(count: count, key: key)
                } else {
                    pairCounts[key] = nil
                }
            }
        }
        return try ByteLevelBPETokenizer(json: document(spelled: spelled, merges: merges))
    }

    /// The tokenizer.json document for a vocabulary (raw spellings by id) and merges.
    private func document(spelled: [[UInt8]], merges: [(Int32, Int32)]) -> JSONValue {
        let specials = config.specialTokens
        let k = specials.count
        func vocabString(_ id: Int) -> String { id < k ? specials[id] : ByteLevelAlphabet.encode(spelled[id]) }
        var vocab: [(key: String, value: JSONValue)] = []
        vocab.reserveCapacity(spelled.count)
        for id in 0..<spelled.count { vocab.append((key: vocabString(id), value: .int(id))) }
        let byteLevel = JSONValue.obj([
            "type": .string("ByteLevel"), "add_prefix_space": .bool(false), "trim_offsets": .bool(true),
            "use_regex": .bool(config.style == .gpt2),
        ])
        let preTokenizer: JSONValue
        switch config.style {
        case .gpt2:
            preTokenizer = byteLevel
        case .llama3, .qwen2:
            let pattern = config.style == .llama3 ? SplitPatterns.llama3 : SplitPatterns.qwen2
            preTokenizer = .obj([
                "type": .string("Sequence"),
                "pretokenizers": .array([
                    .obj([
                        "type": .string("Split"), "pattern": .obj(["Regex": .string(pattern)]),
                        "behavior": .string("Isolated"), "invert": .bool(false),
                    ]),
                    byteLevel,
                ]),
            ])
        }
        var postProcessor = JSONValue.null
        if let bos = config.bosToken, let bosID = specials.firstIndex(of: bos) {
            let special = JSONValue.obj(["SpecialToken": .obj(["id": .string(bos), "type_id": .int(0)])])
            postProcessor = .obj([
                "type": .string("TemplateProcessing"),
                "single": .array([special, .obj(["Sequence": .obj(["id": .string("A"), "type_id": .int(0)])])]),
                "pair": .array([
                    special, .obj(["Sequence": .obj(["id": .string("A"), "type_id": .int(0)])]),
                    .obj(["SpecialToken": .obj(["id": .string(bos), "type_id": .int(1)])]),
                    .obj(["Sequence": .obj(["id": .string("B"), "type_id": .int(1)])]),
                ]),
                "special_tokens": .object(
                    JSONValue.JSONObject([
                        (
                            key: bos,
                            value: .obj([
                                "id": .string(bos), "ids": .array([.int(bosID)]), "tokens": .array([.string(bos)]),
                            ])
                        )
                    ])),
            ])
        }
        let added = JSONValue.array(
            specials.enumerated().map { id, content in
                .obj([
                    "id": .int(id), "content": .string(content), "single_word": .bool(false), "lstrip": .bool(false),
                    "rstrip": .bool(false), "normalized": .bool(false), "special": .bool(true),
                ])
            })
        return .obj([
            "version": .string("1.0"),
            "truncation": .null,
            "padding": .null,
            "added_tokens": added,
            "normalizer": config.style == .qwen2 ? .obj(["type": .string("NFC")]) : .null,
            "pre_tokenizer": preTokenizer,
            "post_processor": postProcessor,
            "decoder": .obj([
                "type": .string("ByteLevel"), "add_prefix_space": .bool(true), "trim_offsets": .bool(true),
                "use_regex": .bool(true),
            ]),
            "model": .obj([
                "type": .string("BPE"),
                "dropout": .null,
                "unk_token": .null,
                "continuing_subword_prefix": .null,
                "end_of_word_suffix": .null,
                "fuse_unk": .bool(false),
                "byte_fallback": .bool(false),
                "ignore_merges": .bool(config.style == .llama3),
                "vocab": .object(JSONValue.JSONObject(vocab)),
                "merges": .array(
                    merges.map { .array([.string(vocabString(Int($0.0))), .string(vocabString(Int($0.1)))]) }),
            ]),
        ])
    }
}

/// Max-heap of (count, pair) ordered by count, then by the smaller pair key.
private struct PairHeap {
    struct Entry {
        var count: Int
        var key: UInt64
    }
    private var items: [Entry] = []

    @inline(__always)
    private static func before(_ x: Entry, _ y: Entry) -> Bool {
        x.count != y.count ? x.count > y.count : x.key < y.key
    }

    mutating func push(count: Int, key: UInt64) {
        let x = Entry(count: count, key: key)
        items.append(x)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if !PairHeap.before(x, items[parent]) { break }
            items[i] = items[parent]
            i = parent
        }
        items[i] = x
    }

    mutating func pop() -> Entry? {
        guard let last = items.popLast() else { return nil }
        guard !items.isEmpty else { return last }
        let top = items[0]
        let n = items.count
        var i = 0
        while true {
            let l = 2 * i + 1
            if l >= n { break }
            let r = l + 1
            let c = r < n && PairHeap.before(items[r], items[l]) ? r : l
            if !PairHeap.before(items[c], last) { break }
            items[i] = items[c]
            i = c
        }
        items[i] = last
        return top
    }
}
