// Preference optimisation losses: DPO and its variants from policy and reference
// sequence log-probabilities, plus the sequence log-probabilities themselves.
//
// Provenance: each loss follows TRL 1.16's definition (trl/trainer/dpo_trainer.py,
// DPOTrainer._compute_loss; SimPO from trl/experimental/cpo/cpo_trainer.py, cpo_loss) and
// the paper named at its case. Tests/TrainingTests/PreferenceTests.swift checks every kind
// against hand arithmetic, finite differences and TRL's own code on fixed tensors
// (fixture written by tools/make_finetune_fixtures.py).
//
// Shapes: P pairs, B rows (2P: chosen rows then rejected rows, as TRL concatenates them),
// T time, V vocabulary.

import Core
import Foundation

// MARK: - Sequence log-probabilities

/// Per-sequence log-probabilities of the completion tokens.
package struct SequenceLogProbs {
    /// Σ_t log p(target_t | ...) over counted positions, one per row: [B], differentiable.
    package var sum: Tensor
    /// Counted positions (targets that are not the ignore index) per row.
    package var tokens: [Int]

    /// The sum divided by the token count (a row with no counted token gives 0), [B].
    /// IPO (through `logRatio`) and SimPO use this length-normalised form.
    package var mean: Tensor {
        sum * Tensor(shape: [tokens.count], values: tokens.map { 1 / Float(Swift.max($0, 1)) })
    }

    /// Rows `range` of both fields.
    package func rows(_ range: Range<Int>) -> SequenceLogProbs {
        SequenceLogProbs(sum: sum.slice(axis: 0, range), tokens: Array(tokens[range]))
    }

    /// The sums of per-token log-probs [B, T] (0 where the target is `ignoreIndex`) over each
    /// row, with the counts of `targets` (B*T) that are not `ignoreIndex`.
    package init(perToken: Tensor, targets: [Int32], ignoreIndex: Int32 = -100) {
        precondition(perToken.rank == 2, "SequenceLogProbs: per-token log-probs must be [B, T], got \(perToken.shape)")
        let (b, t) = (perToken.shape[0], perToken.shape[1])
        precondition(targets.count == b * t, "SequenceLogProbs: \(targets.count) targets for \(perToken.shape)")
        sum = perToken.sum(axis: 1)  // [B]
        tokens = (0..<b).map { r in targets[(r * t)..<((r + 1) * t)].reduce(0) { $0 + ($1 == ignoreIndex ? 0 : 1) } }
    }

    package init(sum: Tensor, tokens: [Int]) {
        self.sum = sum
        self.tokens = tokens
    }
}

extension Tensor {
    /// Sums log softmax(logits)[target] over each row's positions whose target is not
    /// `ignoreIndex`, as TRL's DPO does (per-token log-probs summed over the completion).
    ///
    /// - logits: [B, T, V] next-token logits, already aligned with `targets` (position t
    ///   predicts `targets[b*T + t]`: the usual shift-by-one is the caller's, as in
    ///   `TrainingBatch`).
    /// - targets: B*T token ids, `ignoreIndex` where the position is not part of the completion.
    package static func sequenceLogProbs(_ logits: Tensor, targets: [Int32], ignoreIndex: Int32 = -100)
        -> SequenceLogProbs
    {
        precondition(logits.rank == 3, "sequenceLogProbs: logits must be [B, T, V], got \(logits.shape)")
        let (b, t) = (logits.shape[0], logits.shape[1])
        precondition(targets.count == b * t, "sequenceLogProbs: \(targets.count) targets for logits \(logits.shape)")
        let perToken = tokenLogProbs(logits, targets: targets, ignoreIndex: ignoreIndex).reshaped([b, t])  // [B, T]
        return SequenceLogProbs(perToken: perToken, targets: targets, ignoreIndex: ignoreIndex)  // [B]
    }

