// CRC-32 as zlib, gzip, PNG and Python's `zlib.crc32` compute it (reflected polynomial
// 0xEDB88320, initial value and final xor 0xFFFFFFFF; the "CRC-32/ISO-HDLC" of the CRC
// catalogue). Checkpoints record one per dataset so any reader can verify a tensor with
// nothing but the standard library of its language (docs/checkpoints.md).
//
// Chosen over CRC-32C and xxHash64, which are faster, because Python verifies CRC-32 with
// `zlib.crc32` in C at gigabytes per second while the others need a third-party package.
// The checksum guards against damage (truncated copies, bit rot, writer bugs), not
// against anyone forging a file.
//
// Implementation: "slicing by 8" (Kounavis and Berry, 2005), eight 256-entry tables so
// each step folds eight input bytes; about 1-2 GB/s per core in release builds.

#if _endian(big)
    #error("checkpoint checksums are defined over little-endian bytes; add byte swapping for this target")
#endif

package enum CRC32 {
    /// The CRC-32 of `bytes`, continuing from `crc` (pass the result of a previous call
    /// to checksum data in pieces; 0 to start).
    package static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        var state = ~crc
        guard let base = bytes.baseAddress else { return crc }
        let count = bytes.count
        tables.withUnsafeBufferPointer { table in
            var offset = 0
            while offset + 8 <= count {
                // Two little-endian words; the first absorbs the running state.
                let low = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) ^ state
                let high = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
                state =
                    table[7 * 256 + Int(low & 0xFF)] ^ table[6 * 256 + Int((low >> 8) & 0xFF)]
                    ^ table[5 * 256 + Int((low >> 16) & 0xFF)] ^ table[4 * 256 + Int(low >> 24)]
                    ^ table[3 * 256 + Int(high & 0xFF)] ^ table[2 * 256 + Int((high >> 8) & 0xFF)]
                    ^ table[1 * 256 + Int((high >> 16) & 0xFF)] ^ table[Int(high >> 24)]
                offset += 8
            }
            while offset < count {
                let byte = base.load(fromByteOffset: offset, as: UInt8.self)
                state = table[Int((state ^ UInt32(byte)) & 0xFF)] ^ (state >> 8)
                offset += 1
            }
        }
        return ~state
    }

    package static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    /// The CRC-32 of the elements' little-endian bytes in order.
    package static func checksum<T>(_ values: UnsafeBufferPointer<T>) -> UInt32 {
        checksum(UnsafeRawBufferPointer(values))
    }

    /// Table k maps a byte b to the CRC contribution of b followed by k zero bytes,
    /// flattened as `tables[k * 256 + b]`.
    private static let tables: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 8 * 256)
        for byte in 0..<256 {
            var crc = UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
            table[byte] = crc
        }
        for k in 1..<8 {
            for byte in 0..<256 {
                let previous = table[(k - 1) * 256 + byte]
                table[k * 256 + byte] = (previous >> 8) ^ table[Int(previous & 0xFF)]
            }
        }
        return table
    }()
}
