// Knowledge distillation from a teacher's next-token distribution: forward KL, reverse KL and
// the generalised Jensen-Shannon divergence, with a temperature, an ignore mask and a CE/KD
// mixing ratio. The teacher is given as full logits or as its top-k log-probabilities per
// position (precomputed once, reused across epochs).
//
// Provenance: the divergences follow GKD (Agarwal et al. 2024, "On-Policy Distillation of
// Language Models", eq. 1) as TRL 1.16 implements them in
// GKDTrainer.generalized_jsd_loss: β = 0 is forward KL(teacher ‖ student), β = 1 reverse
// KL(student ‖ teacher), otherwise β KL(T ‖ M) + (1-β) KL(S ‖ M) with M = β T + (1-β) S; both
// distributions are softmax(logits / temperature); the mean is over counted positions; no
// temperature² factor (Hinton et al. 2015 multiply by τ²; scale `kdWeight` for that). The
// top-k form follows TRL's server distillation `_add_tail_bucket`: the divergence is taken
// between the two distributions coarsened to K+1 outcomes, the teacher's k tokens and one
// "everything else" bucket, which is exact on those outcomes and never exceeds the full
// divergence. Tests/TrainingTests/DistillationTests.swift checks hand values, finite
// differences and TRL's generalized_jsd_loss (tools/make_finetune_fixtures.py).
//
// Shapes: N rows (B*T positions), V vocabulary, K teacher entries per row.

import Core
import Foundation

package enum DivergenceKind: String, Codable, Sendable, CaseIterable {
    /// KL(teacher ‖ student): mass-covering; the classic distillation loss.
    case forwardKL = "forward_kl"
    /// KL(student ‖ teacher): mode-seeking.
    case reverseKL = "reverse_kl"
    /// Generalised JSD with interpolation `beta` in (0, 1) (TRL's `beta`).
    case jsd
}

/// Settings of the distillation loss.
package struct DistillationConfig: Codable, Sendable, Equatable {
    package var divergence: DivergenceKind = .forwardKL
    /// JSD interpolation β in (0, 1): the mixture is β·teacher + (1-β)·student and the loss
    /// β KL(T‖M) + (1-β) KL(S‖M). Ignored by the two KL kinds. TRL default 0.5.
    package var beta: Double = 0.5
    /// Softmax temperature τ > 0 applied to student and (full) teacher logits.
    package var temperature: Double = 1
    /// α in [0, 1]: loss = α · KD + (1 - α) · CE(student, targets). 1 is pure distillation.
    package var kdWeight: Double = 1

    package init(
        divergence: DivergenceKind = .forwardKL, beta: Double = 0.5, temperature: Double = 1, kdWeight: Double = 1
    ) {
        self.divergence = divergence
        self.beta = beta
        self.temperature = temperature
        self.kdWeight = kdWeight
    }

    package func problems() -> [String] {
        var out: [String] = []
        if divergence == .jsd, !(beta > 0 && beta < 1) { out.append("beta must be in (0, 1) for jsd (got \(beta))") }
        if !(temperature > 0 && temperature.isFinite) { out.append("temperature must be > 0 (got \(temperature))") }
        if !(kdWeight >= 0 && kdWeight <= 1) { out.append("kd_weight must be in [0, 1] (got \(kdWeight))") }
        return out
    }
}

