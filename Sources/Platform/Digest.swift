// Content hashing for cache keys, fingerprints and file checksums: XXH64 (Yann Collet's
// xxHash, 64-bit variant, implemented from the published algorithm description) and 64-bit
// FNV-1a (Fowler/Noll/Vo). Neither is cryptographic: they detect corruption and change, not
// tampering. SHA-256 (FIPS 180-4) names files people download (a model's published digest),
// where a cryptographic hash is the common currency.

import CHost
import Foundation

/// Streaming XXH64. Feed bytes with `update`, read the digest with `finalize` (which does not
/// consume the state, so a running hash can be read more than once).
package struct XXH64: Sendable {
    private static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    private static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    private static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    private static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    private static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    private let seed: UInt64
    private var v1: UInt64, v2: UInt64, v3: UInt64, v4: UInt64
    private var total: UInt64 = 0
    /// Up to 31 bytes not yet folded into the four lanes.
    private var buffer: [UInt8] = []

    package init(seed: UInt64 = 0) {
        self.seed = seed
        v1 = seed &+ Self.p1 &+ Self.p2
        v2 = seed &+ Self.p2
        v3 = seed
        v4 = seed &- Self.p1
        buffer.reserveCapacity(32)
    }

    /// The digest of `bytes` in one call.
    package static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        var h = XXH64(seed: seed)
        h.update(bytes)
        return h.finalize()
    }

    package static func hash<Bytes: Sequence>(_ bytes: Bytes, seed: UInt64 = 0) -> UInt64 where Bytes.Element == UInt8 {
        var h = XXH64(seed: seed)
        h.update(Array(bytes))
        return h.finalize()
    }

    @inline(__always) private static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always) private static func round(_ acc: UInt64, _ lane: UInt64) -> UInt64 {
        rotl(acc &+ lane &* p2, 31) &* p1
    }

    @inline(__always) private static func merge(_ acc: UInt64, _ v: UInt64) -> UInt64 {
        (acc ^ round(0, v)) &* p1 &+ p4
    }

    @inline(__always) private static func load64(_ p: UnsafeRawBufferPointer, _ i: Int) -> UInt64 {
        UInt64(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt64.self))
    }

    @inline(__always) private static func load32(_ p: UnsafeRawBufferPointer, _ i: Int) -> UInt64 {
        UInt64(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt32.self)))
    }

    package mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        total &+= UInt64(bytes.count)
        var i = 0
        if !buffer.isEmpty {
            let take = min(32 - buffer.count, bytes.count)
            buffer.append(contentsOf: bytes[0..<take])
            i = take
            guard buffer.count == 32 else { return }
            buffer.withUnsafeBytes { consumeStripes($0, upTo: 32) }
            buffer.removeAll(keepingCapacity: true)
        }
        let rest = UnsafeRawBufferPointer(rebasing: bytes[i...])
        let whole = rest.count & ~31
        consumeStripes(rest, upTo: whole)
        buffer.append(contentsOf: rest[whole...])
    }

    private mutating func consumeStripes(_ p: UnsafeRawBufferPointer, upTo end: Int) {
        var a = v1, b = v2, c = v3, d = v4
        var i = 0
        while i < end {
            a = Self.round(a, Self.load64(p, i))
            b = Self.round(b, Self.load64(p, i + 8))
            c = Self.round(c, Self.load64(p, i + 16))
            d = Self.round(d, Self.load64(p, i + 24))
            i += 32
        }
        v1 = a; v2 = b; v3 = c; v4 = d
    }

    package func finalize() -> UInt64 {
        var h: UInt64
        if total >= 32 {
            h = Self.rotl(v1, 1) &+ Self.rotl(v2, 7) &+ Self.rotl(v3, 12) &+ Self.rotl(v4, 18)
            h = Self.merge(h, v1)
            h = Self.merge(h, v2)
            h = Self.merge(h, v3)
            h = Self.merge(h, v4)
        } else {
            h = seed &+ Self.p5
        }
        h &+= total
        buffer.withUnsafeBytes { p in
            var i = 0
            while i + 8 <= p.count {
                h ^= Self.round(0, Self.load64(p, i))
                h = Self.rotl(h, 27) &* Self.p1 &+ Self.p4
                i += 8
            }
            if i + 4 <= p.count {
                h ^= Self.load32(p, i) &* Self.p1
                h = Self.rotl(h, 23) &* Self.p2 &+ Self.p3
                i += 4
            }
            while i < p.count {
                h ^= UInt64(p[i]) &* Self.p5
                h = Self.rotl(h, 11) &* Self.p1
                i += 1
            }
        }
        h ^= h >> 33
        h &*= Self.p2
        h ^= h >> 29
        h &*= Self.p3
        h ^= h >> 32
        return h
    }

    // Convenience for fingerprints: fixed-width little-endian integers and length-prefixed
    // strings, so that ("ab", "c") and ("a", "bc") hash differently.

    package mutating func update(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { update($0) }
    }

    package mutating func update(_ value: Int64) { update(UInt64(bitPattern: value)) }

    package mutating func update(_ string: String) {
        let bytes = Array(string.utf8)
        update(UInt64(bytes.count))
        update(bytes)
    }
}

