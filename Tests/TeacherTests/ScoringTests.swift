// Task statistics (Verify/Scoring.swift): pass@k against counting subsets, the majority vote's
// tie and unreadable rules, the percentile bootstrap, an arm's metrics worked out by hand, and
// the canonical answers votes group by.

import Foundation
import JSON
import Testing
import Verify

private func judged(_ canonical: String?, _ correct: Bool, text: String? = nil, tokens: Int = 0) -> JudgedAnswer {
    JudgedAnswer(correct: correct, canonical: canonical, text: text ?? canonical ?? "?", tokens: tokens)
}

@Suite struct PassAtKTests {
    /// pass@k by definition: the share of the C(n, k) subsets of k samples holding a correct one.
    func countedPassAtK(n: Int, c: Int, k: Int) -> Double {
        var hit = 0, all = 0
        for mask in 0..<(1 << n) where mask.nonzeroBitCount == k {
            all += 1
            if mask & ((1 << c) - 1) != 0 { hit += 1 }  // samples 0..<c are the correct ones
        }
        return Double(hit) / Double(all)
    }

    @Test func passAtKIsTheUnbiasedEstimator() {
        for n in 1...8 {
            for c in 0...n {
                for k in 1...n {
                    #expect(abs(TaskStatistics.passAtK(n: n, c: c, k: k) - countedPassAtK(n: n, c: c, k: k)) < 1e-12)
                }
            }
        }
        // By hand: n = 4, c = 1, k = 2: 1 - C(3,2)/C(4,2) = 1 - 3/6.
        #expect(TaskStatistics.passAtK(n: 4, c: 1, k: 2) == 0.5)
        #expect(TaskStatistics.passAtKs(8) == [1, 2, 4, 8] && TaskStatistics.passAtKs(6) == [1, 2, 4, 6])
        #expect(TaskStatistics.passAtKs(1) == [1])
    }
}

@Suite struct MajorityVoteTests {
    @Test func theLargestGroupWinsAndIsRightWhenItsSamplesAreCorrect() {
        let v = TaskStatistics.majorityVote([
            judged("42", true), judged("41", false), judged("42", true), judged(nil, false),
        ])
        #expect(v == MajorityVote(answer: "42", votes: 2, tie: false, correct: true))
        let wrong = TaskStatistics.majorityVote([judged("41", false), judged("41", false), judged("42", true)])
        #expect(wrong == MajorityVote(answer: "41", votes: 2, tie: false, correct: false))
    }

    @Test func tiesNeverWin() {
        // 2 x "42" (correct) and 2 x "41": no majority, so wrong even though a correct answer tied.
        let v = TaskStatistics.majorityVote([
            judged("42", true), judged("41", false), judged("41", false), judged("42", true),
        ])
        #expect(v == MajorityVote(answer: nil, votes: 2, tie: true, correct: false))
        // A tie between a readable answer and the unreadable group is a tie too.
        let withNil = TaskStatistics.majorityVote([judged("42", true), judged(nil, false)])
        #expect(withNil.tie && !withNil.correct && withNil.answer == nil)
    }

    @Test func unreadableAnswersNeverWin() {
        let v = TaskStatistics.majorityVote([judged(nil, false), judged(nil, false), judged("42", true)])
        #expect(v == MajorityVote(answer: nil, votes: 2, tie: false, correct: false))
        // But they do not block a readable answer that outnumbers them.
        let ok = TaskStatistics.majorityVote([judged(nil, false), judged("42", true), judged("42", true)])
        #expect(ok.correct && ok.answer == "42")
    }

    @Test func aWinnerWithAnIncorrectSampleIsWrongAndNoSamplesIsNoVote() {
        // Equal answers judged differently (a command checker that looks past the text): not right.
        let v = TaskStatistics.majorityVote([judged("x", true), judged("x", false)])
        #expect(v.answer == "x" && !v.correct)
        #expect(TaskStatistics.majorityVote([]) == MajorityVote(answer: nil, votes: 0, tie: false, correct: false))
    }

    @Test func aCascadesLeadingAnswerIgnoresUnreadableOnesAndBreaksTiesByOrder() {
        // Unreadable answers outnumber "42" but only readable ones lead.
        let lead = TaskStatistics.leadingAnswer([nil, nil, "42", nil])
        #expect(lead?.answer == "42" && lead?.votes == 1 && lead?.first == 2)
        // A tie goes to the answer given first; a later majority still wins.
        #expect(TaskStatistics.leadingAnswer(["b", "a", "a", "b"])?.answer == "b")
        #expect(TaskStatistics.leadingAnswer(["b", "a", "a"]).map { ($0.answer, $0.votes, $0.first) }! == ("a", 2, 1))
        #expect(TaskStatistics.leadingAnswer([nil, nil]) == nil && TaskStatistics.leadingAnswer([]) == nil)
    }
}

