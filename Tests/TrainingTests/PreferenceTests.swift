// Preference losses: each kind against arithmetic written out by hand, the backward against
// finite differences through sequenceLogProbs, and everything against TRL's own code on the
// fixture from tools/make_finetune_fixtures.py.

import Core
import Foundation
import Testing

@testable import Training

/// One pair used by the hand-derived tests:
///   policy  π_c = -2 (2 completion tokens),  π_r = -3 (4 tokens)
///   reference   ref_c = -2.5,                ref_r = -2.5
///   log-ratios  ρ_c = -2 + 2.5 = 0.5,        ρ_r = -3 + 2.5 = -0.5
///   Δ = ρ_c - ρ_r = 1
/// Constants used below: log σ(0.1) = -log(1 + e^-0.1) = -log 1.904837418 = -0.644396660,
/// log σ(-0.1) = -log(1 + e^0.1) = -log 2.105170918 = -0.744396660, σ(-0.1) = 0.475020813.
private func onePair() -> (SequenceLogProbs, SequenceLogProbs, ReferenceLogProbs, Tensor, Tensor) {
    let c = Tensor(shape: [1], values: [-2], requiresGrad: true)
    let r = Tensor(shape: [1], values: [-3], requiresGrad: true)
    return (
        SequenceLogProbs(sum: c, tokens: [2]), SequenceLogProbs(sum: r, tokens: [4]),
        ReferenceLogProbs(chosen: [-2.5], rejected: [-2.5]), c, r
    )
}

private func handLoss(_ config: PreferenceLossConfig) -> (
    loss: Float, dChosen: Float, dRejected: Float, PreferenceMetrics
) {
    let (chosen, rejected, ref, c, r) = onePair()
    let out = config.loss(chosen: chosen, rejected: rejected, reference: ref)
    out.loss.backward()
    return (out.loss.item, c.grad!.item, r.grad!.item, out.metrics)
}

