// The training loop. It speaks in typed events and never prints or writes files: the
// caller logs, draws progress, writes checkpoints when told one is due, and decides to
// stop.

import Core
import Foundation
import NN
import Platform

/// One batch of next-token prediction: B*T inputs and targets, row-major.
public struct TrainingBatch: Sendable {
    public var inputs: [Int32]
    public var targets: [Int32]
    public var batch: Int
    public var length: Int
    /// Optional per-position segment ids (packed examples) and loss weights.
    public var segments: [Int32]?

    public init(inputs: [Int32], targets: [Int32], batch: Int, length: Int, segments: [Int32]? = nil) {
        precondition(inputs.count == batch * length && targets.count == batch * length, "batch arrays must hold B*T ids")
        self.inputs = inputs
        self.targets = targets
        self.batch = batch
        self.length = length
        self.segments = segments
    }
}

public struct TrainerConfig: Codable, Sendable, Equatable {
    public var steps: Int
    public var gradAccum: Int = 1
    public var schedule: LearningRateSchedule
    public var optimizer: AdamWConfig
    /// Clip the global gradient norm to this value (0: off).
    public var gradClip: Double = 1
    public var evalEvery: Int = 0
    public var checkpointEvery: Int = 0
    public var logEvery: Int = 10

    public init(
        steps: Int, gradAccum: Int = 1, schedule: LearningRateSchedule, optimizer: AdamWConfig = AdamWConfig(),
        gradClip: Double = 1, evalEvery: Int = 0, checkpointEvery: Int = 0, logEvery: Int = 10
    ) {
        self.steps = steps
        self.gradAccum = gradAccum
        self.schedule = schedule
        self.optimizer = optimizer
        self.gradClip = gradClip
        self.evalEvery = evalEvery
        self.checkpointEvery = checkpointEvery
        self.logEvery = logEvery
    }
}

public struct StepReport: Sendable, Codable {
    /// Updates done, counting this one (1-based).
    public var step: Int
    public var loss: Double
    public var lr: Double
    /// Global gradient norm before clipping.
    public var gradNorm: Double
    public var tokens: Int
    public var seconds: Double
    /// Batch means of the objective's own metrics (TRL names such as `rewards/chosen`); empty
    /// for next-token pretraining.
    public var metrics: [String: Double] = [:]
}

/// What a training objective computes on one micro-batch.
public struct ObjectiveOutput {
    /// The scalar to minimise, shape [], on the model's tape.
    public var loss: Tensor
    /// Tokens processed (for throughput).
    public var tokens: Int
    /// Extra values to log, averaged over the step's micro-batches.
    public var metrics: [String: Double]

    public init(loss: Tensor, tokens: Int, metrics: [String: Double] = [:]) {
        self.loss = loss
        self.tokens = tokens
        self.metrics = metrics
    }
}

/// A loss the trainer minimises over micro-batches of any kind: masked cross-entropy for SFT,
/// a preference loss against reference log-probabilities for DPO, a divergence from teacher
/// logits for KD. The trainer owns everything around it (accumulation, clipping, schedule,
/// non-finite checks, events, checkpoint cadence), so every stage shares one loop.
///
/// `loss` runs with the tape recording (training) or not (`Trainer.evaluate`); it must not
/// call `backward` itself.
public protocol TrainingObjective {
    associatedtype Batch
    func loss(_ batch: Batch) throws -> ObjectiveOutput
}

public enum TrainingEvent {
    case step(StepReport)
    case evaluation(step: Int, loss: Double)
    /// A checkpoint is due after `step` updates: the caller writes it before returning.
    case checkpointDue(step: Int)
}

public enum TrainingError: Error, CustomStringConvertible {
    /// The loss or the gradient is not finite; the weights were not updated.
    case nonFinite(step: Int, what: String)
    /// An update made a weight (or optimizer moment) non-finite; it was not checkpointed.
    case nonFiniteWeights(step: Int, what: String)

