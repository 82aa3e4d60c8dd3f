/// GPT-2's reversible mapping between the 256 byte values and printable Unicode scalars.
///
/// Bytes that are printable Latin-1 (`!`...`~`, `¡`...`¬`, `®`...`ÿ`) map to themselves; the other
/// 68 bytes map, in increasing byte order, to U+0100, U+0101, ... (so space 0x20 becomes `Ġ`
/// U+0120 and newline 0x0A becomes `Ċ` U+010A). Vocabulary strings of byte-level BPE files are
/// written in this alphabet.

import JSON

package enum ByteLevelAlphabet {
    /// `scalarForByte[b]` is the scalar that represents byte `b`.
    package static let scalarForByte: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt8(b))
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// The byte a scalar stands for, or nil when the scalar is outside the alphabet.
    @inline(__always)
    package static func byte(for scalar: Unicode.Scalar) -> UInt8? {
        let v = scalar.value
        if v < 256 {
            let b = Int(v)
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            return printable ? UInt8(b) : nil
        }
        if v < 256 + 68 { return byteForOffset[Int(v - 256)] }
        return nil
    }

    private static let byteForOffset: [UInt8] = {
        var out: [UInt8] = []
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if !printable { out.append(UInt8(b)) }
        }
        return out
    }()

    /// The byte-level spelling of raw bytes (`" hi"` -> `"Ġhi"`).
    package static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(scalarForByte[Int(b)]) }
        return String(s)
    }

    /// The bytes a byte-level token spells, or nil when some scalar is outside the alphabet
    /// (special tokens such as `<｜end▁of▁sentence｜>`).
    package static func decode(_ token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.utf8.count)
        for scalar in token.unicodeScalars {
            guard let b = byte(for: scalar) else { return nil }
            out.append(b)
        }
        return out
    }
}
