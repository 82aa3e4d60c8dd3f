// Loading a recipe: read the file, parse it with positions, apply `--set` overrides, read and
// resolve it, and throw every problem found at once. Also the canonical (resolved) JSON that
// checkpoints store.

import Foundation
import JSON
import Platform
import TextData

/// One `--set key=value` argument.
package struct RecipeOverride: Sendable, Equatable {
    /// The path as written: `stages[0].training.steps`, `pretrain.training.steps`, `seed`.
    package var key: String
    /// The value, parsed as JSON when it parses (numbers, true/false, null, arrays, objects,
    /// quoted strings) and taken as a plain string otherwise. `null` removes the key, which puts
    /// the setting back to its default.
    package var value: JSONValue
    /// The argument as the user wrote it, for messages.
    package var argument: String

    /// Parses `key=value`; nil when there is no `=` or the key is empty.
    package init?(_ argument: String) {
        guard let eq = argument.firstIndex(of: "="), eq != argument.startIndex else { return nil }
        self.key = String(argument[..<eq]).trimmingCharacters(in: .whitespaces)
        let text = String(argument[argument.index(after: eq)...])
        self.value = (try? JSONValue.parseWithSources(text).0) ?? .string(text)
        self.argument = argument
    }
}

private enum PathComponent: Equatable {
    case key(String)
    case index(Int)
}

extension RecipeOverride {
    /// Splits `a.b[2].c` into components; nil when malformed.
    private static func components(_ key: String) -> [PathComponent]? {
        var out: [PathComponent] = []
        var current = ""
        var chars = key[...]
        while let c = chars.first {
            chars = chars.dropFirst()
            switch c {
            case ".":
                guard
                    !current.isEmpty
                        || out.last.map({ if case .index = $0 { return true } else { return false } }) == true
                else { return nil }
                if !current.isEmpty { out.append(.key(current)) }
                current = ""
            case "[":
                if !current.isEmpty { out.append(.key(current)) }
                current = ""
                guard let close = chars.firstIndex(of: "]"), let i = Int(chars[..<close]), i >= 0 else { return nil }
                out.append(.index(i))
                chars = chars[chars.index(after: close)...]
            default:
                current.append(c)
            }
        }
        if !current.isEmpty { out.append(.key(current)) }
        return out.isEmpty || key.hasSuffix(".") ? nil : out
    }

    /// Applies the override to `root`, recording its origin; returns a problem instead when the
    /// path cannot be applied. Keys absent from an object are added (validation then reports
    /// them if the schema does not know them); array indices must exist.
    fileprivate func apply(to root: inout JSONValue, sources: inout SourceMap) -> JSONIssue? {
        func problem(_ reason: String) -> JSONIssue {
            JSONIssue(path: key, kind: .badOverride(reason), origin: .override(argument))
        }
        guard var parts = Self.components(key) else {
            return problem("cannot read the path; write it like stages[0].training.steps or pretrain.training.steps")
        }
        // A first component that is not a top-level key may name a stage.
        if case .key(let first) = parts[0], !Recipe.CodingKeys.allCases.map(\.rawValue).contains(first) {
            var names: [String] = []
            if case .object(let o) = root, case .array(let stages)? = o["stages"] { names = stageNames(stages) }
            if let i = names.firstIndex(of: first) {
                parts.replaceSubrange(0..<1, with: [.key("stages"), .index(i)])
            } else {
                let candidates = Recipe.CodingKeys.allCases.map(\.rawValue) + names
                let hint = suggestion(for: first, among: candidates).map { "; did you mean \"\($0)\"?" } ?? ""
                return problem("\"\(first)\" is neither a top-level key nor a stage name\(hint)")
            }
        }
        var path = ""
        // The outermost key the override adds; problems inside it are the override's.
        var createdAt: String?
        func set(_ node: inout JSONValue, _ rest: ArraySlice<PathComponent>) -> String? {
            guard let head = rest.first else {
                node = value
                return nil
            }
            switch head {
            case .key(let k):
                let childPath = JSONPath.child(path, k)
                var object: JSONValue.JSONObject
                switch node {
                case .object(let o): object = o
                case .null: object = JSONValue.JSONObject()
                default: return "\(path.isEmpty ? "the recipe" : path) is \(node.typeName), not an object"
                }
                let index = object.entries.firstIndex { $0.key == k }
                if rest.count == 1, value == .null {
                    // `key=null` removes the key: back to its default.
                    if let index { object.entries.remove(at: index) }
                    node = .object(object)
                    path = childPath
                    return nil
                }
                var child = index.map { object.entries[$0].value } ?? .null
                path = childPath
                if index == nil, createdAt == nil { createdAt = childPath }
                if let failure = set(&child, rest.dropFirst()) { return failure }
                if let index {
                    object.entries[index].value = child
                } else {
                    object.entries.append((key: k, value: child))
                }
                node = .object(object)
                return nil
            case .index(let i):
                guard case .array(var items) = node else {
                    return "\(path) is \(node.typeName), not an array"
                }
                guard i < items.count else {
                    return
                        "index \(i) is out of range: \(path) has \(items.count) element\(items.count == 1 ? "" : "s")"
                }
                path = JSONPath.index(path, i)
                if let failure = set(&items[i], rest.dropFirst()) { return failure }
                node = .array(items)
                return nil
            }
        }
        if let failure = set(&root, parts[...]) { return problem(failure) }
        sources.replace(createdAt ?? path, with: .override(argument))
        return nil
    }
}

