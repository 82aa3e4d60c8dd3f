// The decode engine: a Llama model's forward for inference alone, with its weights packed
// once (f32 in place, or quantized: Q8_0, Q4_0, Q4_1) and a KV cache of independent slots.
// A step runs any tokens of any slots together, each at its own position (a prefill is many
// tokens of a few slots, a decode step one token of each), with no tape and no allocation:
// per layer one product for q, k and v, one for o, one for gate and up, one for down, each
// split over the threads as one piece of work; attention reads each token's own slot, except
// that decode tokens of slots holding copies of the same positions (a shared prompt prefix, a
// prompt's k samples) attend to those together.
//
// Same model as `LlamaModel.logits` (HF semantics): the tests hold the two within float
// rounding for f32 weights, and report the quantized formats' cost in perplexity.
//
// Shapes: N tokens in a step, C hidden, H query heads, G kv heads, D head dim, F MLP width,
// V vocabulary, W = (H + 2G) D the fused q/k/v width.

import Core
import Foundation

public final class DecodeEngine: @unchecked Sendable {
    public let config: LlamaConfig
    /// The format asked for; a matrix whose rows are not whole blocks stays f32.
    public let format: WeightFormat

    /// A LoRA adapter kept beside its (packed) base: y += scale (x Aᵀ) Bᵀ.
    package struct Adapter {
        let a: Tensor  // [r, in]
        let b: Tensor  // [out, r]
        let scale: Float
    }

    struct Projection {
        let matrix: PackedMatrix
        let adapter: Adapter?
    }

    struct Layer {
        let inputNorm, postNorm: Tensor  // [C]
        let q, k, v, o, gate, up, down: Projection
    }

    let embedding: PackedMatrix  // [V, C]
    let head: PackedMatrix  // [V, C]: the embedding when tied
    let norm: Tensor  // [C]
    let layers: [Layer]
    let inverseFrequencies: [Float]

    /// `model` on `weights`: `file` uses `blocks` where given and f32 elsewhere; the formats
    /// quantize every matrix (and ignore `blocks`).
    public convenience init(model: LlamaModel, weights: InferenceWeights = .f32, blocks: [String: PackedMatrix] = [:]) {
        switch weights {
        case .f32: self.init(model: model, format: .f32)
        case .bf16: self.init(model: model, format: .bf16)
        case .q8_0: self.init(model: model, format: .q8_0)
        case .q4_0: self.init(model: model, format: .q4_0)
        case .q4_1: self.init(model: model, format: .q4_1)
        case .file: self.init(model: model, format: .f32, blocks: blocks)
        }
    }

    /// `model`'s weights in `format` (`WeightFormat.forMatrix`: the embedding and output keep
    /// Q8_0 under the 4-bit formats). f32 reads the model's tensors in place (no copy); the
    /// quantized formats copy them into blocks, back to back in one `HugePageArena`. A matrix
    /// named in `blocks` (a quantized file's own blocks, the same values as the model's
    /// tensor) is copied there as it is instead. Enabled
    /// LoRA adapters are applied beside their base (which is quantized with the rest); disabled
    /// ones are left out.
    package convenience init(model: LlamaModel, format: WeightFormat, blocks: [String: PackedMatrix] = [:]) {
        let layers = model.layers
        // A model holding packed matrices (QLoRA's base) runs them as they are.
        let blocks = blocks.merging(model.packedParameters()) { _, held in held }
        let named = Dictionary(uniqueKeysWithValues: model.namedParameters())
        func adapter(_ linear: Linear) -> Adapter? {
            guard let lora = linear as? LoRALinear, lora.enabled else { return nil }
            return Adapter(a: lora.a, b: lora.b, scale: lora.scale)
        }
        let arena = HugePageArena()  // the quantized blocks in layer order, on huge pages
        self.init(
            config: model.config, format: format,
            matrix: { name in
                if let stored = blocks[name]?.interleavedCopy(in: arena) {
                    let parts = name.split(separator: ".")
                    let module = parts.count == 6 ? layers[Int(parts[2])!].modules.first { $0.0 == "\(parts[3]).\(parts[4])" }?.1 : nil
                    return (stored, module.flatMap(adapter))
                }
                if name == "model.embed_tokens.weight" || name == "lm_head.weight" {
                    let w = name == "lm_head.weight" ? model.lmHead.weight : model.embedTokens
                    return (PackedMatrix(w, format: WeightFormat.forMatrix(name, format).for(w), interleave: true, in: arena), nil)
                }
                let parts = name.split(separator: ".")  // model.layers.i.self_attn.q_proj.weight
                let module = layers[Int(parts[2])!].modules.first { $0.0 == "\(parts[3]).\(parts[4])" }!.1
                return (PackedMatrix(module.weight, format: format.for(module.weight), interleave: true, in: arena), adapter(module))
            },
            tensor: { named[$0]! })
    }