@Suite struct BootstrapTests {
    let column: [Double] = (0..<40).map { $0 % 3 == 0 ? 1 : 0 }  // 14 of 40 correct: mean 0.35

    @Test func deterministicForASeedAndContainsTheMean() {
        let a = TaskStatistics.bootstrapIntervals([column], BootstrapConfig(seed: 5))[0]
        let b = TaskStatistics.bootstrapIntervals([column], BootstrapConfig(seed: 5))[0]
        #expect(a == b)
        // Another seed draws other resamples (seen on a column whose means are not on a coarse grid).
        let graded = (0..<40).map { Double(($0 * 7) % 11) / 11 }
        let five = TaskStatistics.bootstrapIntervals([graded], BootstrapConfig(seed: 5))[0]
        let six = TaskStatistics.bootstrapIntervals([graded], BootstrapConfig(seed: 6))[0]
        #expect(five != six)
        #expect(a.low < 0.35 && 0.35 < a.high)
        // The normal approximation's half-width is 1.96 * sqrt(0.35 * 0.65 / 40) = 0.148; the
        // percentile interval is close to it.
        #expect(abs((a.high - a.low) / 2 - 0.148) < 0.03, "\(a)")
        // The same resamples for every column: a column twice gives the same interval twice.
        let pair = TaskStatistics.bootstrapIntervals([column, column], BootstrapConfig(seed: 5))
        #expect(pair[0] == a && pair[1] == a)
    }

    @Test func constantDataHasAZeroWidthIntervalAndEmptyDataIsZero() {
        let r = TaskStatistics.bootstrapIntervals([[1, 1, 1], [0, 0, 0]], BootstrapConfig(resamples: 50))
        #expect(r[0] == (1, 1) && r[1] == (0, 0))
        #expect(TaskStatistics.bootstrapIntervals([[]], BootstrapConfig())[0] == (0, 0))
    }

    @Test func intervalsAreQuantilesOfTheResampledMeans() {
        // One task: every resample is that task, so both ends are its value.
        #expect(TaskStatistics.bootstrapIntervals([[0.25]], BootstrapConfig(resamples: 10))[0] == (0.25, 0.25))
        // A wider level gives a wider interval from the same resamples.
        let narrow = TaskStatistics.bootstrapIntervals([column], BootstrapConfig(level: 0.5, seed: 1))[0]
        let wide = TaskStatistics.bootstrapIntervals([column], BootstrapConfig(level: 0.99, seed: 1))[0]
        #expect(wide.low < narrow.low && narrow.high < wide.high)
    }
}

@Suite struct ArmMetricsTests {
    @Test func metricsByHand() {
        // Three tasks, k = 4.
        //   t0: greedy right; samples 42 42 41 nil (2 correct): maj "42" right
        //   t1: greedy wrong; samples a a b b (b correct): a tie, wrong
        //   t2: greedy right; samples nil nil nil x (x correct): unreadable most common, wrong
        let greedy = [judged("42", true, tokens: 3), judged("a", false, tokens: 5), judged("x", true, tokens: 1)]
        let samples = [
            [
                judged("42", true, tokens: 2), judged("42", true, tokens: 2), judged("41", false, tokens: 2),
                judged(nil, false, text: "junk", tokens: 2),
            ],
            [
                judged("a", false, tokens: 1), judged("a", false, text: "a ", tokens: 1), judged("b", true, tokens: 1),
                judged("b", true, tokens: 1),
            ],
            [
                judged(nil, false, text: "p", tokens: 4), judged(nil, false, text: "p", tokens: 4),
                judged(nil, false, text: "q", tokens: 4), judged("x", true, tokens: 4),
            ],
        ]
        let m = ArmMetrics.compute(greedy: greedy, samples: samples, bootstrap: BootstrapConfig(seed: 1))
        #expect(m.tasks == 3 && m.samplesPerTask == 4)
        #expect(abs(m.greedyAccuracy.value - 2.0 / 3) < 1e-12)
        #expect(m.greedyAccuracy.ciLow <= m.greedyAccuracy.value && m.greedyAccuracy.value <= m.greedyAccuracy.ciHigh)
        #expect(m.passAtK.map(\.k) == [1, 2, 4])
        // pass@1 = mean correct share = (2/4 + 2/4 + 1/4) / 3 = 5/12.
        #expect(abs(m.passAtK[0].value - 5.0 / 12) < 1e-12)
        // pass@2: t0 and t1 1 - C(2,2)/C(4,2) = 5/6; t2 1 - C(3,2)/C(4,2) = 1/2: (5/6 + 5/6 + 1/2) / 3.
        #expect(abs(m.passAtK[1].value - (5.0 / 6 + 5.0 / 6 + 0.5) / 3) < 1e-12)
        #expect(m.passAtK[2].value == 1)
        #expect(abs(m.majAtK!.value - 1.0 / 3) < 1e-12 && m.majTies == 1 && m.majUnreadable == 1)
        // Readable: 3 + 4 + 1 of 12. Distinct readable per task: 2 + 2 + 1. Distinct texts: 3 + 3 + 3.
        #expect(abs(m.validAnswerRate - 8.0 / 12) < 1e-12)
        #expect(abs(m.uniqueValidAnswersPerSample - 5.0 / 12) < 1e-12)
        #expect(abs(m.uniqueOutputsPerSample - 9.0 / 12) < 1e-12)
        #expect(m.greedyTokensPerTask == 3 && abs(m.tokensPerSample - 28.0 / 12) < 1e-12)
        #expect(m.tokensGenerated == 9 + 28)
    }

