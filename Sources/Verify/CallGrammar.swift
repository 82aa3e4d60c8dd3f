// The grammar of a function-calling answer, written from the task's tool schemas: a Python
// list of one or more calls, `[f(a=1, b="x"), g(c=[1.5, 2])]`, each naming a tool of the task
// and giving its parameters by name, in the schema's order, each required one present, each
// value a Python literal of the schema's type (ToolSchema.swift's types):
//
//   integer          -?(0|[1-9][0-9]{0,17}): 64 bits, as the verifier reads it
//   number, float    an integer, or with a fraction and/or an exponent of 1-2 digits (1.5,
//                    2e-3): always finite
//   boolean          True | False
//   string           "..." or '...' (escapes \\ \' \" \n \r \t); with `enum`, one of its values
//   array, tuple     [v, ...] with each item of `items`' type (any literal without `items`)
//   object, dict     {"key": v, ...}: with `properties`, their keys in order (quoted either
//                    way), the required ones present, each value of its type; else any dict
//   null             None
//   a type list      any of its types; no type: any literal
//
// Every sentence is a call list the function-call verifier reads (CallParser), with the
// tool's schema satisfied; whether the values are the right ones is still the verifier's to
// say. Constrained sampling (docs/teacher.md) uses it to keep a weak teacher's answers in
// form, so that its samples differ in what they say, not in how.

import JSON

