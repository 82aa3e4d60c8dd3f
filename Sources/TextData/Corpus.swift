import Core
import Foundation
import JSON
import Platform

// Pretraining corpora: plain text and JSONL files turned into one token stream.
//
// Documents. A plain text file is one document (what most tools do for small corpora: its
// paragraphs stay in one flow, and blank lines are ordinary text the model learns). A JSONL
// file holds one document per line, in the field `textField`. Plain text is read as UTF-8; a
// leading byte order mark is dropped and CRLF line ends become LF, so that a file saved on
// Windows tokenizes like its Unix twin. Empty documents are skipped.
//
// Stream. Each document is encoded without the tokenizer's post-processor template (no BOS)
// and followed by the separator id when one is given (typically `<|endoftext|>`), so the
// stream reads doc0 SEP doc1 SEP ... docN SEP: every document, the last included, ends the
// same way, and the model learns to close a document.

/// Where a corpus comes from: files or directories, and how to read them.
package struct CorpusSource: Codable, Sendable, Equatable {
    package enum Format: String, Codable, Sendable, CaseIterable {
        /// By extension: `.txt`, `.text`, `.md` are text; `.jsonl`, `.jsonlines`, `.ndjson` are JSONL.
        case auto
        case text
        case jsonl
    }

    /// Files, or directories whose files with a known extension are read in name order
    /// (not recursively). Relative paths resolve against the current directory.
    package var paths: [String]
    package var format: Format = .auto
    /// The JSONL field holding a document's text.
    package var textField: String = "text"

    package init(paths: [String], format: Format = .auto, textField: String = "text") {
        self.paths = paths
        self.format = format
        self.textField = textField
    }

    static let textExtensions: Set<String> = ["txt", "text", "md"]
    static let jsonlExtensions: Set<String> = ["jsonl", "jsonlines", "ndjson"]

    /// The files to read, in order, each with its concrete format (`.text` or `.jsonl`).
    package func files() throws -> [(path: String, format: Format)] {
        guard !paths.isEmpty else {
            throw DataError.badConfig(reason: "the corpus lists no files", hint: "give at least one path")
        }
        let fm = FileManager.default
        var out: [(path: String, format: Format)] = []
        for path in paths {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
                throw DataError.io(path: path, reason: "no such file or directory")
            }
            if isDir.boolValue {
                let names: [String]
                do {
                    names = try fm.contentsOfDirectory(atPath: path).sorted()
                } catch {
                    throw DataError.io(path: path, reason: "cannot list directory (\(error.localizedDescription))")
                }
                let before = out.count
                for name in names where !name.hasPrefix(".") {
                    let child = (path as NSString).appendingPathComponent(name)
                    var childIsDir: ObjCBool = false
                    guard fm.fileExists(atPath: child, isDirectory: &childIsDir), !childIsDir.boolValue else { continue }
                    if format != .auto {
                        out.append((child, format))
                    } else if let f = Self.formatByExtension(child) {
                        out.append((child, f))
                    }
                }
                if out.count == before {
                    throw DataError.badConfig(
                        reason: "\(path): the directory holds no .txt, .md or .jsonl files",
                        hint: "point the corpus at the files themselves")
                }
            } else if format != .auto {
                out.append((path, format))
            } else if let f = Self.formatByExtension(path) {
                out.append((path, f))
            } else {
                throw DataError.badConfig(
                    reason: "\(path): cannot tell the format from the extension",
                    hint: "name it .txt/.md (plain text) or .jsonl, or set format to \"text\" or \"jsonl\"")
            }
        }
        return out
    }

    static func formatByExtension(_ path: String) -> Format? {
        let ext = (path as NSString).pathExtension.lowercased()
        if textExtensions.contains(ext) { return .text }
        if jsonlExtensions.contains(ext) { return .jsonl }
        return nil
    }

    /// Calls `body` with every document's text, in order (files in order; lines in order).
    package func forEachDocument(_ body: (String) throws -> Void) throws {
        for (path, format) in try files() {
            switch format {
            case .text:
                let text = try Self.readText(path)
                if !text.isEmpty { try body(text) }
            case .jsonl:
                var reader = try JSONLReader(path: path)
                while let record = try reader.next() {
                    let text = try record.string(
                        textField, missingHint: "set the corpus textField to the field that holds the document text")
                    if !text.isEmpty { try body(text) }
                }
            case .auto:
                preconditionFailure("files() resolves .auto")
            }
        }
    }

    /// A whole plain text file as one document: UTF-8 checked, BOM dropped, CRLF made LF.
    static func readText(_ path: String) throws -> String {
        if let problem = notARegularFile(path) { throw DataError.io(path: path, reason: problem) }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw DataError.io(path: path, reason: "cannot read (\(error.localizedDescription))")
        }
        var bytes = [UInt8](data)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        if let bad = UTF8Text.firstInvalidOffset(bytes) {
            let (line, column) = UTF8Text.position(of: bad, in: bytes)
            throw DataError.malformed(
                file: path, line: line, column: column, reason: "invalid UTF-8",
                hint: "re-encode the file as UTF-8 (for example iconv -f latin1 -t utf-8)")
        }
        if bytes.contains(0x0D) {
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count)
            for (i, b) in bytes.enumerated() where !(b == 0x0D && i + 1 < bytes.count && bytes[i + 1] == 0x0A) {
                out.append(b)
            }
            bytes = out
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// How a token stream was obtained.
package enum TokenCacheStatus: Sendable, Equatable {
    /// Read from a valid cache file; nothing was tokenized.
    case hit
    /// No cache file for this fingerprint: tokenized and written.
    case built
    /// A cache file existed but was unusable (truncated, checksum mismatch, ...): tokenized
    /// again and replaced. `reason` says what was wrong.
    case rebuilt(reason: String)
    /// No cache directory was given: tokenized, nothing written.
    case uncached
}