    /// `base`'s packed weights (shared, not copied) with the enabled adapters `model` carries
    /// beside them: `model` is the base's model with one adapter attached. Several adapters
    /// over one base cost their own tensors only.
    package convenience init(sharing base: DecodeEngine, adaptersOf model: LlamaModel) {
        precondition(model.config == base.config, "the adapted model's config differs from the base engine's")
        func adapter(_ linear: Linear) -> Adapter? {
            guard let lora = linear as? LoRALinear, lora.enabled else { return nil }
            return Adapter(a: lora.a, b: lora.b, scale: lora.scale)
        }
        let named = ["self_attn.q_proj": \Layer.q, "self_attn.k_proj": \Layer.k, "self_attn.v_proj": \Layer.v,
            "self_attn.o_proj": \Layer.o, "mlp.gate_proj": \Layer.gate, "mlp.up_proj": \Layer.up, "mlp.down_proj": \Layer.down]
        self.init(
            config: base.config, format: base.format,
            matrix: { name in
                if name == "model.embed_tokens.weight" { return (base.embedding, nil) }
                if name == "lm_head.weight" { return (base.head, nil) }
                let parts = name.split(separator: ".")  // model.layers.i.self_attn.q_proj.weight
                let (i, module) = (Int(parts[2])!, "\(parts[3]).\(parts[4])")
                let linear = model.layers[i].modules.first { $0.0 == module }!.1
                return (base.layers[i][keyPath: named[module]!].matrix, adapter(linear))
            },
            tensor: { name in
                if name == "model.norm.weight" { return base.norm }
                let parts = name.split(separator: ".")  // model.layers.i.input_layernorm.weight
                let layer = base.layers[Int(parts[2])!]
                return parts[3] == "input_layernorm" ? layer.inputNorm : layer.postNorm
            })
    }

    /// An engine over matrices by their Hugging Face names (`matrix` returns the packed
    /// weight and any adapter of a projection; for the embedding and lm_head the adapter is
    /// ignored) and the norm weights (`tensor`).
    package init(
        config: LlamaConfig, format: WeightFormat, matrix: (String) -> (PackedMatrix, Adapter?),
        tensor: (String) -> Tensor
    ) {
        self.config = config
        self.format = format
        embedding = matrix("model.embed_tokens.weight").0
        head = config.tieWordEmbeddings ? embedding : matrix("lm_head.weight").0
        norm = tensor("model.norm.weight")
        layers = (0..<config.numHiddenLayers).map { i in
            let p = "model.layers.\(i)."
            func proj(_ name: String) -> Projection {
                let (m, a) = matrix(p + name + ".weight")
                return Projection(matrix: m, adapter: a)
            }
            return Layer(
                inputNorm: tensor(p + "input_layernorm.weight"), postNorm: tensor(p + "post_attention_layernorm.weight"),
                q: proj("self_attn.q_proj"), k: proj("self_attn.k_proj"), v: proj("self_attn.v_proj"),
                o: proj("self_attn.o_proj"), gate: proj("mlp.gate_proj"), up: proj("mlp.up_proj"),
                down: proj("mlp.down_proj"))
        }
        inverseFrequencies = RopeTable.inverseFrequencies(
            headDim: config.headDim, theta: Float(config.ropeTheta), scaling: config.ropeScaling)
    }

    /// Bytes of the packed weights (an f32 matrix counted once even when the model shares it).
    public var weightBytes: Int {
        var seen = Set<ObjectIdentifier>()
        var total = 0
        func add(_ m: PackedMatrix) { if seen.insert(ObjectIdentifier(m)).inserted { total += m.bytes } }
        add(embedding)
        add(head)
        for l in layers { for p in [l.q, l.k, l.v, l.o, l.gate, l.up, l.down] { add(p.matrix) } }
        return total
    }
}

extension WeightFormat {
    /// This format for a [R, K] weight when its rows are whole blocks, else f32.
    func `for`(_ w: Tensor) -> WeightFormat { fits(columns: w.shape[1]) ? self : .f32 }
}

/// A KV cache of `slots` independent sequences of up to `capacity` positions each, and the
/// engine's working buffers. One state serves one caller at a time.
public final class DecodeState {
    public let engine: DecodeEngine
    public let slots: Int
    public let capacity: Int
    /// Positions cached per slot.
    public private(set) var lengths: [Int]

