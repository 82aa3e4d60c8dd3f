// Reading typed settings out of a JSON tree while collecting every problem instead of stopping
// at the first (which is what JSONDecoder does). A setting starts at its documented default
// (the property initialiser in the schema) and a reader overwrites it when the key is present
// and valid; problems are logged with their path and origin, and reading carries on.

import JSON

/// Collects issues while a recipe is read. One per load; not shared across threads.
final class IssueLog {
    private(set) var issues: [RecipeIssue] = []
    let sources: SourceMap

    init(sources: SourceMap) { self.sources = sources }

    func add(_ kind: RecipeIssue.Kind, at path: String, atKey: Bool = false) {
        let origin = atKey ? sources.origin(ofKey: path) : sources.origin(ofValue: path)
        issues.append(RecipeIssue(path: path, kind: kind, origin: origin))
    }
}

/// An allowed numeric range, printed the way messages say it: `>= 1`, `in (0, 1]`.
struct NumericRange {
    var lower: Double?
    var lowerInclusive = true
    var upper: Double?
    var upperInclusive = true

    static func atLeast(_ x: Double) -> NumericRange { NumericRange(lower: x) }
    static let positive = NumericRange(lower: 0, lowerInclusive: false)
    static func closed(_ a: Double, _ b: Double) -> NumericRange { NumericRange(lower: a, upper: b) }
    static func halfOpen(_ a: Double, _ b: Double) -> NumericRange {
        NumericRange(lower: a, upper: b, upperInclusive: false)
    }
    static func leftOpen(_ a: Double, _ b: Double) -> NumericRange {
        NumericRange(lower: a, lowerInclusive: false, upper: b)
    }

    func contains(_ x: Double) -> Bool {
        if let lower, lowerInclusive ? x < lower : x <= lower { return false }
        if let upper, upperInclusive ? x > upper : x >= upper { return false }
        return true
    }

    private static func show(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : "\(x)" }

    var description: String {
        switch (lower, upper) {
        case (let l?, let u?):
            return "in \(lowerInclusive ? "[" : "(")\(Self.show(l)), \(Self.show(u))\(upperInclusive ? "]" : ")")"
        case (let l?, nil): return lowerInclusive ? ">= \(Self.show(l))" : "> \(Self.show(l))"
        case (nil, let u?): return upperInclusive ? "<= \(Self.show(u))" : "< \(Self.show(u))"
        case (nil, nil): return "any number"
        }
    }
}

/// Reads one JSON object whose accepted keys are `K`'s cases. Unknown keys are reported when the
/// reader is made, so a typo is reported even when the rest of the object is fine.
struct ObjectReader<K: CodingKey & CaseIterable & RawRepresentable<String>> {
    let path: String
    let object: JSONValue.JSONObject
    let log: IssueLog

    /// Reads `value` at `path`. A non-object is reported once and reads as an empty object with
    /// `isValid == false`, which silences "missing field" reports for its contents.
    ///
    /// - Parameters:
    ///   - alsoAllowed: keys accepted besides `K`'s (a stage's `type`).
    ///   - notAllowed: keys with a specific refusal (`model.vocab_size`).
    ///   - nested: the accepted keys of child objects, so a key written one level too high is
    ///     pointed to its place (`lr` in a stage: did you mean "training.lr"?).
    init(
        _ value: JSONValue, path: String, log: IssueLog, alsoAllowed: [String] = [],
        notAllowed: [String: String] = [:], nested: [(key: String, accepts: [String])] = []
    ) {
        self.path = path
        self.log = log
        guard case .object(let o) = value else {
            log.add(.wrongType(expected: "an object", got: value.quoted), at: path)
            object = JSONValue.JSONObject()
            isValid = false
            return
        }
        object = o
        isValid = true
        let accepted = K.allCases.map(\.rawValue) + alsoAllowed
        for entry in o.entries where !accepted.contains(entry.key) {
            let childPath = JSONPath.child(path, entry.key)
            if let reason = notAllowed[entry.key] {
                log.add(.notAllowed(reason: reason), at: childPath, atKey: true)
            } else {
                let below = nested.first { $0.accepts.contains(entry.key) }.map { "\($0.key).\(entry.key)" }
                let hint = suggestion(for: entry.key, among: accepted) ?? below
                log.add(.unknownKey(suggestion: hint, accepted: accepted), at: childPath, atKey: true)
            }
        }
    }

    let isValid: Bool

