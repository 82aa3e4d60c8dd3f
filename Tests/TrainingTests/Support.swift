// Shared test helpers: the golden fixtures written by tools/make_finetune_fixtures.py and a
// central finite-difference check.

import Core
import Foundation
import Testing

enum TrainingFixtures {
    static func data(_ name: String) -> Data {
        let base = (name as NSString).deletingPathExtension
        guard let url = Bundle.module.url(forResource: base, withExtension: "json", subdirectory: "Fixtures") else {
            preconditionFailure("missing fixture \(name); run tools/make_finetune_fixtures.py")
        }
        return try! Data(contentsOf: url)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ name: String) -> T {
        try! JSONDecoder().decode(T.self, from: data(name))
    }
}

/// Compares `x.grad` (after `loss().backward()`) with central differences of `loss()`.
///
/// Float32 forward, step h = 1e-2 * max(1, |x_i|): the truncation error is O(h²) times the
/// third derivative (about 1e-4 for these smooth losses) and the rounding error about
/// 1e-7 * |L| / h, so 2e-3 absolute plus 2% relative separates a right backward from a wrong
/// one (off by O(1)).
func expectGradientMatchesFiniteDifferences(
    _ x: Tensor, _ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ loss: () -> Tensor
) {
    x.requiresGrad = true
    x.grad = nil
    loss().backward()
    let analytic = x.grad!.values
    for i in 0..<x.count {
        let saved = x.data[i]
        let h: Float = 1e-2 * max(1, abs(saved))
        x.data[i] = saved + h
        let up = Double(GradMode.withoutGrad { loss() }.item)
        x.data[i] = saved - h
        let down = Double(GradMode.withoutGrad { loss() }.item)
        x.data[i] = saved
        let fd = (up - down) / Double(2 * h)
        let err = abs(fd - Double(analytic[i]))
        #expect(
            err <= 2e-3 + 2e-2 * abs(fd), "\(what): d[\(i)] analytic \(analytic[i]) vs finite difference \(fd)",
            sourceLocation: sourceLocation)
    }
}

/// Largest |a - b| / (atol + rtol |b|) over the elements (≤ 1 passes).
func closeness(_ a: [Float], _ b: [Double], atol: Double = 1e-5, rtol: Double = 1e-4) -> Double {
    precondition(a.count == b.count, "\(a.count) vs \(b.count) values")
    return zip(a, b).map { abs(Double($0) - $1) / (atol + rtol * abs($1)) }.max() ?? 0
}