extension Recipe {
    /// Loads the recipe at `file` (relative paths in it resolve against its folder) with
    /// `overrides` applied. Throws every problem at once.
    package static func load(
        file: String, overrides: [String] = [], checkFiles: Bool = true
    ) throws(RecipeError) -> Recipe {
        let url = URL(fileURLWithPath: (file as NSString).expandingTildeInPath)
        if let problem = notARegularFile(url.path) {
            throw RecipeError(file: file, issues: [JSONIssue(path: "", kind: .rule("the recipe file \(problem)"))])
        }
        guard let data = FileManager.default.contents(atPath: url.path) else {
            let exists = FileManager.default.fileExists(atPath: url.path)
            let kind: JSONIssue.Kind = exists ? .rule("cannot read the recipe file") : .fileNotFound(url.path)
            throw RecipeError(file: file, issues: [JSONIssue(path: "", kind: kind)])
        }
        let bytes = Array(data)
        if let bad = UTF8Text.firstInvalidOffset(bytes) {
            // Decoding would silently turn the bytes into U+FFFD; the recipe says what it says.
            let (line, column) = UTF8Text.position(of: bad, in: bytes)
            throw RecipeError(
                file: file,
                issues: [JSONIssue(path: "", kind: .syntax("invalid UTF-8 at line \(line), column \(column); save the recipe as UTF-8"), origin: .file(line: line, column: column))])
        }
        return try load(
            text: String(decoding: data, as: UTF8.self), file: file,
            baseDirectory: url.standardizedFileURL.deletingLastPathComponent().path, overrides: overrides,
            checkFiles: checkFiles)
    }

    /// Loads a recipe from text. `file` only names it in messages.
    package static func load(
        text: String, file: String? = nil, baseDirectory: String, overrides: [String] = [], checkFiles: Bool = true
    ) throws(RecipeError) -> Recipe {
        var root: JSONValue
        var sources: SourceMap
        do {
            (root, sources) = try JSONValue.parseWithSources(text)
        } catch {
            throw RecipeError(
                file: file,
                issues: [
                    JSONIssue(
                        path: "", kind: .syntax(error.reason), origin: .file(line: error.line, column: error.column))
                ])
        }
        var issues: [JSONIssue] = []
        for argument in overrides {
            guard let o = RecipeOverride(argument) else {
                issues.append(
                    JSONIssue(path: "", kind: .badOverride("expected key=value"), origin: .override(argument)))
                continue
            }
            if let issue = o.apply(to: &root, sources: &sources) { issues.append(issue) }
        }
        let log = IssueLog(sources: sources)
        let recipe = Recipe.read(root, baseDirectory: baseDirectory, checkFiles: checkFiles, log: log)
        issues += log.issues
        if !issues.isEmpty { throw RecipeError(file: file, issues: inDocumentOrder(issues)) }
        return recipe
    }

    /// The resolved recipe as canonical JSON (sorted keys, no whitespace): what checkpoints
    /// store, and what `decodeResolved` reads back.
    package var resolvedJSON: String { canonicalJSON(of: self) }

    /// A recipe stored by `resolvedJSON` (for instance inside a checkpoint).
    package static func decodeResolved(_ json: String) throws -> Recipe {
        try JSONDecoder().decode(Recipe.self, from: Data(json.utf8))
    }
}

extension Stage {
    /// The stage's resolved settings as canonical JSON (the part of its fingerprint that the
    /// recipe controls directly).
    package var resolvedJSON: String { canonicalJSON(of: self) }
}

/// Override problems first, then by position in the file (a missing field sits at its
/// object's position), then the rest; ties keep the order they were found in.
private func inDocumentOrder(_ issues: [JSONIssue]) -> [JSONIssue] {
    func rank(_ origin: ValueOrigin?) -> (Int, Int, Int) {
        switch origin {
        case .override?: return (0, 0, 0)
        case .file(let line, let column)?: return (1, line, column)
        case nil: return (2, 0, 0)
        }
    }
    return issues.enumerated().sorted { a, b in
        let (ra, rb) = (rank(a.element.origin), rank(b.element.origin))
        return ra != rb ? ra < rb : a.offset < b.offset
    }.map(\.element)
}

/// Encodes a schema value and normalises it through `JSONValue.canonical`, so the text does not
/// depend on JSONEncoder's number formatting or key order.
private func canonicalJSON(of value: some Encodable) -> String {
    do {
        let data = try JSONEncoder().encode(value)
        return try JSONValue.parseWithSources(String(decoding: data, as: UTF8.self)).0.canonical
    } catch {
        preconditionFailure("recipe values always encode to JSON: \(error)")
    }
}
