// Llama 3's rope scaling (Sources/Core/Rope.swift) against the formula worked out by hand, and
// the tables built from scaled frequencies. That the frequencies are transformers' bit for bit
// is checked on its own model (Tests/FormatsTests/HFReferenceTests.swift, tiny_llama3).

import Core
import Foundation
import Testing

@Suite struct RopeScalingTests {
    /// D = 8, theta = 10000: inv_freq = 1, 0.1, 0.01, 0.001 and wavelengths w = 2π / inv_freq =
    /// 6.28, 62.8, 628.3, 6283. With O = 1024, L = 1, H = 4, factor 8 the bands are w < O/H = 256
    /// (unchanged), w > O/L = 1024 (divided by 8) and in between (smoothed), so:
    ///   pairs 0, 1: 1 and 0.1 unchanged
    ///   pair 2:     s = (1024 / 628.3 - 1) / 3 = 0.2099, inv = 0.01 · ((1 - s) / 8 + s) = 0.003087
    ///   pair 3:     0.001 / 8 = 0.000125
    /// llama.cpp's divisors are 1, 1, 1 / ((1 - s) / 8 + s) = 3.240, 8.
    @Test func llama3ScalingByHand() {
        let scaling = RopeScaling(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 1024)
        let s = (1024 / (2 * Double.pi * 100) - 1) / 3
        let expected = [1, 0.1, 0.01 * ((1 - s) / 8 + s), 0.001 / 8]
        let factors = [1, 1, 1 / ((1 - s) / 8 + s), 8]
        let plain = RopeTable.inverseFrequencies(headDim: 8, theta: 10000)
        let scaled = RopeTable.inverseFrequencies(headDim: 8, theta: 10000, scaling: scaling)
        func close(_ a: [Float], _ b: [Double]) -> Bool {
            a.count == b.count && zip(a, b).allSatisfy { abs(Double($0) - $1) <= 1e-6 * abs($1) }
        }
        #expect(close(scaled, expected), "\(scaled) vs \(expected)")
        #expect(close(scaling.frequencyFactors(plain), factors), "\(scaling.frequencyFactors(plain))")
        // Dividing by llama.cpp's factors is the same scaling.
        #expect(close(zip(plain, scaling.frequencyFactors(plain)).map { $0 / $1 }, scaled.map(Double.init)))
        #expect(scaled[0] == plain[0] && scaled[1] == plain[1])
    }

    /// A scaled table is the table of the scaled frequencies; the unscaled one keeps today's
    /// arithmetic (inv_freq = 1 / theta^(2i/D), angle = pos · inv_freq) bit for bit.
    @Test func tablesUseTheScaledFrequencies() {
        let positions: [Int32] = [0, 1, 5, 63, 64, 200]
        let scaling = RopeScaling(factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64)
        let scaled = RopeTable(positions: positions, headDim: 16, theta: 500_000, scaling: scaling)
        let direct = RopeTable(
            positions: positions,
            inverseFrequencies: RopeTable.inverseFrequencies(headDim: 16, theta: 500_000, scaling: scaling))
        #expect(scaled.cos == direct.cos && scaled.sin == direct.sin && scaled.headDim == 16)
        let plain = RopeTable(positions: positions, headDim: 16, theta: 500_000)
        #expect(plain.cos != scaled.cos)
        for (p, pos) in positions.enumerated() {
            for i in 0..<8 {
                let angle = Float(pos) * (1 / Foundation.pow(Float(500_000), Float(2 * i) / 16))
                #expect(plain.cos[p * 8 + i] == Foundation.cos(angle) && plain.sin[p * 8 + i] == Foundation.sin(angle))
            }
        }
    }

    @Test func meaninglessParametersAreNamed() {
        #expect(
            RopeScaling(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192).problems()
                .isEmpty)
        let p = RopeScaling(factor: 0.5, lowFreqFactor: 0, highFreqFactor: 0, originalMaxPositionEmbeddings: 0)
            .problems()
        for key in ["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"] {
            #expect(p.contains { $0.contains(key) }, "\(p)")
        }
        #expect(
            RopeScaling(factor: 8, lowFreqFactor: 4, highFreqFactor: 1, originalMaxPositionEmbeddings: 8192).problems()
                .count == 1)
    }
}
