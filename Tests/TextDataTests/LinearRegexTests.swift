// LinearRegex: the answers of a backtracking engine (ICU's, through NSRegularExpression, as the
// independent reference) on ordinary patterns, linear time on the patterns that make
// backtracking engines hang, and refusals that name the construct.

import Foundation
import Testing

@testable import Platform

@Suite struct LinearRegexTests {
    /// Patterns and texts where ICU is quick; the first match and its first group must agree.
    static let agreement: [(String, [String])] = [
        (#"\d+"#, ["abc 123 def 45", "no digits", ""]),
        (#"answer is (\S+)"#, ["the answer is 42.", "answer is", "answer is  x"]),
        (#"(a|ab)(c|bcd)(d*)"#, ["abcd", "xabcdd"]),
        (#"a*?b"#, ["aaab", "b", "aaa"]),
        (#"(?i)hello|world"#, ["HeLLo World", "WORLD"]),
        (#"(?i:straße)"#, ["STRAßE x Straße"]),
        (#"^\s*(\w+)\s*$"#, ["  word  ", "two words", "x\n"]),
        (#"x{2,3}?y|x{2}"#, ["xxxxy", "xx", "xxxy"]),
        (#"\bcat\b"#, ["concat cat", "cats"]),
        (#"[^\s\p{L}\p{N}]+"#, ["hi!! there?? 3.14", "é!ü"]),
        (#"\p{Lu}\p{Ll}+"#, ["hello World Émile"]),
        (#"(\d)(?=\d{2}[05])"#, ["1234567 9905"]),
        (#"\s+(?!\S)|\s+"#, ["a   b  ", "   "]),
        (#"(?<=\$)\d+"#, ["cost: $42, 7"]),
        (#"<tool_call>(.*?)</tool_call>"#, ["x<tool_call>{\"a\":1}</tool_call>y<tool_call>z</tool_call>"]),
        (#"(?s)a.b"#, ["a\nb"]), (#"a.b"#, ["a\nb axb"]),
        (#"(?m)^b$"#, ["a\nb\nc"]), (#"^b$"#, ["a\nb\nc", "b\n"]),
        (#"[a-c\-x]+"#, ["zz-abxc-q"]), (#"\x41\u00e9\x{1F600}"#, ["Aé😀"]),
        (#"(?<year>\d{4})-(?<month>\d\d)"#, ["on 2024-05-01"]),
        (#"colou?r|gr[ae]y"#, ["the grey colour"]), (#"()|a"#, ["a"]),
    ]

    @Test func agreesWithABacktrackingEngine() throws {
        for (pattern, texts) in Self.agreement {
            let ours = try LinearRegex(pattern)
            let icu = try NSRegularExpression(pattern: pattern)
            for text in texts {
                let ns = text as NSString
                let reference = icu.firstMatch(in: text, range: NSRange(location: 0, length: ns.length))
                let found = ours.firstMatch(in: text)
                #expect((reference == nil) == (found == nil), "/\(pattern)/ on \(text.debugDescription)")
                guard let reference, let found else { continue }
                #expect(NSRange(found.whole, in: text) == reference.range, "/\(pattern)/ on \(text.debugDescription)")
                if reference.numberOfRanges > 1 {
                    let group = reference.range(at: 1)
                    #expect(
                        found.group1.map { NSRange($0, in: text) } ?? NSRange(location: NSNotFound, length: 0) == group,
                        "/\(pattern)/ group 1 on \(text.debugDescription)")
                }
                // Every match, as NSRegularExpression lists them (empty ones left out).
                let all = icu.matches(in: text, range: NSRange(location: 0, length: ns.length)).map(\.range)
                    .filter { $0.length > 0 }
                let scalars = Array(text.unicodeScalars.map(\.value))
                let indices = Array(text.unicodeScalars.indices) + [text.endIndex]
                let ourAll = ours.matches(in: scalars).filter { !$0.isEmpty }
                    .map { NSRange(indices[$0.lowerBound]..<indices[$0.upperBound], in: text) }
                #expect(ourAll == all, "/\(pattern)/ all matches on \(text.debugDescription)")
            }
        }
    }

    @Test func wholeMatchBacktracksIntoAlternatives() throws {
        // Leftmost-first finds "a"; a whole match needs the second alternative.
        #expect(try LinearRegex("a|ab").wholeMatches("ab"))
        #expect(try !LinearRegex("a|ab").wholeMatches("abc"))
        #expect(try LinearRegex(#"\d+(\.\d+)?"#).wholeMatches("3.14"))
    }

    /// The classic catastrophic patterns: each takes 2^n or n^k steps in a backtracking
    /// engine on these texts (hours or more); here each is a bounded scan with the right answer.
    @Test func catastrophicPatternsFinish() throws {
        let a = String(repeating: "a", count: 5000)
        let cases: [(String, String, Bool)] = [
            (#"(a+)+$"#, a + "b", false), (#"(a+)+b"#, a, false), (#"(a|aa)+$"#, a + "!", false),
            (#"(a*)*b"#, a, false), (#"(a|a?)+c"#, a, false), (#"(.*a){20}"#, a + "b", true),
            (#"^(\w+\s?)+$"#, String(repeating: "word ", count: 800) + "!", false),
            (#"^(([a-z])+.)+[A-Z]([a-z])+$"#, a + "!", false), (#"\s*\s*\s*\s*x"#, String(repeating: " ", count: 5000), false),
            (#"(x+x+)+y"#, String(repeating: "x", count: 5000), false), (#"(a+)+$"#, a, true),
        ]
        for (pattern, text, expected) in cases {
            let regex = try LinearRegex(pattern)
            #expect((regex.firstMatch(in: text) != nil) == expected, "/\(pattern)/")
            #expect(!regex.wholeMatches(text + "\u{1}"), "/\(pattern)/")
        }
        // Every match of a pattern that looks ahead past each match (x*y|x): linear overall.
        let many = try LinearRegex("x*y|x").matches(in: Array(repeating: 0x78, count: 20000))
        #expect(many.count == 20000)
    }

    @Test(arguments: [
        (#"(a)\1"#, "backreference"), (#"(?>a+)b"#, "atomic group"), (#"a++"#, "possessive"),
        (#"\p{Han}"#, "Unicode property"), (#"(?<=a+)b"#, "lookaround"), (#"(?=.*x)"#, "lookaround"),
        (#"[[:alpha:]]"#, "POSIX class"), (#"(?x) a"#, "extended"), (#"a{1001}"#, "above 1000"),
        (#"(a"#, "without its )"), (#"a)"#, "unbalanced"), (#"*a"#, "nothing to repeat"),
    ])
    func refusalsNameTheConstruct(pattern: String, expected: String) {
        #expect {
            _ = try LinearRegex(pattern)
        } throws: { error in
            (error as? LinearRegexError)?.message.contains(expected) == true
        }
    }
}
