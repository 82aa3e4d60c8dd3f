// From a JSON tree to a resolved `Recipe`, in two passes that both log problems instead of
// throwing: pass 1 reads each object on its own (keys, types, ranges, rules inside one object);
// pass 2 checks what spans stages (names, references, outputs), fills defaults that depend on
// other stages, makes paths absolute and checks that input files exist.

import Foundation
import JSON
import Platform

private let namePattern = "[A-Za-z0-9_.-]+"

private func isValidName(_ s: String) -> Bool {
    !s.isEmpty && s != "." && s != ".."
        && s.unicodeScalars.allSatisfy {
            ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)))
                || "_.-".unicodeScalars.contains($0)
        }
}

/// Stage names for a raw `stages` array: the explicit `name` when given, else the type for the
/// first unnamed stage of that type, then `<type>_2`, `<type>_3`, ... A default name never
/// depends on other stages' explicit names; a collision is reported as a duplicate. Overrides
/// address stages by these names before the recipe is validated, so this works on the raw tree.
package func stageNames(_ stages: [JSONValue]) -> [String] {
    func field(_ v: JSONValue, _ key: String) -> String? {
        if case .object(let o) = v, case .string(let s)? = o[key] { return s }
        return nil
    }
    var unnamedOfType: [String: Int] = [:]
    return stages.map { stage in
        if let explicit = field(stage, "name") { return explicit }
        let type = field(stage, "type") ?? "stage"
        let n = unnamedOfType[type, default: 0] + 1
        unnamedOfType[type] = n
        return n == 1 ? type : "\(type)_\(n)"
    }
}

/// One stage after pass 1, with what pass 2 needs to know about how it was written.
private struct ReadStage {
    var stage: Stage
    /// Position in the recipe's `stages` array.
    var index: Int
    var path: String
    /// Keys present (non-null) in the stage object.
    var given: Set<String>
}

extension Recipe {
    /// Reads and resolves `root`, logging every problem. The result is meaningful only when the
    /// log stays empty. Relative paths resolve against `baseDirectory`.
    static func read(_ root: JSONValue, baseDirectory: String, checkFiles: Bool, log: IssueLog) -> Recipe {
        let r = ObjectReader<CodingKeys>(root, path: "", log: log)
        var name = "recipe"
        if let s = r.string(.name) {
            if isValidName(s) {
                name = s
            } else {
                log.add(.rule("must match \(namePattern), got \(JSONValue.string(s).canonical)"), at: r.path(.name))
            }
        } else if r.value(.name) == nil {
            r.missing(.name)
        }
        var recipe = Recipe(name: name, runDir: "Checkpoints/\(name)", stages: [])
        if let dir = r.string(.runDir) {
            if dir.isEmpty { log.add(.rule("must not be empty"), at: r.path(.runDir)) } else { recipe.runDir = dir }
        }
        if let seed = r.int(.seed, .atLeast(0)) { recipe.seed = seed }
        recipe.threads = r.int(.threads, .atLeast(1))

        var read: [ReadStage] = []
        var names: [String] = []
        switch r.value(.stages) {
        case nil: r.missing(.stages, hint: "list the stages to run, e.g. [{\"type\": \"pretrain\", ...}]")
        case .array(let items)?:
            if items.isEmpty { log.add(.rule("must list at least one stage"), at: "stages") }
            names = stageNames(items)
            for (i, item) in items.enumerated() {
                if let s = readStage(item, index: i, defaultName: names[i], recipeSeed: recipe.seed, log: log) {
                    read.append(s)
                }
            }
        case let other?: r.wrongType(.stages, "an array of stages", other)
        }
        recipe.runDir = absolute(recipe.runDir, base: baseDirectory)
        recipe.stages = link(
            read, names: names, runDir: recipe.runDir, base: baseDirectory, checkFiles: checkFiles, log: log)
        return recipe
    }
}

// MARK: - Pass 1: one object at a time