/// The teacher's k most likely tokens per position with their log-probabilities, at the
/// distillation temperature (the student's logits are divided by τ; these are used as given).
package struct TopKLogProbs: Sendable, Equatable, Codable {
    package var k: Int
    /// N*K token ids, row-major; distinct within a row.
    package var ids: [Int32]
    /// N*K log-probabilities (≤ 0, summing to at most 1 in probability per row).
    package var logProbs: [Float]

    package init(k: Int, ids: [Int32], logProbs: [Float]) {
        precondition(
            k > 0 && ids.count == logProbs.count && ids.count % k == 0,
            "top-k: k \(k), \(ids.count) ids, \(logProbs.count) log-probs")
        for r in 0..<(ids.count / k) {
            precondition(Set(ids[(r * k)..<((r + 1) * k)]).count == k, "top-k: repeated id in row \(r)")
        }
        self.k = k
        self.ids = ids
        self.logProbs = logProbs
    }

    package var rows: Int { ids.count / k }

    /// The top `k` of log softmax(logits / temperature) per row of `logits` [..., V], ties
    /// broken towards the smaller id. What a teacher pass stores for later epochs.
    package init(logits: Tensor, k: Int, temperature: Double = 1) {
        let v = logits.shape[logits.rank - 1], n = logits.count / Swift.max(v, 1)
        precondition(k >= 1 && k <= v, "top-k: k \(k) for vocabulary \(v)")
        var ids = [Int32](), lps = [Float]()
        ids.reserveCapacity(n * k)
        lps.reserveCapacity(n * k)
        let inv = 1 / temperature
        for r in 0..<n {
            let x = logits.data + r * v
            var m = -Double.infinity
            for j in 0..<v { m = Swift.max(m, Double(x[j]) * inv) }
            var s = 0.0
            for j in 0..<v { s += Foundation.exp(Double(x[j]) * inv - m) }
            let lse = m + Foundation.log(s)
            let order = (0..<v).sorted { x[$0] != x[$1] ? x[$0] > x[$1] : $0 < $1 }
            for j in order.prefix(k) {
                ids.append(Int32(j))
                lps.append(Float(Double(x[j]) * inv - lse))
            }
        }
        self.init(k: k, ids: ids, logProbs: lps)
    }
}

/// What the student is distilled from.
package enum TeacherDistribution {
    /// Full teacher logits, same shape as the student's (constants: no gradient).
    case logits(Tensor)
    /// The teacher's top-k log-probabilities per position.
    case topK(TopKLogProbs)
}

package struct DistillationLoss {
    /// α · KD + (1-α) · CE, shape [], differentiable with respect to the student logits.
    package var loss: Tensor
    /// The divergence term alone (mean over counted positions).
    package var kd: Double
    /// The cross-entropy term alone, nil when α = 1 (not computed).
    package var ce: Double?
}

extension DistillationConfig {
    /// The distillation loss of `studentLogits` [..., V] against `teacher`, over the positions
    /// whose target is not `ignoreIndex` (the same positions as the CE term). With no counted
    /// position the loss is 0.
    package func loss(studentLogits: Tensor, teacher: TeacherDistribution, targets: [Int32], ignoreIndex: Int32 = -100)
        -> DistillationLoss
    {
        precondition(problems().isEmpty, "invalid distillation config: \(problems().joined(separator: "; "))")
        let counted = targets.map { $0 != ignoreIndex }
        let kd = Tensor.divergence(
            studentLogits, teacher: teacher, counted: counted, kind: divergence, beta: beta, temperature: temperature)
        guard kdWeight < 1 else { return DistillationLoss(loss: kd, kd: Double(kd.item), ce: nil) }
        let ce = Tensor.crossEntropy(studentLogits, targets: targets, ignoreIndex: ignoreIndex)
        let a = Float(kdWeight)
        return DistillationLoss(loss: a * kd + (1 - a) * ce, kd: Double(kd.item), ce: Double(ce.item))
    }
}

