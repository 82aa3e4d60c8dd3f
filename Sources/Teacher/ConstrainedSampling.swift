// Constrained sampling over a byte-level tokenizer (docs/teacher.md, *Constrained sampling*):
// a row may take a token only when the grammar (Verify's ByteGrammar) still has a sentence
// that starts with the bytes taken so far followed by the token's.
//
// The engine asks about the token it drew first (`allows`: feed its bytes, usually a handful)
// and has the logits masked only when that token is refused. A mask walks a trie of the
// vocabulary's byte strings from the current grammar state, feeding each edge's byte once and
// dropping a subtree as soon as the grammar refuses its prefix, so tokens sharing a prefix
// share its work. Masks are kept by grammar state: inside a string or a run of digits the
// state repeats, and so do the rows of one task.

import Foundation
import NN
import TextData
import Verify

/// The tokens of a tokenizer as a trie of their bytes: built once per tokenizer.
package final class TokenTrie: @unchecked Sendable {
    /// Node i's children: `edges[childStart[i]..<childStart[i + 1]]`, sorted by byte.
    private var childStart: [Int32] = [0]
    private var edgeByte: [UInt8] = []
    private var edgeNode: [Int32] = []
    /// Node i ends the tokens `ends[endStart[i]..<endStart[i + 1]]`.
    private var endStart: [Int32] = [0]
    private var ends: [Int32] = []
    let vocabulary: Int

    /// Every token of `tokenizer` below `vocabulary` with bytes, special tokens left out.
    package init(_ tokenizer: ByteLevelBPETokenizer, vocabulary: Int) {
        self.vocabulary = vocabulary
        // Build with dictionaries, then lay out breadth-first in flat arrays.
        final class Node {
            var children: [UInt8: Node] = [:]
            var tokens: [Int32] = []
        }
        let root = Node()
        for id in 0..<Int32(vocabulary) where !tokenizer.isSpecial(id) {
            let bytes = tokenizer.bytes(of: id)
            guard !bytes.isEmpty else { continue }
            var node = root
            for b in bytes {
                if let next = node.children[b] {
                    node = next
                } else {
                    let next = Node()
                    node.children[b] = next
                    node = next
                }
            }
            node.tokens.append(id)
        }
        var queue = [root]
        var head = 0
        childStart = []
        endStart = []
        while head < queue.count {
            let node = queue[head]
            head += 1
            childStart.append(Int32(edgeByte.count))
            endStart.append(Int32(ends.count))
            ends += node.tokens
            for (b, child) in node.children.sorted(by: { $0.key < $1.key }) {
                edgeByte.append(b)
                edgeNode.append(Int32(queue.count))
                queue.append(child)
            }
        }
        childStart.append(Int32(edgeByte.count))
        endStart.append(Int32(ends.count))
    }

    /// Nodes in the trie, the root included.
    package var nodeCount: Int { childStart.count - 1 }

    /// Calls `allow` for every token the grammar takes from `state`.
    func walk(_ grammar: ByteGrammar, from state: ByteGrammar.State, allow: (Int32) -> Void) {
        var pending: [(node: Int32, state: ByteGrammar.State)] = [(0, state)]
        while let (node, s) = pending.popLast() {
            for e in Int(childStart[Int(node)])..<Int(childStart[Int(node) + 1]) {
                let next = grammar.feed(s, edgeByte[e])
                guard !next.isDead else { continue }
                let child = Int(edgeNode[e])
                for t in Int(endStart[child])..<Int(endStart[child + 1]) { allow(ends[t]) }
                if childStart[child] < childStart[child + 1] { pending.append((Int32(child), next)) }
            }
        }
    }
}

/// Masks of allowed tokens by grammar state, shared by the rows that sample one grammar.
package final class GrammarMasks: @unchecked Sendable {
    let grammar: ByteGrammar
    let trie: TokenTrie
    /// Token bytes, by id (empty for special and unused ids).
    let tokenBytes: [[UInt8]]
    /// Tokens that end a row once the grammar's sentence is complete.
    let stopTokens: [Int32]
    private var masks: [ByteGrammar.State: [UInt64]] = [:]
    private let limit: Int

    package init(grammar: ByteGrammar, trie: TokenTrie, tokenBytes: [[UInt8]], stopTokens: [Int32], limit: Int = 512) {
        self.grammar = grammar
        self.trie = trie
        self.tokenBytes = tokenBytes
        self.stopTokens = stopTokens
        self.limit = limit
    }

    /// The allowed tokens from `state`, one bit each.
    func mask(_ state: ByteGrammar.State) -> [UInt64] {
        if let known = masks[state] { return known }
        var bits = [UInt64](repeating: 0, count: (trie.vocabulary + 63) / 64)
        trie.walk(grammar, from: state) { bits[Int($0) >> 6] |= 1 << UInt64($0 & 63) }
        if grammar.isComplete(state) {
            for t in stopTokens where Int(t) < trie.vocabulary { bits[Int(t) >> 6] |= 1 << UInt64(t & 63) }
        }
        if masks.count >= limit { masks.removeAll(keepingCapacity: true) }
        masks[state] = bits
        return bits
    }
}

/// One row's constraint: where it is in the grammar.
package final class GrammarConstraint: TokenConstraint {
    let masks: GrammarMasks
    private(set) var state: ByteGrammar.State
    /// A stop token was taken.
    private var stopped = false

    package init(_ masks: GrammarMasks) {
        self.masks = masks
        state = masks.grammar.start
    }

    package func allows(_ token: Int32) -> Bool {
        if masks.stopTokens.contains(token) { return masks.grammar.isComplete(state) }
        guard Int(token) < masks.tokenBytes.count else { return false }
        let bytes = masks.tokenBytes[Int(token)]
        return !bytes.isEmpty && !masks.grammar.feed(state, bytes: bytes).isDead
    }

    package func mask(_ logits: UnsafeMutablePointer<Float>, count: Int) -> Bool {
        let bits = masks.mask(state)
        var any = false
        for j in 0..<count {
            if j < masks.trie.vocabulary, bits[j >> 6] & (1 << UInt64(j & 63)) != 0 {
                any = true
            } else {
                logits[j] = -.infinity
            }
        }
        return any
    }

    package func accept(_ token: Int32) {
        if masks.stopTokens.contains(token) {
            stopped = true
            return
        }
        state = masks.grammar.feed(state, bytes: masks.tokenBytes[Int(token)])
    }

    /// The sentence is complete and nothing can continue it, or the row took a stop token.
    package var isFinished: Bool { stopped || masks.grammar.isClosed(state) }
}

/// The constrained-sampling setup of one tokenizer: its trie and token bytes, built once.
package final class ConstrainedVocabulary: @unchecked Sendable {
    package let trie: TokenTrie
    let tokenBytes: [[UInt8]]
    let stopTokens: [Int32]

    package init(_ tokenizer: ByteLevelBPETokenizer, vocabulary: Int, stopTokens: [Int32]) {
        trie = TokenTrie(tokenizer, vocabulary: vocabulary)
        tokenBytes = (0..<Int32(vocabulary)).map { tokenizer.isSpecial($0) ? [] : tokenizer.bytes(of: $0) }
        self.stopTokens = stopTokens
    }

    /// Masks for `grammar`, to share among the rows that sample it.
    package func masks(for grammar: ByteGrammar) -> GrammarMasks {
        GrammarMasks(grammar: grammar, trie: trie, tokenBytes: tokenBytes, stopTokens: stopTokens)
    }
}