private func readStage(_ v: JSONValue, index: Int, defaultName: String, recipeSeed: Int, log: IssueLog) -> ReadStage? {
    let path = "stages[\(index)]"
    guard case .object(let o) = v else {
        log.add(.wrongType(expected: "a stage object", got: v.quoted), at: path)
        return nil
    }
    let given = Set(o.entries.filter { if case .null = $0.value { return false } else { return true } }.map(\.key))
    let typePath = JSONPath.child(path, "type")
    guard let typeValue = o["type"], typeValue != .null else {
        log.add(
            .missing(hint: "one of " + StageType.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")),
            at: typePath)
        return nil
    }
    guard case .string(let typeName) = typeValue else {
        log.add(.wrongType(expected: "a string", got: typeValue.quoted), at: typePath)
        return nil
    }
    guard let type = StageType(rawValue: typeName) else {
        let available = StageType.allCases.map(\.rawValue)
        if StageType.planned.contains(typeName) {
            log.add(
                .rule(
                    "stage type \"\(typeName)\" is not available in this version (available: \(available.joined(separator: ", ")))"
                ), at: typePath)
        } else {
            log.add(
                .invalidValue(
                    got: typeName, allowed: available, suggestion: suggestion(for: typeName, among: available)),
                at: typePath)
        }
        return nil
    }
    let stage = type.settingsType.read(v, path: path, name: defaultName, seed: recipeSeed, log: log).stage
    return ReadStage(stage: stage, index: index, path: path, given: given)
}

/// The keys every stage shares: `name` (validated in pass 2) and `output`.
func readCommon<K: CodingKey & CaseIterable & RawRepresentable<String>>(
    _ r: ObjectReader<K>, name nameKey: K, output outputKey: K, into s: inout some StageSettings
) {
    if let n = r.string(nameKey) { s.name = n }
    if let out = r.string(outputKey) {
        if out.isEmpty || out.hasPrefix("/") || out.hasPrefix("~") || out.split(separator: "/").contains("..") {
            r.log.add(
                .rule("must be a relative path inside the run directory, got \(JSONValue.string(out).canonical)"),
                at: r.path(outputKey))
        } else {
            s.output = out
        }
    }
}

// MARK: - Pass 2: across stages

/// `path` made absolute against `base` (with `~` expanded and `.`/`..` removed).
func absolute(_ path: String, base: String) -> String {
    let expanded = (path as NSString).expandingTildeInPath
    let url =
        expanded.hasPrefix("/")
        ? URL(fileURLWithPath: expanded)
        : URL(fileURLWithPath: base, isDirectory: true).appendingPathComponent(expanded)
    return url.standardizedFileURL.path
}

/// What pass 2 lends a stage's `link`: its JSON path, which keys were written, the stages before
/// it, and the linker's file and checkpoint resolution (both log what they cannot resolve).
package struct StageLinker {
    package var path: String
    package var given: Set<String>
    package var runDirectory: String
    /// The stages before this one, already linked.
    package var earlier: [Stage]
    package var log: IssueLog
    fileprivate var checkFile: (_ path: String, _ jsonPath: String) -> String
    fileprivate var resolve: (_ source: CheckpointSource, _ given: Bool, _ jsonPath: String) -> CheckpointSource?

    fileprivate init(
        path: String, given: Set<String>, runDirectory: String, earlier: [Stage], log: IssueLog,
        file: @escaping (String, String) -> String, source: @escaping (CheckpointSource, Bool, String) -> CheckpointSource?
    ) {
        self.path = path
        self.given = given
        self.runDirectory = runDirectory
        self.earlier = earlier
        self.log = log
        checkFile = file
        resolve = source
    }

    /// The input file at `key` (a dotted path below the stage) made absolute, logging a missing one.
    package func file(_ file: String, at key: String) -> String { checkFile(file, JSONPath.child(path, key)) }

    /// `files` (the list at `key`) made absolute, each checked.
    package func files(_ files: [String], at key: String) -> [String] {
        files.enumerated().map { checkFile($1, JSONPath.index(JSONPath.child(path, key), $0)) }
    }

    /// The checkpoint at `key` resolved: the latest earlier checkpoint when not `given`, an
    /// earlier stage that produces one, or an absolute file. nil (logged) when unusable.
    package func source(_ source: CheckpointSource, given: Bool, at key: String) -> CheckpointSource? {
        resolve(source, given, JSONPath.child(path, key))
    }

    /// A path inside the run directory made absolute (outputs and caches the stage writes).
    package func inRunDirectory(_ file: String) -> String { absolute(file, base: runDirectory) }
}

/// `names` are the names of all stages as written, including those that could not be read, so
/// a reference to a later or broken stage is reported as such.
private func link(
    _ stages: [ReadStage], names allNames: [String], runDir: String, base: String, checkFiles: Bool, log: IssueLog
) -> [Stage] {
    var out: [Stage] = []
    var firstByName: [String: Int] = [:]
    var writerOfOutput: [String: String] = [:]

    /// An input file made absolute and checked; `@stage/file` names a file inside an earlier
    /// stage's output folder (sample's `sft.jsonl`, say), which exists only once that stage has run.
    func checkFile(_ path: String, at jsonPath: String) -> String {
        if path.hasPrefix("@") {
            let parts = path.dropFirst().split(separator: "/", maxSplits: 1)
            let name = parts.first.map(String.init) ?? ""
            guard parts.count == 2, let earlier = out.first(where: { $0.name == name }) else {
                let hint = suggestion(for: name, among: out.map(\.name)).map { "; did you mean \"@\($0)/...\"?" } ?? ""
                log.add(
                    .rule("\"\(path)\" must be \"@stage/file\", a file in the output folder of an earlier stage\(hint)"),
                    at: jsonPath)
                return path
            }
            return (earlier.output as NSString).appendingPathComponent(String(parts[1]))
        }
        let abs = absolute(path, base: base)
        if checkFiles && !FileManager.default.fileExists(atPath: abs) { log.add(.fileNotFound(abs), at: jsonPath) }
        return abs
    }

    /// Resolves a checkpoint source of the stage at `index`: defaults to the latest earlier
    /// checkpoint-producing stage when not given; checks references; makes files absolute.
    /// Returns nil (after logging) when the source is unusable.
    func source(_ src: CheckpointSource, given: Bool, index: Int, at jsonPath: String) -> CheckpointSource? {
        if !given {
            guard let producer = out.last(where: { $0.producesCheckpoint }) else {
                log.add(
                    .missing(hint: "no earlier stage produces a checkpoint; name a checkpoint file or \"@stage\""),
                    at: jsonPath)
                return nil
            }
            return .stage(producer.name)
        }
        switch src {
        case .file(let path):
            if path.isEmpty {
                log.add(.rule("must not be empty"), at: jsonPath)
                return nil
            }
            return .file(checkFile(path, at: jsonPath))
        case .stage(let name):
            if let earlier = out.first(where: { $0.name == name }) {
                if earlier.producesCheckpoint { return src }
                log.add(
                    .rule("stage \"\(name)\" (\(earlier.type.rawValue)) does not produce a checkpoint"), at: jsonPath)
            } else if allNames[..<index].contains(name) {
                // That stage could not be read; its own problems are reported.
            } else if allNames[index...].contains(name) {
                log.add(
                    .rule("\"@\(name)\" is not an earlier stage; stages run in order and may only read earlier ones"),
                    at: jsonPath)
            } else {
                let hint =
                    suggestion(for: name, among: Array(allNames[..<index])).map { "; did you mean \"@\($0)\"?" } ?? ""
                log.add(.rule("\"@\(name)\" does not name an earlier stage\(hint)"), at: jsonPath)
            }
            return nil
        }
    }

    for read in stages {
        var stage = read.stage
        let i = read.index
        let name = stage.name
        let namePath = JSONPath.child(read.path, "name")
        if !isValidName(name) {
            log.add(.rule("must match \(namePattern), got \(JSONValue.string(name).canonical)"), at: namePath)
        } else if let first = firstByName[name] {
            log.add(
                .rule("duplicate stage name \"\(name)\" (also stages[\(first)]); give each stage a unique \"name\""),
                at: namePath)
        } else {
            firstByName[name] = i
        }
        let outputPath = JSONPath.child(read.path, "output")
        let output = absolute(stage.output, base: runDir)
        if let other = writerOfOutput[output] {
            log.add(
                .rule(
                    "stage \"\(other)\" writes \(JSONValue.string(stage.output).canonical) too; give one of them another \"output\""
                ), at: outputPath)
        }
        writerOfOutput[output] = name
        let linker = StageLinker(
            path: read.path, given: read.given, runDirectory: runDir, earlier: out, log: log, file: checkFile,
            source: { source($0, given: $1, index: i, at: $2) })
        var settings = stage.settings
        settings.output = output
        settings.link(linker)
        stage = settings.stage
        out.append(stage)
    }
    return out
}
