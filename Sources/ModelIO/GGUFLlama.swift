// Llama models and LoRA adapters as llama.cpp GGUF files (architecture "llama").
//
// What is written follows llama.cpp's own converters (convert_hf_to_gguf.py for the model,
// convert_lora_to_gguf.py for adapters), so llama.cpp loads the files as it loads theirs:
// - hyperparameters under `llama.*` (context_length, embedding_length, block_count,
//   feed_forward_length, attention.head_count / head_count_kv / key_length / value_length /
//   layer_norm_rms_epsilon, rope.freq_base, rope.dimension_count, vocab_size);
// - the byte-level BPE tokenizer as tokenizer.ggml.model "gpt2": tokens padded to the
//   embedding's row count with "[PAD<i>]" (type UNUSED), token types (NORMAL 1, CONTROL 3
//   for special added tokens, USER_DEFINED 4 for the other added tokens, UNUSED 5), merges
//   as "left right", bos/eos ids, add_bos_token, and tokenizer.ggml.pre naming the
//   pre-tokenizer llama.cpp must apply ("gpt-2", "llama-bpe", "qwen2" or "smollm": GPT-2's
//   ByteLevel after a Digits(individual_digits) split, as SmolLM2's); GGUFTokenizer.swift
//   reads these keys back;
// - tensors under ggml names (token_embd, blk.N.attn_q, ..., output_norm, output when
//   untied). 1-D norm weights stay F32 in an F16 export, as the converter keeps them;
// - for Llama 3's rope scaling, rope_freqs.weight first (the converter yields it before the
//   model's tensors): F32, one divisor per rotary pair, computed as the converter computes it
//   (`RopeScaling.frequencyFactors`, Sources/Core/Rope.swift). llama.cpp divides each pair's
//   frequency by it, which is transformers' llama3 scaling; no metadata key says so.
//
// RoPE layout. distill (like transformers) rotates dimension j of a head with j + D/2;
// llama.cpp's "llama" architecture rotates neighbours 2i and 2i+1. The converter reorders
// the rows of W_q (per query head) and W_k (per key/value head) so that the neighbour
// rotation computes the same attention scores: within each head, new row 2i + j is old row
// j * D/2 + i (i < D/2, j in {0, 1}). A LoRA delta s·B·A changes W's rows through B's rows,
// so an adapter's B gets the same reordering for q_proj and k_proj; A is unchanged.
//
// LoRA scaling. llama.cpp scales an adapter by adapter.lora.alpha / r (r = B's column
// count). distill's rsLoRA scale alpha / sqrt(r) is written as alpha' = alpha · sqrt(r), so
// alpha' / r gives the same factor.

import Core
import Formats
import Foundation
import NN
import TextData

/// Element type of the weight matrices in an export.
package enum GGUFExportType: String, Sendable, CaseIterable {
    case f32, f16, q8_0, q4_0, q4_1

    var tensorType: GGUFTensorType {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .q8_0: .q8_0
        case .q4_0: .q4_0
        case .q4_1: .q4_1
        }
    }

    /// general.file_type (llama_ftype): ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q4_1 3,
    /// MOSTLY_Q8_0 7.
    var fileType: UInt32 {
        switch self {
        case .f32: 0
        case .f16: 1
        case .q4_0: 2
        case .q4_1: 3
        case .q8_0: 7
        }
    }
}