@Suite struct PreferenceHandTests {
    /// DPO, β = 0.1: L = -log σ(βΔ) = -log σ(0.1) = 0.644396660.
    /// dL/dπ_c = -β σ(-βΔ) = -0.1 * 0.475020813 = -0.0475020813; dL/dπ_r = +0.0475020813.
    /// Metrics: rewards β ρ: chosen 0.05, rejected -0.05, margin 0.1, accuracy 1;
    /// logps are the policy sums -2 and -3.
    @Test func sigmoid() {
        let (loss, dc, dr, m) = handLoss(PreferenceLossConfig(kind: .sigmoid, beta: 0.1))
        #expect(abs(loss - 0.644396660) < 1e-6)
        #expect(abs(dc + 0.0475020813) < 1e-6 && abs(dr - 0.0475020813) < 1e-6)
        #expect(abs(m.rewardsChosen - 0.05) < 1e-7 && abs(m.rewardsRejected + 0.05) < 1e-7)
        #expect(abs(m.rewardsMargins - 0.1) < 1e-7 && m.rewardsAccuracies == 1)
        #expect(m.logpsChosen == -2 && m.logpsRejected == -3)
        #expect(
            m.named.map(\.0) == [
                "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                "logps/rejected",
            ])
    }

    /// Hinge, β = 0.1: max(0, 1 - 0.1 * 1) = 0.9, dL/dπ_c = -β = -0.1.
    /// β = 2: max(0, 1 - 2) = 0 and no gradient.
    @Test func hinge() {
        let a = handLoss(PreferenceLossConfig(kind: .hinge, beta: 0.1))
        #expect(abs(a.loss - 0.9) < 1e-6 && abs(a.dChosen + 0.1) < 1e-6 && abs(a.dRejected - 0.1) < 1e-6)
        let b = handLoss(PreferenceLossConfig(kind: .hinge, beta: 2))
        #expect(b.loss == 0 && b.dChosen == 0 && b.dRejected == 0)
    }

    /// IPO, β = 0.25: per-token log-ratios ρ_c/2 = 0.25, ρ_r/4 = -0.125, Δ̄ = 0.375;
    /// 1/(2β) = 2; L = (0.375 - 2)² = 2.640625. dL/dπ_c = 2 (Δ̄ - 2) / 2 = -1.625;
    /// dL/dπ_r = -2 (Δ̄ - 2) / 4 = 0.8125. Rewards stay β ρ with summed ρ (TRL): 0.125, -0.125.
    @Test func ipo() {
        let (loss, dc, dr, m) = handLoss(PreferenceLossConfig(kind: .ipo, beta: 0.25))
        #expect(abs(loss - 2.640625) < 1e-5)
        #expect(abs(dc + 1.625) < 1e-5 && abs(dr - 0.8125) < 1e-5)
        #expect(abs(m.rewardsChosen - 0.125) < 1e-7 && abs(m.rewardsRejected + 0.125) < 1e-7)
    }

    /// cDPO, β = 0.1, ε = 0.2: -(0.8 log σ(0.1) + 0.2 log σ(-0.1))
    /// = 0.8 * 0.644396660 + 0.2 * 0.744396660 = 0.515517328 + 0.148879332 = 0.664396660.
    /// dL/dΔ = β (-(1-ε) σ(-0.1) + ε σ(0.1)) = 0.1 (-0.8 * 0.475020813 + 0.2 * 0.524979187)
    ///       = 0.1 (-0.380016650 + 0.104995837) = -0.0275020813.
    @Test func conservative() {
        let (loss, dc, dr, _) = handLoss(PreferenceLossConfig(kind: .conservative, beta: 0.1, labelSmoothing: 0.2))
        #expect(abs(loss - 0.664396660) < 1e-6)
        #expect(abs(dc + 0.0275020813) < 1e-6 && abs(dr - 0.0275020813) < 1e-6)
    }

    /// rDPO, β = 0.1, ε = 0.2: (0.8 * 0.644396660 - 0.2 * 0.744396660) / (1 - 0.4)
    /// = (0.515517328 - 0.148879332) / 0.6 = 0.366637996 / 0.6 = 0.611063327.
    @Test func robust() {
        let (loss, _, _, _) = handLoss(PreferenceLossConfig(kind: .robust, beta: 0.1, labelSmoothing: 0.2))
        #expect(abs(loss - 0.611063327) < 1e-6)
    }

    /// SimPO, β = 2, γ = 0.5, no reference: length-normalised π̄_c = -2/2 = -1, π̄_r = -3/4 = -0.75;
    /// z = β (π̄_c - π̄_r) - γ = 2 * -0.25 - 0.5 = -1; L = -log σ(-1) = log(1 + e) = 1.313261687.
    /// dL/dz = -σ(-z) = -σ(1) = -0.731058579; dz/dπ_c = β/2 = 1, dz/dπ_r = -β/4 = -0.5, so
    /// dL/dπ_c = -0.731058579 and dL/dπ_r = 0.365529290. Rewards β π̄: -2 and -1.5, accuracy 0;
    /// logps -1 and -0.75.
    @Test func simpo() {
        let (chosen, rejected, _, c, r) = onePair()
        let out = PreferenceLossConfig(kind: .simpo, beta: 2, simpoGamma: 0.5).loss(
            chosen: chosen, rejected: rejected, reference: nil)
        out.loss.backward()
        #expect(abs(out.loss.item - 1.313261687) < 1e-6)
        #expect(abs(c.grad!.item + 0.731058579) < 1e-6 && abs(r.grad!.item - 0.365529290) < 1e-6)
        let m = out.metrics
        #expect(m.rewardsChosen == -2 && m.rewardsRejected == -1.5 && m.rewardsAccuracies == 0)
        #expect(m.logpsChosen == -1 && m.logpsRejected == -0.75)
    }

    /// log σ(x) stays finite far out: log σ(-200) = -200 - log1p(e^-200) = -200, log σ(200) = -e^-200 ≈ 0;
    /// the gradient σ(-x) is 1 and 0 there.
    /// RPO: DPO (β = 0.1) plus λ = 0.5 times the chosen rows' token-mean NLL, -π_c / 2 tokens
    /// = 1: L = 0.644396660 + 0.5 = 1.144396660; dL/dπ_c = -0.0475020813 - 0.5 / 2 =
    /// -0.2975020813; dπ_r unchanged. `sft_loss` is logged after TRL's six metrics.
    @Test func sftWeightAddsTheChosenTokenLoss() {
        let (loss, dc, dr, m) = handLoss(PreferenceLossConfig(kind: .sigmoid, beta: 0.1, sftWeight: 0.5))
        #expect(abs(loss - 1.144396660) < 1e-6)
        #expect(abs(dc + 0.2975020813) < 1e-6 && abs(dr - 0.0475020813) < 1e-6)
        #expect(m.sftLoss == 1 && m.named.last?.0 == "sft_loss" && m.named.count == 7)
        #expect(handLoss(PreferenceLossConfig(kind: .sigmoid, beta: 0.1)).3.sftLoss == nil)
        #expect(PreferenceLossConfig(sftWeight: -1).problems() == ["sft_weight must be >= 0 (got -1.0)"])
    }

    @Test func logSigmoidIsStable() {
        let x = Tensor(shape: [2], values: [-200, 200], requiresGrad: true)
        let y = x.logSigmoid()
        #expect(y.values == [-200, 0])
        y.sum().backward()
        #expect(x.grad!.values == [1, 0])
    }

    /// The fused per-token log-prob equals the composition logSoftmax().gatherLast(), masked,
    /// forward and backward (random upstream gradient).
    @Test func tokenLogProbsEqualTheComposition() {
        var rng = RNG(seed: 8)
        let x = Tensor.randn([5, 11], std: 3, rng: &rng, requiresGrad: true)
        let targets: [Int32] = [3, -100, 10, 0, -100]
        let seed = Tensor.randn([5], rng: &rng)
        Tensor.tokenLogProbs(x, targets: targets).backward(seed: seed)
        let fused = x.grad!.values
        let fusedOut = GradMode.withoutGrad { Tensor.tokenLogProbs(x, targets: targets) }.values
        x.grad = nil
        let mask = Tensor(shape: [5], values: targets.map { $0 == -100 ? 0 : 1 })
        let composed = x.logSoftmax().gatherLast(targets.map { max($0, 0) }) * mask
        composed.backward(seed: seed)
        #expect(closeness(fusedOut, composed.values.map(Double.init), atol: 1e-6) <= 1)
        #expect(closeness(fused, x.grad!.values.map(Double.init), atol: 1e-6) <= 1)
        #expect(fusedOut[1] == 0 && fusedOut[4] == 0)
    }

    /// Two rows, T = 2, V = 2, all logits 0: every token has log-prob log ½ = -0.693147181.
    /// Row 0 counts both positions (-1.386294361), row 1 only its second (-0.693147181).
    @Test func sequenceLogProbsSumsCountedPositions() {
        let logits = Tensor.zeros([2, 2, 2])
        let s = Tensor.sequenceLogProbs(logits, targets: [0, 1, -100, 1])
        #expect(s.tokens == [2, 1])
        #expect(abs(s.sum.values[0] + 1.386294361) < 1e-6 && abs(s.sum.values[1] + 0.693147181) < 1e-6)
        #expect(abs(s.mean.values[0] + 0.693147181) < 1e-6)
    }
}

