// The verdict table the Route tests share: small enough to work every number out by hand.

@testable import Route

/// A weak sample: its answer (nil = unreadable) and verdict; 10 prompt tokens, 5 generated.
private func w(_ answer: String?, _ correct: Bool) -> SampleVerdict {
    SampleVerdict(correct: correct, answer: answer, tokensIn: 10, tokensOut: 5)
}

/// A strong sample: 20 prompt tokens, 10 generated.
private func s(_ correct: Bool) -> SampleVerdict {
    SampleVerdict(correct: correct, answer: correct ? "right" : "wrong", tokensIn: 20, tokensOut: 10)
}

/// Four tasks, weak W (1 parameter) with 4 samples each, strong S (10 parameters) with 2:
///
/// | task | W's answers (in seed order)   | S correct  |
/// |------|-------------------------------|------------|
/// | t1   | a+ a+ a+ b-                   | 2 of 2     |
/// | t2   | a- b- b- b-                   | 1 of 2     |
/// | t3   | nil nil c+ nil                | 0 of 2     |
/// | t4   | d- d- e+ d-                   | 2 of 2     |
///
/// Costs: m weak samples cost 1 x (10 + 5m) (one shared prompt), a strong call 10 x (20 + 10) = 300.
let handTable = VerdictTable(
    models: [
        VerdictModel(name: "W", kind: "eval", source: "w", parameters: 1),
        VerdictModel(name: "S", kind: "eval", source: "s", parameters: 10),
    ],
    rows: [
        VerdictRow(
            taskID: "t1", prompt: "one",
            models: [
                "W": ModelCell(samples: [w("a", true), w("a", true), w("a", true), w("b", false)]),
                "S": ModelCell(samples: [s(true), s(true)]),
            ]),
        VerdictRow(
            taskID: "t2", prompt: "two",
            models: [
                "W": ModelCell(samples: [w("a", false), w("b", false), w("b", false), w("b", false)]),
                "S": ModelCell(samples: [s(true), s(false)]),
            ]),
        VerdictRow(
            taskID: "t3", prompt: "three",
            models: [
                "W": ModelCell(samples: [w(nil, false), w(nil, false), w("c", true), w(nil, false)]),
                "S": ModelCell(samples: [s(false), s(false)]),
            ]),
        VerdictRow(
            taskID: "t4", prompt: "four",
            models: [
                "W": ModelCell(samples: [w("d", false), w("d", false), w("e", true), w("d", false)]),
                "S": ModelCell(samples: [s(true), s(true)]),
            ]),
    ])
