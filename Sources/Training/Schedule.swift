// Learning-rate schedules: linear warmup, then cosine, linear or constant down to
// min_lr_ratio * lr at the last step.

import Foundation

/// Learning-rate schedule after warmup (the recipe's `training.schedule`).
public enum ScheduleKind: String, Codable, Sendable, CaseIterable {
    /// Cosine decay from lr to lr * min_lr_ratio at the last step.
    case cosine
    /// Linear decay from lr to lr * min_lr_ratio.
    case linear
    /// lr throughout.
    case constant
}

public struct LearningRateSchedule: Codable, Sendable, Equatable {
    public var peak: Double
    public var warmupSteps: Int
    public var totalSteps: Int
    public var minRatio: Double
    public var kind: ScheduleKind

    public init(peak: Double, warmupSteps: Int, totalSteps: Int, minRatio: Double = 0.1, kind: ScheduleKind = .cosine) {
        self.peak = peak
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.minRatio = minRatio
        self.kind = kind
    }

    /// The rate for update `step` (0-based): peak * (step+1)/warmup during warmup, then
    /// from peak down to peak * minRatio at the last update.
    public func rate(at step: Int) -> Double {
        if step < warmupSteps { return peak * Double(step + 1) / Double(warmupSteps) }
        let span = max(1, totalSteps - 1 - warmupSteps)
        let progress = min(1, Double(step - warmupSteps) / Double(span))
        let low = peak * minRatio
        switch kind {
        case .constant: return peak
        case .linear: return peak - (peak - low) * progress
        case .cosine: return low + (peak - low) * 0.5 * (1 + cos(Double.pi * progress))
        }
    }
}
