import Foundation
import JSON
import Synchronization

/// A token matched before pre-tokenization (HF `AddedToken`): special tokens such as
/// `<|endoftext|>` and any tokens added after training.
package struct AddedToken: Sendable, Hashable, Codable {
    package var id: Int32
    package var content: String
    /// Match only when not glued to word characters on either side.
    package var singleWord: Bool = false
    /// Swallow whitespace on the left / right of the match.
    package var lstrip: Bool = false
    package var rstrip: Bool = false
    /// Matched against normalized text (true) or raw text (false).
    package var normalized: Bool = false
    /// Special tokens can be skipped when decoding.
    package var special: Bool = true

    package init(
        id: Int32, content: String, singleWord: Bool = false, lstrip: Bool = false, rstrip: Bool = false,
        normalized: Bool = false, special: Bool = true
    ) {
        self.id = id
        self.content = content
        self.singleWord = singleWord
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.normalized = normalized
        self.special = special
    }

    enum CodingKeys: String, CodingKey {
        case id, content, lstrip, rstrip, normalized, special
        case singleWord = "single_word"
    }
}

/// Supported normalizers: none, or Unicode NFC (Qwen2).
package enum Normalization: Sendable, Equatable {
    case none
    case nfc
}

/// Supported decoders: `ByteLevel`, or none (HF then joins token strings with spaces).
package enum DecoderKind: Sendable, Equatable {
    case byteLevel
    case none
}

/// One element of the single-sequence template a post-processor produces.
package enum TemplateItem: Sendable, Equatable {
    case ids([Int32])
    case sequence
}