/// A corpus as one stream of token ids.
package struct TokenStream: Sendable {
    package var tokens: [Int32]
    /// Non-empty documents in the stream.
    package var documents: Int
    /// Identifies (tokenizer, files and their contents, separator, format options).
    package var fingerprint: UInt64
    package var cacheStatus: TokenCacheStatus
    /// The cache file read or written, when caching.
    package var cacheFile: URL?
}

extension CorpusSource {
    /// Tokenizes the corpus, or reads the tokens cached by an earlier call with the same
    /// tokenizer, files and options.
    ///
    /// - Parameters:
    ///   - separator: appended after every document (nil: documents run together).
    ///   - cacheDirectory: where `tokens-<fingerprint>.bin` lives (created when missing);
    ///     nil disables caching.
    /// - Throws: `DataError` naming the file, line and column of bad data, or the path of an
    ///   I/O failure. Nothing is written unless tokenization completed.
    package func tokenStream(
        tokenizer: ByteLevelBPETokenizer, separator: Int32?, cacheDirectory: URL?
    ) throws -> TokenStream {
        if let separator, separator < 0 || Int(separator) >= tokenizer.vocabSize {
            throw DataError.badConfig(
                reason: "separator id \(separator) is outside the tokenizer's vocabulary (size \(tokenizer.vocabSize))",
                hint: "use the id of the tokenizer's end-of-text token")
        }
        let fingerprint = try self.fingerprint(tokenizer: tokenizer, separator: separator)
        guard let cacheDirectory else {
            let (tokens, docs) = try tokenize(tokenizer: tokenizer, separator: separator)
            return TokenStream(
                tokens: tokens, documents: docs, fingerprint: fingerprint, cacheStatus: .uncached, cacheFile: nil)
        }
        let url = cacheDirectory.appendingPathComponent(TokenCacheFile.name(fingerprint))
        var status = TokenCacheStatus.built
        switch TokenCacheFile.read(url, fingerprint: fingerprint) {
        case .valid(let tokens, let docs):
            return TokenStream(tokens: tokens, documents: docs, fingerprint: fingerprint, cacheStatus: .hit, cacheFile: url)
        case .absent:
            break
        case .corrupt(let reason):
            status = .rebuilt(reason: reason)
        }
        let (tokens, docs) = try tokenize(tokenizer: tokenizer, separator: separator)
        try TokenCacheFile.write(tokens, documents: docs, fingerprint: fingerprint, to: url)
        return TokenStream(tokens: tokens, documents: docs, fingerprint: fingerprint, cacheStatus: status, cacheFile: url)
    }

    /// XXH64 over a version tag, the tokenizer's JSON, the separator, the format options and,
    /// per file, its path, size, modification time and content hash.
    package func fingerprint(tokenizer: ByteLevelBPETokenizer, separator: Int32?) throws -> UInt64 {
        var h = XXH64()
        h.update("distill token stream v1")
        h.update(XXH64.hash([UInt8](tokenizer.jsonData())))
        h.update(separator.map { UInt64(UInt32(bitPattern: $0)) } ?? UInt64.max)
        h.update(textField)
        for (path, format) in try files() {
            h.update(format.rawValue)
            h.update(path)
            let attributes: [FileAttributeKey: Any]
            do {
                attributes = try FileManager.default.attributesOfItem(atPath: path)
            } catch {
                throw DataError.io(path: path, reason: "cannot stat (\(error.localizedDescription))")
            }
            h.update(UInt64((attributes[.size] as? NSNumber)?.uint64Value ?? 0))
            let mtime = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            h.update(Int64((mtime * 1e6).rounded()))
            h.update(try Self.contentHash(path))
        }
        return h.finalize()
    }

    /// XXH64 of a file's bytes, read in 4 MiB chunks.
    static func contentHash(_ path: String) throws -> UInt64 {
        if let problem = notARegularFile(path) { throw DataError.io(path: path, reason: problem) }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw DataError.io(path: path, reason: "cannot open for reading")
        }
        defer { try? handle.close() }
        var h = XXH64()
        while true {
            let data: Data?
            do {
                data = try handle.read(upToCount: 4 << 20)
            } catch {
                throw DataError.io(path: path, reason: "read failed (\(error.localizedDescription))")
            }
            guard let data, !data.isEmpty else { break }
            data.withUnsafeBytes { h.update($0) }
        }
        return h.finalize()
    }

    /// Tokenizes every document. Documents are encoded in parallel in groups of about 1 MiB
    /// of text; results are appended in document order, so the stream does not depend on
    /// the thread count.
    func tokenize(tokenizer: ByteLevelBPETokenizer, separator: Int32?) throws -> (tokens: [Int32], documents: Int) {
        var tokens: [Int32] = []
        var documents = 0
        var pending: [String] = []
        var pendingBytes = 0
        func flush() {
            guard !pending.isEmpty else { return }
            var encoded = [[Int32]](repeating: [], count: pending.count)
            let texts = pending
            encoded.withUnsafeMutableBufferPointer { out in
                let slots = UncheckedSendable(out)
                parallelChunks(texts.count) { range in
                    for i in range { slots.value[i] = tokenizer.encode(texts[i], addSpecialTokens: false) }
                }
            }
            for ids in encoded {
                tokens.append(contentsOf: ids)
                if let separator { tokens.append(separator) }
            }
            documents += pending.count
            pending.removeAll(keepingCapacity: true)
            pendingBytes = 0
        }
        try forEachDocument { text in
            pending.append(text)
            pendingBytes += text.utf8.count
            if pendingBytes >= 1 << 20 { flush() }
        }
        flush()
        return (tokens, documents)
    }
}
