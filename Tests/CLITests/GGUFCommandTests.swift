// `distill export gguf` on the Hugging Face fixtures: the model file (F32 and F16), an
// adapter imported from the PEFT fixture written as a GGUF LoRA adapter (q rows of B
// permuted, rsLoRA folded into alpha), an adapter checkpoint folded into its base, and the
// refusals with their exit codes.

import Formats
import Foundation
import Platform
import Testing

@Suite struct GGUFCommandTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("FormatsTests/Fixtures")
    static let tiny = fixtures.appendingPathComponent("tiny_llama")

    @Test func modelAndAdapterExports() throws {
        let dir = try scratchDirectory("gguf")
        defer { try? FileManager.default.removeItem(at: dir) }
        let f32 = dir.appendingPathComponent("m.gguf"), f16 = dir.appendingPathComponent("m16.gguf")
        let a = try distill(["export", "gguf", Self.tiny.path, "-o", f32.path])
        #expect(a.status == 0, "\(a.err)")
        let b = try distill(["export", "gguf", Self.tiny.path, "-o", f16.path, "--dtype", "f16"])
        #expect(b.status == 0, "\(b.err)")
        let m = try GGUFFile(path: f32.path), h = try GGUFFile(path: f16.path)
        #expect(m["general.name"] == .string("tiny_llama"))
        #expect(m["general.file_type"] == .uint32(0) && h["general.file_type"] == .uint32(1))
        #expect(m.tensor("blk.1.ffn_down.weight")?.type == .f32 && h.tensor("blk.1.ffn_down.weight")?.type == .f16)
        #expect(h.tensor("output_norm.weight")?.type == .f32)
        // The F16 file is the converter's (byte-identical to the gguf-py fixture).
        let fixture = Self.fixtures.appendingPathComponent("gguf/tiny_llama_f16.gguf")
        #expect(try Data(contentsOf: f16) == Data(contentsOf: fixture))

        // An adapter: PEFT fixture -> distill adapter checkpoint -> GGUF LoRA adapter.
        let adapter = dir.appendingPathComponent("a.h5"), lora = dir.appendingPathComponent("a.gguf")
        let i = try distill([
            "import", "peft", Self.fixtures.appendingPathComponent("tiny_llama_peft").path, "--base", Self.tiny.path, "-o",
            adapter.path,
        ])
        #expect(i.status == 0, "\(i.err)")
        let x = try distill(["export", "gguf", Self.tiny.path, "--adapter", adapter.path, "-o", lora.path])
        #expect(x.status == 0, "\(x.err)")
        let g = try GGUFFile(path: lora.path)
        #expect(g["general.type"] == .string("adapter") && g["adapter.type"] == .string("lora"))
        #expect(g["general.architecture"] == .string("llama"))
        // r = 4, alpha 8, rsLoRA: scale 8 / sqrt(4) = 4 = alpha' / r, so alpha' = 16.
        #expect(g["adapter.lora.alpha"] == .float32(16))
        let peft = try SafetensorsFile(
            path: Self.fixtures.appendingPathComponent("tiny_llama_peft/adapter_model.safetensors").path)
        let prefix = "base_model.model.model.layers.1."
        #expect(try g.read("blk.1.attn_v.weight.lora_b").values == peft.read(prefix + "self_attn.v_proj.lora_B.weight").values)
        #expect(try g.read("blk.1.ffn_up.weight.lora_a").values == peft.read(prefix + "mlp.up_proj.lora_A.weight").values)
        // q_proj's B rows in llama.cpp's order: head h row 2i + j is row j * 4 + i (D = 8).
        let qb = try peft.read(prefix + "self_attn.q_proj.lora_B.weight"), gb = try g.read("blk.1.attn_q.weight.lora_b")
        #expect(gb.shape == [32, 4])
        for h in 0..<4 {
            for i in 0..<4 {
                for j in 0..<2 {
                    let from = Array(qb.values[((h * 8 + j * 4 + i) * 4)..<((h * 8 + j * 4 + i) * 4 + 4)])
                    let to = Array(gb.values[((h * 8 + 2 * i + j) * 4)..<((h * 8 + 2 * i + j) * 4 + 4)])
                    #expect(from == to, "head \(h) pair \(i) half \(j)")
                }
            }
        }
        #expect(g.tensor("blk.0.attn_k.weight.lora_a") == nil, "k_proj is not adapted")

        // The adapter checkpoint itself exports as its merged model, like `distill merge` then export.
        let merged = dir.appendingPathComponent("merged.h5"), viaMerge = dir.appendingPathComponent("via.gguf")
        let direct = dir.appendingPathComponent("direct.gguf")
        #expect(try distill(["merge", adapter.path, "-o", merged.path]).status == 0)
        #expect(try distill(["export", "gguf", merged.path, "-o", viaMerge.path]).status == 0)
        #expect(try distill(["export", "gguf", adapter.path, "-o", direct.path]).status == 0)
        let v = try GGUFFile(path: viaMerge.path), d = try GGUFFile(path: direct.path)
        for t in v.tensors { #expect(try d.rawBytes(t.name) == v.rawBytes(t.name), "\(t.name)") }
        #expect(try d.rawBytes("blk.0.attn_q.weight") != m.rawBytes("blk.0.attn_q.weight"))
    }

    /// The recipe stage `export` with `format: gguf` writes the same file as the command.
    @Test func exportStage() throws {
        let dir = try scratchDirectory("gguf-stage")
        defer { try? FileManager.default.removeItem(at: dir) }
        let recipe = dir.appendingPathComponent("recipe.json"), run = dir.appendingPathComponent("run")
        let json = #"{"name": "g", "run_dir": "\#(run.path)", "stages": [{"type": "export", "checkpoint": "\#(Self.tiny.path)", "format": "gguf", "output": "model.gguf"}]}"#
        try json.write(to: recipe, atomically: true, encoding: .utf8)
        let r = try distill(["run", recipe.path])
        #expect(r.status == 0, "\(r.err)")
        let direct = dir.appendingPathComponent("direct.gguf")
        #expect(try distill(["export", "gguf", Self.tiny.path, "-o", direct.path]).status == 0)
        #expect(try Data(contentsOf: run.appendingPathComponent("model.gguf")) == Data(contentsOf: direct))
    }

    @Test func refusals() throws {
        let dir = try scratchDirectory("gguf-refuse")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("x.gguf").path
        // A whole model given as --adapter.
        let notAdapter = try distill(["export", "gguf", Self.tiny.path, "--adapter", Self.tiny.path, "-o", out])
        #expect(notAdapter.status == 2, "\(notAdapter.err)")
        #expect(notAdapter.err.contains("not an adapter"))
        let badType = try distill(["export", "gguf", Self.tiny.path, "--dtype", "q4", "-o", out])
        #expect(badType.status == 2)
        // A tokenizer llama.cpp would apply differently.
        let model = dir.appendingPathComponent("prefixed")
        try FileManager.default.copyItem(at: Self.tiny, to: model)
        let tokenizer = model.appendingPathComponent("tokenizer.json")
        var json = try String(contentsOf: tokenizer, encoding: .utf8)
        json = json.replacingOccurrences(of: "\"add_prefix_space\": false", with: "\"add_prefix_space\": true")
        json = json.replacingOccurrences(of: "\"add_prefix_space\":false", with: "\"add_prefix_space\":true")
        try json.write(to: tokenizer, atomically: true, encoding: .utf8)
        let prefixed = try distill(["export", "gguf", model.path, "-o", out])
        #expect(prefixed.status == 65, "\(prefixed.err)")
        #expect(prefixed.err.contains("pre-tokenizer"))
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}

extension GGUFCommandTests {
    /// `distill quantize` writes a Q4_0 GGUF (embedding kept Q8_0, norms F32) that generation and
    /// text evaluation run as stored with --weights file, greedy tokens as with --weights q4_0
    /// quantizing at load; --weights file on a model without quantized tensors exits 2 with the fix.
    @Test func quantizeThenRunTheFilesBlocks() throws {
        let dir = try scratchDirectory("quantize")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = Self.fixtures.appendingPathComponent("gguf/tiny_chat.gguf").path
        let out = dir.appendingPathComponent("q4.gguf").path
        let q = try distill(["quantize", source, "--type", "q4_0", "-o", out])
        #expect(q.status == 0, "\(q.err)")
        #expect(q.out.contains("wrote"))
        let file = try GGUFFile(path: out)
        #expect(file["general.file_type"] == .uint32(2))
        #expect(file.tensor("blk.0.ffn_up.weight")?.type == .q4_0)
        #expect(file.tensor("token_embd.weight")?.type == .q8_0)
        #expect(file.tensor("blk.0.attn_norm.weight")?.type == .f32)
        func greedy(_ model: String, _ weights: String) throws -> String {
            let r = try distill([
                "generate", "--checkpoint", model, "--prompt", "hello", "--max-tokens", "6", "--temperature", "0",
                "--weights", weights, "--json",
            ])
            #expect(r.status == 0, "\(r.err)")
            return r.out
        }
        #expect(try greedy(out, "file") == greedy(source, "q4_0"))
        let text = dir.appendingPathComponent("t.txt")
        try "the quick brown fox jumps over the lazy dog".write(to: text, atomically: true, encoding: .utf8)
        let e = try distill(["eval", "--checkpoint", out, "--text", text.path, "--weights", "file"])
        #expect(e.status == 0 && e.out.contains("perplexity"), "\(e.err)")
        let refused = try distill(["generate", "--checkpoint", Self.tiny.path, "--prompt", "hi", "--weights", "file"])
        #expect(refused.status == 2)
        #expect(refused.err.contains("--weights file") && refused.err.contains("q8_0"))
    }
}
