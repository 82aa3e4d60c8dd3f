// Typed checks of a call against the tool's JSON schema (`parameters`), when the task gives
// one: the function-call verifier's `types: "schema"` mode (the default). A call is wrong when
// it names a parameter the schema does not have, leaves out a `required` one, or gives a value
// of the wrong type or outside its `enum`.
//
// Types, with the names of JSON Schema and of the Berkeley Function Calling Leaderboard:
//   integer            an integer (5 passes; 5.0 does not)
//   number, float      an integer or a float (an integer passes for a number, not the reverse)
//   boolean            true or false (not 1, not "true")
//   string             a string
//   array, tuple       a list, each item checked against `items` when given
//   object, dict       an object, each key against `properties` (keys it does not list and
//                      missing `required` keys are wrong)
//   null               null
//   any, or no type    anything
// A `type` list (["string", "null"]) accepts any of its types. An argument given as `""` that
// the schema does not require counts as omitted (the leaderboard's convention) and is not
// type-checked.

import JSON
import Platform

package enum ToolSchema {
    /// A tool's function definition: the object itself, or its `function` member in OpenAI's
    /// `{"type": "function", "function": {...}}` form; nil for anything else.
    package static func definition(_ tool: JSONValue) -> JSONValue.JSONObject? {
        guard case .object(let o) = tool else { return nil }
        if case .object(let f)? = o["function"] { return f }
        return o
    }

    /// A tool's function name.
    package static func name(_ tool: JSONValue) -> String? { definition(tool)?["name"]?.stringValue }

    /// The `parameters` schema of every tool that has one, by function name.
    package static func parameters(_ tools: [JSONValue]) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for tool in tools {
            guard let f = definition(tool), let name = f["name"]?.stringValue, let p = f["parameters"], case .object = p
            else { continue }
            out[name] = p
        }
        return out
    }

    /// Why `arguments` do not fit `schema` (an object schema), or nil when they do. `path` names
    /// the value in messages (`get_weather`, then `get_weather.days`).
    package static func problem(arguments: JSONValue.JSONObject, schema: JSONValue, path: String) -> String? {
        problem(.object(arguments), schema, path: path, isTopLevel: true)
    }

    /// The schema's `required` names.
    package static func required(_ schema: JSONValue) -> [String] {
        guard case .object(let s) = schema, case .array(let r)? = s["required"] else { return [] }
        return r.compactMap(\.stringValue)
    }

    private static func problem(_ value: JSONValue, _ schema: JSONValue, path: String, isTopLevel: Bool = false) -> String? {
        guard case .object(let s) = schema else { return nil }
        if case .array(let options)? = s["enum"], !options.contains(value) {
            return "\(path) = \(clip(value.compact())) is not one of the allowed values [\(options.map { $0.compact() }.joined(separator: ", "))]"
        }
        let types: [String]
        switch s["type"] {
        case .string(let t)?: types = [t]
        case .array(let list)?: types = list.compactMap(\.stringValue)
        default: types = []
        }
        guard !types.isEmpty, !types.contains("any") else { return nil }
        guard let type = types.first(where: { fits(value, $0) }) else {
            let what = isTopLevel ? "arguments" : "\(path) = \(clip(value.compact()))"
            return "\(what) is \(kind(of: value)), but the tool's schema says \(types.joined(separator: " or "))"
        }
        switch (type, value) {
        case ("array", .array(let items)), ("tuple", .array(let items)):
            guard let itemSchema = s["items"] else { return nil }
            for (i, item) in items.enumerated() {
                if let p = problem(item, itemSchema, path: "\(path)[\(i)]") { return p }
            }
            return nil
        case ("object", .object(let o)), ("dict", .object(let o)):
            guard case .object(let properties)? = s["properties"] else { return nil }
            let needed = required(schema)
            for entry in o.entries where !(isTopLevel && entry.value == .string("") && !needed.contains(entry.key)) {
                guard let sub = properties[entry.key] else {
                    let known = properties.entries.map(\.key).joined(separator: ", ")
                    return isTopLevel
                        ? "\(path): unexpected argument \(entry.key) (the tool's parameters are \(known))"
                        : "\(path): unexpected key \(entry.key) (the schema lists \(known))"
                }
                if let p = problem(entry.value, sub, path: "\(path).\(entry.key)") { return p }
            }
            for name in needed where o[name] == nil {
                return isTopLevel
                    ? "\(path): missing required argument \(name) (required by the tool's schema)"
                    : "\(path): missing required key \(name)"
            }
            return nil
        default:
            return nil
        }
    }

    /// A value's type in the schema's words.
    private static func kind(of value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool: "a boolean"
        case .int: "an integer"
        case .double: "a float"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    /// Whether `value` is of JSON-schema (or leaderboard) type `type`; unknown type names accept.
    private static func fits(_ value: JSONValue, _ type: String) -> Bool {
        switch (type, value) {
        case ("integer", .int): return true
        case ("number", .int), ("number", .double), ("float", .int), ("float", .double): return true
        case ("boolean", .bool): return true
        case ("string", .string): return true
        case ("array", .array), ("tuple", .array): return true
        case ("object", .object), ("dict", .object): return true
        case ("null", .null): return true
        case ("integer", _), ("number", _), ("float", _), ("boolean", _), ("string", _), ("array", _), ("tuple", _),
            ("object", _), ("dict", _), ("null", _):
            return false
        default: return true
        }
    }
}