/// llama.cpp token types (llama_token_type).
package enum GGUFTokenType: Int32, Sendable {
    case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

package enum LlamaGGUF {
    /// The ggml name of a distill (Hugging Face) parameter name.
    package static func tensorName(_ hfName: String) -> String? {
        switch hfName {
        case "model.embed_tokens.weight": return "token_embd.weight"
        case "model.norm.weight": return "output_norm.weight"
        case "lm_head.weight": return "output.weight"
        default: break
        }
        let parts = hfName.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 5, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]) else { return nil }
        let rest = parts[3...].joined(separator: ".")
        return layerTensors.first { $0.hf == rest }.map { "blk.\(layer).\($0.ggml)" }
    }

    /// A layer's tensors: the name after `model.layers.N.` and after `blk.N.`.
    static let layerTensors: [(hf: String, ggml: String)] = [
        ("input_layernorm.weight", "attn_norm.weight"), ("self_attn.q_proj.weight", "attn_q.weight"),
        ("self_attn.k_proj.weight", "attn_k.weight"), ("self_attn.v_proj.weight", "attn_v.weight"),
        ("self_attn.o_proj.weight", "attn_output.weight"), ("post_attention_layernorm.weight", "ffn_norm.weight"),
        ("mlp.gate_proj.weight", "ffn_gate.weight"), ("mlp.up_proj.weight", "ffn_up.weight"),
        ("mlp.down_proj.weight", "ffn_down.weight"),
    ]

    /// The heads whose rows the rotary permutation reorders in the weight (or LoRA B) of `name`
    /// (`...q_proj[.weight]`, `...k_proj[.weight]`), or nil for a tensor it leaves alone.
    package static func rotaryHeads(_ name: String, _ c: LlamaConfig) -> Int? {
        let module = name.hasSuffix(".weight") ? String(name.dropLast(7)) : name
        if module.hasSuffix("q_proj") { return c.numAttentionHeads }
        if module.hasSuffix("k_proj") { return c.numKeyValueHeads }
        return nil
    }

    /// Reorders the rows of `w` ([heads * D, cols]) from the rotate-half layout to llama.cpp's
    /// neighbour-pair layout: within each head, new row 2i + j is old row j * D/2 + i.
    package static func interleaveRotaryRows(_ w: Tensor, heads: Int) -> Tensor {
        permuteRotaryRows(w, heads: heads, toNeighbourPairs: true)
    }

    /// Reorders the rows of `w` ([heads * D, cols]) from llama.cpp's neighbour-pair layout back to
    /// the rotate-half layout: within each head, row 2i + j goes to row j * D/2 + i.
    package static func deinterleaveRotaryRows(_ w: Tensor, heads: Int, in arena: HugePageArena? = nil) -> Tensor {
        permuteRotaryRows(w, heads: heads, toNeighbourPairs: false, in: arena)
    }

    /// The same reordering on rows of stored blocks ([rows, row bytes], a quantized tensor's
    /// data: blocks never cross a row).
    package static func deinterleaveRotaryRows(_ bytes: [UInt8], rows: Int, heads: Int) -> [UInt8] {
        let width = bytes.count / rows
        var out = [UInt8](repeating: 0, count: bytes.count)
        for (to, from) in rotaryRowSources(rows: rows, heads: heads, toNeighbourPairs: false).enumerated() {
            out[(to * width)..<((to + 1) * width)] = bytes[(from * width)..<((from + 1) * width)]
        }
        return out
    }

    private static func permuteRotaryRows(
        _ w: Tensor, heads: Int, toNeighbourPairs: Bool, in arena: HugePageArena? = nil
    ) -> Tensor {
        precondition(w.rank == 2, "rotary rows of a matrix, got \(w.shape)")
        let cols = w.shape[1]
        let out = Tensor.empty(w.shape, in: arena)
        for (to, from) in rotaryRowSources(rows: w.shape[0], heads: heads, toNeighbourPairs: toNeighbourPairs).enumerated() {
            (out.data + to * cols).update(from: w.data + from * cols, count: cols)
        }
        return out
    }

    /// Row i of the reordered matrix is row `sources[i]` of the original.
    private static func rotaryRowSources(rows: Int, heads: Int, toNeighbourPairs: Bool) -> [Int] {
        precondition(heads > 0 && rows % (2 * heads) == 0, "\(rows) rows do not split into \(heads) heads of even size")
        let d = rows / heads, half = d / 2
        var sources = [Int](repeating: 0, count: rows)
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 {
                    let halves = h * d + j * half + i, pairs = h * d + 2 * i + j
                    if toNeighbourPairs { sources[pairs] = halves } else { sources[halves] = pairs }
                }
            }
        }
        return sources
    }

    /// llama.cpp's rope_freqs.weight for a model with Llama 3's rope scaling ([D/2] divisors of
    /// the unscaled frequencies), nil for unscaled rope.
    package static func ropeFrequencyFactors(_ c: LlamaConfig) -> Tensor? {
        guard let scaling = c.ropeScaling else { return nil }
        let plain = RopeTable.inverseFrequencies(headDim: c.headDim, theta: Float(c.ropeTheta))
        return Tensor(shape: [plain.count], values: scaling.frequencyFactors(plain))
    }

    /// The pre-tokenizer name llama.cpp needs to split text as `tokenizer` does, or nil when
    /// llama.cpp has no equivalent.
    package static func preTokenizerName(_ tokenizer: ByteLevelBPETokenizer) -> String? {
        let steps = tokenizer.preTokenizer.steps
        if steps.count == 1, case .byteLevel(addPrefixSpace: false, useRegex: true) = steps[0] { return "gpt-2" }
        if steps.count == 2, case .split(.digits(individual: true), .isolated, invert: false) = steps[0],
            case .byteLevel(addPrefixSpace: false, useRegex: true) = steps[1]
        {
            return "smollm"
        }
        guard steps.count == 2, case .byteLevel(addPrefixSpace: false, useRegex: false) = steps[1],
            case .split(let pattern, .isolated, invert: false) = steps[0]
        else { return nil }
        switch pattern {
        case .gpt2: return "gpt-2"
        case .llama3(maxDigits: 3): return "llama-bpe"
        case .llama3(maxDigits: 1): return "qwen2"
        default: return nil
        }
    }

    /// The tokenizer.ggml.* metadata for `tokenizer` with `vocabSize` tokens (the model's
    /// embedding rows).
    package static func tokenizerMetadata(
        _ tokenizer: ByteLevelBPETokenizer, vocabSize: Int, config: LlamaConfig, path: String
    ) throws -> [(String, GGUFValue)] {
        func unsupported(_ hint: String) -> GGUFError {
            GGUFError(.unsupportedModel, file: path, field: "tokenizer", hint: hint)
        }
        guard tokenizer.decoderKind == .byteLevel else {
            throw unsupported("the tokenizer has no ByteLevel decoder; llama.cpp's \"gpt2\" tokenizer model needs one")
        }
        guard let pre = preTokenizerName(tokenizer) else {
            throw unsupported(
                "its pre-tokenizer is not one llama.cpp implements (GPT-2 ByteLevel, alone or after Digits(individual_digits), or a Llama-3 / Qwen2 Split + ByteLevel); llama.cpp would split text differently"
            )
        }
        guard tokenizer.vocabSize <= vocabSize else {
            throw unsupported(
                "the tokenizer has \(tokenizer.vocabSize) ids but the model's vocab_size is \(vocabSize); the embedding needs a row per token")
        }
        var tokens: [String] = []
        var types: [Int32] = []
        tokens.reserveCapacity(vocabSize)
        types.reserveCapacity(vocabSize)
        let added = Dictionary(tokenizer.addedTokens.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for i in 0..<vocabSize {
            let id = Int32(i)
            if let token = added[id] {
                tokens.append(token.content)
                types.append((token.special ? GGUFTokenType.control : .userDefined).rawValue)
            } else if let token = tokenizer.model.token(of: id) {
                tokens.append(token)
                types.append(GGUFTokenType.normal.rawValue)
            } else {
                tokens.append("[PAD\(i)]")
                types.append(GGUFTokenType.unused.rawValue)
            }
        }
        var merges: [String] = []
        merges.reserveCapacity(tokenizer.model.merges.count)
        for (left, right) in tokenizer.model.merges {
            guard !left.contains(" "), !right.contains(" ") else {
                throw unsupported("the merge (\"\(left)\", \"\(right)\") contains a space, which GGUF's \"left right\" merge strings cannot hold")
            }
            merges.append(left + " " + right)
        }
        var out: [(String, GGUFValue)] = [
            (GGUFTokenizerKey.model, .string("gpt2")),
            (GGUFTokenizerKey.pre, .string(pre)),
            (GGUFTokenizerKey.tokens, .array(.string(tokens))),
            (GGUFTokenizerKey.tokenType, .array(.int32(types))),
            (GGUFTokenizerKey.merges, .array(.string(merges))),
        ]
        let prefix = tokenizer.templatePrefix
        let bos = config.bosTokenId ?? prefix.first.map(Int.init)
        let eos = config.eosTokenId ?? tokenizer.id(for: "<|endoftext|>").map(Int.init)
        if let bos, bos >= 0, bos < vocabSize { out.append((GGUFTokenizerKey.bosTokenID, .uint32(UInt32(bos)))) }
        if let eos, eos >= 0, eos < vocabSize { out.append((GGUFTokenizerKey.eosTokenID, .uint32(UInt32(eos)))) }
        out.append((GGUFTokenizerKey.addBOSToken, .bool(prefix.count == 1 && bos.map { Int32($0) } == prefix.first)))
        out.append((GGUFTokenizerKey.addEOSToken, .bool(false)))
        return out
    }
}