extension Tensor {
    /// Mean over rows where `counted` is true of D(teacher, softmax(student / τ)) for `kind`.
    ///
    /// Fused, with a hand-written backward, because the divergence of two softmaxes composed
    /// from elementwise ops would keep several [N, V] temporaries and the JSD mixture's log
    /// needs a log-add-exp that Core does not have as an op. The forward keeps nothing; the
    /// backward recomputes each row from the logits (which the model keeps anyway).
    ///
    /// Gradient: with S = softmax(z), z = x / τ, and buckets b (single tokens, or the top-k
    /// tokens plus one tail bucket), dL/dz_j = S_j (g_b(j) - Σ_b S_b g_b) with g_b = dL/dS_b:
    /// forward KL g_b = -T_b / S_b; reverse KL g_b = log S_b - log T_b + 1; JSD
    /// g_b = (1-β) log(S_b / M_b). dL/dx = dL/dz / τ.
    package static func divergence(
        _ student: Tensor, teacher: TeacherDistribution, counted: [Bool], kind: DivergenceKind, beta: Double,
        temperature: Double
    ) -> Tensor {
        let v = student.shape[student.rank - 1], n = student.count / Swift.max(v, 1)
        precondition(counted.count == n, "divergence: \(counted.count) mask entries for \(n) rows of \(student.shape)")
        switch teacher {
        case .logits(let t):
            precondition(t.shape == student.shape, "divergence: teacher logits \(t.shape) vs student \(student.shape)")
        case .topK(let top):
            precondition(top.rows == n, "divergence: top-k for \(top.rows) rows, student has \(n)")
            for id in top.ids { precondition(id >= 0 && Int(id) < v, "top-k id \(id) out of range 0..<\(v)") }
        }
        let rows = (0..<n).filter { counted[$0] }
        let row = DivergenceRow(kind: kind, beta: beta, invT: 1 / temperature, v: v, teacher: teacher)
        var losses = [Double](repeating: 0, count: rows.count)
        let px = student.data
        losses.withUnsafeMutableBufferPointer { lp in
            let l = lp.baseAddress!
            parallelChunks(rows.count, grain: 4) { chunk in
                var scratch = DivergenceRow.Scratch(v: v)
                for i in chunk { l[i] = row.run(rows[i], px + rows[i] * v, grad: nil, scale: 0, &scratch) }
            }
        }
        let total = losses.reduce(0, +)  // fixed order: deterministic across thread counts
        let out = Tensor(shape: [], values: [rows.isEmpty ? 0 : Float(total / Double(rows.count))])
        record(out, [student]) { g in
            guard !rows.isEmpty else { return }
            let gx = student.gradBuffer()
            let scale = Double(g[0]) / Double(rows.count)
            parallelChunks(rows.count, grain: 4) { chunk in
                var scratch = DivergenceRow.Scratch(v: v)
                for i in chunk {
                    _ = row.run(rows[i], px + rows[i] * v, grad: gx + rows[i] * v, scale: scale, &scratch)
                }
            }
        }
        return out
    }
}

/// One row of the fused divergence: loss, and when `grad` is given, the accumulated gradient.
private struct DivergenceRow: @unchecked Sendable {
    let kind: DivergenceKind
    let beta: Double
    let invT: Double
    let v: Int
    let teacher: TeacherDistribution

    /// The teacher's tail bucket probability is floored here so that reverse KL and JSD stay
    /// finite when the stored top-k holds (up to rounding) all of the teacher's mass (TRL clamps
    /// the same way, at a tail of about 1e-7). With k = V there is no tail bucket at all.
    static let tailFloor = 1e-8

    struct Scratch {
        var logS: [Double]  // [V] student log-probs
        var logT: [Double]  // [V] teacher log-probs (full teacher only)
        var inTop: [Bool]  // [V] top-k membership (top-k teacher only)
        init(v: Int) {
            logS = [Double](repeating: 0, count: v)
            logT = [Double](repeating: 0, count: v)
            inTop = [Bool](repeating: false, count: v)
        }
    }

    /// log(exp(a) + exp(b)) without overflow.
    @inline(__always) static func logAddExp(_ a: Double, _ b: Double) -> Double {
        let m = Swift.max(a, b)
        return m == -.infinity ? m : m + Foundation.log(Foundation.exp(a - m) + Foundation.exp(b - m))
    }

    /// Σ_b over bucket log-probs (ls, lt) of the per-bucket loss term, and g_b.
    @inline(__always) func term(_ ls: Double, _ lt: Double) -> (loss: Double, g: Double) {
        let s = Foundation.exp(ls), t = Foundation.exp(lt)
        switch kind {
        case .forwardKL:
            // T (log T - log S); g = -T / S (returned as -T: callers multiply by S_j / S_b).
            return (t > 0 ? t * (lt - ls) : 0, -t)
        case .reverseKL:
            let d = ls - lt
            return (s > 0 ? s * d : 0, d + 1)
        case .jsd:
            let lm = Self.logAddExp(Foundation.log(1 - beta) + ls, Foundation.log(beta) + lt)
            let l = beta * (t > 0 ? t * (lt - lm) : 0) + (1 - beta) * (s > 0 ? s * (ls - lm) : 0)
            return (l, (1 - beta) * (ls - lm))
        }
    }