    /// Tokens one pass of the layers takes at most; longer steps run in chunks.
    package static let chunk = 256

    /// Per effective layer, [slots, capacity, G, D] keys and values.
    private let keys: [UnsafeMutablePointer<Float>]
    private let values: [UnsafeMutablePointer<Float>]
    private let kvWidth: Int  // G * D

    /// Runs of positions that several slots hold as copies of one slot's (a batch's common
    /// prompt prefix; the rest of a prompt its k samples share): the decode tokens of those
    /// slots attend to each run together (`attendShared`), reading it once per step. nil: ended.
    private var spans: [(source: Int, positions: Range<Int>)?] = []
    /// Per slot, the spans it holds, in order and contiguous from position 0.
    private var slotSpans: [[Int]]
    /// Decode tokens that attended to shared spans together, over all steps.
    package private(set) var sharedAttentionTokens = 0
    /// `attendShared`'s per-query outputs and softmax statistics, grown as needed.
    private var sharedScratch = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private var sharedScratchCount = 1

    // Working buffers for `chunk` tokens.
    private let x, h, qkv, attn, out, gateUp, act: UnsafeMutablePointer<Float>
    private let low: UnsafeMutablePointer<Float>  // [chunk, r] an adapter's x Aᵀ
    private var logits: UnsafeMutablePointer<Float>
    private var logitRows = 0
    private let products = ProductScratch()

    public init(engine: DecodeEngine, slots: Int, capacity: Int) {
        let c = engine.config
        precondition(slots >= 1 && capacity >= 1, "a decode state needs slots and capacity, got \(slots) x \(capacity)")
        (self.engine, self.slots, self.capacity) = (engine, slots, capacity)
        lengths = Array(repeating: 0, count: slots)
        slotSpans = Array(repeating: [], count: slots)
        kvWidth = c.numKeyValueHeads * c.headDim
        let cacheCount = slots * capacity * kvWidth
        keys = (0..<c.effectiveLayers).map { _ in .allocate(capacity: cacheCount) }
        values = (0..<c.effectiveLayers).map { _ in .allocate(capacity: cacheCount) }
        let n = Self.chunk
        let w = (c.numAttentionHeads + 2 * c.numKeyValueHeads) * c.headDim
        x = .allocate(capacity: n * c.hiddenSize)
        h = .allocate(capacity: n * c.hiddenSize)
        out = .allocate(capacity: n * c.hiddenSize)
        qkv = .allocate(capacity: n * w)
        attn = .allocate(capacity: n * c.numAttentionHeads * c.headDim)
        gateUp = .allocate(capacity: n * 2 * c.intermediateSize)
        act = .allocate(capacity: n * c.intermediateSize)
        let rank = engine.layers.flatMap { [$0.q, $0.k, $0.v, $0.o, $0.gate, $0.up, $0.down] }
            .compactMap { $0.adapter?.a.shape[0] }.max() ?? 1
        low = .allocate(capacity: n * rank)
        logits = .allocate(capacity: 1)
    }

    deinit {
        for p in keys + values + [x, h, out, qkv, attn, gateUp, act, low, logits, sharedScratch] { p.deallocate() }
    }

    /// Bytes of the KV cache.
    public var cacheBytes: Int { 2 * keys.count * slots * capacity * kvWidth * MemoryLayout<Float>.size }

    /// Forgets what slot `slot` holds.
    public func reset(slot: Int) {
        lengths[slot] = 0
        unshare(slot, keeping: 0)
    }

    /// Keeps the first `length` positions of slot `slot` and forgets the rest: the next token
    /// goes to position `length`, reusing the keys and values of the prefix.
    public func truncate(slot: Int, to length: Int) {
        precondition(length >= 0 && length <= lengths[slot], "slot \(slot) holds \(lengths[slot]) positions, not \(length)")
        lengths[slot] = length
        unshare(slot, keeping: length)
    }

    /// Makes slot `to` a copy of slot `from`: its cached positions, keys and values.
    public func copy(slot from: Int, to: Int) {
        guard from != to else { return }
        let n = lengths[from] * kvWidth
        for cache in keys + values {
            (cache + to * capacity * kvWidth).update(from: cache + from * capacity * kvWidth, count: n)
        }
        lengths[to] = lengths[from]
        unshare(to, keeping: 0)
        slotSpans[to] = liveSpans(from)
    }

