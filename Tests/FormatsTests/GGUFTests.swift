// Tests for Sources/Formats/GGUF.swift and GGUFLlama.swift: files written by gguf-py
// (llama.cpp's Python package, through tools/make_gguf_fixture.py) read back exactly;
// distill's exports of the tiny_llama fixture and of a LoRA adapter equal, byte for byte,
// what gguf-py writes when following llama.cpp's converters; the Q/K row permutation is
// checked against RoPE itself; hostile headers are refused with their own error kinds.

import Core
import Foundation
import JSON
import ModelIO
import NN
import Platform
import Testing
import TextData

@testable import Formats

// MARK: - Helpers (shared with GGUFQuantTests.swift)

func scratch<R>(_ body: (URL) throws -> R) throws -> R {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("distill-gguf-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try body(directory)
}

private func fixture(_ name: String) throws -> URL {
    try #require(Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures"))
}

func ggufFixture(_ name: String) throws -> URL {
    try #require(Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures/gguf"))
}

@discardableResult
func expectGGUFError(
    _ kind: GGUFError.Kind, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> GGUFError? {
    do {
        try body()
        Issue.record("expected GGUFError.\(kind), nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as GGUFError {
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected GGUFError.\(kind), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// The tiny_llama (or tiny_llama_untied) fixture as a model and its tokenizer.
private func loadTiny(_ name: String = "tiny_llama") throws -> (LlamaModel, ByteLevelBPETokenizer) {
    let (config, tensors, tokenizerData) = try HFModelDirectory.read(at: fixture(name))
    let tokenizer = try ByteLevelBPETokenizer(jsonData: try #require(tokenizerData))
    return (try LlamaModel(config: config, parameters: tensors), tokenizer)
}

/// The inverse of `LlamaGGUF.interleaveRotaryRows`: row j * D/2 + i comes from row 2i + j.
private func deinterleave(_ w: Tensor, heads: Int) -> [Float] {
    let rows = w.shape[0], cols = w.shape[1], d = rows / heads
    var out = [Float](repeating: .nan, count: w.count)
    for h in 0..<heads {
        for i in 0..<(d / 2) {
            for j in 0..<2 {
                for c in 0..<cols { out[(h * d + j * d / 2 + i) * cols + c] = w.data[(h * d + 2 * i + j) * cols + c] }
            }
        }
    }
    return out
}

// MARK: - Files written by gguf-py

@Suite struct GGUFFromPython {
    struct Expected: Decodable {
        struct T: Decodable {
            var shape: [Int]
            var type: UInt32
            var bits: [UInt32]?
            var bytes: [UInt8]?
        }
        var alignment: Int
        var tensors: [String: T]
        var f32_bits: UInt32
    }

    /// Every value type, nested arrays, alignment 64, and F32/F16/BF16/I32/Q8_0 tensors.
    @Test func valuesFixture() throws {
        let expected = try JSONDecoder().decode(
            Expected.self, from: Data(contentsOf: ggufFixture("values.json")))
        let file = try GGUFFile(path: ggufFixture("values.gguf").path)
        #expect(file.version == 3)
        #expect(file.alignment == 64)
        #expect(file.dataOffset % 64 == 0)
        #expect(file["general.alignment"] == .uint32(64))
        #expect(file["general.architecture"] == .string("distill-test"))
        #expect(file["t.u8"] == .uint8(200))
        #expect(file["t.i8"] == .int8(-100))
        #expect(file["t.u16"] == .uint16(60000))
        #expect(file["t.i16"] == .int16(-30000))
        #expect(file["t.u32"] == .uint32(4_000_000_000))
        #expect(file["t.i32"] == .int32(-2_000_000_000))
        #expect(file["t.u64"] == .uint64(1 << 63 + 5))
        #expect(file["t.i64"] == .int64(-(1 << 62) - 3))
        #expect(file["t.f32"] == .float32(Float(bitPattern: expected.f32_bits)))
        #expect(file["t.f64"] == .float64(-1e300))
        #expect(file["t.true"] == .bool(true))
        #expect(file["t.false"] == .bool(false))
        #expect(file["t.string"] == .string("héllo \"wörld\"\n\u{2603}"))
        #expect(file["t.arr.u8"] == .array(.uint8([1, 2, 255])))
        #expect(file["t.arr.i16"] == .array(.int16([-1, 2, -32768])))
        #expect(file["t.arr.u32"] == .array(.uint32([0, 7, .max])))
        #expect(file["t.arr.i32"] == .array(.int32([-5, 6])))
        #expect(file["t.arr.i64"] == .array(.int64([-(1 << 40), 3])))
        #expect(file["t.arr.f32"] == .array(.float32([1.5, -0.25, 3])))
        #expect(file["t.arr.f64"] == .array(.float64([0.1, 2.5])))
        #expect(file["t.arr.bool"] == .array(.bool([true, false, true])))
        #expect(file["t.arr.string"] == .array(.string(["a", "", "Ġthe", "été"])))
        // gguf-py stores Python ints as INT32.
        #expect(file["t.arr.nested"] == .array(.array([.int32([1, 2]), .int32([3]), .int32([4, 5, 6])])))
        #expect(file["t.missing"] == nil)

        #expect(Set(file.tensors.map(\.name)) == Set(expected.tensors.keys))
        for (name, want) in expected.tensors {
            let info = try #require(file.tensor(name))
            #expect(info.shape == want.shape, "\(name)")
            #expect(info.type.rawValue == want.type, "\(name)")
            #expect(info.offset % 64 == 0, "\(name)")
            if let bits = want.bits {
                let t = try file.read(name)
                #expect(t.shape == want.shape)
                #expect(t.values.map(\.bitPattern) == bits, "\(name)")
            }
            if let bytes = want.bytes { #expect(try file.rawBytes(name) == bytes, "\(name)") }
        }
        #expect(file.tensor("q8_0")?.byteCount == 2 * 34)
        let error = expectGGUFError(.unsupportedTensorType) { _ = try file.read("i32") }
        #expect(error?.field == "tensor 'i32'")
        // The Q8_0 bytes are random (scales too), so only the shape is checked here;
        // GGUFQuantTests compares values with gguf-py's.
        #expect(try file.read("q8_0").shape == [2, 32])
        expectGGUFError(.tensorNotFound) { _ = try file.read("nope") }
    }

    /// distill's export of tiny_llama at F16 is byte-identical to the file gguf-py writes
    /// following convert_hf_to_gguf.py (same keys, types and order, same permuted F16 bits,
    /// norms F32, same padding); for tiny_llama3 also the same rope_freqs.weight, first.
    @Test(arguments: ["tiny_llama", "tiny_llama3"])
    func tinyLlamaExportMatchesConverterBytes(name: String) throws {
        let (model, tokenizer) = try loadTiny(name)
        try scratch { dir in
            let path = dir.appendingPathComponent("tiny.gguf").path
            try writeGGUF(model: model, tokenizer: tokenizer, dtype: .f16, name: name, to: path)
            let ours = try Data(contentsOf: URL(fileURLWithPath: path))
            let theirs = try Data(contentsOf: ggufFixture("\(name)_f16.gguf"))
            #expect(ours.count == theirs.count)
            if ours != theirs {
                let first = zip(ours, theirs).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                Issue.record("files differ first at byte \(first.map(String.init) ?? "end")")
            }
            // And parsed: the Python file reads as distill expects.
            let file = try GGUFFile(path: ggufFixture("\(name)_f16.gguf").path)
            #expect(file.tensor("blk.0.attn_norm.weight")?.type == .f32)
            #expect(file.tensor("blk.0.attn_q.weight")?.type == .f16)
            #expect(file.tensor("output.weight") == nil, "tied: no output.weight")
            let ropeFreqs = file.tensor("rope_freqs.weight")
            #expect((ropeFreqs != nil) == (model.config.ropeScaling != nil))
            if let ropeFreqs {
                #expect(ropeFreqs.type == .f32 && ropeFreqs.shape == [8] && file.tensors.first?.name == ropeFreqs.name)
            }
        }
    }

    /// The adapter export equals gguf-py's file following convert_lora_to_gguf.py, with
    /// rsLoRA folded into alpha (8 * sqrt(2)) and q/k B rows permuted.
    @Test func adapterExportMatchesConverterBytes() throws {
        struct Config: Decodable {
            var rank: Int
            var alpha: Double
            var use_rslora: Bool
            var target_modules: [String]
        }
        let c = try JSONDecoder().decode(Config.self, from: Data(contentsOf: ggufFixture("tiny_lora.json")))
        let lora = LoRAConfig(rank: c.rank, alpha: c.alpha, useRSLoRA: c.use_rslora, targetModules: c.target_modules)
        let (model, _) = try loadTiny()
        var rng = RNG(seed: 1)
        model.addLoRA(lora, rng: &rng)
        let peft = try SafetensorsFile(path: ggufFixture("tiny_lora.safetensors").path)
        for (name, tensor) in model.adapterParameters() {
            let source = try peft.read("base_model.model." + name)
            #expect(source.shape == tensor.shape, "\(name)")
            tensor.data.update(from: source.data, count: tensor.count)
        }
        try scratch { dir in
            let path = dir.appendingPathComponent("adapter.gguf").path
            try writeGGUFAdapter(model: model, lora: lora, name: "tiny_lora", to: path)
            let ours = try Data(contentsOf: URL(fileURLWithPath: path))
            #expect(ours == (try Data(contentsOf: ggufFixture("tiny_lora.gguf"))))
            let file = try GGUFFile(path: path)
            #expect(file["adapter.lora.alpha"] == .float32(Float(8 * 2.0.squareRoot())))
            // ggml dims: lora_a ne = [in, r], lora_b ne = [r, out].
            #expect(file.tensor("blk.0.attn_k.weight.lora_a")?.dims == [32, 2])
            #expect(file.tensor("blk.0.attn_k.weight.lora_b")?.dims == [2, 16])
        }
    }
}

// MARK: - Export

@Suite struct GGUFLlamaExport {
    /// F32 export: every tensor comes back bit for bit (after undoing the Q/K permutation),
    /// under its ggml name, with the hyperparameters and tokenizer keys llama.cpp reads.
    @Test(arguments: ["tiny_llama", "tiny_llama_untied"])
    func float32RoundTrip(fixtureName: String) throws {
        let (model, tokenizer) = try loadTiny(fixtureName)
        let c = model.config
        try scratch { dir in
            let path = dir.appendingPathComponent("m.gguf").path
            try writeGGUF(model: model, tokenizer: tokenizer, to: path)
            let file = try GGUFFile(path: path)
            #expect(file["general.architecture"] == .string("llama"))
            #expect(file["general.file_type"] == .uint32(0))
            #expect(file["llama.block_count"] == .uint32(UInt32(c.numHiddenLayers)))
            #expect(file["llama.attention.head_count"] == .uint32(4))
            #expect(file["llama.attention.head_count_kv"] == .uint32(2))
            #expect(file["llama.rope.dimension_count"] == .uint32(8))
            #expect(file["llama.rope.freq_base"] == .float32(10000))
            #expect(file["llama.attention.layer_norm_rms_epsilon"] == .float32(1e-5))
            #expect(file["llama.context_length"] == .uint32(UInt32(c.maxPositionEmbeddings)))
            #expect(file["tokenizer.ggml.model"] == .string("gpt2"))
            #expect(file["tokenizer.ggml.pre"] == .string("gpt-2"))
            #expect(file["tokenizer.ggml.eos_token_id"] == .uint32(0))
            guard case .array(.string(let tokens))? = file["tokenizer.ggml.tokens"],
                case .array(.int32(let types))? = file["tokenizer.ggml.token_type"]
            else {
                Issue.record("tokens and token types missing")
                return
            }
            #expect(tokens.count == c.vocabSize && types.count == c.vocabSize)
            #expect(tokens[0] == "<|endoftext|>" && types[0] == GGUFTokenType.control.rawValue)
            for id in 1..<tokenizer.vocabSize { #expect(tokens[id] == tokenizer.token(for: Int32(id))) }
            #expect(file.tensor("output.weight") == nil || !c.tieWordEmbeddings)
            #expect(file.tensors.count == model.namedParameters().count)
            for (hf, tensor) in model.namedParameters() {
                let name = try #require(LlamaGGUF.tensorName(hf))
                let back = try file.read(name)
                #expect(back.shape == tensor.shape, "\(name)")
                #expect(file.tensor(name)?.type == .f32)
                var values = back.values
                if hf.hasSuffix("q_proj.weight") { values = deinterleave(back, heads: c.numAttentionHeads) }
                if hf.hasSuffix("k_proj.weight") { values = deinterleave(back, heads: c.numKeyValueHeads) }
                #expect(values.map(\.bitPattern) == tensor.values.map(\.bitPattern), "\(name)")
            }
        }
    }

    /// Why the permutation is right: RoPE with rotate-half pairs (j, j + D/2) on the original
    /// rows gives the same attention scores as llama.cpp's neighbour pairs (2i, 2i+1) on the
    /// permuted rows. For a head vector v and position p, pair i (frequency θ^(-2i/D)) is
    /// rotated by angle p·θ^(-2i/D); HF takes the pair from (v[i], v[i + D/2]), llama.cpp
    /// from (v'[2i], v'[2i+1]). The permutation puts v[i] at 2i and v[i + D/2] at 2i + 1, so
    /// both rotate the same numbers by the same angles and the rotated vectors are the same
    /// up to that reordering, which a dot product (q·k, same order on both sides) ignores.
    @Test func permutationPreservesRotaryScores() {
        let (heads, d, cols) = (3, 8, 5)
        var rng = RNG(seed: 7)
        let w = Tensor.randn([heads * d, cols], rng: &rng)
        let x = Tensor.randn([cols], rng: &rng).values
        let y = Tensor.randn([cols], rng: &rng).values
        let permuted = LlamaGGUF.interleaveRotaryRows(w, heads: heads)
        func project(_ m: Tensor, _ v: [Float]) -> [Double] {
            (0..<m.shape[0]).map { r in (0..<cols).reduce(0.0) { $0 + Double(m.data[r * cols + $1]) * Double(v[$1]) } }
        }
        func angle(_ i: Int, _ p: Int) -> Double { Double(p) * pow(10000, -2 * Double(i) / Double(d)) }
        // Rotate-half (transformers): pair (j, j + D/2).
        func ropeHalf(_ v: [Double], _ p: Int) -> [Double] {
            var o = v
            for h in 0..<heads {
                for i in 0..<(d / 2) {
                    let (a, b) = (v[h * d + i], v[h * d + i + d / 2])
                    let t = angle(i, p)
                    o[h * d + i] = a * cos(t) - b * sin(t)
                    o[h * d + i + d / 2] = a * sin(t) + b * cos(t)
                }
            }
            return o
        }
        // Neighbour pairs (llama.cpp's rope type NORM): pair (2i, 2i + 1).
        func ropePairs(_ v: [Double], _ p: Int) -> [Double] {
            var o = v
            for h in 0..<heads {
                for i in 0..<(d / 2) {
                    let (a, b) = (v[h * d + 2 * i], v[h * d + 2 * i + 1])
                    let t = angle(i, p)
                    o[h * d + 2 * i] = a * cos(t) - b * sin(t)
                    o[h * d + 2 * i + 1] = a * sin(t) + b * cos(t)
                }
            }
            return o
        }
        for (pq, pk) in [(0, 0), (5, 2), (17, 11)] {
            let q1 = ropeHalf(project(w, x), pq), k1 = ropeHalf(project(w, y), pk)
            let q2 = ropePairs(project(permuted, x), pq), k2 = ropePairs(project(permuted, y), pk)
            for h in 0..<heads {
                let s1 = (0..<d).reduce(0.0) { $0 + q1[h * d + $1] * k1[h * d + $1] }
                let s2 = (0..<d).reduce(0.0) { $0 + q2[h * d + $1] * k2[h * d + $1] }
                #expect(abs(s1 - s2) < 1e-9 * max(1, abs(s1)), "head \(h) positions \(pq), \(pk)")
            }
            // And without the permutation the scores differ (the test can fail).
            let q3 = ropePairs(project(w, x), pq), k3 = ropePairs(project(w, y), pk)
            if pq != pk {
                let s1 = (0..<d).reduce(0.0) { $0 + q1[$1] * k1[$1] }
                let s3 = (0..<d).reduce(0.0) { $0 + q3[$1] * k3[$1] }
                #expect(abs(s1 - s3) > 1e-6)
            }
        }
    }

    /// The pre-tokenizer names llama.cpp knows for distill's three byte-level families, and a
    /// refusal for one it would apply differently.
    @Test func preTokenizerNames() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("TextDataTests/Fixtures")
        for (file, name) in [("gpt2_bpe.json", "gpt-2"), ("llama3_bpe.json", "llama-bpe"), ("qwen2_bpe.json", "qwen2")] {
            let tokenizer = try ByteLevelBPETokenizer(contentsOf: dir.appendingPathComponent(file))
            #expect(LlamaGGUF.preTokenizerName(tokenizer) == name, "\(file)")
        }
        var json = String(decoding: try Data(contentsOf: fixture("tiny_llama").appendingPathComponent("tokenizer.json")), as: UTF8.self)
        json = json.replacingOccurrences(of: "\"add_prefix_space\":false", with: "\"add_prefix_space\":true")
        json = json.replacingOccurrences(of: "\"add_prefix_space\": false", with: "\"add_prefix_space\": true")
        let prefixed = try ByteLevelBPETokenizer(jsonData: Array(json.utf8))
        #expect(LlamaGGUF.preTokenizerName(prefixed) == nil)
        let (model, _) = try loadTiny()
        try scratch { dir in
            let path = dir.appendingPathComponent("x.gguf").path
            let error = expectGGUFError(.unsupportedModel) { try writeGGUF(model: model, tokenizer: prefixed, to: path) }
            #expect(error?.field == "tokenizer")
            #expect(!FileManager.default.fileExists(atPath: path))
        }
    }

    @Test func adapterRefusals() throws {
        let (model, _) = try loadTiny()
        try scratch { dir in
            let path = dir.appendingPathComponent("a.gguf").path
            expectGGUFError(.invalidArgument) { try writeGGUFAdapter(model: model, lora: LoRAConfig(), to: path) }
            var rng = RNG(seed: 3)
            model.addLoRA(LoRAConfig(rank: 4, alpha: 8), rng: &rng)
            let error = expectGGUFError(.invalidArgument) {
                try writeGGUFAdapter(model: model, lora: LoRAConfig(rank: 4, alpha: 8, useRSLoRA: true), to: path)
            }
            #expect(error?.field == "model.layers.0.self_attn.q_proj")
            try writeGGUFAdapter(model: model, lora: LoRAConfig(rank: 4, alpha: 8), to: path)
            let file = try GGUFFile(path: path)
            #expect(file["adapter.lora.alpha"] == .float32(8))
            #expect(file.tensors.map(\.name).prefix(2) == ["blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b"])
            #expect(file.tensors.count == 2 * 2 * model.layers.count)
        }
    }
}

// MARK: - Writer round trips

@Suite struct GGUFRoundTrip {
    @Test(arguments: [32, 64, 1])
    func everyValueTypeAndTensor(alignment: Int) throws {
        let metadata: [(String, GGUFValue)] = [
            ("u8", .uint8(255)), ("i8", .int8(-128)), ("u16", .uint16(65535)), ("i16", .int16(-32768)),
            ("u32", .uint32(.max)), ("i32", .int32(.min)), ("u64", .uint64(.max)), ("i64", .int64(.min)),
            ("f32", .float32(-.infinity)), ("f64", .float64(.leastNonzeroMagnitude)), ("b", .bool(true)),
            ("s", .string("päth/\u{1F600}")), ("empty", .string("")),
            ("a.empty", .array(.uint8([]))), ("a.strings", .array(.string(["x", "", "yz"]))),
            ("a.nested", .array(.array([.array([.float64([1, 2])]), .array([])]))),
            ("a.bool", .array(.bool([false, true]))), ("a.i64", .array(.int64([.max, .min]))),
        ]
        var writer = GGUFWriter(alignment: alignment)
        for (k, v) in metadata { writer.add(k, v) }
        let a = Tensor(shape: [3, 5], values: (0..<15).map { Float($0) * 0.5 - 3 })
        let b = Tensor(shape: [2, 1, 3, 1], values: [1, -2, 65504, 0x1p-24, -0.0, .infinity])
        let c = Tensor(shape: [7], values: (0..<7).map { Float($0).squareRoot() })
        writer.add(tensor: "a", a)
        writer.add(tensor: "b.weight", b, type: .f16)
        writer.add(tensor: "c", c)
        try scratch { dir in
            let path = dir.appendingPathComponent("r.gguf").path
            try writer.write(to: path)
            let file = try GGUFFile(path: path)
            #expect(file.alignment == alignment)
            let expectedKeys = metadata.map(\.0) + (alignment == 32 ? [] : ["general.alignment"])
            #expect(file.metadata.map(\.key) == expectedKeys)
            for (k, v) in metadata { #expect(file[k] == v, "\(k)") }
            #expect(file.tensors.map(\.name) == ["a", "b.weight", "c"])
            #expect(file.tensor("b.weight")?.dims == [1, 3, 1, 2])
            #expect(file.tensors.allSatisfy { $0.offset % alignment == 0 })
            #expect(try file.read("a").values == a.values)
            #expect(try file.read("b.weight").values.map(\.bitPattern) == b.values.map(\.bitPattern))
            #expect(try file.read("c").values == c.values)
            let left = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            #expect(left == ["r.gguf"])
        }
    }

    @Test func writerRefusals() throws {
        try scratch { dir in
            let path = dir.appendingPathComponent("w.gguf").path
            let t = Tensor(shape: [2], values: [1, 2])
            func attempt(_ kind: GGUFError.Kind, _ build: (inout GGUFWriter) -> Void) {
                var w = GGUFWriter()
                build(&w)
                expectGGUFError(kind) { try w.write(to: path) }
            }
            attempt(.invalidName) { $0.add(tensor: String(repeating: "n", count: 64), t) }
            attempt(.invalidName) { $0.add(tensor: "", t) }
            attempt(.duplicateName) { w in
                w.add(tensor: "x", t)
                w.add(tensor: "x", t)
            }
            attempt(.duplicateKey) { w in
                w.add("k", .bool(true))
                w.add("k", .bool(false))
            }
            attempt(.invalidArgument) { $0.add(tensor: "q", t, type: .q8_0) }
            attempt(.invalidArgument) { $0.add(tensor: "s", Tensor(shape: [], values: [1])) }
            attempt(.invalidArgument) { $0.add(tensor: "big", Tensor.zeros([1, 1, 1, 1, 2])) }
            attempt(.invalidArgument) { $0.alignment = 48 }
            let left = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            #expect(left.isEmpty)
        }
    }
}

// MARK: - Hostile files

/// Little-endian bytes of a hand-made GGUF header (GGUFQuantTests.swift uses it too).
struct Bytes {
    var b: [UInt8] = []
    mutating func u8(_ v: UInt8) { b.append(v) }
    mutating func u32(_ v: UInt32) { for i in 0..<4 { b.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
    mutating func u64(_ v: UInt64) { for i in 0..<8 { b.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
    mutating func str(_ s: String) {
        u64(UInt64(s.utf8.count))
        b += s.utf8
    }
    mutating func pad(_ alignment: Int = 32) { while b.count % alignment != 0 { b.append(0) } }
    mutating func zeros(_ n: Int) { b += [UInt8](repeating: 0, count: n) }

    /// Magic, version, counts.
    static func header(tensors: UInt64, kvs: UInt64, version: UInt32 = 3) -> Bytes {
        var x = Bytes()
        x.b = Array("GGUF".utf8)
        x.u32(version)
        x.u64(tensors)
        x.u64(kvs)
        return x
    }

    mutating func tensor(_ name: String, dims: [UInt64], type: UInt32 = 0, offset: UInt64 = 0) {
        str(name)
        u32(UInt32(dims.count))
        for d in dims { u64(d) }
        u32(type)
        u64(offset)
    }

    /// One F32 tensor of `n` elements at offset 0, with its data.
    static func oneTensor(_ build: (inout Bytes) -> Void, data: Int) -> [UInt8] {
        var x = header(tensors: 1, kvs: 0)
        build(&x)
        x.pad()
        x.zeros(data)
        return x.b
    }
}

struct GGUFHostileCase: CustomTestStringConvertible, Sendable {
    var label: String
    var bytes: [UInt8]
    var kind: GGUFError.Kind
    /// The field the error must name (prefix).
    var field: String
    var testDescription: String { label }
}

private func kv(_ key: String, type: UInt32, _ value: (inout Bytes) -> Void) -> [UInt8] {
    var x = Bytes.header(tensors: 0, kvs: 1)
    x.str(key)
    x.u32(type)
    value(&x)
    x.zeros(8)  // room, so that counts are judged against real remaining bytes
    return x.b
}

private let hostileCases: [GGUFHostileCase] = {
    var cases: [GGUFHostileCase] = []
    func add(_ label: String, _ kind: GGUFError.Kind, _ field: String, _ bytes: [UInt8]) {
        cases.append(GGUFHostileCase(label: label, bytes: bytes, kind: kind, field: field))
    }
    add("shorter than the fixed header", .truncated, "header", Array("GGUF".utf8) + [3, 0, 0, 0])
    add("bad magic", .badMagic, "magic", Array("GGML".utf8) + [UInt8](repeating: 0, count: 28))
    add("version 1", .unsupportedVersion, "version", Bytes.header(tensors: 0, kvs: 0, version: 1).b)
    add("big-endian version", .unsupportedVersion, "version", Bytes.header(tensors: 0, kvs: 0, version: 3 << 24).b)
    add("tensor_count 2^62", .countTooLarge, "tensor_count", Bytes.header(tensors: 1 << 62, kvs: 0).b + [UInt8](repeating: 0, count: 64))
    add("metadata_kv_count 2^64-1", .countTooLarge, "metadata_kv_count", Bytes.header(tensors: 0, kvs: .max).b)
    add("more tensors than bytes", .countTooLarge, "tensor_count", Bytes.header(tensors: 3, kvs: 0).b + [UInt8](repeating: 0, count: 95))
    do {
        var x = Bytes.header(tensors: 0, kvs: 1)
        x.u64(1 << 40)
        x.zeros(16)
        add("key length 2^40", .stringTooLong, "metadata key #0", x.b)
        var y = Bytes.header(tensors: 0, kvs: 1)
        y.u64(2)
        y.b += [0xFF, 0xFE]
        y.u32(0)
        y.u8(0)
        add("key not UTF-8", .invalidUTF8, "metadata key #0", y.b)
    }
    add("string value length beyond the file", .stringTooLong, "key 'a'", kv("a", type: 8) { $0.u64(1000) })
    add("unknown value type", .unknownValueType, "key 'a' type", kv("a", type: 13) { $0.u64(0) })
    add("bool byte 2", .invalidBool, "key 'a'", kv("a", type: 7) { $0.u8(2) })
    add("value cut off", .truncated, "key 'a'", {
        var x = Bytes.header(tensors: 0, kvs: 1)
        x.str("a")
        x.u32(10)
        x.u32(7)  // half of a u64
        return x.b
    }())
    add("u32 array of 2^61", .arrayTooLong, "key 'a'", kv("a", type: 9) { x in x.u32(4); x.u64(1 << 61) })
    add("string array longer than the file", .arrayTooLong, "key 'a'", kv("a", type: 9) { x in x.u32(8); x.u64(3) })
    add("array element type unknown", .unknownValueType, "key 'a' element type", kv("a", type: 9) { x in x.u32(99); x.u64(0) })
    add("arrays nested 9 deep", .nestingTooDeep, "key 'a'", kv("a", type: 9) { x in
        for _ in 0..<9 { x.u32(9); x.u64(1) }
        x.u32(0)
        x.u64(0)
        x.zeros(64)
    })
    add("duplicate key", .duplicateKey, "key 'a'", {
        var x = Bytes.header(tensors: 0, kvs: 2)
        for _ in 0..<2 {
            x.str("a")
            x.u32(0)
            x.u8(1)
        }
        x.zeros(16)
        return x.b
    }())
    add("alignment 0", .invalidAlignment, "key 'general.alignment'", kv("general.alignment", type: 4) { $0.u32(0) })
    add("alignment 48", .invalidAlignment, "key 'general.alignment'", kv("general.alignment", type: 4) { $0.u32(48) })
    add("alignment as u64", .invalidAlignment, "key 'general.alignment'", kv("general.alignment", type: 10) { $0.u64(32) })
    add("empty tensor name", .invalidName, "tensor #0 name", Bytes.oneTensor({ $0.tensor("", dims: [1]) }, data: 32))
    add("64-byte tensor name", .invalidName, "tensor #0 name",
        Bytes.oneTensor({ $0.tensor(String(repeating: "x", count: 64), dims: [1]) }, data: 32))
    add("duplicate tensor name", .duplicateName, "tensor 'w'", {
        var x = Bytes.header(tensors: 2, kvs: 0)
        x.tensor("w", dims: [1])
        x.tensor("w", dims: [1], offset: 32)
        x.pad()
        x.zeros(64)
        return x.b
    }())
    add("n_dims 0", .invalidDimensions, "tensor 'w'", Bytes.oneTensor({ $0.tensor("w", dims: []); $0.zeros(8) }, data: 32))
    add("n_dims 5", .invalidDimensions, "tensor 'w'", Bytes.oneTensor({ $0.tensor("w", dims: [1, 1, 1, 1, 1]) }, data: 32))
    add("negative dimension", .invalidDimensions, "tensor 'w'", Bytes.oneTensor({ $0.tensor("w", dims: [1 << 63]) }, data: 32))
    add("element count overflow", .sizeOverflow, "tensor 'w'",
        Bytes.oneTensor({ $0.tensor("w", dims: [1 << 32, 1 << 32]) }, data: 32))
    add("byte count overflow", .sizeOverflow, "tensor 'w'", Bytes.oneTensor({ $0.tensor("w", dims: [1 << 62]) }, data: 32))
    add("unknown tensor type", .unknownTensorType, "tensor 'w'",
        Bytes.oneTensor({ $0.tensor("w", dims: [32], type: 31) }, data: 64))
    add("Q8_0 row of 31", .blockMismatch, "tensor 'w'", Bytes.oneTensor({ $0.tensor("w", dims: [31], type: 8) }, data: 64))
    add("Q4_K row of 128", .blockMismatch, "tensor 'w'", Bytes.oneTensor({ $0.tensor("w", dims: [128], type: 12) }, data: 256))
    add("Q4_1 data cut short", .offsetOutOfBounds, "tensor 'w'",
        Bytes.oneTensor({ $0.tensor("w", dims: [64], type: 3) }, data: 39))  // two blocks need 40 bytes
    add("misaligned offset", .misalignedOffset, "tensor 'w'", Bytes.oneTensor({ $0.tensor("w", dims: [1], offset: 4) }, data: 64))
    add("offset 2^40", .offsetOutOfBounds, "tensor 'w'", Bytes.oneTensor({ $0.tensor("w", dims: [1], offset: 1 << 40) }, data: 32))
    add("data past the end", .offsetOutOfBounds, "tensor 'w'", Bytes.oneTensor({ $0.tensor("w", dims: [16]) }, data: 32))
    add("data section missing", .offsetOutOfBounds, "tensor 'w'", {
        var x = Bytes.header(tensors: 1, kvs: 0)
        x.tensor("w", dims: [1])
        return x.b
    }())
    add("overlapping tensors", .overlap, "tensor 'b'", {
        var x = Bytes.header(tensors: 2, kvs: 0)
        x.tensor("a", dims: [16])
        x.tensor("b", dims: [16], offset: 32)
        x.pad()
        x.zeros(128)
        return x.b
    }())
    return cases
}()

@Suite struct GGUFHostileFiles {
    @Test(arguments: hostileCases)
    func refused(_ c: GGUFHostileCase) throws {
        try scratch { dir in
            let url = dir.appendingPathComponent("h.gguf")
            try Data(c.bytes).write(to: url)
            let error = expectGGUFError(c.kind) { _ = try GGUFFile(path: url.path) }
            #expect(error?.field?.hasPrefix(c.field) == true, "\(error.map { "\($0)" } ?? "")")
            #expect(error?.description.contains(url.path) == true)
        }
    }

    /// The smallest valid file (no tensors, no keys) and one valid tensor parse, so the
    /// hostile cases fail for their one defect.
    @Test func minimalFilesParse() throws {
        try scratch { dir in
            let empty = dir.appendingPathComponent("e.gguf"), one = dir.appendingPathComponent("o.gguf")
            try Data(Bytes.header(tensors: 0, kvs: 0).b).write(to: empty)
            let e = try GGUFFile(path: empty.path)
            #expect(e.tensors.isEmpty && e.metadata.isEmpty)
            try Data(Bytes.oneTensor({ $0.tensor("w", dims: [8]) }, data: 32)).write(to: one)
            let o = try GGUFFile(path: one.path)
            #expect(o.tensor("w")?.byteCount == 32)
            #expect(try o.read("w").values == [Float](repeating: 0, count: 8))
        }
    }

    @Test func notAFile() throws {
        try scratch { dir in
            expectGGUFError(.io) { _ = try GGUFFile(path: dir.path) }
            expectGGUFError(.io) { _ = try GGUFFile(path: dir.appendingPathComponent("missing.gguf").path) }
        }
    }
}

// MARK: - Manual llama.cpp check

/// Opt-in export for the manual llama.cpp check (not in CI; needs llama-cpp-python):
///   DISTILL_GGUF_EXPORT=/tmp/distill-gguf swift test --filter GGUFExportCheck
///   /tmp/distill-ref/bin/python tools/check_gguf.py /tmp/distill-gguf
/// For tiny_llama (tied, GQA), tiny_llama_untied and tiny_llama3 (Llama 3's rope scaling, so
/// base.gguf carries rope_freqs.weight), writes DIR/<name>/: base.gguf (F32),
/// base_f16.gguf, two adapters with random non-zero B (lora_qv.gguf: rank 4, alpha 8 on q and
/// v; lora_rs_all.gguf: rank 4, alpha 8, rsLoRA, all seven modules; for tiny_llama also
/// lora_peft.gguf, the PEFT fixture tiny_llama_peft made by peft), each adapter's merged
/// model as a Hugging Face directory (merged_<adapter>/, for `distill generate`), and
/// reference.json: the prompt ids, then per model (base and each adapter, computed by distill
/// with the adapters live) the 32 greedy tokens and the logits at every position of
/// prompt + greedy tokens.
@Suite struct GGUFExportCheck {
    struct Reference: Encodable {
        struct Run: Encodable {
            var greedy: [Int32]
            var logits: [[Float]]
        }
        var prompt: String
        var prompt_ids: [Int32]
        var runs: [String: Run]
    }

    @Test func exportForLlamaCpp() throws {
        guard let root = ProcessInfo.processInfo.environment["DISTILL_GGUF_EXPORT"] else { return }
        for name in ["tiny_llama", "tiny_llama_untied", "tiny_llama3"] {
            let dir = URL(fileURLWithPath: root).appendingPathComponent(name)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let (config, tensors, tokenizerData) = try HFModelDirectory.read(at: fixture(name))
            let tokenizer = try ByteLevelBPETokenizer(jsonData: try #require(tokenizerData))
            // tiny_llama3's own prompt runs past its original context (64 positions).
            let prompt = name == "tiny_llama3" ? try HFReferenceTests.load(name).1.prompt : "In the spring the fog"
            let promptIDs = tokenizer.encode(prompt)
            var reference = Reference(prompt: prompt, prompt_ids: promptIDs, runs: [:])
            func run(_ model: LlamaModel) -> Reference.Run {
                GradMode.withoutGrad {
                    let sampling = SamplingConfig(maxTokens: 32, temperature: 0)
                    let greedy = model.generate(prompts: [promptIDs], sampling: sampling)[0]
                    let ids = promptIDs + greedy.dropLast()
                    let logits = model.logits(ids: ids, batch: 1, length: ids.count).values
                    let v = config.vocabSize
                    return Reference.Run(
                        greedy: greedy, logits: (0..<ids.count).map { Array(logits[($0 * v)..<(($0 + 1) * v)]) })
                }
            }
            let base = try LlamaModel(config: config, parameters: tensors)
            try writeGGUF(model: base, tokenizer: tokenizer, name: name, to: dir.appendingPathComponent("base.gguf").path)
            try writeGGUF(
                model: base, tokenizer: tokenizer, dtype: .f16, name: name,
                to: dir.appendingPathComponent("base_f16.gguf").path)
            reference.runs["base"] = run(base)
            let adapters: [(String, LoRAConfig)] = [
                ("lora_qv", LoRAConfig(rank: 4, alpha: 8)),
                ("lora_rs_all", LoRAConfig(rank: 4, alpha: 8, useRSLoRA: true, targetModules: LoRAConfig.moduleNames)),
            ]
            for (seed, (adapterName, lora)) in adapters.enumerated() {
                let model = try LlamaModel(config: config, parameters: tensors.mapValues { $0.copy() })
                var rng = RNG(seed: UInt64(100 + seed))
                model.addLoRA(lora, rng: &rng)
                // B starts at zero; give it values large enough to change the greedy tokens.
                for (pname, t) in model.adapterParameters() where pname.contains("lora_B") {
                    let r = Tensor.randn(t.shape, std: 0.5, rng: &rng)
                    t.data.update(from: r.data, count: t.count)
                }
                try writeGGUFAdapter(
                    model: model, lora: lora, name: adapterName, to: dir.appendingPathComponent(adapterName + ".gguf").path)
                reference.runs[adapterName] = run(model)
                model.mergeAdapters()
                try HFModelDirectory.write(
                    config: config, tensors: Dictionary(uniqueKeysWithValues: model.namedParameters()),
                    tokenizerJSON: tokenizerData, to: dir.appendingPathComponent("merged_" + adapterName))
            }
            if name == "tiny_llama" {
                // The PEFT fixture (made by peft 0.21: rank 4, alpha 8, rsLoRA; q, v, up, down).
                let model = try LlamaModel(config: config, parameters: tensors.mapValues { $0.copy() })
                let peft = try PEFTAdapter.read(at: fixture("tiny_llama_peft"), config: config)
                let info = AdapterInfo(lora: peft.lora, baseChecksum: modelChecksum(model), basePath: nil)
                try model.attachAdapter(peft.tensors, info: info, path: "tiny_llama_peft", basePath: name)
                try writeGGUFAdapter(
                    model: model, lora: peft.lora, name: "lora_peft", to: dir.appendingPathComponent("lora_peft.gguf").path)
                reference.runs["lora_peft"] = run(model)
                try HFModelDirectory.write(
                    config: config, tensors: Dictionary(uniqueKeysWithValues: model.mergedParameters()),
                    tokenizerJSON: tokenizerData, to: dir.appendingPathComponent("merged_lora_peft"))
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try encoder.encode(reference).write(to: dir.appendingPathComponent("reference.json"))
        }
    }
}
