// Content hashing for cache keys, fingerprints and file checksums: XXH64 (Yann Collet's
// xxHash, 64-bit variant, implemented from the published algorithm description) and 64-bit
// FNV-1a (Fowler/Noll/Vo). Neither is cryptographic: they detect corruption and change, not
// tampering.

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
    if let problem = notARegularFile(path) {
        throw UserError(path: path, problem: problem, fix: "give a regular file", kind: .usage)
    }
    guard let handle = FileHandle(forReadingAtPath: path) else {
        throw UserError(path: path, problem: "cannot read the file", fix: "check that it exists and is readable", kind: .io)
    }
    defer { try? handle.close() }
    var h = XXH64()
    while true {
        let chunk: Data?
        do { chunk = try handle.read(upToCount: 1 << 20) } catch {
            throw UserError(path: path, problem: "read failed: \(error.localizedDescription)", kind: .io)
        }
        guard let chunk, !chunk.isEmpty else { break }
        chunk.withUnsafeBytes { h.update($0) }
    }
    return hexDigits(h.finalize())
}