/// A byte-level BPE tokenizer that encodes and decodes exactly like Hugging Face `tokenizers`
/// for tokenizer.json files of the GPT-2 / Llama-3 / Qwen2 family.
///
/// Pipeline of `encode`, as in HF: (1) added tokens with `normalized: false` are cut out of the
/// raw text, (2) each remaining segment is normalized (NFC if configured), (3) added tokens with
/// `normalized: true` are cut out, (4) pre-tokenizers split the segment into pieces, (5) each
/// piece is BPE-encoded from its UTF-8 bytes, (6) the post-processor template (for example a BOS
/// token from `TemplateProcessing`) is applied when `addSpecialTokens` is true.
///
/// Not modelled: offsets, type ids, pair templates, `truncation` and `padding` (kept in the file
/// and written back, but `encode` never truncates or pads), BPE dropout.
package struct ByteLevelBPETokenizer: Sendable {
    package let model: BPEModel
    package let addedTokens: [AddedToken]
    package let normalization: Normalization
    package let preTokenizer: PreTokenizer
    package let decoderKind: DecoderKind
    /// The single-sequence post-processing template; `[.sequence]` when there is none.
    package let template: [TemplateItem]
    /// Components as read from JSON, written back unchanged by `jsonValue()`.
    let components: Components

    private let rawMatcher: AddedTokenMatcher
    private let normalizedMatcher: AddedTokenMatcher
    private let decodeTable: [[UInt8]?]
    private let specialIDs: Set<Int32>
    private let addedIDs: [String: Int32]
    private let cache = WordCache()

    /// The raw JSON of the pipeline components (validated when loaded).
    struct Components: Sendable {
        var version: JSONValue = .string("1.0")
        var truncation: JSONValue = .null
        var padding: JSONValue = .null
        var normalizer: JSONValue = .null
        var preTokenizer: JSONValue = .null
        var postProcessor: JSONValue = .null
        var decoder: JSONValue = .null
    }

    init(
        model: BPEModel, addedTokens: [AddedToken], normalization: Normalization, preTokenizer: PreTokenizer,
        decoderKind: DecoderKind, template: [TemplateItem], components: Components
    ) {
        self.model = model
        self.addedTokens = addedTokens
        self.normalization = normalization
        self.preTokenizer = preTokenizer
        self.decoderKind = decoderKind
        self.template = template
        self.components = components
        self.rawMatcher = AddedTokenMatcher(addedTokens.filter { !$0.normalized })
        let normalizedTokens = addedTokens.filter(\.normalized).map { token -> AddedToken in
            var t = token
            if normalization == .nfc { t.content = t.content.precomposedStringWithCanonicalMapping }
            return t
        }
        self.normalizedMatcher = AddedTokenMatcher(normalizedTokens)
        var addedIDs: [String: Int32] = [:]
        var maxID = model.tokens.count - 1
        for t in addedTokens {
            addedIDs[t.content] = t.id
            maxID = max(maxID, Int(t.id))
        }
        self.addedIDs = addedIDs
        self.specialIDs = Set(addedTokens.filter(\.special).map(\.id))
        var table = [[UInt8]?](repeating: nil, count: maxID + 1)
        func spell(_ token: String) -> [UInt8] {
            decoderKind == .byteLevel ? (ByteLevelAlphabet.decode(token) ?? Array(token.utf8)) : Array(token.utf8)
        }
        for (i, token) in model.tokens.enumerated() {
            if let token { table[i] = spell(token) }
        }
        // HF looks ids up in the added vocabulary first.
        for t in addedTokens { table[Int(t.id)] = spell(t.content) }
        self.decodeTable = table
    }

    // MARK: Vocabulary

    /// One past the largest id (model vocabulary and added tokens); the embedding row count.
    package var vocabSize: Int { decodeTable.count }

    /// The id of a token string (added tokens first, then the model vocabulary, as HF does).
    package func id(for token: String) -> Int32? { addedIDs[token] ?? model.id(of: token) }

    /// The token string of an id (added tokens first), or nil for an unused id.
    package func token(for id: Int32) -> String? {
        if let t = addedTokens.first(where: { $0.id == id }) { return t.content }
        return model.token(of: id)
    }

    /// Ids the template puts before the sequence (typically the BOS token).
    package var templatePrefix: [Int32] {
        var out: [Int32] = []
        for item in template {
            guard case .ids(let ids) = item else { break }
            out += ids
        }
        return out
    }

    package func isSpecial(_ id: Int32) -> Bool { specialIDs.contains(id) }

    // MARK: Encoding

    /// Token ids of `text`, identical to HF `Tokenizer.encode(text, add_special_tokens=...).ids`.
    package func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int32] {
        var state = EncodeState()
        var out: [Int32] = []
        out.reserveCapacity(text.utf8.count / 3 + 4)
        if addSpecialTokens {
            for item in template {
                switch item {
                case .ids(let ids): out += ids
                case .sequence: encodeBody(text, into: &out, state: &state)
                }
            }
        } else {
            encodeBody(text, into: &out, state: &state)
        }
        cache.insert(state.newEntries)
        return out
    }

    /// Per-call scratch: a local word cache over the shared one, and reusable buffers.
    private struct EncodeState {
        var local: [ArraySlice<UInt8>: [Int32]] = [:]
        var newEntries: [(ArraySlice<UInt8>, [Int32])] = []
        var buffer = ScalarBuffer()
    }

    private func encodeBody(_ text: String, into out: inout [Int32], state: inout EncodeState) {
        var buffer = ScalarBuffer()
        swap(&buffer, &state.buffer)
        forEachPiece(of: text, buffer: &buffer) { piece in
            switch piece {
            case .addedToken(let id): out.append(id)
            case .bytes(let bytes): encodePiece(bytes, into: &out, state: &state)
            }
        }
        swap(&buffer, &state.buffer)
    }

    /// What pipeline steps 1-4 produce: an added token, or the raw bytes of one BPE piece.
    package enum Piece {
        case addedToken(Int32)
        case bytes(ArraySlice<UInt8>)
    }

    /// Runs added-token matching, normalization and pre-tokenization over `text` (the part of
    /// `encode` before BPE; the trainer counts words with it).
    package func forEachPiece(of text: String, buffer: inout ScalarBuffer, _ body: (Piece) -> Void) {
        let bytes = Array(text.utf8)
        for segment in rawMatcher.split(bytes[...]) {
            switch segment {
            case .token(let id):
                body(.addedToken(id))
            case .text(let range):
                var normalized = bytes[range]
                if normalization == .nfc, normalized.contains(where: { $0 >= 0x80 }) {
                    let s = String(decoding: normalized, as: UTF8.self).precomposedStringWithCanonicalMapping
                    normalized = ArraySlice(Array(s.utf8))
                }
                for inner in normalizedMatcher.split(normalized) {
                    switch inner {
                    case .token(let id):
                        body(.addedToken(id))
                    case .text(let r):
                        for piece in preTokenizer.pieces(of: normalized[r], buffer: &buffer) {
                            body(.bytes(piece))
                        }
                    }
                }
            }
        }
    }

    @inline(__always)
    private func encodePiece(_ piece: ArraySlice<UInt8>, into out: inout [Int32], state: inout EncodeState) {
        if let ids = state.local[piece] {
            out.append(contentsOf: ids)
            return
        }
        let ids: [Int32]
        if let shared = cache.lookup(piece) {
            ids = shared
        } else {
            var fresh: [Int32] = []
            model.encodeWord(piece, into: &fresh)
            ids = fresh
            state.newEntries.append((piece, ids))
        }
        state.local[piece] = ids
        out.append(contentsOf: ids)
    }

    // MARK: Decoding

    /// The bytes token `id` stands for (a byte-level token may hold part of a character);
    /// empty for an unknown id.
    package func bytes(of id: Int32) -> [UInt8] {
        switch decoderKind {
        case .byteLevel:
            guard id >= 0, Int(id) < decodeTable.count, let spelled = decodeTable[Int(id)] else { return [] }
            return Array(spelled)
        case .none:
            return Array((token(for: id) ?? "").utf8)
        }
    }

    /// Text of `ids`, identical to HF `Tokenizer.decode(ids, skip_special_tokens=...)`.
    ///
    /// Unknown ids are skipped; byte sequences that are not valid UTF-8 decode to U+FFFD.
    package func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) -> String {
        switch decoderKind {
        case .byteLevel:
            var bytes: [UInt8] = []
            bytes.reserveCapacity(ids.count * 4)
            for id in ids {
                guard id >= 0, Int(id) < decodeTable.count, let spelled = decodeTable[Int(id)] else { continue }
                if skipSpecialTokens && specialIDs.contains(id) { continue }
                bytes += spelled
            }
            return String(decoding: bytes, as: UTF8.self)
        case .none:
            return ids.compactMap { id -> String? in
                if skipSpecialTokens && specialIDs.contains(id) { return nil }
                return token(for: id)
            }.joined(separator: " ")
        }
    }
}