    /// Declares that slots `rows` hold `positions` of slot `source` as copies (a batch's common
    /// prompt prefix, or the rest of a prompt its samples share): their decode tokens then
    /// attend to those positions together. Each row's shared positions must so far end where
    /// `positions` starts. A slot leaves the span when it is reset, truncated into it or copied
    /// into; the span ends when `source` loses those positions.
    package func share(_ positions: Range<Int>, of source: Int, with rows: [Int]) {
        precondition(
            !positions.isEmpty && positions.upperBound <= lengths[source],
            "slot \(source) holds \(lengths[source]) positions, not \(positions)")
        spans.append((source, positions))
        for r in rows {
            precondition(lengths[r] >= positions.upperBound, "slot \(r) holds \(lengths[r]) positions, fewer than \(positions)")
            slotSpans[r] = liveSpans(r)
            let end = slotSpans[r].last.map { spans[$0]!.positions.upperBound } ?? 0
            precondition(end == positions.lowerBound, "slot \(r)'s shared positions end at \(end), not \(positions.lowerBound)")
            slotSpans[r].append(spans.count - 1)
        }
    }

    /// The spans slot `slot` still holds: the leading ones that have not ended.
    private func liveSpans(_ slot: Int) -> [Int] {
        Array(slotSpans[slot].prefix { spans[$0] != nil })
    }

    /// Slot `slot` now holds only its first `length` positions as they were.
    private func unshare(_ slot: Int, keeping length: Int) {
        slotSpans[slot] = liveSpans(slot).filter { spans[$0]!.positions.upperBound <= length }
        for k in spans.indices where spans[k]?.source == slot && spans[k]!.positions.upperBound > length { spans[k] = nil }
    }

    /// Makes slot `to` hold the first `count` cached positions of slot `from` of `other`, a state
    /// of the same engine.
    public func copy(_ count: Int, positionsOf from: Int, in other: DecodeState, to: Int) {
        precondition(other.engine === engine, "copying keys and values between states of different engines")
        precondition(count <= other.lengths[from] && count <= capacity, "\(count) positions of \(other.lengths[from]) into \(capacity)")
        let n = count * kvWidth
        for (mine, theirs) in zip(keys + values, other.keys + other.values) {
            (mine + to * capacity * kvWidth).update(from: theirs + from * other.capacity * kvWidth, count: n)
        }
        lengths[to] = count
        unshare(to, keeping: 0)
    }

    /// Runs tokens `ids` through the model, token i appended to slot `slots[i]` at that slot's
    /// next position (a slot's tokens in order), and returns the next-token logits after the
    /// tokens at indices `outputs`: [outputs.count, V], valid until the next call.
    @discardableResult
    public func step(ids: [Int32], slots tokenSlots: [Int], outputs: [Int]) -> UnsafeMutablePointer<Float> {
        let c = engine.config
        precondition(ids.count == tokenSlots.count, "\(ids.count) tokens for \(tokenSlots.count) slots")
        for id in ids { precondition(id >= 0 && Int(id) < c.vocabSize, "token id \(id) out of range for vocabulary \(c.vocabSize)") }
        var positions = [Int](repeating: 0, count: ids.count)
        for (i, s) in tokenSlots.enumerated() {
            precondition(s >= 0 && s < slots, "slot \(s) of \(slots)")
            positions[i] = lengths[s]
            lengths[s] += 1
            precondition(lengths[s] <= capacity, "slot \(s) is full: \(capacity) positions")
        }
        if outputs.count > logitRows {
            logits.deallocate()
            logits = .allocate(capacity: outputs.count * c.vocabSize)
            logitRows = outputs.count
        }
        var start = 0
        func runChunks() {
            while start < ids.count {
                let end = min(ids.count, start + Self.chunk)
                let wanted = outputs.enumerated().filter { (start..<end).contains($0.element) }
                run(
                    ids: Array(ids[start..<end]), slots: Array(tokenSlots[start..<end]),
                    positions: Array(positions[start..<end]),
                    outputs: wanted.map { ($0.element - start, $0.offset) })
                start = end
            }
        }
        // A decode step is hundreds of short parallel pieces: the workers wait for them
        // spinning. A prefill's pieces are long enough for sleeping workers (which leave the
        // cores to OpenBLAS's threads).
        if ids.count < PackedMatrix.sgemmFrom { Spinning.run(runChunks) } else { runChunks() }
        return logits
    }