    public var description: String {
        let advice = " Lower the learning rate, raise warmup_steps, or enable grad_clip."
        switch self {
        case .nonFinite(let step, let what):
            return "\(what) at step \(step); stopped before updating the weights. The last checkpoint is intact." + advice
        case .nonFiniteWeights(let step, let what):
            return "\(what) at step \(step); stopped without checkpointing it. The last checkpoint (if any) is intact."
                + advice
        }
    }
}

public final class Trainer {
    public let model: LlamaModel
    public let config: TrainerConfig
    public let optimizer: AdamW

    public init(model: LlamaModel, config: TrainerConfig, optimizer: AdamW) {
        precondition(config.gradAccum >= 1, "grad_accum must be >= 1")
        self.model = model
        self.config = config
        self.optimizer = optimizer
    }

    /// Data-parallel steps are used for models narrower than this, and for any width when
    /// only adapters train. Measured on 2 cores (bench train, alternating, native build):
    /// hidden 128 (config S) gains 10-15% because its small products are dominated by
    /// per-op synchronisation, hidden 256 (M) 4-15%; hidden 512 (L) gains 0-10% (within
    /// this machine's noise) for 354 MiB more peak memory (1970 -> 2324 MiB; before the
    /// attention stopped keeping probabilities, that took it above PyTorch's 2.7 GiB).
    /// LoRA on a frozen base duplicates only the adapters' gradients (L: +65 MiB) and gains
    /// 33% on L, about 10% on M.
    static let dataParallelWidthLimit = 512

    /// LoRA on a frozen base: the optimizer updates adapters and nothing else.
    private var trainsOnlyAdapters: Bool {
        !model.adapterParameters().isEmpty && model.namedParameters().allSatisfy { !$0.1.requiresGrad }
    }

    /// Replicas for data-parallel steps, made on first use (they share the weights).
    private var replicas: [LlamaModel] = []

    /// One update from `gradAccum` micro-batches (their losses averaged). Throws before
    /// touching the weights when the loss or the gradient is not finite.
    ///
    /// For narrow models with several threads and micro-batches of several rows, each micro-batch is split
    /// by rows over one replica per thread, each running its kernels serially (no fork/join
    /// per op, one single-threaded sgemm at a time per core); the replicas' gradients are
    /// then added in a fixed order, so results depend on the thread count but not on
    /// scheduling.
    public func step(_ batches: [TrainingBatch]) throws -> StepReport {
        let start = DispatchTime.now().uptimeNanoseconds
        let stepNumber = optimizer.step + 1
        optimizer.zeroGrad()
        let workers = Threads.count
        let parallel = workers > 1 && (model.config.hiddenSize < Self.dataParallelWidthLimit || trainsOnlyAdapters)
            && batches.allSatisfy { $0.batch >= workers }
        let (lossSum, tokens) = try parallel
            ? dataParallelBackward(batches, workers: workers, step: stepNumber) : serialBackward(batches, step: stepNumber)
        return try update(step: stepNumber, loss: lossSum / Double(batches.count), tokens: tokens, start: start)
    }

    /// One update from `batches` micro-batches through `objective` (losses and metrics
    /// averaged). The same clipping, schedule and non-finite checks as next-token steps.
    public func step<O: TrainingObjective>(_ batches: [O.Batch], objective: O) throws -> StepReport {
        precondition(!batches.isEmpty, "a step needs at least one micro-batch")
        let start = DispatchTime.now().uptimeNanoseconds
        let stepNumber = optimizer.step + 1
        optimizer.zeroGrad()
        var lossSum = 0.0
        var tokens = 0
        var metrics: [String: Double] = [:]
        for b in batches {
            let out = try objective.loss(b)
            let value = Double(out.loss.item)
            guard value.isFinite else { throw TrainingError.nonFinite(step: stepNumber, what: "loss is \(value)") }
            lossSum += value
            tokens += out.tokens
            for (k, v) in out.metrics { metrics[k, default: 0] += v / Double(batches.count) }
            (batches.count == 1 ? out.loss : out.loss * (1 / Float(batches.count))).backward()
        }
        var report = try update(step: stepNumber, loss: lossSum / Double(batches.count), tokens: tokens, start: start)
        report.metrics = metrics
        return report
    }