/// 64-bit FNV-1a.
package struct FNV1a64: Sendable {
    package private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    private static let prime: UInt64 = 0x0000_0100_0000_01B3

    package init() {}

    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var h = value
        for b in bytes {
            h ^= UInt64(b)
            h = h &* Self.prime
        }
        value = h
    }

    package mutating func update(_ bytes: some Collection<UInt8>) {
        var h = value
        for b in bytes {
            h ^= UInt64(b)
            h = h &* Self.prime
        }
        value = h
    }

    /// Hashes the string's length then its UTF-8, so ("ab", "c") and ("a", "bc") differ.
    package mutating func update(field: String) {
        update(Array(String(field.utf8.count).utf8) + [0x3A])
        update(field.utf8)
    }

    /// 16 lowercase hex digits.
    package var hex: String { hexDigits(value) }

    package static func hex(_ text: String) -> String {
        var h = FNV1a64()
        h.update(text.utf8)
        return h.hex
    }
}

/// `value` as lowercase hex, zero-padded to the type's width (16 digits for UInt64, 8 for UInt32).
package func hexDigits<T: FixedWidthInteger & UnsignedInteger>(_ value: T) -> String {
    let s = String(value, radix: 16)
    return String(repeating: "0", count: T.bitWidth / 4 - s.count) + s
}

/// XXH64 of a file's bytes, as 16 hex digits, read in 1 MiB chunks.
package func fileDigest(_ path: String) throws(UserError) -> String {
    var h = XXH64()
    try forEachChunk(of: path) { h.update($0) }
    return hexDigits(h.finalize())
}

/// SHA-256 of a file's bytes, as 64 lowercase hex digits (what `sha256sum` prints).
package func fileSHA256(_ path: String) throws(UserError) -> String {
    var h = SHA256()
    try forEachChunk(of: path) { h.update($0) }
    return h.hex
}

/// Calls `body` with a file's bytes in 1 MiB chunks.
private func forEachChunk(of path: String, _ body: (UnsafeRawBufferPointer) -> Void) throws(UserError) {
    if let problem = notARegularFile(path) {
        throw UserError(path: path, problem: problem, fix: "give a regular file", kind: .usage)
    }
    guard let handle = FileHandle(forReadingAtPath: path) else {
        throw UserError(path: path, problem: "cannot read the file", fix: "check that it exists and is readable", kind: .io)
    }
    defer { try? handle.close() }
    while true {
        let chunk: Data?
        do { chunk = try handle.read(upToCount: 1 << 20) } catch {
            throw UserError(path: path, problem: "read failed: \(error.localizedDescription)", kind: .io)
        }
        guard let chunk, !chunk.isEmpty else { break }
        chunk.withUnsafeBytes { body($0) }
    }
}