    func path(_ key: K) -> String { JSONPath.child(path, key.rawValue) }

    /// The value for `key`; nil when absent or null (null means "use the default").
    func value(_ key: K) -> JSONValue? {
        guard let v = object[key.rawValue] else { return nil }
        if case .null = v { return nil }
        return v
    }

    func has(_ key: K) -> Bool { value(key) != nil }

    func missing(_ key: K, hint: String? = nil) {
        if isValid { log.add(.missing(hint: hint), at: path(key)) }
    }

    func wrongType(_ key: K, _ expected: String, _ v: JSONValue) {
        log.add(.wrongType(expected: expected, got: v.quoted), at: path(key))
    }

    // MARK: Scalars

    static func integer(_ v: JSONValue) -> Int? {
        switch v {
        case .int(let i): return i
        case .double(let d) where d == d.rounded() && abs(d) < 1e15: return Int(d)
        default: return nil
        }
    }

    /// Overwrites `target` with the integer at `key` when present, of the right type and in range.
    func read(_ key: K, into target: inout Int, _ range: NumericRange? = nil) {
        if let x = int(key, range) { target = x }
    }

    func read(_ key: K, into target: inout Int?, _ range: NumericRange? = nil) {
        if let x = int(key, range) { target = x }
    }

    /// The integer at `key`, or nil when absent or invalid (the problem is logged).
    func int(_ key: K, _ range: NumericRange? = nil) -> Int? {
        guard let v = value(key) else { return nil }
        guard let x = Self.integer(v) else {
            wrongType(key, "an integer", v)
            return nil
        }
        if let range, !range.contains(Double(x)) {
            log.add(.outOfRange(allowed: range.description, got: String(x)), at: path(key))
            return nil
        }
        return x
    }

    func read(_ key: K, into target: inout Double, _ range: NumericRange? = nil) {
        var x: Double? = target
        read(key, into: &x, range)
        if let x { target = x }
    }

    func read(_ key: K, into target: inout Double?, _ range: NumericRange? = nil) {
        guard let v = value(key) else { return }
        let x: Double
        switch v {
        case .int(let i): x = Double(i)
        case .double(let d): x = d
        default: return wrongType(key, "a number", v)
        }
        if let range, !range.contains(x) {
            return log.add(.outOfRange(allowed: range.description, got: "\(v.canonical)"), at: path(key))
        }
        target = x
    }

    func read(_ key: K, into target: inout Bool) {
        guard let v = value(key) else { return }
        guard case .bool(let b) = v else { return wrongType(key, "true or false", v) }
        target = b
    }

    func string(_ key: K) -> String? {
        guard let v = value(key) else { return nil }
        guard case .string(let s) = v else {
            wrongType(key, "a string", v)
            return nil
        }
        return s
    }

    func read(_ key: K, into target: inout String, nonEmpty: Bool = true) {
        guard let s = string(key) else { return }
        if nonEmpty && s.isEmpty { return log.add(.rule("must not be empty"), at: path(key)) }
        target = s
    }

    func read<E: RawRepresentable<String> & CaseIterable>(_ key: K, into target: inout E) {
        guard let s = string(key) else { return }
        guard let e = E(rawValue: s) else {
            let allowed = E.allCases.map(\.rawValue)
            return log.add(
                .invalidValue(got: s, allowed: allowed, suggestion: suggestion(for: s, among: allowed)), at: path(key))
        }
        target = e
    }

    /// A list of strings; a single string is accepted as a list of one when `acceptSingle`.
    func strings(_ key: K, acceptSingle: Bool = false) -> [String]? {
        guard let v = value(key) else { return nil }
        if acceptSingle, case .string(let s) = v { return [s] }
        guard case .array(let items) = v else {
            wrongType(key, "an array of strings", v)
            return nil
        }
        var out: [String] = []
        var ok = true
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item else {
                log.add(.wrongType(expected: "a string", got: item.quoted), at: JSONPath.index(path(key), i))
                ok = false
                continue
            }
            out.append(s)
        }
        return ok ? out : nil
    }

    func read(_ key: K, into target: inout [String]) {
        if let list = strings(key) { target = list }
    }

    // MARK: Nested objects

    /// Reads the object at `key` with `read`, or returns nil when absent.
    func object<T>(_ key: K, _ read: (_ value: JSONValue, _ path: String) -> T) -> T? {
        guard let v = value(key) else { return nil }
        return read(v, path(key))
    }
}