    /// The mean of the model's final hidden states (after the final RMSNorm, the vectors the
    /// output head reads) over the tokens `ids`, prefilled into slot `slot` after what it holds:
    /// [C]. No logits are computed. A learned router's view of a prompt (docs/routing.md).
    public func meanHidden(ids: [Int32], slot: Int) -> [Float] {
        let c = engine.config
        precondition(!ids.isEmpty, "the mean hidden state of no tokens")
        for id in ids { precondition(id >= 0 && Int(id) < c.vocabSize, "token id \(id) out of range for vocabulary \(c.vocabSize)") }
        precondition(slot >= 0 && slot < slots, "slot \(slot) of \(slots)")
        precondition(lengths[slot] + ids.count <= capacity, "slot \(slot) cannot hold \(ids.count) more positions")
        let pool = UnsafeMutablePointer<Float>.allocate(capacity: c.hiddenSize)
        defer { pool.deallocate() }
        pool.initialize(repeating: 0, count: c.hiddenSize)
        var start = 0
        while start < ids.count {
            let end = min(ids.count, start + Self.chunk)
            let positions = Array(lengths[slot]..<(lengths[slot] + end - start))
            lengths[slot] += end - start
            run(ids: Array(ids[start..<end]), slots: Array(repeating: slot, count: end - start), positions: positions, outputs: [], pool: pool)
            start = end
        }
        let scale = 1 / Float(ids.count)
        return (0..<c.hiddenSize).map { pool[$0] * scale }
    }