    @Test func greedyOnlyHasNoSampleMetrics() {
        let m = ArmMetrics.compute(
            greedy: [judged("1", true), judged("2", false)], samples: [[], []], bootstrap: BootstrapConfig())
        #expect(m.greedyAccuracy.value == 0.5 && m.passAtK.isEmpty && m.majAtK == nil && m.samplesPerTask == 0)
    }
}

@Suite struct CanonicalAnswerTests {
    func exact(_ completion: String, _ answer: String, _ extraction: VerifierConfig.Extraction = .auto) -> Verdict {
        ExactMatch.verify(completion, answer: answer, extraction: extraction, pattern: nil, caseSensitive: false)
    }

    @Test func exactAnswersAreNormalisedWithNumbersAsNumbers() {
        #expect(exact("#### 42.0", "42").canonical == "42")
        #expect(exact("so $1,234.00.", "1234").canonical == "1234")
        #expect(exact("#### 41", "42").canonical == "41")
        #expect(exact("#### 0.50", "1").canonical == "0.5")
        #expect(exact("#### 18 dollars", "18").canonical == "18")
        #expect(exact("#### New   York.", "paris").canonical == "new york")
        #expect(exact("no digits", "42").canonical == nil)
    }

    @Test func functionCallsAreSortedAndNormalisedAsTheMatcherCompares() throws {
        let expected = [ExpectedCall(name: "f", arguments: [(name: "city", acceptable: [JSONValue.string("Oslo")])])]
        let a = FunctionCallMatch.verify(
            #"[{"name": "g", "arguments": {"n": 3.0}}, {"name": "f", "arguments": {"unit": "C", "city": "New York"}}]"#,
            expected: expected, tools: nil)
        let b = FunctionCallMatch.verify(#"f(city="new-york", unit="c") g(n=3)"#, expected: expected, tools: nil)
        #expect(
            a.canonical == #"[{"arguments":{"city":"newyork","unit":"c"},"name":"f"},{"arguments":{"n":3},"name":"g"}]"#
        )
        #expect(a.canonical == b.canonical)
        #expect(!a.correct)  // two calls for one expected: wrong, but readable
        let unreadable = FunctionCallMatch.verify("area(5, 3)", expected: expected, tools: nil)
        #expect(!unreadable.correct && unreadable.canonical == nil)
        #expect(
            FunctionCallMatch.verify(#"f(city="oslo")"#, expected: expected, tools: nil).canonical
                == #"[{"arguments":{"city":"oslo"},"name":"f"}]"#)
    }

    @Test func regexAndCommandAnswers() {
        #expect(RegexMatch.verify("  7 \n", pattern: "[0-9]", mode: .full).canonical == "7")
        #expect(RegexMatch.verify("x y", pattern: "[0-9]", mode: .full).canonical == "x y")
        #expect(RegexMatch.verify("it is 7 or 9", pattern: "[0-9]", mode: .search).canonical == "7")
        #expect(RegexMatch.verify("none", pattern: "[0-9]", mode: .search).canonical == nil)
        var config = VerifierConfig(type: .command)
        config.command = ["true"]
        let task = TeacherTask(id: "c", prompt: .text("p"), check: [], file: "t.jsonl", line: 1)
        #expect(Verifier(config).verify(" print(1)\n", for: task).canonical == "print(1)")
    }
}