    /// log(sigmoid(x)) elementwise, computed as min(x, 0) - log1p(exp(-|x|)) so it stays finite
    /// for any x (composing sigmoid().log() underflows to -inf below x ≈ -88 in Float). A
    /// primitive with its own backward for that reason: d/dx log σ(x) = σ(-x).
    package func logSigmoid() -> Tensor {
        let out = Tensor.empty(shape)
        let px = data, po = out.data
        for i in 0..<count {
            let x = px[i]
            po[i] = Swift.min(x, 0) - Foundation.log1p(Foundation.exp(-Swift.abs(x)))
        }
        Tensor.record(out, [self]) { [self] g in
            let gx = gradBuffer()
            for i in 0..<count {
                let x = px[i]
                // σ(-x) without overflow on either side.
                let s = x >= 0 ? Foundation.exp(-x) / (1 + Foundation.exp(-x)) : 1 / (1 + Foundation.exp(x))
                gx[i] += g[i] * s
            }
        }
        return out
    }
}

// MARK: - Losses

/// Which preference loss; TRL's `loss_type` names where TRL has the loss.
package enum PreferenceLossKind: String, Codable, Sendable, CaseIterable {
    /// DPO (Rafailov et al. 2023, eq. 7): -log σ(β Δ), Δ = (π_c - ref_c) - (π_r - ref_r) with
    /// summed log-probs. TRL `sigmoid`.
    case sigmoid
    /// SLiC-style hinge (Zhao et al. 2023): max(0, 1 - β Δ). TRL `hinge`.
    case hinge
    /// IPO (Azar et al. 2023, eq. 17): (Δ̄ - 1/(2β))² where Δ̄ uses log-ratios divided by the
    /// completion token counts (TRL's length normalisation, confirmed with the IPO authors).
    /// TRL `ipo`.
    case ipo
    /// Conservative DPO, cDPO (Mitchell 2023, "A note on DPO with noisy preferences"): the
    /// preference label is flipped with probability ε, -(1-ε) log σ(βΔ) - ε log σ(-βΔ).
    /// This was TRL's `sigmoid` with `label_smoothing` before TRL 1.0; TRL 1.16 keeps the same
    /// expression in CPO's `sigmoid` and in `aot`.
    case conservative
    /// Robust DPO, rDPO (Chowdhury et al. 2024, eq. 6): an unbiased estimate of the clean loss
    /// under label noise ε: (-(1-ε) log σ(βΔ) + ε log σ(-βΔ)) / (1 - 2ε). TRL `robust`.
    case robust
    /// SimPO (Meng et al. 2024, eq. 6), reference-free: -log σ(β (π̄_c - π̄_r) - γ) over
    /// length-normalised log-probs, with CPO's optional label smoothing ε (as cDPO). TRL CPO
    /// `simpo` (with cpo_alpha 0).
    case simpo

    /// Whether the loss needs reference-model log-probabilities.
    package var needsReference: Bool { self != .simpo }
}

/// Settings of a preference loss, with TRL's defaults.
package struct PreferenceLossConfig: Codable, Sendable, Equatable {
    package var kind: PreferenceLossKind = .sigmoid
    /// β > 0: DPO's KL strength (TRL default 0.1); IPO's τ; SimPO's reward scale (SimPO's
    /// paper uses 2 to 10; TRL CPO defaults to 0.1).
    package var beta: Double = 0.1
    /// ε in [0, 0.5): label-flip probability for `conservative`, `robust` and `simpo`.
    package var labelSmoothing: Double = 0
    /// SimPO's target reward margin γ ≥ 0 (TRL CPO `simpo_gamma`, default 0.5).
    package var simpoGamma: Double = 0.5
    /// Weight λ ≥ 0 of a next-token loss on the chosen completions added to the preference
    /// loss: L + λ · (-Σ log p(chosen tokens) / chosen tokens), the token mean over the batch's
    /// chosen rows. RPO (Pang et al. 2024, "Iterative Reasoning Preference Optimization", eq. 3);
    /// TRL 1.16's `loss_type=[kind, "sft"]` with `loss_weights=[1, λ]`. It keeps DPO from
    /// lowering the chosen answers' likelihood along with the rejected ones'. 0 = off.
    package var sftWeight: Double = 0

    package init(
        kind: PreferenceLossKind = .sigmoid, beta: Double = 0.1, labelSmoothing: Double = 0, simpoGamma: Double = 0.5,
        sftWeight: Double = 0
    ) {
        self.kind = kind
        self.beta = beta
        self.labelSmoothing = labelSmoothing
        self.simpoGamma = simpoGamma
        self.sftWeight = sftWeight
    }

    /// Settings that cannot work, as messages naming the key and its accepted range.
    package func problems() -> [String] {
        var out: [String] = []
        if !(beta > 0 && beta.isFinite) { out.append("beta must be > 0 (got \(beta))") }
        if !(labelSmoothing >= 0 && labelSmoothing < 0.5) {
            out.append("label_smoothing must be in [0, 0.5) (got \(labelSmoothing))")
        }
        if !(simpoGamma >= 0 && simpoGamma.isFinite) { out.append("simpo_gamma must be >= 0 (got \(simpoGamma))") }
        if !(sftWeight >= 0 && sftWeight.isFinite) { out.append("sft_weight must be >= 0 (got \(sftWeight))") }
        return out
    }
}