    /// Checks, clips and applies the accumulated gradient.
    private func update(step stepNumber: Int, loss: Double, tokens: Int, start: UInt64) throws -> StepReport {
        let norm = optimizer.gradientNorm()
        guard norm.isFinite else { throw TrainingError.nonFinite(step: stepNumber, what: "gradient norm is \(norm)") }
        if config.gradClip > 0 && norm > config.gradClip { optimizer.scaleGradients(Float(config.gradClip / norm)) }
        let lr = config.schedule.rate(at: optimizer.step)
        optimizer.update(lr: lr)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        return StepReport(step: stepNumber, loss: loss, lr: lr, gradNorm: norm, tokens: tokens, seconds: seconds)
    }

    private func serialBackward(_ batches: [TrainingBatch], step: Int) throws -> (Double, Int) {
        var lossSum = 0.0
        var tokens = 0
        for b in batches {
            let loss = model.loss(ids: b.inputs, targets: b.targets, batch: b.batch, length: b.length, segments: b.segments)
            let value = Double(loss.item)
            guard value.isFinite else { throw TrainingError.nonFinite(step: step, what: "loss is \(value)") }
            lossSum += value
            tokens += b.batch * b.length
            // Each micro-batch contributes 1/accum of the mean.
            (batches.count == 1 ? loss : loss * (1 / Float(batches.count))).backward()
        }
        return (lossSum, tokens)
    }

    private func dataParallelBackward(_ batches: [TrainingBatch], workers: Int, step: Int) throws -> (Double, Int) {
        // Replicas made before adapters were added are stale; adapters switched on or off
        // since are switched alike in the replicas.
        let adapterCount = model.adapterParameters().count
        if replicas.contains(where: { $0.adapterParameters().count != adapterCount }) { replicas = [] }
        while replicas.count < workers { replicas.append(model.replica()) }
        for replica in replicas {
            for (layer, copy) in zip(model.layers, replica.layers) {
                for ((_, m), (_, c)) in zip(layer.modules, copy.modules) {
                    if let m = m as? LoRALinear, let c = c as? LoRALinear { c.enabled = m.enabled }
                }
            }
        }
        // Base parameters then adapters, in the same order in the model and its replicas.
        func parameters(_ m: LlamaModel) -> [Tensor] { (m.namedParameters() + m.adapterParameters()).map(\.1) }
        let params = parameters(model)
        let replicaParams = replicas.prefix(workers).map(parameters)
        for rp in replicaParams { for p in rp { p.zeroGrad() } }
        // One slot per (worker, micro-batch): each thread writes only its own.
        let losses = UnsafeMutableBufferPointer<Double>.allocate(capacity: workers * batches.count)
        defer { losses.deallocate() }
        BLAS.singleThreaded {
            runConcurrently(workers) { w in
                let replica = replicas[w]
                for (i, b) in batches.enumerated() {
                    // Rows [lo, hi) of this micro-batch; the loss is scaled by their share of
                    // the micro-batch's tokens so the replicas' gradients add up to the mean.
                    let lo = b.batch * w / workers, hi = b.batch * (w + 1) / workers
                    let rows = lo..<hi, t = b.length
                    let ids = Array(b.inputs[(lo * t)..<(hi * t)]), targets = Array(b.targets[(lo * t)..<(hi * t)])
                    let segments = b.segments.map { Array($0[(lo * t)..<(hi * t)]) }
                    let loss = replica.loss(ids: ids, targets: targets, batch: rows.count, length: t, segments: segments)
                    losses[w * batches.count + i] = Double(loss.item)
                    (loss * (Float(rows.count) / Float(b.batch * batches.count))).backward()
                }
            }
        }
        // Per micro-batch mean loss = Σ_w share_w * loss_w (each replica's loss is a mean over its rows).
        var lossSum = 0.0
        for (i, b) in batches.enumerated() {
            var mean = 0.0
            for w in 0..<workers {
                let share = Double(b.batch * (w + 1) / workers - b.batch * w / workers) / Double(b.batch)
                mean += share * losses[w * batches.count + i]
            }
            guard mean.isFinite else { throw TrainingError.nonFinite(step: step, what: "loss is \(mean)") }
            lossSum += mean
        }
        for (i, p) in params.enumerated() where p.requiresGrad {
            let g = p.gradBuffer()
            for rp in replicaParams {
                guard let rg = rp[i].grad else { continue }
                let src = rg.data
                for j in 0..<p.count { g[j] += src[j] }
            }
        }
        return (lossSum, batches.reduce(0) { $0 + $1.batch * $1.length })
    }

