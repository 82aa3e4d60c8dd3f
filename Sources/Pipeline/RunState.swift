// The runner's bookkeeping, `<run_dir>/run.json`: per stage its status, fingerprint, settings,
// outputs and summary, plus the file-digest cache. Written atomically (temp file in the same
// folder, fsync, rename, fsync the folder), so a crash leaves either the old or the new file.

import Foundation
import JSON
import Platform
import TextData

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What a stage produced: its files (absolute; the first is the main artifact) and a summary.
package struct StageOutputs: Codable, Sendable, Equatable {
    package var files: [String]
    package var summary: [String: SummaryValue]

    package init(files: [String], summary: [String: SummaryValue] = [:]) {
        self.files = files
        self.summary = summary
    }
}

package enum StageStatus: String, Codable, Sendable {
    case pending, running, done, failed
}

/// One stage's entry in run.json.
package struct StageRecord: Codable, Sendable, Equatable {
    package var type: String
    package var status: StageStatus
    package var fingerprint: StageFingerprint?
    /// The stage's resolved settings (canonical JSON) when it last started, to say what changed.
    package var settings: String?
    package var outputs: StageOutputs?
    package var started: Date?
    package var finished: Date?
    /// The failure message of the last attempt.
    package var error: String?

    package init(type: String, status: StageStatus) {
        self.type = type
        self.status = status
    }
}

/// The contents of `<run_dir>/run.json`.
package struct RunState: Codable, Sendable, Equatable {
    package static let fileName = "run.json"
    package static let currentVersion = 1

    package var version = RunState.currentVersion
    /// The resolved recipe (canonical JSON) of the latest run.
    package var recipe: String?
    package var stages: [String: StageRecord] = [:]
    /// Content digests of input files, reused while size and mtime match.
    package var files: [String: FileDigest] = [:]

    package init() {}

    /// The state saved in `runDirectory`, or an empty state when there is none yet.
    package static func load(runDirectory: String) throws(RunError) -> RunState {
        let path = (runDirectory as NSString).appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: path) else { return RunState() }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .state(path: path, reason: "cannot read it")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let state: RunState
        do { state = try decoder.decode(RunState.self, from: data) } catch {
            throw .state(path: path, reason: "not a distill run state (\(error)); move it away to start the run over")
        }
        guard state.version <= currentVersion else {
            throw .state(path: path, reason: "written by a newer distill (version \(state.version))")
        }
        return state
    }

    /// Writes run.json atomically, creating the run directory when needed.
    package func save(runDirectory: String) throws(RunError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let data: Data
        do { data = try encoder.encode(self) } catch { preconditionFailure("run state always encodes: \(error)") }
        let path = (runDirectory as NSString).appendingPathComponent(Self.fileName)
        do throws(UserError) {
            try createDirectory(runDirectory)
            try writeAtomically(data, to: path)
        } catch {
            throw .state(path: error.path, reason: error.problem)
        }
    }
}
