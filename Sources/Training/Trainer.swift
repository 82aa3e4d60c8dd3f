// The training loop. It speaks in typed events and never prints or writes files: the
// caller logs, draws progress, writes checkpoints when told one is due, and decides to
// stop.

import Core
import Foundation
import NN

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
}

public enum TrainingEvent {
    case step(StepReport)
    case evaluation(step: Int, loss: Double)
    /// A checkpoint is due after `step` updates: the caller writes it before returning.
    case checkpointDue(step: Int)
}

public enum TrainingError: Error, CustomStringConvertible {
    case nonFinite(step: Int, what: String)

    public var description: String {
        switch self {
        case .nonFinite(let step, let what):
            return "\(what) at step \(step); stopped before updating the weights. The last checkpoint is intact."
                + " Lower the learning rate, raise warmup_steps, or enable grad_clip."
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

    /// One update from `gradAccum` micro-batches (their losses averaged). Throws before
    /// touching the weights when the loss or the gradient is not finite.
    public func step(_ batches: [TrainingBatch]) throws -> StepReport {
        let start = DispatchTime.now().uptimeNanoseconds
        let stepNumber = optimizer.step + 1
        optimizer.zeroGrad()
        var lossSum = 0.0
        var tokens = 0
        for b in batches {
            let loss = model.loss(ids: b.inputs, targets: b.targets, batch: b.batch, length: b.length, segments: b.segments)
            let value = Double(loss.item)
            guard value.isFinite else { throw TrainingError.nonFinite(step: stepNumber, what: "loss is \(value)") }
            lossSum += value
            tokens += b.batch * b.length
            // Each micro-batch contributes 1/accum of the mean.
            (batches.count == 1 ? loss : loss * (1 / Float(batches.count))).backward()
        }
        let norm = optimizer.gradientNorm()
        guard norm.isFinite else { throw TrainingError.nonFinite(step: stepNumber, what: "gradient norm is \(norm)") }
        if config.gradClip > 0 && norm > config.gradClip { optimizer.scaleGradients(Float(config.gradClip / norm)) }
        let lr = config.schedule.rate(at: optimizer.step)
        optimizer.update(lr: lr)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        return StepReport(step: stepNumber, loss: lossSum / Double(batches.count), lr: lr, gradNorm: norm, tokens: tokens, seconds: seconds)
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

    /// Runs from the optimizer's current step to `config.steps`. `nextBatch` supplies
    /// micro-batches in order; `validation` the evaluation batches (nil: none). The
    /// handler sees every event; returning false stops after that event.
    public func run(
        nextBatch: () throws -> TrainingBatch, validation: (() throws -> [TrainingBatch])? = nil,
        handle: (TrainingEvent) throws -> Bool
    ) throws {
        while optimizer.step < config.steps {
            let micro = try (0..<config.gradAccum).map { _ in try nextBatch() }
            let report = try step(micro)
            guard try handle(.step(report)) else { return }
            let s = report.step
            if let validation, config.evalEvery > 0, s % config.evalEvery == 0 || s == config.steps {
                guard try handle(.evaluation(step: s, loss: evaluate(try validation()))) else { return }
            }
            if config.checkpointEvery > 0, s % config.checkpointEvery == 0 || s == config.steps {
                guard try handle(.checkpointDue(step: s)) else { return }
            }
        }
    }
}
