// Tool names as OpenAI-compatible servers accept them. The chat API takes function names
// matching ^[a-zA-Z0-9_-]{1,64}$ and refuses a request with any other (many real tools are
// named `math.factorial` or `weather.get`). A name that fits is sent as it is; one that does not
// has every other character replaced by "_", is cut to 64 characters and, if that collides with
// another tool's name, gets a numeric suffix. Calls in the response are mapped back to the
// task's names before they are verified, so the task set keeps its own names throughout.

import JSON
import Verify

package struct ToolNames: Sendable, Equatable {
    /// Original name -> the name sent.
    package private(set) var encoded: [String: String] = [:]
    /// The name sent -> original name.
    package private(set) var original: [String: String] = [:]

    /// The names of `tools` (bare definitions or `{"type": "function", "function": ...}`).
    package init(_ tools: [JSONValue]) {
        let names = tools.compactMap(ToolSchema.name)
        var taken = Set(names.filter(Self.isAccepted))
        for name in names where encoded[name] == nil {
            var sent = name
            if !Self.isAccepted(name) {
                let base = String(String.UnicodeScalarView(name.unicodeScalars.map { Self.isAllowed($0) ? $0 : "_" }).prefix(64))
                sent = base.isEmpty ? "tool" : base
                var n = 2
                while taken.contains(sent) {
                    let suffix = "_\(n)"
                    sent = String(base.prefix(64 - suffix.count)) + suffix
                    n += 1
                }
            }
            taken.insert(sent)
            encoded[name] = sent
            original[sent] = name
        }
    }

    /// The task's name for a name the server returned (unchanged when it was not encoded).
    package func original(_ sent: String) -> String { original[sent] ?? sent }

    /// `tool` wrapped as OpenAI's function tool, its name encoded.
    package func encodedTool(_ tool: JSONValue) -> JSONValue {
        guard case .object(let o) = tool else { return tool }
        if o["type"] == nil { return encodedTool(.obj(["type": .string("function"), "function": tool])) }
        guard case .object(let f)? = o["function"], let name = f["name"]?.stringValue, let sent = encoded[name], sent != name
        else { return tool }
        func replacing(_ object: JSONValue.JSONObject, _ key: String, with value: JSONValue) -> JSONValue {
            .object(.init(object.entries.map { (key: $0.key, value: $0.key == key ? value : $0.value) }))
        }
        return replacing(o, "function", with: replacing(f, "name", with: .string(sent)))
    }

    private static func isAllowed(_ c: Unicode.Scalar) -> Bool {
        c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c == "-")
    }

    static func isAccepted(_ name: String) -> Bool {
        !name.isEmpty && name.unicodeScalars.count <= 64 && name.unicodeScalars.allSatisfy(isAllowed)
    }
}