// MARK: - Added-token matching

/// Finds added tokens in text the way HF's `AddedVocabulary` does: leftmost-longest
/// non-overlapping matches, then `single_word`, `lstrip` and `rstrip` applied to each match.
struct AddedTokenMatcher: Sendable {
    enum Segment {
        case text(Range<Int>)
        case token(Int32)
    }

    private let tokens: [AddedToken]
    private let patterns: [[UInt8]]
    /// Candidate token indices by first byte, longest first.
    private let byFirstByte: [[Int]]

    init(_ tokens: [AddedToken]) {
        let usable = tokens.filter { !$0.content.isEmpty }
        self.tokens = usable
        let patterns = usable.map { Array($0.content.utf8) }
        self.patterns = patterns
        var table = [[Int]](repeating: [], count: 256)
        for (i, p) in patterns.enumerated() { table[Int(p[0])].append(i) }
        for b in 0..<256 {
            // Longest first; among equal lengths the earlier token wins.
            table[b].sort { (patterns[$0].count, $1) > (patterns[$1].count, $0) }
        }
        self.byFirstByte = table
    }

    var isEmpty: Bool { tokens.isEmpty }

    func split(_ s: ArraySlice<UInt8>) -> [Segment] {
        guard !tokens.isEmpty else { return s.isEmpty ? [] : [.text(s.indices)] }
        var out: [Segment] = []
        var consumed = s.startIndex
        var i = s.startIndex
        while i < s.endIndex {
            var found = -1
            for candidate in byFirstByte[Int(s[i])] {
                let p = patterns[candidate]
                if i + p.count <= s.endIndex, s[i..<i + p.count].elementsEqual(p) {
                    found = candidate
                    break
                }
            }
            guard found >= 0 else {
                i += 1
                continue
            }
            var start = i
            var stop = i + patterns[found].count
            let token = tokens[found]
            i = stop
            if token.singleWord {
                let startOK = start == s.startIndex || !isWordScalar(lastScalar(s, before: start))
                let stopOK = stop == s.endIndex || !isWordScalar(firstScalar(s, at: stop))
                if !(startOK && stopOK) { continue }
            }
            if token.lstrip {
                var k = start
                while k > consumed, let (scalar, len) = lastScalarWithLength(s, before: k), scalar.properties.isWhitespace {
                    k -= len
                }
                start = max(k, consumed)
            }
            if token.rstrip {
                while stop < s.endIndex, let scalar = firstScalar(s, at: stop), scalar.properties.isWhitespace {
                    stop += String(scalar).utf8.count
                }
                i = stop
            }
            if consumed < start { out.append(.text(consumed..<start)) }
            out.append(.token(token.id))
            consumed = stop
        }
        if consumed < s.endIndex { out.append(.text(consumed..<s.endIndex)) }
        return out
    }

