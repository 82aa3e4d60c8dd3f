// The interchange commands on the Hugging Face fixture made by tools/make_hf_fixture.py
// (transformers' own outputs in reference.json): `distill eval` reproduces the loss and
// last-position logits, `distill generate --temperature 0` the greedy tokens, and
// import -> export round-trips every tensor.

import Core
import Foundation
import JSON
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

    /// A tokenizer with an id beyond the embedding table is refused at load (exit 65 naming the
    /// file and the id) instead of reading past the table.
    @Test func tokenIdsBeyondTheVocabularyAreRefused() throws {
        let dir = try scratchDirectory("vocab")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = dir.appendingPathComponent("model")
        try FileManager.default.copyItem(at: Self.fixture, to: model)
        let url = model.appendingPathComponent("tokenizer.json")
        var tokenizer = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        var added = tokenizer["added_tokens"] as! [[String: Any]]
        added.append(["id": 300, "content": "<extra>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true])
        tokenizer["added_tokens"] = added
        try JSONSerialization.data(withJSONObject: tokenizer).write(to: url)
        let text = dir.appendingPathComponent("t.txt")
        try Data("hello".utf8).write(to: text)
        for args in [["import", "hf", model.path, "-o", dir.appendingPathComponent("m.h5").path], ["eval", "--checkpoint", model.path, "--text", text.path]] {
            let r = try distill(args)
            #expect(r.status == 65, "\(args[0]): \(r.err)")
            #expect(r.err.contains(url.path) && r.err.contains("token id 300 (\"<extra>\") is outside the model's vocabulary of 300 embeddings"), "\(r.err)")
        }
    }

    /// A NaN in a Hugging Face model's weights is refused at load, naming the tensor.
    @Test func nonFiniteImportedWeightsAreRefused() throws {
        let dir = try scratchDirectory("nan-weights")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = dir.appendingPathComponent("model")
        try FileManager.default.copyItem(at: Self.fixture, to: model)
        let url = model.appendingPathComponent("model.safetensors")
        var bytes = [UInt8](try Data(contentsOf: url))
        let headerLength = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerLength)])) as! [String: Any]
        let name = header.keys.filter { $0 != "__metadata__" }.sorted()[0]
        let begin = ((header[name] as! [String: Any])["data_offsets"] as! [Int])[0]
        for (k, b) in [0x00, 0x00, 0xC0, 0x7F].enumerated() { bytes[8 + headerLength + begin + k] = UInt8(b) }  // float32 NaN
        try Data(bytes).write(to: url)
        let r = try distill(["import", "hf", model.path, "-o", dir.appendingPathComponent("m.h5").path])
        #expect(r.status == 65)
        #expect(r.err.contains("tensor \(name) holds a non-finite value (nan at element 0)"), "\(r.err)")
    }

    /// A window longer than the model's positions is a usage error, not a silent run.
    @Test func evalRefusesASeqLenBeyondThePositions() throws {
        let dir = try scratchDirectory("seq-len")
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = dir.appendingPathComponent("t.txt")
        try Data("hello there".utf8).write(to: text)
        let r = try distill(["eval", "--checkpoint", Self.fixture.path, "--text", text.path, "--seq-len", "100000"])
        #expect(r.status == 2)
        #expect(r.err.contains("--seq-len 100000 exceeds the model's max_position_embeddings"), "\(r.err)")
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