    func run(
        _ r: Int, _ x: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>?, scale: Double,
        _ w: inout Scratch
    )
        -> Double
    {
        // Student log-probs at temperature τ.
        var m = -Double.infinity
        for j in 0..<v { m = Swift.max(m, Double(x[j]) * invT) }
        var sum = 0.0
        for j in 0..<v { sum += Foundation.exp(Double(x[j]) * invT - m) }
        let lse = m + Foundation.log(sum)
        for j in 0..<v { w.logS[j] = Double(x[j]) * invT - lse }
        // Forward KL's g carries S_b in its denominator; with single-token buckets S_j / S_b = 1.
        let fwd = kind == .forwardKL
        switch teacher {
        case .logits(let t):
            let tx = t.data + r * v
            var tm = -Double.infinity
            for j in 0..<v { tm = Swift.max(tm, Double(tx[j]) * invT) }
            var ts = 0.0
            for j in 0..<v { ts += Foundation.exp(Double(tx[j]) * invT - tm) }
            let tlse = tm + Foundation.log(ts)
            var loss = 0.0, centre = 0.0
            for j in 0..<v {
                w.logT[j] = Double(tx[j]) * invT - tlse
                let (l, g) = term(w.logS[j], w.logT[j])
                loss += l
                centre += fwd ? g : Foundation.exp(w.logS[j]) * g
            }
            if let grad {
                for j in 0..<v {
                    let s = Foundation.exp(w.logS[j])
                    let g = term(w.logS[j], w.logT[j]).g
                    let dz = fwd ? g - s * centre : s * (g - centre)
                    grad[j] += Float(scale * dz * invT)
                }
            }
            return loss
        case .topK(let top):
            let k = top.k
            let base = r * k
            var tailS = 0.0, massT = 0.0
            for i in 0..<k { w.inTop[Int(top.ids[base + i])] = true }
            for j in 0..<v where !w.inTop[j] { tailS += Foundation.exp(w.logS[j]) }
            for i in 0..<k { massT += Foundation.exp(Double(top.logProbs[base + i])) }
            let logTailS = Foundation.log(tailS)
            let logTailT = Foundation.log(Swift.max(1 - massT, Self.tailFloor))
            var loss = 0.0, centre = 0.0
            for i in 0..<k {
                let ls = w.logS[Int(top.ids[base + i])]
                let (l, g) = term(ls, Double(top.logProbs[base + i]))
                loss += l
                centre += fwd ? g : Foundation.exp(ls) * g
            }
            // With k = V there is no token outside the top-k and so no tail bucket.
            let (tailLoss, tailG) = k < v ? term(logTailS, logTailT) : (0, 0)
            loss += tailLoss
            centre += fwd ? tailG : tailS * tailG
            if let grad {
                for j in 0..<v {
                    let s = Foundation.exp(w.logS[j])
                    let dz: Double
                    if w.inTop[j] {
                        dz = 0  // filled below, per top-k entry
                    } else if fwd {
                        dz = (tailS > 0 ? tailG * s / tailS : 0) - s * centre
                    } else {
                        dz = s * (tailG - centre)
                    }
                    grad[j] += Float(scale * dz * invT)
                }
                for i in 0..<k {
                    let j = Int(top.ids[base + i])
                    let s = Foundation.exp(w.logS[j])
                    let g = term(w.logS[j], Double(top.logProbs[base + i])).g
                    let dz = fwd ? g - s * centre : s * (g - centre)
                    grad[j] += Float(scale * dz * invT)
                }
            }
            for i in 0..<k { w.inTop[Int(top.ids[base + i])] = false }
            return loss
        }
    }
}
