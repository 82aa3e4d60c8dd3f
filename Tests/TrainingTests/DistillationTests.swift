// Distillation losses: hand-derived values on two- and three-token vocabularies, finite
// differences of the fused backward, and TRL's generalized_jsd_loss / top-k tail-bucket
// divergence on the fixture from tools/make_finetune_fixtures.py.

import Core
import Foundation
import Testing

@testable import Training

/// Student logits [0, 0] -> S = (1/2, 1/2); teacher logits [log 3, 0] -> T = (3/4, 1/4).
private func twoTokens() -> (Tensor, Tensor) {
    (Tensor(shape: [1, 2], values: [0, 0], requiresGrad: true), Tensor(shape: [1, 2], values: [Float(log(3.0)), 0]))
}

@Suite struct DistillationHandTests {
    /// Forward KL(T ‖ S) = 3/4 log(3/4 / 1/2) + 1/4 log(1/4 / 1/2) = 0.75 * 0.405465108 - 0.25 * 0.693147181
    /// = 0.304098831 - 0.173286795 = 0.130812036. dL/dx = S - T = (-0.25, 0.25).
    @Test func forwardKL() {
        let (s, t) = twoTokens()
        let out = DistillationConfig(divergence: .forwardKL).loss(studentLogits: s, teacher: .logits(t), targets: [0])
        out.loss.backward()
        #expect(abs(out.loss.item - 0.130812036) < 1e-6)
        #expect(closeness(s.grad!.values, [-0.25, 0.25], atol: 1e-6) <= 1)
    }

    /// Reverse KL(S ‖ T) = 1/2 log(1/2 / 3/4) + 1/2 log(1/2 / 1/4) = -0.202732554 + 0.346573590 = 0.143841036.
    /// dL/dx_j = S_j ((log S_j - log T_j) - L): x_0: 0.5 (-0.405465108 - 0.143841036) = -0.274653072,
    /// x_1: 0.5 (0.693147181 - 0.143841036) = 0.274653072.
    @Test func reverseKL() {
        let (s, t) = twoTokens()
        let out = DistillationConfig(divergence: .reverseKL).loss(studentLogits: s, teacher: .logits(t), targets: [0])
        out.loss.backward()
        #expect(abs(out.loss.item - 0.143841036) < 1e-6)
        #expect(closeness(s.grad!.values, [-0.274653072, 0.274653072], atol: 1e-6) <= 1)
    }

    /// JSD, β = 0.5: M = β T + (1-β) S = (0.625, 0.375).
    /// KL(T ‖ M) = 0.75 log(0.75/0.625) + 0.25 log(0.25/0.375) = 0.75 * 0.182321557 - 0.25 * 0.405465108 = 0.035374891
    /// KL(S ‖ M) = 0.5 log(0.5/0.625) + 0.5 log(0.5/0.375) = -0.111571776 + 0.143841036 = 0.032269260
    /// L = 0.5 * 0.035374891 + 0.5 * 0.032269260 = 0.033822076.
    @Test func jsd() {
        let (s, t) = twoTokens()
        let out = DistillationConfig(divergence: .jsd, beta: 0.5).loss(
            studentLogits: s, teacher: .logits(t), targets: [0])
        #expect(abs(out.loss.item - 0.033822076) < 1e-6)
    }

    /// Temperature 2: S stays (1/2, 1/2); T ∝ (√3, 1) = (0.633974596, 0.366025404).
    /// KL(T ‖ S) = 0.633974596 log(1.267949192) + 0.366025404 log(0.732050808)
    /// = 0.633974596 * 0.237400786 - 0.366025404 * 0.311905358 = 0.150506 - 0.114165 = 0.036340783.
    /// dL/dx = (S - T) / τ = (-0.066987298, 0.066987298).
    @Test func temperatureScalesBothSides() {
        let (s, t) = twoTokens()
        let out = DistillationConfig(temperature: 2).loss(studentLogits: s, teacher: .logits(t), targets: [0])
        out.loss.backward()
        #expect(abs(out.loss.item - 0.036340783) < 1e-6)
        #expect(closeness(s.grad!.values, [-0.066987298, 0.066987298], atol: 1e-6) <= 1)
    }