/// Writes the weights `model` computes with (enabled LoRA adapters folded into their base
/// weights, as `mergedParameters()`; disable them to write the base alone) and `tokenizer`
/// as a llama.cpp GGUF file. `name` becomes general.name; `chatTemplate` (Jinja) becomes
/// tokenizer.chat_template.
package func writeGGUF(
    model: LlamaModel, tokenizer: ByteLevelBPETokenizer, dtype: GGUFExportType = .f32, name: String = "distill",
    chatTemplate: String? = nil, to path: String
) throws {
    let c = model.config
    var writer = GGUFWriter()
    writer.add("general.architecture", .string("llama"))
    writer.add("general.type", .string("model"))
    writer.add("general.name", .string(name))
    try addHyperparameters(c, to: &writer, path: path)
    writer.add("general.file_type", .uint32(dtype.fileType))
    writer.add("general.quantization_version", .uint32(2))
    for (key, value) in try LlamaGGUF.tokenizerMetadata(tokenizer, vocabSize: c.vocabSize, config: c, path: path) {
        writer.add(key, value)
    }
    if let chatTemplate { writer.add(GGUFTokenizerKey.chatTemplate, .string(chatTemplate)) }
    if let factors = LlamaGGUF.ropeFrequencyFactors(c) {
        writer.add(tensor: "rope_freqs.weight", factors, type: .f32)
    }
    for (hfName, tensor) in model.mergedParameters() {
        guard let ggml = LlamaGGUF.tensorName(hfName) else {
            preconditionFailure("LlamaModel parameter \(hfName) has no ggml name")
        }
        let data = LlamaGGUF.rotaryHeads(hfName, c).map { LlamaGGUF.interleaveRotaryRows(tensor, heads: $0) } ?? tensor
        // Vectors stay f32; a matrix whose rows are not whole quantization blocks stays f16; the
        // token embedding and output matrix keep Q8_0 under a 4-bit type, as llama.cpp's quantizer does.
        var type = tensor.rank == 1 ? .f32 : dtype.tensorType
        if let format = WeightFormat(ggml: type) {
            type = format.fits(columns: tensor.shape[1]) ? WeightFormat.forMatrix(hfName, format).ggml : .f16
        }
        writer.add(tensor: ggml, data, type: type)
    }
    try writer.write(to: path)
}

