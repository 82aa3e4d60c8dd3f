// Stage fingerprints: a 64-bit FNV-1a hash over a stage's resolved settings, the recipe seed,
// the content of the files it reads and the fingerprints of the stages it reads. Equal
// fingerprints mean "same inputs, same settings", so a finished stage can be skipped.
//
// Neither hash is cryptographic; they detect edits, not tampering. File content is hashed in
// full (XXH64, Platform's `fileDigest`; digests written by earlier versions with FNV-1a stay
// valid while their file is unchanged), but a digest is reused while the file's size and
// modification time are unchanged, so touching a file without changing it never re-runs
// anything and an unchanged corpus is not re-read on every run.

import Foundation
import JSON
import ModelIO
import Platform
import Recipe

/// A file's content digest and the size and modification time it was computed at.
package struct FileDigest: Codable, Sendable, Equatable {
    package var size: Int64
    /// Seconds since 1970.
    package var mtime: Double
    package var hash: String
    /// When the hash was computed (seconds since 1970).
    package var checked: Double

    /// Whether the digest still describes a file of this size and mtime. A file modified within
    /// a couple of seconds of being hashed could change again without its mtime moving (coarse
    /// timestamps), so such a digest is never reused, as git does with "racily clean" entries.
    func stillValid(size: Int64, mtime: Double) -> Bool {
        self.size == size && self.mtime == mtime && checked - mtime > 2
    }
}

/// A problem reading an input while fingerprinting.
package struct InputError: Error, Sendable, Equatable, CustomStringConvertible {
    package var path: String
    package var reason: String
    /// `.io` when the file could not be read; `.usage` when the recipe names something that is
    /// not a file to read (a FIFO, a device).
    package var kind: ErrorKind = .io
    package var description: String { "\(path): \(reason)" }
}

/// Digests of files and folders, reusing `cache` entries whose size and mtime still match.
package struct FileDigester {
    package var cache: [String: FileDigest]

    package init(cache: [String: FileDigest] = [:]) { self.cache = cache }

    /// The content hash of a file, or of a folder's files (relative names and contents, in
    /// sorted order).
    package mutating func digest(_ path: String) throws(InputError) -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw InputError(path: path, reason: "not found")
        }
        if !isDirectory.boolValue { return try contentDigest(path) }
        guard let enumerator = FileManager.default.enumerator(atPath: path) else {
            throw InputError(path: path, reason: "cannot list the folder")
        }
        var names: [String] = []
        while let name = enumerator.nextObject() as? String { names.append(name) }
        var h = FNV1a64()
        for name in names.sorted() {
            var sub: ObjCBool = false
            let full = (path as NSString).appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: full, isDirectory: &sub), !sub.boolValue else { continue }
            h.update(field: name)
            h.update(field: try contentDigest(full))
        }
        return h.hex
    }

    private mutating func contentDigest(_ path: String) throws(InputError) -> String {
        let attributes: [FileAttributeKey: Any]
        do { attributes = try FileManager.default.attributesOfItem(atPath: path) } catch {
            throw InputError(path: path, reason: "cannot read its attributes: \(error.localizedDescription)")
        }
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? -1
        let mtime = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        if let cached = cache[path], cached.stillValid(size: size, mtime: mtime) { return cached.hash }
        let checked = Date().timeIntervalSince1970
        let hash: String
        do { hash = try fileDigest(path) } catch { throw InputError(path: path, reason: error.problem, kind: error.kind) }
        cache[path] = FileDigest(size: size, mtime: mtime, hash: hash, checked: checked)
        return hash
    }
}

/// A stage's fingerprint and the parts it was computed from (kept so a re-run can say what
/// changed: `settings`, `seed`, `file:<path>`, `stage:<name>`).
package struct StageFingerprint: Codable, Sendable, Equatable {
    package var value: String
    package var parts: [String: String]

    package init(parts: [String: String]) {
        self.parts = parts
        var h = FNV1a64()
        h.update(field: "distill-stage-fingerprint-1")
        for key in parts.keys.sorted() {
            h.update(field: key)
            h.update(field: parts[key]!)
        }
        value = h.hex
    }

    /// Computes the fingerprint of `stage` given the fingerprints of the stages it references and
    /// of the `earlier` stages of the types it `readsEarlierStages`.
    /// An input file inside an earlier stage's output (`@sample/sft.jsonl`; `produced` maps
    /// outputs to their stages) counts by that stage's fingerprint, not its bytes: it may not
    /// exist yet, and when it does the stage that writes it decides its content.
    package static func compute(
        _ stage: Stage, seed: Int, upstream: [String: StageFingerprint], produced: [String: String] = [:],
        earlier: [Stage] = [], digester: inout FileDigester
    ) throws(InputError) -> StageFingerprint {
        var parts = ["settings": FNV1a64.hex(stage.resolvedJSON), "seed": String(seed)]
        for path in stage.settings.allInputFiles {
            if let (output, name) = produced.first(where: { path == $0.key || path.hasPrefix($0.key + "/") }),
                let fp = upstream[name]
            {
                parts["file:" + path] = "written by \(name) (\(output)) at \(fp.value)"
            } else {
                parts["file:" + path] = try digester.digest(path)
            }
        }
        let types = type(of: stage.settings).readsEarlierStages
        for name in stage.settings.stageReferences + earlier.filter({ types.contains($0.type) }).map(\.name) {
            guard let fp = upstream[name] else {
                preconditionFailure("stage \(name) is fingerprinted before \(stage.name)")
            }
            parts["stage:" + name] = fp.value
        }
        return StageFingerprint(parts: parts)
    }

    /// What differs from `old`, in words, for "re-running because ...".
    package func changes(since old: StageFingerprint) -> [String] {
        var out: [String] = []
        for key in Set(parts.keys).union(old.parts.keys).sorted() where parts[key] != old.parts[key] {
            if key == "settings" {
                out.append("settings changed")
            } else if key == "seed" {
                out.append("seed changed (\(old.parts[key] ?? "-") -> \(parts[key] ?? "-"))")
            } else if key.hasPrefix("file:") {
                let path = String(key.dropFirst(5))
                out.append(
                    parts[key] == nil
                        ? "no longer reads \(path)" : old.parts[key] == nil ? "now reads \(path)" : "\(path) changed")
            } else if key.hasPrefix("stage:") {
                out.append("input stage \"\(key.dropFirst(6))\" changed")
            }
        }
        return out
    }
}