    /// α = 0.25: L = 0.25 KL + 0.75 CE with CE = -log S_0 = log 2 = 0.693147181:
    /// 0.25 * 0.130812036 + 0.75 * 0.693147181 = 0.032703009 + 0.519860386 = 0.552563395.
    @Test func mixesCrossEntropy() {
        let (s, t) = twoTokens()
        let out = DistillationConfig(kdWeight: 0.25).loss(studentLogits: s, teacher: .logits(t), targets: [0])
        #expect(abs(out.loss.item - 0.552563395) < 1e-6)
        #expect(abs(out.kd - 0.130812036) < 1e-6 && abs(out.ce! - 0.693147181) < 1e-6)
    }

    /// Top-1 teacher over V = 3: token 0 with probability 1/2, so the buckets are
    /// T = (1/2, tail 1/2) and, from uniform student logits, S = (1/3, tail 2/3).
    /// KL(T ‖ S) = 0.5 log(0.5 / (1/3)) + 0.5 log(0.5 / (2/3)) = 0.202732554 - 0.143841036 = 0.058891518.
    /// dL/dx_j = S_j Σ_b T_b - T_b(j) S_j / S_b(j): x_0: 1/3 - 1/2 = -1/6; x_1 = x_2: 1/3 - 0.5 * (1/3)/(2/3) = 1/12.
    @Test func topKTailBucket() {
        let s = Tensor(shape: [1, 3], values: [0, 0, 0], requiresGrad: true)
        let top = TopKLogProbs(k: 1, ids: [0], logProbs: [Float(log(0.5))])
        let out = DistillationConfig().loss(studentLogits: s, teacher: .topK(top), targets: [2])
        out.loss.backward()
        #expect(abs(out.loss.item - 0.058891518) < 1e-6)
        #expect(closeness(s.grad!.values, [-1.0 / 6, 1.0 / 12, 1.0 / 12], atol: 1e-6) <= 1)
    }

    /// With k = V the tail is empty and top-k is the full distribution: the two forms agree.
    @Test func fullTopKEqualsDenseTeacher() {
        var rng = RNG(seed: 3)
        let s = Tensor.randn([4, 5], rng: &rng), t = Tensor.randn([4, 5], std: 2, rng: &rng)
        for kind in [DivergenceKind.forwardKL, .jsd] {
            let c = DistillationConfig(divergence: kind, temperature: 1.5)
            let dense = c.loss(studentLogits: s, teacher: .logits(t), targets: [0, 1, 2, 3]).kd
            let top = c.loss(
                studentLogits: s, teacher: .topK(TopKLogProbs(logits: t, k: 5, temperature: 1.5)),
                targets: [0, 1, 2, 3]
            ).kd
            #expect(abs(dense - top) < 1e-5, "\(kind): dense \(dense) vs top-k \(top)")
        }
    }

    /// Ignored positions contribute nothing: the mean runs over counted rows only, and with
    /// none counted the loss is 0 with a zero gradient.
    @Test func ignoredPositionsDoNotCount() {
        let s = Tensor(shape: [2, 2], values: [0, 0, 5, -5], requiresGrad: true)
        let t = Tensor(shape: [2, 2], values: [Float(log(3.0)), 0, -9, 9])
        let out = DistillationConfig().loss(studentLogits: s, teacher: .logits(t), targets: [1, -100])
        out.loss.backward()
        #expect(abs(out.loss.item - 0.130812036) < 1e-6)
        #expect(s.grad!.values[2] == 0 && s.grad!.values[3] == 0)
        let none = DistillationConfig().loss(studentLogits: s, teacher: .logits(t), targets: [-100, -100])
        #expect(none.loss.item == 0)
    }

    @Test func topKFromLogitsKeepsTheLargest() {
        let t = Tensor(shape: [1, 4], values: [1, 3, 3, 0])
        let top = TopKLogProbs(logits: t, k: 2)
        #expect(top.ids == [1, 2])  // tie broken towards the smaller id
        // log softmax: 3 - log(e + 2e³ + 1) = 3 - log(2.718282 + 40.171074 + 1) = 3 - 3.781672 = -0.781672
        #expect(abs(top.logProbs[0] + 0.781672) < 1e-5)
    }