    /// One pass of every layer over up to `chunk` tokens; logits of token `outputs[i].0` go
    /// to row `outputs[i].1`. With `pool`, every token's final hidden state is added to it.
    private func run(
        ids: [Int32], slots tokenSlots: [Int], positions: [Int], outputs: [(Int, Int)], pool: UnsafeMutablePointer<Float>? = nil
    ) {
        let e = engine, c = e.config
        let n = ids.count
        let (cw, hd, d, g, f) = (
            c.hiddenSize, c.numAttentionHeads * c.headDim, c.headDim, c.numKeyValueHeads, c.intermediateSize
        )
        let w = hd + 2 * g * d
        let eps = Float(c.rmsNormEps)
        let (x, h, qkv, attn, out, gateUp, act) = (x, h, qkv, attn, out, gateUp, act)
        let (keys, values, kvWidth, capacity) = (keys, values, kvWidth, capacity)
        let table = RopeTable(positions: positions.map { Int32($0) }, inverseFrequencies: e.inverseFrequencies)
        let runs = slotRuns(tokenSlots)
        let together = sharedAttentionPlan(runs: runs, slots: tokenSlots)
        sharedAttentionTokens += together.tokens.count
        parallelChunks(n, grain: 16) { r in
            for t in r { e.embedding.decode(rows: Int(ids[t])..<(Int(ids[t]) + 1), into: x + t * cw) }
        }
        for layer in 0..<c.effectiveLayers {
            let l = e.layers[layer / c.layerRepeat]
            normRows(x, l.inputNorm, into: h, n: n, c: cw, eps: eps)
            project(h, n: n, [(l.q, qkv, w), (l.k, qkv + hd, w), (l.v, qkv + hd + g * d, w)])
            let (kc, vc) = (keys[layer], values[layer])
            table.cos.withUnsafeBufferPointer { cos in
                table.sin.withUnsafeBufferPointer { sin in
                    for t in 0..<n {
                        let row = qkv + t * w
                        let cs = cos.baseAddress! + t * d / 2, sn = sin.baseAddress! + t * d / 2
                        rotateHeads(row, heads: c.numAttentionHeads + g, d: d, cos: cs, sin: sn)  // q and k
                        let at = (tokenSlots[t] * capacity + positions[t]) * kvWidth
                        (kc + at).update(from: row + hd, count: kvWidth)
                        (vc + at).update(from: row + hd + kvWidth, count: kvWidth)
                    }
                }
            }
            // Attention. A slot's run of many tokens (a prefill) goes through the tiled attention
            // of the autograd model on copies of its queries and cached keys; the other tokens are
            // work items of one (token, query head) each, over their slot's keys so far.
            let heads = c.numAttentionHeads, group = heads / g
            var single: [Int] = []
            for run in runs {
                guard run.count >= Self.tiledAttentionFrom else {
                    if !together.covers(run.lowerBound) { single += Array(run) }
                    continue
                }
                let (t, keysSoFar) = (run.count, positions[run.upperBound - 1] + 1)
                let base = tokenSlots[run.lowerBound] * capacity * kvWidth
                let q = Tensor.empty([1, t, heads, d]), k = Tensor.empty([1, keysSoFar, g, d])
                let v = Tensor.empty([1, keysSoFar, g, d])
                for (i, token) in run.enumerated() { (q.data + i * hd).update(from: qkv + token * w, count: hd) }
                k.data.update(from: kc + base, count: keysSoFar * kvWidth)
                v.data.update(from: vc + base, count: keysSoFar * kvWidth)
                let o = Tensor.attention(q: q, k: k, v: v)  // [1, T, H, D], queries the last T of the keys
                (attn + run.lowerBound * hd).update(from: o.data, count: t * hd)
            }
            if !together.tokens.isEmpty {
                attendShared(together, keys: kc, values: vc, qkv: qkv, positions: positions, slots: tokenSlots)
            }
            parallelChunks(single.count * heads) { items in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: capacity) { scratch in
                    for item in items {
                        let (t, head) = (single[item / heads], item % heads)
                        let base = tokenSlots[t] * capacity * kvWidth + (head / group) * d
                        attendToken(
                            q: qkv + t * w + head * d, heads: 1, kvHeads: 1, headDim: d, keys: kc + base,
                            values: vc + base, count: positions[t] + 1, stride: kvWidth, out: attn + t * hd + head * d,
                            scratch: scratch.baseAddress!)
                    }
                }
            }
            project(attn, n: n, [(l.o, out, cw)])
            addRows(out, into: x, count: n * cw)
            normRows(x, l.postNorm, into: h, n: n, c: cw, eps: eps)
            project(h, n: n, [(l.gate, gateUp, 2 * f), (l.up, gateUp + f, 2 * f)])
            parallelChunks(n, grain: 8) { r in
                for t in r { swigluRow(gateUp + t * 2 * f, gateUp + t * 2 * f + f, act + t * f, f) }
            }
            project(act, n: n, [(l.down, out, cw)])
            addRows(out, into: x, count: n * cw)
        }
        if let pool {
            for t in 0..<n {
                _ = rmsNormRow(x + t * cw, e.norm.data, h, cw, eps: eps)
                for j in 0..<cw { pool[j] += h[j] }
            }
        }
        guard !outputs.isEmpty else { return }
        for (i, (t, _)) in outputs.enumerated() {
            _ = rmsNormRow(x + t * cw, e.norm.data, h + i * cw, cw, eps: eps)
        }
        let m = outputs.count, v = c.vocabSize
        // Logit rows asked for in consecutive order take one product; others one product each.
        if outputs.enumerated().allSatisfy({ $0.offset == $0.element.1 - outputs[0].1 }) {
            PackedMatrix.multiply(h, n: m, [PackedProduct(e.head, into: logits + outputs[0].1 * v, ldy: v)], scratch: products)
        } else {
            for (i, (_, row)) in outputs.enumerated() {
                PackedMatrix.multiply(h + i * cw, n: 1, [PackedProduct(e.head, into: logits + row * v, ldy: v)], scratch: products)
            }
        }
    }

    /// Tokens of one slot in a row from which attention runs tiled (Tensor.attention).
    static let tiledAttentionFrom = 16

    /// Shared positions (a slot's spans together) from which decode tokens attend to them together.
    static let sharedAttentionFrom = 64

    /// The shortest span `generate` declares shared.
    package static let shortestSpan = 16

    /// Which of a step's tokens attend to shared spans together, and to which.
    struct SharedAttentionPlan {
        /// The tokens, each in a run of its slot shorter than `tiledAttentionFrom`.
        var tokens: [Int] = []
        /// Per token, where its own positions start (the end of its spans).
        var own: [Int] = []
        /// The spans read: source slot, positions, and the indices into `tokens` that read it.
        var spans: [(source: Int, positions: Range<Int>, readers: [Int])] = []
        /// Per token, the spans it reads and its place among each one's readers.
        var reads: [[(span: Int, reader: Int)]] = []
        private var included = Set<Int>()
        private var planned: [Int: Int] = [:]  // a state's span index -> index in `spans`

        func covers(_ token: Int) -> Bool { included.contains(token) }

        /// Adds `token`, which reads the state's spans `held` (indices, with their content).
        mutating func add(_ token: Int, reading held: [(index: Int, source: Int, positions: Range<Int>)]) {
            let i = tokens.count
            tokens.append(token)
            included.insert(token)
            own.append(held.last!.positions.upperBound)
            var mine: [(span: Int, reader: Int)] = []
            for span in held {
                let k: Int
                if let known = planned[span.index] {
                    k = known
                } else {
                    k = spans.count
                    spans.append((span.source, span.positions, []))
                    planned[span.index] = k
                }
                spans[k].readers.append(i)
                mine.append((k, spans[k].readers.count - 1))
            }
            reads.append(mine)
        }
    }

    /// The plan for one step: tokens of slots whose live spans reach `sharedAttentionFrom`.
    private func sharedAttentionPlan(runs: [Range<Int>], slots tokenSlots: [Int]) -> SharedAttentionPlan {
        var plan = SharedAttentionPlan()
        for run in runs where run.count < Self.tiledAttentionFrom {
            let held = liveSpans(tokenSlots[run.lowerBound]).map { ($0, spans[$0]!.source, spans[$0]!.positions) }
            guard let last = held.last, last.2.upperBound >= Self.sharedAttentionFrom else { continue }
            for t in run { plan.add(t, reading: held) }
        }
        return plan
    }

    /// Attention of one layer for the plan's tokens into `attn`. Each span runs per kv head as
    /// two products over blocks of its readers' queries (their scores against the span's keys,
    /// then the exponentials times its values), so a step reads a span once rather than once
    /// per row; the positions after a token's spans are its own (`attendToken`, with its
    /// softmax's statistics), and `mergeAttention` joins the parts into one softmax. Equal to
    /// attending to every position at once up to float rounding; the result depends only on
    /// the plan and the thread count, not on anything an earlier step left.
    private func attendShared(
        _ plan: SharedAttentionPlan, keys kc: UnsafeMutablePointer<Float>, values vc: UnsafeMutablePointer<Float>,
        qkv: UnsafeMutablePointer<Float>, positions: [Int], slots tokenSlots: [Int]
    ) {
        let c = engine.config
        let (heads, g, d) = (c.numAttentionHeads, c.numKeyValueHeads, c.headDim)
        let (group, hd, w) = (heads / g, heads * d, (heads + 2 * g) * d)
        let (kvWidth, capacity, attn) = (kvWidth, capacity, attn)
        let scale = 1 / Float(d).squareRoot()
        // Per span, its readers' queries per kv head in order (reader, head within the group);
        // per query the span's weighted values [d], then its softmax maximum and sum.
        var base: [Int] = [], total = 0
        for span in plan.spans {
            base.append(total)
            total += g * span.readers.count * group
        }
        if total * (d + 2) > sharedScratchCount {
            sharedScratch.deallocate()
            sharedScratchCount = total * (d + 2)
            sharedScratch = .allocate(capacity: sharedScratchCount)
        }
        let weighted = sharedScratch, stats = sharedScratch + total * d
        // Work items: (span, kv head, first query row) over blocks of rows, about four per thread.
        var items: [(span: Int, kv: Int, first: Int, rows: Int)] = []
        let blocksPerHead = max(1, (4 * Threads.count + g * plan.spans.count - 1) / (g * plan.spans.count))
        var longest = 0
        for (k, span) in plan.spans.enumerated() {
            let perHead = span.readers.count * group
            let blockRows = (perHead + blocksPerHead - 1) / blocksPerHead
            longest = max(longest, blockRows * (d + span.positions.count))
            for kv in 0..<g {
                for first in stride(from: 0, to: perHead, by: blockRows) {
                    items.append((k, kv, first, min(blockRows, perHead - first)))
                }
            }
        }
        BLAS.singleThreaded {
            parallelChunks(items.count) { chunk in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: longest) { buffer in
                    for (k, kv, first, rows) in items[chunk] {
                        let span = plan.spans[k]
                        let (n, perHead) = (span.positions.count, span.readers.count * group)
                        let q = buffer.baseAddress!, scores = q + rows * d
                        for i in 0..<rows {
                            let t = plan.tokens[span.readers[(first + i) / group]]
                            (q + i * d).update(from: qkv + t * w + (kv * group + (first + i) % group) * d, count: d)
                        }
                        let from = (span.source * capacity + span.positions.lowerBound) * kvWidth + kv * d
                        BLAS.sgemm(
                            transA: false, transB: true, m: rows, n: n, k: d, alpha: scale, a: q, lda: d,
                            b: kc + from, ldb: kvWidth, c: scores, ldc: n, split: false)
                        let at = base[k] + kv * perHead + first
                        for i in 0..<rows {
                            let row = scores + i * n
                            var top = -Float.infinity
                            for j in 0..<n { top = max(top, row[j]) }
                            stats[2 * (at + i)] = top
                            stats[2 * (at + i) + 1] = expShiftedSum(row, row, n, shift: top)
                        }
                        BLAS.sgemm(
                            transA: false, transB: false, m: rows, n: d, k: n, a: scores, lda: n, b: vc + from,
                            ldb: kvWidth, c: weighted + at * d, ldc: d, split: false)
                    }
                }
            }
        }
        parallelChunks(plan.tokens.count * heads) { items in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: capacity + 2) { scratch in
                let own = scratch.baseAddress! + 2
                for item in items {
                    let (i, head) = (item / heads, item % heads)
                    let t = plan.tokens[i]
                    let from = (tokenSlots[t] * capacity + plan.own[i]) * kvWidth + (head / group) * d
                    let out = attn + t * hd + head * d
                    attendToken(
                        q: qkv + t * w + head * d, heads: 1, kvHeads: 1, headDim: d, keys: kc + from, values: vc + from,
                        count: positions[t] + 1 - plan.own[i], stride: kvWidth, out: out, scratch: own,
                        stats: scratch.baseAddress!)
                    var (top, sum) = (scratch[0], scratch[1])
                    for (k, reader) in plan.reads[i] {
                        let perHead = plan.spans[k].readers.count * group
                        let at = base[k] + (head / group) * perHead + reader * group + head % group
                        (top, sum) = mergeAttention(
                            out, top: top, total: sum, weighted: weighted + at * d, firstTop: stats[2 * at],
                            firstTotal: stats[2 * at + 1], d: d)
                    }
                }
            }
        }
    }

    /// Index ranges of consecutive tokens of the same slot.
    private func slotRuns(_ slots: [Int]) -> [Range<Int>] {
        guard !slots.isEmpty else { return [] }
        var runs: [Range<Int>] = []
        var start = 0
        for i in 1...slots.count where i == slots.count || slots[i] != slots[start] {
            runs.append(start..<i)
            start = i
        }
        return runs
    }

    /// Runs the products of one input, then each projection's adapter.
    private func project(_ input: UnsafeMutablePointer<Float>, n: Int, _ targets: [(DecodeEngine.Projection, UnsafeMutablePointer<Float>, Int)]) {
        PackedMatrix.multiply(input, n: n, targets.map { PackedProduct($0.0.matrix, into: $0.1, ldy: $0.2) }, scratch: products)
        for (p, y, ldy) in targets {
            guard let a = p.adapter else { continue }
            let (r, k, o) = (a.a.shape[0], a.a.shape[1], a.b.shape[0])
            BLAS.sgemm(transA: false, transB: true, m: n, n: r, k: k, a: input, lda: k, b: a.a.data, ldb: k, c: low, ldc: r)  // [N, r]
            BLAS.sgemm(
                transA: false, transB: true, m: n, n: o, k: r, alpha: a.scale, a: low, lda: r, b: a.b.data, ldb: r,
                beta: 1, c: y, ldc: ldy)  // [N, out] +=
        }
    }

    private func normRows(_ x: UnsafeMutablePointer<Float>, _ weight: Tensor, into y: UnsafeMutablePointer<Float>, n: Int, c: Int, eps: Float) {
        let w = weight.data
        parallelChunks(n, grain: 32) { r in
            for t in r { _ = rmsNormRow(x + t * c, w, y + t * c, c, eps: eps) }
        }
    }

    private func addRows(_ y: UnsafeMutablePointer<Float>, into x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] += y[i] }
    }
}