    private func isWordScalar(_ scalar: Unicode.Scalar?) -> Bool {
        guard let scalar else { return false }
        if scalar == "_" { return true }
        let p = scalar.properties
        return p.isAlphabetic || p.numericType != nil
    }

    private func firstScalar(_ s: ArraySlice<UInt8>, at i: Int) -> Unicode.Scalar? {
        var end = i + 1
        while end < s.endIndex, s[end] & 0xC0 == 0x80 { end += 1 }
        return String(decoding: s[i..<end], as: UTF8.self).unicodeScalars.first
    }

    private func lastScalarWithLength(_ s: ArraySlice<UInt8>, before i: Int) -> (Unicode.Scalar, Int)? {
        guard i > s.startIndex else { return nil }
        var start = i - 1
        while start > s.startIndex, s[start] & 0xC0 == 0x80 { start -= 1 }
        guard let scalar = String(decoding: s[start..<i], as: UTF8.self).unicodeScalars.first else { return nil }
        return (scalar, i - start)
    }

    private func lastScalar(_ s: ArraySlice<UInt8>, before i: Int) -> Unicode.Scalar? {
        lastScalarWithLength(s, before: i)?.0
    }
}

// MARK: - Shared word cache

/// Piece bytes -> ids, shared by all copies of a tokenizer and all threads. Bounded: once full,
/// new words are no longer added (as HF's BPE cache does).
final class WordCache: Sendable {
    private let storage = Mutex<[ArraySlice<UInt8>: [Int32]]>([:])
    static let capacity = 200_000

    func lookup(_ key: ArraySlice<UInt8>) -> [Int32]? { storage.withLock { $0[key] } }

    func insert(_ entries: [(ArraySlice<UInt8>, [Int32])]) {
        guard !entries.isEmpty else { return }
        storage.withLock { table in
            for (key, ids) in entries where table.count < WordCache.capacity {
                // Copy the key so the cache does not keep the caller's whole text alive.
                table[ArraySlice(Array(key))] = ids
            }
        }
    }
}
