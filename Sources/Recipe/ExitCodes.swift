// Exit codes for the errors of every layer (2 usage/config, 65 bad data, 74 I/O, 75 busy,
// 70 internal), so `distill` can tell a user which kind of problem stopped it.

import Foundation
import Formats
import Teacher
import TextData
import Training

extension DataError: ExitCodeError {
    package var exitCode: Int32 {
        switch kind {
        case .badData: return 65
        case .badConfig: return 2
        case .io: return 74
        }
    }
}

extension CheckpointError: ExitCodeError {
    package var exitCode: Int32 {
        switch category {
        case .io: return 74
        case .data: return 65
        case .busy: return 75
        case .invalidContents: return 70
        }
    }
}

extension HFModelError: ExitCodeError {
    package var exitCode: Int32 { kind == .io ? 74 : 65 }
}

extension SafetensorsError: ExitCodeError {
    package var exitCode: Int32 { kind == .io ? 74 : 65 }
}

extension SQLiteError: ExitCodeError {
    package var exitCode: Int32 { 74 }
}

extension TokenizerError: ExitCodeError {
    package var exitCode: Int32 { 65 }
}

extension TrainingError: ExitCodeError {
    package var exitCode: Int32 { 65 }
}

extension Runner {
    /// Runs the recipe holding the run directory's lock (a second `distill run` on the same
    /// directory is refused, exit 75) after removing temporary files of killed writers.
    package func runLocked(onEvent: (RunEvent) -> Void) throws -> RunState {
        let directory = URL(fileURLWithPath: recipe.runDir)
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw RunError.state(path: directory.path, reason: "cannot create the run directory: \(error.localizedDescription)")
        }
        let lock = try RunDirectoryLock(directory: directory)
        defer { lock.release() }
        for orphan in try sweepOrphanedTemporaries(in: directory) {
            onEvent(.notice("removed \(orphan.lastPathComponent), left by an interrupted write"))
        }
        return try run(onEvent: onEvent)
    }
}

extension GGUFError: ExitCodeError {
    package var exitCode: Int32 { kind == .io ? 74 : 65 }
}