/// Reference-model sequence log-probabilities (summed over completion tokens), one per pair.
/// Constants: the reference never receives a gradient.
package struct ReferenceLogProbs: Sendable, Equatable, Codable {
    package var chosen: [Float]
    package var rejected: [Float]

    package init(chosen: [Float], rejected: [Float]) {
        precondition(chosen.count == rejected.count, "reference: \(chosen.count) chosen, \(rejected.count) rejected")
        self.chosen = chosen
        self.rejected = rejected
    }
}

/// Batch means under TRL's metric names (rewards/chosen, ...). Rewards are β times the
/// policy-reference log-ratio (summed log-probs) for the reference-based losses, and β times
/// the length-normalised policy log-probs for SimPO (as TRL's CPO logs them); logps are the
/// summed log-probs, length-normalised for SimPO.
package struct PreferenceMetrics: Sendable, Equatable {
    package var rewardsChosen: Double
    package var rewardsRejected: Double
    /// Fraction of pairs whose chosen reward is strictly larger.
    package var rewardsAccuracies: Double
    package var rewardsMargins: Double
    package var logpsChosen: Double
    package var logpsRejected: Double
    /// With `sftWeight` > 0: the chosen completions' next-token loss (mean over their tokens).
    package var sftLoss: Double? = nil

    /// (TRL name, value) in TRL's logging order, then `sft_loss` when there is one.
    package var named: [(String, Double)] {
        [
            ("rewards/chosen", rewardsChosen), ("rewards/rejected", rewardsRejected),
            ("rewards/accuracies", rewardsAccuracies), ("rewards/margins", rewardsMargins),
            ("logps/chosen", logpsChosen), ("logps/rejected", logpsRejected),
        ] + (sftLoss.map { [("sft_loss", $0)] } ?? [])
    }
}

package struct PreferenceLoss {
    /// Mean over pairs, shape [], differentiable with respect to the policy log-probs.
    package var loss: Tensor
    package var metrics: PreferenceMetrics
}

