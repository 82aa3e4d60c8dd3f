// Training: losses (cross-entropy, DPO family, KD), optimizers, schedules, and the
// trainer that emits typed events. Training never writes files: it reports that a
// checkpoint is due and the caller writes it. Layer 2: imports Core, NN, TextData.
