// The interchange commands on the Hugging Face fixture made by tools/make_hf_fixture.py
// (transformers' own outputs in reference.json): `distill eval` reproduces the loss and
// last-position logits, `distill generate --temperature 0` the greedy tokens, and
// import -> export round-trips every tensor.

import Core
import Foundation
import ModelIO
import Platform
import Testing

struct FixtureReference: Decodable {
    var text: String
    var loss: Double
    var last_logits: [Double]
    var prompt: String
    var prompt_ids: [Int32]
    var greedy_ids: [Int32]
}

@Suite struct InterchangeCommandTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("FormatsTests/Fixtures/tiny_llama")

    func reference() throws -> FixtureReference {
        try JSONDecoder().decode(FixtureReference.self, from: Data(contentsOf: Self.fixture.appendingPathComponent("reference.json")))
    }

    @Test func evalAndGenerateReproduceTransformers() throws {
        let ref = try reference()
        let dir = try scratchDirectory("interchange")
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = dir.appendingPathComponent("text.txt")
        try Data(ref.text.utf8).write(to: text)

        struct Eval: Decodable { var loss: Double; var last_logits: [Double] }
        let e = try distill(["eval", "--checkpoint", Self.fixture.path, "--text", text.path, "--last-logits", "--json"])
        #expect(e.status == 0, "\(e.err)")
        let result = try JSONDecoder().decode(Eval.self, from: Data(e.out.utf8))
        #expect(abs(result.loss - ref.loss) < 1e-4)
        #expect(zip(result.last_logits, ref.last_logits).map { abs($0 - $1) }.max()! < 1e-4)

        struct Sample: Decodable { var ids: [Int32]; var prompt_ids: [Int32] }
        let g = try distill([
            "generate", "--checkpoint", Self.fixture.path, "--prompt", ref.prompt, "--temperature", "0", "--max-tokens", "32",
            "--ignore-eos", "--json",
        ])
        #expect(g.status == 0, "\(g.err)")
        let samples = try JSONDecoder().decode([Sample].self, from: Data(g.out.utf8))
        #expect(samples.first?.prompt_ids == ref.prompt_ids)
        #expect(samples.first?.ids == ref.greedy_ids)
    }

    @Test func importThenExportKeepsEveryTensor() throws {
        let dir = try scratchDirectory("roundtrip")
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = dir.appendingPathComponent("m.h5"), out = dir.appendingPathComponent("hf")
        let i = try distill(["import", "hf", Self.fixture.path, "-o", ckpt.path])
        #expect(i.status == 0, "\(i.err)")
        let x = try distill(["export", "hf", ckpt.path, "-o", out.path])
        #expect(x.status == 0, "\(x.err)")
        let a = try HFModelDirectory.read(at: Self.fixture), b = try HFModelDirectory.read(at: out)
        #expect(a.config == b.config)
        #expect(a.tokenizerJSON == b.tokenizerJSON)
        for (name, t) in a.tensors { #expect(b.tensors[name]?.values == t.values, "\(name)") }
    }

    @Test func aMissingModelIsAnIOErrorAndJunkIsBadData() throws {
        let missing = try distill(["generate", "--checkpoint", "/nonexistent/model.h5", "--prompt", "x"])
        #expect(missing.status == 74)
        let dir = try scratchDirectory("junk")
        defer { try? FileManager.default.removeItem(at: dir) }
        let junk = dir.appendingPathComponent("junk.h5")
        try Data("not a checkpoint".utf8).write(to: junk)
        let bad = try distill(["generate", "--checkpoint", junk.path, "--prompt", "x"])
        #expect(bad.status == 65, "\(bad.err)")
        #expect(bad.err.contains(junk.path))
    }

    @Test func adapterCommandsAndTheirExitCodes() throws {
        let dir = try scratchDirectory("adapters")
        defer { try? FileManager.default.removeItem(at: dir) }
        let fixtures = Self.fixture.deletingLastPathComponent()
        let adapter = dir.appendingPathComponent("a.h5").path
        let i = try distill(["import", "peft", fixtures.appendingPathComponent("tiny_llama_peft").path, "--base", Self.fixture.path, "-o", adapter])
        #expect(i.status == 0, "\(i.err)")
        let g = try distill(["generate", "--checkpoint", adapter, "--prompt", "The keeper", "--temperature", "0", "--max-tokens", "4"])
        #expect(g.status == 0, "\(g.err)")
        let wrong = try distill([
            "generate", "--checkpoint", adapter, "--base", fixtures.appendingPathComponent("tiny_llama_untied").path, "--prompt", "x",
        ])
        #expect(wrong.status == 65 && wrong.err.contains("--base"), "\(wrong.err)")
        let m = try distill(["merge", adapter, "-o", dir.appendingPathComponent("m.h5").path])
        #expect(m.status == 0, "\(m.err)")
        let notAdapter = try distill(["export", "peft", dir.appendingPathComponent("m.h5").path, "-o", dir.appendingPathComponent("p").path])
        #expect(notAdapter.status == 2 && notAdapter.err.contains("not an adapter"), "\(notAdapter.err)")
        let p = try distill(["export", "peft", adapter, "-o", dir.appendingPathComponent("p").path])
        #expect(p.status == 0, "\(p.err)")
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("p/adapter_model.safetensors").path))
    }
}
