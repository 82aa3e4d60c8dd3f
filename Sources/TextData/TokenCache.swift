import Foundation
import JSON
import Platform

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// The token cache file, `tokens-<fingerprint>.bin`. All integers little-endian.
//
//   offset  size       field
//   0       8          magic "DSTLTOKS"
//   8       4          format version (1)
//   12      4          reserved, 0
//   16      8          fingerprint of the inputs (see CorpusSource.fingerprint)
//   24      8          number of documents
//   32      8          number of tokens N
//   40      4N         token ids, int32
//   40+4N   8          XXH64 of bytes [0, 40+4N)
//
// Written through Platform's atomic write (temporary file, fsync, rename, fsync the folder), so
// the final name only ever holds a complete file. A run killed while writing leaves at most a
// temporary file, which the next write to the folder removes once its writer is gone.

enum TokenCacheFile {
    static let magic = Array("DSTLTOKS".utf8)
    static let version: UInt32 = 1
    static let headerSize = 40

    static func name(_ fingerprint: UInt64) -> String {
        let hex = String(fingerprint, radix: 16)
        return "tokens-" + String(repeating: "0", count: 16 - hex.count) + hex + ".bin"
    }

    enum ReadResult {
        case valid([Int32], documents: Int)
        case absent
        case corrupt(String)
    }

    static func read(_ url: URL, fingerprint: UInt64) -> ReadResult {
        guard FileManager.default.fileExists(atPath: url.path) else { return .absent }
        guard let data = try? Data(contentsOf: url) else { return .corrupt("cannot read \(url.path)") }
        return data.withUnsafeBytes { raw -> ReadResult in
            guard raw.count >= headerSize + 8 else { return .corrupt("file is \(raw.count) bytes, shorter than a header") }
            guard Array(raw[0..<8]) == magic else { return .corrupt("not a distill token cache (bad magic)") }
            func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
            let v = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            guard v == version else { return .corrupt("format version \(v), expected \(version)") }
            guard u64(16) == fingerprint else { return .corrupt("fingerprint in the file does not match its name") }
            let count = u64(32)
            guard count <= UInt64(Int.max / 8), raw.count == headerSize + 4 * Int(count) + 8 else {
                return .corrupt("size \(raw.count) bytes does not match \(count) tokens (truncated?)")
            }
            let body = UnsafeRawBufferPointer(rebasing: raw[0..<(headerSize + 4 * Int(count))])
            guard XXH64.hash(body) == u64(body.count) else { return .corrupt("checksum mismatch") }
            var tokens = [Int32](repeating: 0, count: Int(count))
            tokens.withUnsafeMutableBytes { dst in
                dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[headerSize..<body.count]))
            }
            if Int32(littleEndian: 1) != 1 {
                for i in tokens.indices { tokens[i] = Int32(littleEndian: tokens[i]) }
            }
            return .valid(tokens, documents: Int(u64(24)))
        }
    }

    /// Writes atomically. `interrupt`, for tests, is called after each chunk with the bytes
    /// written so far; when it throws, the write is abandoned as a crash would abandon it.
    static func write(
        _ tokens: [Int32], documents: Int, fingerprint: UInt64, to url: URL,
        interrupt: ((Int) throws -> Void)? = nil
    ) throws {
        let dir = url.deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            throw DataError.io(path: dir.path, reason: "cannot create cache directory (\(error.localizedDescription))")
        }
        // Temporary files of writers killed mid-write (another run's, or this folder's last).
        _ = try? sweepOrphanedTemporaries(in: dir)
        var hash = XXH64()
        var written = 0
        do {
            try writeAtomically(to: url.path) { write in
                func put(_ bytes: UnsafeRawBufferPointer) throws {
                    try write(bytes)
                    written += bytes.count
                }
                var header = magic.map { $0 }
                func append<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { header += $0 } }
                append(version)
                append(UInt32(0))
                append(fingerprint)
                append(UInt64(documents))
                append(UInt64(tokens.count))
                try header.withUnsafeBytes { h in
                    hash.update(h)
                    try put(h)
                }
                var littleEndian = tokens
                if Int32(littleEndian: 1) != 1 { for i in littleEndian.indices { littleEndian[i] = littleEndian[i].littleEndian } }
                let chunk = 1 << 18
                try littleEndian.withUnsafeBytes { all in
                    var start = 0
                    while start < all.count {
                        let part = UnsafeRawBufferPointer(rebasing: all[start..<min(all.count, start + chunk * 4)])
                        hash.update(part)
                        try put(part)
                        start += part.count
                        try interrupt?(written)
                    }
                }
                try withUnsafeBytes(of: hash.finalize().littleEndian) { try put($0) }
            }
        } catch let error as UserError {
            throw DataError.io(path: error.path, reason: error.problem)
        }
    }
}
