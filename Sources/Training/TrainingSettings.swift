// The optimiser and loop settings of every training run: the `training` object of the
// pretrain, sweep, sft, dpo and kd stages. One type for all of them; the two families differ
// only in their defaults (`pretraining(steps:)`, `fineTuning`) and in how the length of the
// run is given (pretraining: `steps`; fine-tuning: `steps` or `epochs`). docs/recipes.md and
// docs/finetuning.md list the keys; the recipe reader checks the ranges given here.

/// Optimiser (AdamW) and loop settings. Defaults below are pretraining's; `fineTuning` has the
/// fine-tuning ones.
package struct TrainingSettings: Codable, Sendable, Equatable {
    /// Optimiser steps, >= 1. Required for pretraining; for fine-tuning, default from `epochs`.
    package var steps: Int?
    /// Fine-tuning only: passes over the training rows, > 0 (fractions allowed), used when
    /// `steps` is absent. Default 1 for fine-tuning, absent for pretraining.
    package var epochs: Double?
    /// Sequences (or DPO pairs) per micro-batch, >= 1. Default 16 (fine-tuning 8).
    package var batchSize: Int = 16
    /// Positions per row, >= 1 and <= max_position_embeddings. Default 128 (fine-tuning 256).
    package var seqLen: Int = 128
    /// Micro-batches per optimiser step, >= 1. Default 1.
    package var gradAccum: Int = 1
    /// Peak learning rate, > 0. Default 3e-3 (fine-tuning 1e-4).
    package var lr: Double = 3e-3
    /// Final lr as a fraction of lr, in [0, 1]. Default 0.1.
    package var minLRRatio: Double = 0.1
    /// Linear warmup steps, >= 0 and < steps. Default 20, capped at steps - 1 (fine-tuning 0).
    package var warmupSteps: Int = 20
    /// Default `cosine`.
    package var schedule: ScheduleKind = .cosine
    /// Decoupled weight decay, >= 0. Default 0.1 (fine-tuning 0).
    package var weightDecay: Double = 0.1
    /// Parameters whose name contains one of these get no weight decay. Default ["norm", "embed"].
    package var noDecay: [String] = ["norm", "embed"]
    /// Adam beta1, in [0, 1). Default 0.9.
    package var beta1: Double = 0.9
    /// Adam beta2, in [0, 1). Default 0.95 (fine-tuning 0.999).
    package var beta2: Double = 0.95
    /// Adam epsilon, > 0. Default 1e-8.
    package var eps: Double = 1e-8
    /// Global gradient-norm clip, >= 0; 0 turns clipping off. Default 1.0.
    package var gradClip: Double = 1.0
    /// Validation every this many steps, >= 0; 0 = only at the end. Default 50.
    package var evalEvery: Int = 50
    /// Validation batches per evaluation, >= 1. Default 8.
    package var evalBatches: Int = 8
    /// Commit a checkpoint every this many steps, >= 0; 0 = only at the end. Default 100.
    package var checkpointEvery: Int = 100
    /// Progress every this many steps, >= 1. Default 10.
    package var logEvery: Int = 10
    /// Activation checkpointing: each layer runs again in the backward pass instead of keeping
    /// its activations (`LlamaModel.recomputeLayers`; the same losses and gradients, one more
    /// forward per step). Default nil: off (absent from resolved recipes, so older runs keep
    /// their fingerprints).
    package var gradientCheckpointing: Bool?

    /// Pretraining's defaults for a run of `steps` steps (warmup capped at steps - 1).
    package static func pretraining(steps: Int) -> TrainingSettings {
        var t = TrainingSettings()
        t.steps = steps
        t.warmupSteps = min(t.warmupSteps, max(0, steps - 1))
        return t
    }

    /// Fine-tuning's defaults: one epoch, smaller batches of longer rows, a gentler optimiser.
    package static var fineTuning: TrainingSettings {
        var t = TrainingSettings()
        t.epochs = 1
        t.batchSize = 8
        t.seqLen = 256
        t.lr = 1e-4
        t.warmupSteps = 0
        t.weightDecay = 0
        t.beta2 = 0.999
        return t
    }

    private init() {}

    package enum CodingKeys: String, CodingKey, CaseIterable {
        case steps, epochs, batchSize = "batch_size", seqLen = "seq_len", gradAccum = "grad_accum", lr
        case minLRRatio = "min_lr_ratio", warmupSteps = "warmup_steps", schedule, weightDecay = "weight_decay"
        case noDecay = "no_decay", beta1, beta2, eps, gradClip = "grad_clip", evalEvery = "eval_every"
        case evalBatches = "eval_batches", checkpointEvery = "checkpoint_every", logEvery = "log_every"
        case gradientCheckpointing = "gradient_checkpointing"
    }

    /// Optimiser steps of the run: `steps`, else `epochs` passes over `batchesPerEpoch`
    /// micro-batches (rounded up, at least 1).
    package func totalSteps(batchesPerEpoch: Int) -> Int {
        if let steps { return steps }
        return max(1, Int(((epochs ?? 1) * Double(batchesPerEpoch) / Double(gradAccum)).rounded(.up)))
    }

    /// The trainer's configuration for a run of `steps` steps: warmup capped below `steps`,
    /// validation at the end when `eval_every` is 0.
    package func trainerConfig(steps: Int) -> TrainerConfig {
        TrainerConfig(
            steps: steps, gradAccum: gradAccum,
            schedule: LearningRateSchedule(
                peak: lr, warmupSteps: min(warmupSteps, steps - 1), totalSteps: steps, minRatio: minLRRatio,
                kind: schedule),
            optimizer: AdamWConfig(beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay),
            gradClip: gradClip, evalEvery: evalEvery == 0 ? steps : evalEvery, checkpointEvery: checkpointEvery,
            logEvery: logEvery)
    }
}