    @Test func configProblemsNameTheKey() {
        #expect(
            DistillationConfig(divergence: .jsd, beta: 1).problems() == ["beta must be in (0, 1) for jsd (got 1.0)"])
        #expect(DistillationConfig(temperature: 0, kdWeight: 2).problems().count == 2)
        #expect(PreferenceLossConfig(beta: 0, labelSmoothing: 0.5).problems().count == 2)
    }
}

// MARK: - Against TRL and finite differences

struct DistillationFixture: Decodable {
    struct Case: Decodable {
        var beta: Double
        var temperature: Double
        var loss: Double
        var grad: [Double]
    }
    struct TopKCase: Decodable {
        var beta: Double
        var temperature: Double
        var k: Int
        var ids: [Int32]
        var logProbs: [Double]
        var loss: Double
        var grad: [Double]
    }
    var rows: Int
    var vocab: Int
    var student: [Double]
    var teacher: [Double]
    var targets: [Int32]
    var cases: [Case]
    var topKCases: [TopKCase]

    static let shared = TrainingFixtures.decode(DistillationFixture.self, "distillation.json")

    func tensor(_ values: [Double]) -> Tensor { Tensor(shape: [rows, vocab], values: values.map(Float.init)) }

    /// TRL's β convention: 0 forward KL, 1 reverse KL, otherwise JSD(β).
    static func config(beta: Double, temperature: Double) -> DistillationConfig {
        let kind: DivergenceKind = beta == 0 ? .forwardKL : beta == 1 ? .reverseKL : .jsd
        return DistillationConfig(divergence: kind, beta: beta, temperature: temperature)
    }
}

@Suite struct DistillationReferenceTests {
    let f = DistillationFixture.shared

    @Test("generalized_jsd_loss", arguments: 0..<DistillationFixture.shared.cases.count)
    func matchesTRL(_ index: Int) {
        let c = f.cases[index]
        let s = f.tensor(f.student)
        s.requiresGrad = true
        let out = DistillationFixture.config(beta: c.beta, temperature: c.temperature)
            .loss(studentLogits: s, teacher: .logits(f.tensor(f.teacher)), targets: f.targets)
        out.loss.backward()
        #expect(
            closeness([out.loss.item], [c.loss]) <= 1, "β \(c.beta) τ \(c.temperature): \(out.loss.item) vs \(c.loss)")
        #expect(closeness(s.grad!.values, c.grad, atol: 1e-6) <= 1, "β \(c.beta) τ \(c.temperature): gradient")
    }

    @Test("top-k with TRL's tail bucket", arguments: 0..<DistillationFixture.shared.topKCases.count)
    func matchesTRLTopK(_ index: Int) {
        let c = f.topKCases[index]
        let s = f.tensor(f.student)
        s.requiresGrad = true
        let top = TopKLogProbs(k: c.k, ids: c.ids, logProbs: c.logProbs.map(Float.init))
        let out = DistillationFixture.config(beta: c.beta, temperature: c.temperature)
            .loss(studentLogits: s, teacher: .topK(top), targets: f.targets)
        out.loss.backward()
        #expect(
            closeness([out.loss.item], [c.loss]) <= 1, "β \(c.beta) τ \(c.temperature): \(out.loss.item) vs \(c.loss)")
        #expect(closeness(s.grad!.values, c.grad, atol: 1e-6) <= 1, "β \(c.beta) τ \(c.temperature): gradient")
        // The stored top-k is what TopKLogProbs(logits:) produces from the teacher.
        let mine = TopKLogProbs(logits: f.tensor(f.teacher), k: c.k, temperature: c.temperature)
        #expect(mine.ids == c.ids)
    }

    @Test("backward matches finite differences", arguments: DivergenceKind.allCases, [false, true])
    func finiteDifferences(_ kind: DivergenceKind, _ topK: Bool) {
        let s = f.tensor(f.student)
        let t = f.tensor(f.teacher)
        let teacher: TeacherDistribution = topK ? .topK(TopKLogProbs(logits: t, k: 3, temperature: 1.5)) : .logits(t)
        let config = DistillationConfig(divergence: kind, beta: 0.3, temperature: 1.5, kdWeight: 0.7)
        expectGradientMatchesFiniteDifferences(s, "\(kind) top-k \(topK)") {
            config.loss(studentLogits: s, teacher: teacher, targets: f.targets).loss
        }
    }
}