    /// Mean loss over `batches` without recording the tape.
    public func evaluate(_ batches: [TrainingBatch]) -> Double {
        guard !batches.isEmpty else { return .nan }
        return GradMode.withoutGrad {
            batches.reduce(0.0) { acc, b in
                acc + Double(model.loss(ids: b.inputs, targets: b.targets, batch: b.batch, length: b.length, segments: b.segments).item)
            } / Double(batches.count)
        }
    }

    /// Mean loss and metrics of `objective` over `batches` without recording the tape.
    public func evaluate<O: TrainingObjective>(_ batches: [O.Batch], objective: O) throws -> (loss: Double, metrics: [String: Double]) {
        guard !batches.isEmpty else { return (.nan, [:]) }
        return try GradMode.withoutGrad {
            var loss = 0.0
            var metrics: [String: Double] = [:]
            for b in batches {
                let out = try objective.loss(b)
                loss += Double(out.loss.item) / Double(batches.count)
                for (k, v) in out.metrics { metrics[k, default: 0] += v / Double(batches.count) }
            }
            return (loss, metrics)
        }
    }

    /// The metrics of the latest evaluation through an objective (read them when handling
    /// `.evaluation`).
    public private(set) var lastEvaluationMetrics: [String: Double] = [:]

    /// `run` for a custom objective: the same loop, cadence and events.
    public func run<O: TrainingObjective>(
        objective: O, nextBatch: () throws -> O.Batch, validation: (() throws -> [O.Batch])? = nil,
        handle: (TrainingEvent) throws -> Bool
    ) throws {
        try loop(step: { try step(try (0..<config.gradAccum).map { _ in try nextBatch() }, objective: objective) },
            evaluate: validation.map { v in
                {
                    let (loss, metrics) = try self.evaluate(try v(), objective: objective)
                    self.lastEvaluationMetrics = metrics
                    return loss
                }
            }, handle: handle)
    }

    /// Runs from the optimizer's current step to `config.steps`. `nextBatch` supplies
    /// micro-batches in order; `validation` the evaluation batches (nil: none). The
    /// handler sees every event; returning false stops after that event.
    public func run(
        nextBatch: () throws -> TrainingBatch, validation: (() throws -> [TrainingBatch])? = nil,
        handle: (TrainingEvent) throws -> Bool
    ) throws {
        try loop(step: { try step(try (0..<config.gradAccum).map { _ in try nextBatch() }) },
            evaluate: validation.map { v in { self.evaluate(try v()) } }, handle: handle)
    }

    private func loop(step: () throws -> StepReport, evaluate: (() throws -> Double)?, handle: (TrainingEvent) throws -> Bool) throws {
        while optimizer.step < config.steps {
            let report = try step()
            guard try handle(.step(report)) else { return }
            let s = report.step
            if let evaluate, config.evalEvery > 0, s % config.evalEvery == 0 || s == config.steps {
                guard try handle(.evaluation(step: s, loss: try evaluate())) else { return }
            }
            if config.checkpointEvery > 0, s % config.checkpointEvery == 0 || s == config.steps {
                guard try handle(.checkpointDue(step: s)) else { return }
            }
        }
    }
}

extension TrainingError: UserFacingError {
    package var errorKind: ErrorKind { .badData }
}