extension PreferenceLossConfig {
    /// The loss for P pairs from the policy's chosen and rejected sequence log-probs ([P] each)
    /// and, for every kind but `simpo`, the reference's (ignored by `simpo`).
    package func loss(chosen: SequenceLogProbs, rejected: SequenceLogProbs, reference: ReferenceLogProbs?)
        -> PreferenceLoss
    {
        let p = chosen.tokens.count
        precondition(rejected.tokens.count == p, "preference loss: \(p) chosen rows, \(rejected.tokens.count) rejected")
        precondition(problems().isEmpty, "invalid preference loss config: \(problems().joined(separator: "; "))")
        let beta = Float(self.beta), eps = Float(labelSmoothing)

        // Scores entering the loss and the rewards logged, both [P].
        let chosenScore: Tensor, rejectedScore: Tensor
        let chosenLogps: Tensor, rejectedLogps: Tensor
        let chosenReward: [Float], rejectedReward: [Float]
        if kind == .simpo {
            chosenLogps = chosen.mean
            rejectedLogps = rejected.mean
            (chosenScore, rejectedScore) = (chosenLogps, rejectedLogps)
            chosenReward = chosenLogps.values.map { beta * $0 }
            rejectedReward = rejectedLogps.values.map { beta * $0 }
        } else {
            guard let reference else { preconditionFailure("\(kind.rawValue) needs reference log-probabilities") }
            precondition(reference.chosen.count == p, "reference has \(reference.chosen.count) pairs, policy \(p)")
            chosenLogps = chosen.sum
            rejectedLogps = rejected.sum
            let chosenRatio = chosen.sum - Tensor(shape: [p], values: reference.chosen)  // [P]
            let rejectedRatio = rejected.sum - Tensor(shape: [p], values: reference.rejected)  // [P]
            chosenReward = chosenRatio.values.map { beta * $0 }
            rejectedReward = rejectedRatio.values.map { beta * $0 }
            if kind == .ipo {
                // Log-ratios per completion token: TRL divides by the completion mask sum (min 1).
                let inv = { (s: SequenceLogProbs) in
                    Tensor(shape: [p], values: s.tokens.map { 1 / Float(Swift.max($0, 1)) })
                }
                (chosenScore, rejectedScore) = (chosenRatio * inv(chosen), rejectedRatio * inv(rejected))
            } else {
                (chosenScore, rejectedScore) = (chosenRatio, rejectedRatio)
            }
        }
        let delta = chosenScore - rejectedScore  // [P]

        let perPair: Tensor  // [P]
        switch kind {
        case .sigmoid:
            perPair = -(delta * beta).logSigmoid()
        case .hinge:
            perPair = (1 - delta * beta).relu()
        case .ipo:
            let d = delta - 1 / (2 * beta)
            perPair = d * d
        case .conservative:
            let z = delta * beta
            perPair = -((1 - eps) * z.logSigmoid() + eps * (-z).logSigmoid())
        case .robust:
            let z = delta * beta
            perPair = (-(1 - eps) * z.logSigmoid() + eps * (-z).logSigmoid()) * (1 / (1 - 2 * eps))
        case .simpo:
            let z = delta * beta - Float(simpoGamma)
            perPair = -((1 - eps) * z.logSigmoid() + eps * (-z).logSigmoid())
        }

        let n = Double(Swift.max(p, 1))
        let cl = chosenLogps.values, rl = rejectedLogps.values
        var metrics = PreferenceMetrics(
            rewardsChosen: chosenReward.reduce(0) { $0 + Double($1) } / n,
            rewardsRejected: rejectedReward.reduce(0) { $0 + Double($1) } / n,
            rewardsAccuracies: Double(zip(chosenReward, rejectedReward).filter { $0 > $1 }.count) / n,
            rewardsMargins: zip(chosenReward, rejectedReward).reduce(0) { $0 + Double($1.0 - $1.1) } / n,
            logpsChosen: cl.reduce(0) { $0 + Double($1) } / n,
            logpsRejected: rl.reduce(0) { $0 + Double($1) } / n)
        var loss = perPair.mean()
        if sftWeight > 0 {
            // -Σ log p / Σ tokens over the chosen rows (summed log-probs, whatever `kind` scores).
            let sft = -chosen.sum.sum() * (1 / Float(Swift.max(chosen.tokens.reduce(0, +), 1)))
            metrics.sftLoss = Double(sft.item)
            loss = loss + sft * Float(sftWeight)
        }
        return PreferenceLoss(loss: loss, metrics: metrics)
    }

    /// The loss from one forward pass over 2P rows, chosen rows first then rejected rows (TRL's
    /// concatenated batch): `logits` [2P, T, V], `targets` 2P*T with -100 outside completions.
    package func loss(logits: Tensor, targets: [Int32], reference: ReferenceLogProbs?) -> PreferenceLoss {
        loss(sequences: Tensor.sequenceLogProbs(logits, targets: targets), reference: reference)
    }

    /// The loss from the sequence log-probs of 2P rows, chosen rows first then rejected rows.
    package func loss(sequences all: SequenceLogProbs, reference: ReferenceLogProbs?) -> PreferenceLoss {
        let rows = all.tokens.count
        precondition(rows % 2 == 0, "preference batch needs chosen and rejected rows, got \(rows) rows")
        return loss(chosen: all.rows(0..<(rows / 2)), rejected: all.rows((rows / 2)..<rows), reference: reference)
    }
}