package enum CallGrammar {
    /// The grammar of a Python list of calls to `tools` (OpenAI's `{"type": "function",
    /// "function": {...}}` form or the bare definition). Tools without a name are left out;
    /// nil when none is left.
    package static func pythonCalls(tools: [JSONValue]) -> ByteGrammar? {
        let named = tools.compactMap { tool -> (String, JSONValue?)? in
            guard let name = ToolSchema.name(tool), !name.isEmpty else { return nil }
            return (name, ToolSchema.definition(tool)?["parameters"])
        }
        guard !named.isEmpty else { return nil }
        let w = Writer()
        let call = w.b.rule(named.map { name, parameters in w.call(name, parameters) })
        let more = w.b.zeroOrMore(w.separator + [call])
        let root = w.b.rule([w.b.literal("[") + [w.space, call, more, w.space] + w.b.literal("]")])
        return w.b.build(root: root)
    }

    /// The rules a call list is made of, each written once.
    private struct Writer {
        let b: GrammarBuilder
        let space: ByteGrammar.Element
        let separator: [ByteGrammar.Element]
        let integer: ByteGrammar.Element
        let number: ByteGrammar.Element
        let string: ByteGrammar.Element
        let boolean: ByteGrammar.Element
        let none: ByteGrammar.Element
        let anyValue: ByteGrammar.Element

        init() {
            let b = GrammarBuilder()
            self.b = b
            space = b.optional(b.literal(" "))
            separator = b.literal(",") + [space]
            let digit = ByteGrammar.Element.bytes(ByteSet(UInt8(ascii: "0"), through: UInt8(ascii: "9")))
            let digits = b.oneOrMore([digit])
            // At most 18 digits before the point and 2 in the exponent: the verifier reads an
            // integer into 64 bits, and a number must stay finite as a double.
            let whole = b.rule([b.literal("0"), [.bytes(ByteSet(UInt8(ascii: "1"), through: UInt8(ascii: "9"))), b.atMost(17, [digit])]])
            integer = b.rule([[b.optional(b.literal("-")), whole]])
            let fraction = b.optional(b.literal(".") + [digits])
            let exponent = b.optional([.bytes(ByteSet("eE")), b.optional([.bytes(ByteSet("+-"))]), digit, b.optional([digit])])
            number = b.rule([[integer, fraction, exponent]])
            func quoted(_ quote: String) -> [ByteGrammar.Element] {
                let plain = ByteGrammar.Element.bytes(ByteSet(quote + "\\\n\r", except: true))
                let escape = b.literal("\\") + [.bytes(ByteSet("\\'\"nrt"))]
                return b.literal(quote) + [b.zeroOrMore([b.rule([[plain], escape])])] + b.literal(quote)
            }
            string = b.rule([quoted("\""), quoted("'")])
            boolean = b.oneOf(["True", "False"])
            none = b.rule([b.literal("None")])
            // Any literal: the recursive rule is declared first so lists and dicts can hold it.
            let any = b.declare()
            let anyList = Self.list(b, of: .rule(any), space: space, separator: separator)
            let anyDict = Self.dict(b, of: .rule(any), key: string, space: space, separator: separator)
            b.define(any, [[number], [string], [boolean], [none], [anyList], [anyDict]])
            anyValue = .rule(any)
        }

        static func list(
            _ b: GrammarBuilder, of item: ByteGrammar.Element, space: ByteGrammar.Element, separator: [ByteGrammar.Element]
        ) -> ByteGrammar.Element {
            let items = b.optional([item, b.zeroOrMore(separator + [item]), space])
            return b.rule([b.literal("[") + [space, items] + b.literal("]")])
        }

        static func dict(
            _ b: GrammarBuilder, of value: ByteGrammar.Element, key: ByteGrammar.Element, space: ByteGrammar.Element,
            separator: [ByteGrammar.Element]
        ) -> ByteGrammar.Element {
            let entry = [key, space] + b.literal(":") + [space, value]
            let entries = b.optional(entry + [b.zeroOrMore(separator + entry), space])
            return b.rule([b.literal("{") + [space, entries] + b.literal("}")])
        }

        /// `name(p=v, ...)`: the schema's parameters in order, optional ones skippable.
        func call(_ name: String, _ parameters: JSONValue?) -> [ByteGrammar.Element] {
            let entries = properties(parameters) { key in b.literal(key) + [space] + b.literal("=") + [space] }
            return b.literal(name + "(") + [space, entries, space] + b.literal(")")
        }

        /// The `properties` of an object schema, in order, each written as `key(name)` then
        /// its value, separated by commas: the required ones present, the others skippable.
        func properties(_ schema: JSONValue?, key: (String) -> [ByteGrammar.Element]) -> ByteGrammar.Element {
            var entries: [[ByteGrammar.Element]] = []
            var optional: [Bool] = []
            let required = Set(schema.map(ToolSchema.required) ?? [])
            if case .object(let s)? = schema, case .object(let properties)? = s["properties"] {
                for (name, property) in properties.entries {
                    entries.append(key(name) + [value(property)])
                    optional.append(!required.contains(name))
                }
            }
            // tails[i]: what may follow once the entries before i are placed or skipped.
            let n = entries.count
            var tails = [ByteGrammar.Element](repeating: space, count: n + 1)
            tails[n] = b.rule([[]])
            for i in stride(from: n - 1, through: 0, by: -1) {
                var alternatives: [[ByteGrammar.Element]] = []
                for j in i..<n {
                    alternatives.append(separator + entries[j] + [tails[j + 1]])
                    if !optional[j] { break }
                }
                if optional[i...].allSatisfy({ $0 }) { alternatives.append([]) }
                tails[i] = b.rule(alternatives)
            }
            var heads: [[ByteGrammar.Element]] = []
            for j in 0..<n {
                heads.append(entries[j] + [tails[j + 1]])
                if !optional[j] { break }
            }
            if optional.allSatisfy({ $0 }) { heads.append([]) }
            return b.rule(heads)
        }

        /// A literal of `schema`'s type.
        func value(_ schema: JSONValue) -> ByteGrammar.Element {
            guard case .object(let s) = schema else { return anyValue }
            if case .array(let options)? = s["enum"], !options.isEmpty {
                return b.rule(options.flatMap(Self.spellings).map { b.literal($0) })
            }
            let types: [String]
            switch s["type"] {
            case .string(let t)?: types = [t]
            case .array(let list)?: types = list.compactMap(\.stringValue)
            default: types = []
            }
            guard !types.isEmpty else { return anyValue }
            return b.rule(
                types.map { type -> [ByteGrammar.Element] in
                    switch type {
                    case "integer": return [integer]
                    case "number", "float": return [number]
                    case "boolean": return [boolean]
                    case "string": return [string]
                    case "null": return [none]
                    case "array", "tuple":
                        let item = s["items"].map(value) ?? anyValue
                        return [Self.list(b, of: item, space: space, separator: separator)]
                    case "object", "dict":
                        // With `properties`, their keys (quoted either way) and types; else any dict.
                        guard case .object(let listed)? = s["properties"], !listed.entries.isEmpty else {
                            return [Self.dict(b, of: anyValue, key: string, space: space, separator: separator)]
                        }
                        let entries = properties(schema) { key in
                            [b.rule(Self.spellings(.string(key)).map { b.literal($0) }), space] + b.literal(":") + [space]
                        }
                        return b.literal("{") + [space, entries, space] + b.literal("}")
                    default: return [anyValue]
                    }
                })
        }

        /// The ways a Python literal writes `value` (strings in either quote).
        static func spellings(_ value: JSONValue) -> [String] {
            switch value {
            case .string(let text):
                func quoted(_ q: Character) -> String {
                    var out = String(q)
                    for c in text {
                        switch c {
                        case "\\": out += "\\\\"
                        case "\n": out += "\\n"
                        case "\r": out += "\\r"
                        case "\t": out += "\\t"
                        case q: out += "\\\(q)"
                        default: out.append(c)
                        }
                    }
                    return out + String(q)
                }
                return [quoted("\""), quoted("'")]
            case .bool(let v): return [v ? "True" : "False"]
            case .null: return ["None"]
            default: return [value.compact()]
            }
        }
    }
}
