// The strict reader: typed settings out of a JSON tree, collecting every problem instead of
// stopping at the first (which is what JSONDecoder does). A setting starts at its documented
// default (the property initialiser of its type) and a reader overwrites it when the key is
// present and valid; problems are logged with their JSON path and source position (line and
// column, or the --set argument that wrote the value), and reading carries on. Recipes are read
// this way; so is anything else a user writes as JSON.

/// Collects issues while a recipe is read. One per load; not shared across threads.
package final class IssueLog {
    package private(set) var issues: [JSONIssue] = []
    package let sources: SourceMap

    package init(sources: SourceMap = SourceMap()) { self.sources = sources }

    package func add(_ kind: JSONIssue.Kind, at path: String, atKey: Bool = false) {
        let origin = atKey ? sources.origin(ofKey: path) : sources.origin(ofValue: path)
        issues.append(JSONIssue(path: path, kind: kind, origin: origin))
    }
}

/// The JSON keys of a settings type (its CodingKeys), for "did you mean" hints and nested-key lists.
package func keys<K: CaseIterable & RawRepresentable<String>>(_: K.Type) -> [String] { K.allCases.map(\.rawValue) }

/// An allowed numeric range, printed the way messages say it: `>= 1`, `in (0, 1]`.
package struct NumericRange {
    package var lower: Double?
    package var lowerInclusive = true
    package var upper: Double?
    package var upperInclusive = true

    package init(lower: Double? = nil, lowerInclusive: Bool = true, upper: Double? = nil, upperInclusive: Bool = true) {
        self.lower = lower
        self.lowerInclusive = lowerInclusive
        self.upper = upper
        self.upperInclusive = upperInclusive
    }

    package static func atLeast(_ x: Double) -> NumericRange { NumericRange(lower: x) }
    package static let positive = NumericRange(lower: 0, lowerInclusive: false)
    package static func closed(_ a: Double, _ b: Double) -> NumericRange { NumericRange(lower: a, upper: b) }
    package static func halfOpen(_ a: Double, _ b: Double) -> NumericRange {
        NumericRange(lower: a, upper: b, upperInclusive: false)
    }
    package static func leftOpen(_ a: Double, _ b: Double) -> NumericRange {
        NumericRange(lower: a, lowerInclusive: false, upper: b)
    }

    package func contains(_ x: Double) -> Bool {
        if let lower, lowerInclusive ? x < lower : x <= lower { return false }
        if let upper, upperInclusive ? x > upper : x >= upper { return false }
        return true
    }

    private static func show(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : "\(x)" }

    package var description: String {
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
package struct ObjectReader<K: CodingKey & CaseIterable & RawRepresentable<String>> {
    package let path: String
    package let object: JSONValue.JSONObject
    package let log: IssueLog

    /// Reads `value` at `path`. A non-object is reported once and reads as an empty object with
    /// `isValid == false`, which silences "missing field" reports for its contents.
    ///
    /// - Parameters:
    ///   - alsoAllowed: keys accepted besides `K`'s (a stage's `type`).
    ///   - notAllowed: keys with a specific refusal (`model.vocab_size`).
    ///   - nested: the accepted keys of child objects, so a key written one level too high is
    ///     pointed to its place (`lr` in a stage: did you mean "training.lr"?).
    package init(
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

    package let isValid: Bool

    package func path(_ key: K) -> String { JSONPath.child(path, key.rawValue) }

    /// The value for `key`; nil when absent or null (null means "use the default").
    package func value(_ key: K) -> JSONValue? {
        guard let v = object[key.rawValue] else { return nil }
        if case .null = v { return nil }
        return v
    }

    package func has(_ key: K) -> Bool { value(key) != nil }

    package func missing(_ key: K, hint: String? = nil) {
        if isValid { log.add(.missing(hint: hint), at: path(key)) }
    }

    package func wrongType(_ key: K, _ expected: String, _ v: JSONValue) {
        log.add(.wrongType(expected: expected, got: v.quoted), at: path(key))
    }

    // MARK: Scalars

    package static func integer(_ v: JSONValue) -> Int? {
        switch v {
        case .int(let i): return i
        case .double(let d) where d == d.rounded() && abs(d) < 1e15: return Int(d)
        default: return nil
        }
    }

    /// Overwrites `target` with the integer at `key` when present, of the right type and in range.
    package func read(_ key: K, into target: inout Int, _ range: NumericRange? = nil) {
        if let x = int(key, range) { target = x }
    }

    package func read(_ key: K, into target: inout Int?, _ range: NumericRange? = nil) {
        if let x = int(key, range) { target = x }
    }

    /// The integer at `key`, or nil when absent or invalid (the problem is logged).
    package func int(_ key: K, _ range: NumericRange? = nil) -> Int? {
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

    package func read(_ key: K, into target: inout Double, _ range: NumericRange? = nil) {
        var x: Double? = target
        read(key, into: &x, range)
        if let x { target = x }
    }

    package func read(_ key: K, into target: inout Double?, _ range: NumericRange? = nil) {
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

    package func read(_ key: K, into target: inout Bool) {
        guard let v = value(key) else { return }
        guard case .bool(let b) = v else { return wrongType(key, "true or false", v) }
        target = b
    }

    package func string(_ key: K) -> String? {
        guard let v = value(key) else { return nil }
        guard case .string(let s) = v else {
            wrongType(key, "a string", v)
            return nil
        }
        return s
    }

    package func read(_ key: K, into target: inout String, nonEmpty: Bool = true) {
        guard let s = string(key) else { return }
        if nonEmpty && s.isEmpty { return log.add(.rule("must not be empty"), at: path(key)) }
        target = s
    }

    package func read<E: RawRepresentable<String> & CaseIterable>(_ key: K, into target: inout E) {
        var value: E? = target
        read(key, into: &value)
        if let value { target = value }
    }

    /// An enum value that stays nil when the key is absent.
    package func read<E: RawRepresentable<String> & CaseIterable>(_ key: K, into target: inout E?) {
        guard let s = string(key) else { return }
        guard let e = E(rawValue: s) else {
            let allowed = E.allCases.map(\.rawValue)
            return log.add(
                .invalidValue(got: s, allowed: allowed, suggestion: suggestion(for: s, among: allowed)), at: path(key))
        }
        target = e
    }

    /// A list of strings; a single string is accepted as a list of one when `acceptSingle`.
    package func strings(_ key: K, acceptSingle: Bool = false) -> [String]? {
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

    package func read(_ key: K, into target: inout [String]) {
        if let list = strings(key) { target = list }
    }

    /// A non-empty list of numbers, each in `range` (and whole when `integers`); nil when absent
    /// or invalid, the problem logged at the key.
    package func numbers(_ key: K, _ range: NumericRange, integers: Bool = false) -> [Double]? {
        guard let v = value(key) else { return nil }
        if case .array(let items) = v, !items.isEmpty {
            let values = items.compactMap { item -> Double? in
                switch item {
                case .int(let i): Double(i)
                case .double(let d) where !integers || Self.integer(item) != nil: d
                default: nil
                }
            }
            if values.count == items.count && values.allSatisfy(range.contains) { return values }
        }
        log.add(.rule("must be a non-empty list of \(integers ? "integers" : "numbers"), each \(range.description)"), at: path(key))
        return nil
    }

    // MARK: Nested objects

    /// Reads the object at `key` with `read`, or returns nil when absent.
    package func object<T>(_ key: K, _ read: (_ value: JSONValue, _ path: String) -> T) -> T? {
        guard let v = value(key) else { return nil }
        return read(v, path(key))
    }
}
