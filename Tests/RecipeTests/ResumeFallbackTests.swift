// A resumed stage whose checkpoint is damaged continues from the .prev an interrupted commit
// left, and says so; without a .prev, the damage is an error naming the file that suggests no
// previous checkpoint (docs/checkpoints.md, *When a checkpoint is damaged*).

import Core
import Foundation
import ModelIO
import NN
import Platform
import Testing
import Training

@Suite struct ResumeFallbackTests {
    final class Messages: @unchecked Sendable { var lines: [String] = [] }

    @Test func aDamagedCheckpointFallsBackToItsPrevious() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("distill-fallback-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("ckpt.h5")
        let config = LlamaConfig(
            vocabSize: 16, hiddenSize: 8, intermediateSize: 16, numHiddenLayers: 1, numAttentionHeads: 2, numKeyValueHeads: 1)
        var rng = RNG(seed: 1)
        let parameters = config.parameterShapes.map { (name: $0.name, tensor: Tensor.randn($0.shape, rng: &rng)) }
        let moments = parameters.map { (name: $0.name, tensor: Tensor.zeros($0.tensor.shape)) }
        let contents = CheckpointContents(
            config: config, parameters: parameters, optimizer: OptimizerState(kind: "adamw", step: 3, moments: ["m": moments]),
            step: 3, tokensSeen: 30, rng: ["data": rng], threads: Threads.count, metadata: ["fingerprint": "fp"])
        try writeCheckpoint(contents, to: url)
        try FileManager.default.copyItem(at: url, to: URL(fileURLWithPath: url.path + ".prev"))
        var bytes = try Data(contentsOf: url)
        bytes[700] ^= 0x04  // HDF5's metadata, behind the seal
        try bytes.write(to: url)

        let messages = Messages()
        func session() throws -> TrainingSession {
            try TrainingSession(
                name: "s", output: url.path, metrics: directory.appendingPathComponent("s.metrics.jsonl").path,
                fingerprint: "fp", recipeJSON: "{}", resume: true,
                emit: { if case .message(let text) = $0 { messages.lines.append(text) } })
        }
        #expect(try session().resumed?.step == 3)
        #expect(messages.lines.contains { $0.contains("continuing from \(url.path).prev") }, "\(messages.lines)")

        try FileManager.default.removeItem(atPath: url.path + ".prev")
        #expect {
            _ = try session()
        } throws: { error in
            guard let error = error as? CheckpointError else { return false }
            return error.errorKind == .badData && error.description.hasPrefix(url.path)
                && !error.description.contains("previous")
        }
    }
}