// MARK: - Against TRL

struct PreferenceFixture: Decodable {
    struct Case: Decodable {
        var kind: String
        var beta: Double
        var labelSmoothing: Double
        var simpoGamma: Double
        var sftWeight: Double?
        var loss: Double
        var metrics: [String: Double]
        var grad: [Double]
    }
    var pairs: Int
    var length: Int
    var vocab: Int
    var logits: [Double]
    var targets: [Int32]
    var refChosen: [Double]
    var refRejected: [Double]
    var sequenceLogProbs: [Double]
    var cases: [Case]

    static let shared = TrainingFixtures.decode(PreferenceFixture.self, "preference.json")

    func logitsTensor() -> Tensor {
        Tensor(shape: [2 * pairs, length, vocab], values: logits.map(Float.init))
    }
    var reference: ReferenceLogProbs {
        ReferenceLogProbs(chosen: refChosen.map(Float.init), rejected: refRejected.map(Float.init))
    }
    func config(_ c: Case) -> PreferenceLossConfig {
        PreferenceLossConfig(
            kind: PreferenceLossKind(rawValue: c.kind)!, beta: c.beta, labelSmoothing: c.labelSmoothing,
            simpoGamma: c.simpoGamma, sftWeight: c.sftWeight ?? 0)
    }
}

@Suite struct PreferenceReferenceTests {
    let f = PreferenceFixture.shared

    @Test func sequenceLogProbsMatchTRL() {
        let s = Tensor.sequenceLogProbs(f.logitsTensor(), targets: f.targets)
        #expect(closeness(s.sum.values, f.sequenceLogProbs) <= 1)
    }

    @Test("loss, metrics and gradient match TRL", arguments: 0..<PreferenceFixture.shared.cases.count)
    func matchesTRL(_ index: Int) {
        let c = f.cases[index]
        let logits = f.logitsTensor()
        logits.requiresGrad = true
        let out = f.config(c).loss(logits: logits, targets: f.targets, reference: f.reference)
        out.loss.backward()
        #expect(closeness([out.loss.item], [c.loss]) <= 1, "\(c.kind): loss \(out.loss.item) vs TRL \(c.loss)")
        #expect((out.metrics.sftLoss != nil) == (c.sftWeight != nil))
        for (name, value) in out.metrics.named where name != "sft_loss" {  // TRL logs no sft_loss
            let trl = c.metrics[name] ?? .nan
            #expect(abs(value - trl) <= 1e-5 + 1e-5 * abs(value), "\(c.kind): \(name) \(value) vs TRL \(trl)")
        }
        #expect(closeness(logits.grad!.values, c.grad, atol: 1e-6, rtol: 1e-4) <= 1, "\(c.kind): gradient")
    }

    @Test("backward matches finite differences", arguments: PreferenceLossKind.allCases)
    func finiteDifferences(_ kind: PreferenceLossKind) {
        // Small logits so every loss is away from its kinks (hinge at βΔ = 1).
        let logits = f.logitsTensor()
        let config = PreferenceLossConfig(
            kind: kind, beta: kind == .simpo ? 2 : 0.5, labelSmoothing: kind == .sigmoid ? 0 : 0.2,
            sftWeight: kind == .ipo ? 0.3 : 0)
        expectGradientMatchesFiniteDifferences(logits, kind.rawValue) {
            config.loss(logits: logits, targets: f.targets, reference: f.reference).loss
        }
    }
}
