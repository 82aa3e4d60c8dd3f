// HDF5Seal.swift: a checksum over a whole HDF5 file, kept in the file's user block and
// checked before the HDF5 library reads a byte of the file.
//
// Why. The HDF5 1.10 C library trusts its own metadata (superblock, object headers,
// B-trees, local and global heaps): a single flipped bit there can make it crash
// (SIGSEGV) or loop forever, which no check of distill's after `H5Fopen` can catch.
// Datasets and attributes carry CRC-32s of their own (docs/checkpoints.md), but those are
// read through the same metadata. So a file distill writes is sealed: a CRC-32 of every
// byte the library will read is stored in front of them, and `HDF5File.open` verifies it
// with plain reads first. A damaged file is then refused with an error naming it, never
// handed to the library.
//
// Where. HDF5 lets a file begin with a "user block" that the library skips (its superblock
// is searched at offsets 0, 512, 1024, 2048, ...; `H5Pset_userblock`). Sealed files have a
// 512-byte user block laid out as (integers little-endian):
//
//   offset  size  contents
//        0     8  magic "DSTLSEAL"
//        8     4  seal format version (1)
//       12     4  algorithm (1 = CRC-32 as zlib computes it, as CRC32.swift)
//       16     8  number of bytes covered: the whole file after the user block
//       24     4  CRC-32 of those bytes
//       28     4  CRC-32 of the 512-byte block with these four bytes zeroed
//       32   ...  a line of ASCII for people who `head` the file, then zeros
//      504     8  magic "DSTLSEAL" again
//
// The magic is written twice so a single damaged byte cannot make a sealed file look
// unsealed: a block where either copy is intact is treated as a seal and must verify in
// full. A file with neither copy (any HDF5 file distill did not write, or a checkpoint
// from before seals) is opened as before. Python checks a seal with
// `zlib.crc32(open(p, "rb").read()[512:]) == int.from_bytes(head[24:28], "little")`.
//
// Cost: one sequential read of the file and a CRC-32 at 1-2 GB/s (docs/checkpoints.md has
// the figure for a 0.5 GB model), on every open: no cache keyed on size and times, which
// the kernel's coarse timestamps would let a same-size rewrite slip past.

import Foundation
import Platform

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