/// Writes the LoRA adapters attached to `model` (by `addLoRA` or loaded) as a llama.cpp
/// GGUF LoRA adapter: general.type "adapter", adapter.type "lora", adapter.lora.alpha, and
/// `blk.N.<module>.weight.lora_a` ([r, in], ggml ne = [in, r]) / `.lora_b` ([out, r], ne =
/// [r, out]) per adapted module, B's rows reordered for q_proj and k_proj. `lora` must be
/// the configuration the adapters were made with.
package func writeGGUFAdapter(
    model: LlamaModel, lora: LoRAConfig, dtype: GGUFExportType = .f32, name: String = "distill-adapter",
    to path: String
) throws {
    let c = model.config
    var writer = GGUFWriter()
    writer.add("general.architecture", .string("llama"))
    writer.add("general.type", .string("adapter"))
    writer.add("general.name", .string(name))
    writer.add("general.file_type", .uint32(dtype.fileType))
    writer.add("adapter.type", .string("lora"))
    // llama.cpp multiplies by alpha / r; rsLoRA's alpha / sqrt(r) is alpha * sqrt(r) / r.
    let rank = Double(lora.rank)
    let alpha = lora.useRSLoRA ? lora.alpha * rank.squareRoot() : lora.alpha
    writer.add("adapter.lora.alpha", .float32(Float(alpha)))
    var count = 0
    for (i, layer) in model.layers.enumerated() {
        for (module, linear) in layer.modules {
            guard let adapter = linear as? LoRALinear else { continue }
            let field = "model.layers.\(i).\(module)"
            guard adapter.a.shape[0] == lora.rank, abs(adapter.scale - lora.scale) <= 1e-6 * abs(lora.scale) else {
                throw GGUFError(
                    .invalidArgument, file: path, field: field,
                    hint:
                        "the adapter has rank \(adapter.a.shape[0]) and scale \(adapter.scale), but the LoRA config says rank \(lora.rank) and scale \(lora.scale)"
                )
            }
            guard let base = LlamaGGUF.tensorName(field + ".weight") else {
                preconditionFailure("LlamaLayer module \(module) has no ggml name")
            }
            var b = adapter.b
            if let heads = LlamaGGUF.rotaryHeads(module, c) { b = LlamaGGUF.interleaveRotaryRows(b, heads: heads) }
            writer.add(tensor: base + ".lora_a", adapter.a, type: dtype.tensorType)
            writer.add(tensor: base + ".lora_b", b, type: dtype.tensorType)
            count += 1
        }
    }
    guard count > 0 else {
        throw GGUFError(.invalidArgument, file: path, hint: "the model has no LoRA adapters to export")
    }
    try writer.write(to: path)
}

private func addHyperparameters(_ c: LlamaConfig, to writer: inout GGUFWriter, path: String) throws {
    func u32(_ key: String, _ value: Int) throws {
        guard let v = UInt32(exactly: value) else {
            throw GGUFError(.unsupportedModel, file: path, field: "key '\(key)'", hint: "\(value) does not fit in a u32")
        }
        writer.add(key, .uint32(v))
    }
    try u32("llama.block_count", c.numHiddenLayers)
    try u32("llama.context_length", c.maxPositionEmbeddings)
    try u32("llama.embedding_length", c.hiddenSize)
    try u32("llama.feed_forward_length", c.intermediateSize)
    try u32("llama.attention.head_count", c.numAttentionHeads)
    try u32("llama.attention.head_count_kv", c.numKeyValueHeads)
    try u32("llama.attention.key_length", c.headDim)
    try u32("llama.attention.value_length", c.headDim)
    writer.add("llama.rope.freq_base", .float32(Float(c.ropeTheta)))
    writer.add("llama.attention.layer_norm_rms_epsilon", .float32(Float(c.rmsNormEps)))
    try u32("llama.rope.dimension_count", c.headDim)
    try u32("llama.vocab_size", c.vocabSize)
}
