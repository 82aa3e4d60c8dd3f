import ArgumentParser
import Foundation
import ModelIO
import Platform
import Teacher
import Verify

/// Samples a task file from an OpenAI-compatible server through the call cache and prints
/// `done ID SEED cached|fresh` as each sample finishes (after its result is committed), so a
/// test can SIGKILL it mid-run and check that every reported call survives. `distill sample`
/// is the user's command.
struct StressTeacher: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stress-teacher",
        abstract: "Sample TASKS through the teacher call cache (crash testing; not for users).")

    @Option(help: "The task set (JSONL).") var tasks: String
    @Option(help: "The call cache (SQLite file).") var cache: String
    @Option(help: "The openai teacher as JSON (base_url, model, samples, ...).") var teacherJson: String

    func run() throws {
        let config: OpenAITeacherConfig
        do {
            config = try JSONDecoder().decode(OpenAITeacherConfig.self, from: Data(teacherJson.utf8))
        } catch {
            throw UserError(path: "--teacher-json", problem: "not an openai teacher object: \(error)", kind: .usage)
        }
        let taskList = try TaskReader.read(path: tasks)
        let teacher = try OpenAITeacher(config: config, cache: try CallCache(path: cache))
        let failure = ErrorBox()
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                _ = try await teacher.sample(taskList) { sample in
                    let state = sample.cached ? "cached" : sample.requests > 0 ? "fresh" : "?"
                    let outcome = (try? sample.result.get()) == nil ? "failed" : state
                    FileHandle.standardOutput.write(Data("done \(sample.taskID) \(sample.seed) \(outcome)\n".utf8))
                }
            } catch {
                failure.set(error)
            }
            done.signal()
        }
        done.wait()
        if let error = failure.error { throw error }
        FileHandle.standardOutput.write(
            Data("requests \(teacher.counters.requests) cache-hits \(teacher.counters.cacheHits)\n".utf8))
    }
}

/// Carries an error out of a task into synchronous code.
final class ErrorBox: @unchecked Sendable {
    // @unchecked: `error` is written once, before the semaphore the reader waits on is signalled.
    private(set) var error: (any Error)?
    func set(_ e: any Error) { error = e }
}