/// Streaming SHA-256 (FIPS 180-4): 64-byte blocks, eight 32-bit words of state, the message
/// padded with 0x80, zeros and its bit length as a big-endian u64.
package struct SHA256: Sendable {
    private static let k: [UInt32] = (0..<64).map { distill_sha256_round_constant(Int32($0)) }
    private var state: [UInt32] = [
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19,
    ]
    private var total: UInt64 = 0
    /// Up to 63 bytes not yet compressed.
    private var pending: [UInt8] = []

    /// Whether blocks go to the CPU's SHA extensions when it has them (the rounds below
    /// otherwise; tests compare the two).
    private let extensions: Bool

    /// `portable` keeps to the Swift rounds even where the CPU has SHA extensions.
    package init(portable: Bool = false) {
        extensions = !portable
        pending.reserveCapacity(64)
    }

    /// Whether this CPU has the SHA extensions `SHA256` uses.
    package static var hasExtensions: Bool {
        var state = [UInt32](repeating: 0, count: 8)
        return state.withUnsafeMutableBufferPointer { distill_sha256_blocks($0.baseAddress!, nil, 0) } == 1
    }

    package mutating func update(_ bytes: some Collection<UInt8>) {
        Array(bytes).withUnsafeBytes { update($0) }
    }

    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        total &+= UInt64(bytes.count)
        var i = 0
        if !pending.isEmpty {
            let take = min(64 - pending.count, bytes.count)
            pending.append(contentsOf: bytes[0..<take])
            i = take
            guard pending.count == 64 else { return }
            pending.withUnsafeBytes { compress($0, blocks: 0..<1) }
            pending.removeAll(keepingCapacity: true)
        }
        let blocks = (bytes.count - i) / 64
        compress(UnsafeRawBufferPointer(rebasing: bytes[i...]), blocks: 0..<blocks)
        i += 64 * blocks
        pending.append(contentsOf: bytes[i...])
    }

    /// The 64-byte blocks `blocks` of `p`: with the CPU's SHA extensions where it has them
    /// (CHost's `distill_sha256_blocks`, about 1.5 GB/s against 0.27 for the rounds below,
    /// which a model file's digest at every GGUF load made worth it), else one by one.
    private mutating func compress(_ p: UnsafeRawBufferPointer, blocks: Range<Int>) {
        guard !blocks.isEmpty, let base = p.baseAddress else { return }
        let start = base.assumingMemoryBound(to: UInt8.self) + 64 * blocks.lowerBound
        if extensions, state.withUnsafeMutableBufferPointer({ distill_sha256_blocks($0.baseAddress!, start, blocks.count) }) == 1 {
            return
        }
        for b in blocks { compress(p, at: 64 * b) }
    }

    /// The digest of everything fed so far (the running state is not consumed).
    package var digest: [UInt8] {
        var copy = self
        let bits = total &* 8
        var tail: [UInt8] = [0x80]
        tail += [UInt8](repeating: 0, count: (119 - pending.count) % 64)
        for shift in stride(from: 56, through: 0, by: -8) { tail.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        let length = copy.total
        copy.update(tail)
        copy.total = length
        return copy.state.flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> UInt32(24 - 8 * $0)) } }
    }

    package var hex: String { digest.map { hexDigits($0) }.joined() }

    private mutating func compress(_ p: UnsafeRawBufferPointer, at offset: Int) {
        @inline(__always) func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            for t in 0..<16 {
                let b = offset + 4 * t
                w[t] = UInt32(p[b]) << 24 | UInt32(p[b + 1]) << 16 | UInt32(p[b + 2]) << 8 | UInt32(p[b + 3])
            }
            for t in 16..<64 {
                let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
                let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
                w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
            }
            var a = state[0], b = state[1], c = state[2], d = state[3]
            var e = state[4], f = state[5], g = state[6], h = state[7]
            for t in 0..<64 {
                let t1 = h &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ Self.k[t] &+ w[t]
                let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
                h = g
                g = f
                f = e
                e = d &+ t1
                d = c
                c = b
                b = a
                a = t1 &+ t2
            }
            state[0] &+= a
            state[1] &+= b
            state[2] &+= c
            state[3] &+= d
            state[4] &+= e
            state[5] &+= f
            state[6] &+= g
            state[7] &+= h
        }
    }
}