extension DecodeEngine {
    /// The summed cross-entropy (nats) of `targets` after `ids`: `rows` sequences of `length`
    /// tokens, each scored from position 0 (for perplexity on the engine's weights).
    public func totalLoss(ids: [Int32], targets: [Int32], rows: Int, length: Int) -> Double {
        precondition(ids.count == rows * length && targets.count == ids.count, "\(ids.count) ids, \(targets.count) targets for \(rows) x \(length)")
        let state = DecodeState(engine: self, slots: 1, capacity: length)
        let v = config.vocabSize
        var total = 0.0
        for r in 0..<rows {
            state.reset(slot: 0)
            let span = (r * length)..<((r + 1) * length)
            let logits = state.step(
                ids: Array(ids[span]), slots: Array(repeating: 0, count: length), outputs: Array(0..<length))
            let rowTargets = Array(targets[span])
            let parts = UnsafeMutablePointer<Double>.allocate(capacity: length)
            defer { parts.deallocate() }
            parallelChunks(length, grain: 16) { rows in
                for t in rows { parts[t] = -logProbability(logits + t * v, v, rowTargets[t]) }
            }
            for t in 0..<length { total += parts[t] }
        }
        return total
    }
}

/// Which weights generation runs on: the model's f32 tensors, a quantized copy made at load, or
/// a quantized file's own blocks (what llama.cpp runs on the same GGUF file).
public enum InferenceWeights: String, CaseIterable, Sendable, Codable {
    case f32, bf16, q8_0, q4_0, q4_1
    /// The file's quantized tensors as stored (a GGUF model with Q8_0, Q4_0 or Q4_1 tensors:
    /// `DecodeEngine`'s `blocks`); tensors of other types run in f32.
    case file

    /// "f32, bf16, q8_0, q4_0, q4_1, file", for help and errors.
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