package enum HDF5Seal {
    /// The user block's size; HDF5 requires a power of two of at least 512.
    package static let blockSize = 512
    static let magic: [UInt8] = Array("DSTLSEAL".utf8)
    static let version: UInt32 = 1
    static let algorithmCRC32: UInt32 = 1
    static let note = "distill checkpoint seal: CRC-32 of bytes 512.. at offset 24; HDF5 starts at byte 512\n"

    /// What the first bytes of a file say about its seal.
    package enum State: Equatable, Sendable {
        /// No seal: the file is read as any HDF5 file.
        case unsealed
        /// A seal whose checksums match the file.
        case intact
    }

    /// Seals the closed HDF5 file at `path`, which was created with a user block of
    /// `blockSize` bytes: computes the CRC-32 of every byte after the block and writes the
    /// block. No fsync (the caller's commit does it).
    package static func seal(path: String) throws(HDF5Error) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw systemError("open(2)", path: path, errno: errno) }
        defer { _ = close(fd) }
        let (covered, crc) = try checksum(fd: fd, path: path)
        var block = [UInt8](repeating: 0, count: blockSize)
        block.replaceSubrange(0..<8, with: magic)
        put(version, at: 8, in: &block)
        put(algorithmCRC32, at: 12, in: &block)
        put(UInt64(covered), at: 16, in: &block)
        put(crc, at: 24, in: &block)
        block.replaceSubrange(32..<32 + note.utf8.count, with: Array(note.utf8))
        block.replaceSubrange(504..<512, with: magic)
        put(CRC32.checksum(block), at: 28, in: &block)
        let written = block.withUnsafeBytes { pwrite(fd, $0.baseAddress, blockSize, 0) }
        guard written == blockSize else {
            throw systemError("pwrite(2) of the seal", path: path, errno: written < 0 ? errno : EIO)
        }
    }

    /// Verifies the seal of the file at `path` if it has one. Throws `.damaged` naming
    /// what does not match; returns `.unsealed` for a file without a seal.
    @discardableResult
    package static func verify(path: String) throws(HDF5Error) -> State {
        var info = stat()
        guard stat(path, &info) == 0 else { throw systemError("stat(2)", path: path, errno: errno) }
        if info.st_mode & S_IFMT == S_IFDIR { return .unsealed }  // HDF5File.open names it
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw HDF5Error(
                kind: .notHDF5File, call: "open", file: path,
                hint: "not a regular file (a FIFO, socket or device?); give an HDF5 file")
        }
        // O_NONBLOCK: should the name have become a FIFO since, opening does not wait for a writer.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw systemError("open(2)", path: path, errno: errno) }
        defer { _ = close(fd) }
        guard fstat(fd, &info) == 0 else { throw systemError("fstat(2)", path: path, errno: errno) }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw HDF5Error(kind: .notHDF5File, call: "open", file: path, hint: "not a regular file")
        }
        guard Int(info.st_size) >= blockSize else { return .unsealed }
        var block = [UInt8](repeating: 0, count: blockSize)
        let read = block.withUnsafeMutableBytes { pread(fd, $0.baseAddress, blockSize, 0) }
        guard read == blockSize else { throw systemError("pread(2)", path: path, errno: read < 0 ? errno : EIO) }
        guard block[0..<8].elementsEqual(magic) || block[504..<512].elementsEqual(magic) else { return .unsealed }

        func damaged(_ what: String) -> HDF5Error {
            HDF5Error(
                kind: .damaged, call: "verify seal", file: path,
                hint: "the file is damaged: \(what) (a bad disk, an interrupted or corrupted copy?)")
        }
        var header = block
        put(UInt32(0), at: 28, in: &header)
        guard CRC32.checksum(header) == get(UInt32.self, at: 28, in: block) else {
            throw damaged("its seal (the first \(blockSize) bytes) does not match the seal's own checksum")
        }
        guard get(UInt32.self, at: 8, in: block) == version, get(UInt32.self, at: 12, in: block) == algorithmCRC32
        else {
            throw HDF5Error(
                kind: .damaged, call: "verify seal", file: path,
                hint: "sealed with seal version \(get(UInt32.self, at: 8, in: block)), algorithm "
                    + "\(get(UInt32.self, at: 12, in: block)), which this distill does not know; upgrade distill")
        }
        let declared = get(UInt64.self, at: 16, in: block)
        let actualSize = UInt64(info.st_size) - UInt64(blockSize)
        guard declared == actualSize else {
            throw damaged(
                "its seal covers \(declared) bytes after the first \(blockSize) but the file has \(actualSize)"
                    + (actualSize < declared ? " (truncated)" : ""))
        }
        let (_, crc) = try checksum(fd: fd, path: path)
        let recorded = get(UInt32.self, at: 24, in: block)
        guard crc == recorded else {
            var error = damaged("the CRC-32 of its bytes is \(hex8(crc)), its seal records \(hex8(recorded))")
            error.kind = .checksumMismatch
            throw error
        }
        return .intact
    }

    // MARK: Implementation

    /// Byte count and CRC-32 of the file after the user block, read in 4 MiB pieces.
    private static func checksum(fd: Int32, path: String) throws(HDF5Error) -> (Int, UInt32) {
        let chunk = 4 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        var offset = blockSize
        var crc: UInt32 = 0
        while true {
            let count = pread(fd, buffer.baseAddress, chunk, off_t(offset))
            if count < 0 {
                if errno == EINTR { continue }
                throw systemError("pread(2)", path: path, errno: errno)
            }
            if count == 0 { break }
            crc = CRC32.checksum(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), continuing: crc)
            offset += count
        }
        return (offset - blockSize, crc)
    }

    private static func systemError(_ call: String, path: String, errno code: Int32) -> HDF5Error {
        let kind: HDF5Error.Kind =
            switch code {
            case ENOENT: .fileNotFound
            case EACCES, EPERM: .permissionDenied
            default: .library
            }
        return HDF5Error(kind: kind, call: call, file: path, hint: String(cString: strerror(code)))
    }

    private static func put<T: FixedWidthInteger>(_ value: T, at offset: Int, in block: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { block.replaceSubrange(offset..<offset + MemoryLayout<T>.size, with: $0) }
    }

    private static func get<T: FixedWidthInteger>(_ type: T.Type, at offset: Int, in block: [UInt8]) -> T {
        block.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }

    private static func hex8(_ value: UInt32) -> String { "0x" + hexDigits(value) }
}
