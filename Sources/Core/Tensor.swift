// Tensor: a shape over contiguous row-major Float32 storage, and the reverse-mode tape.
//
// Each op computes its result and, when any input requires a gradient and grad mode is on,
// records a `Node` holding its inputs and a closure that accumulates the input gradients
// from the output gradient. The closure keeps exactly what the backward needs.
//
// Shape legend used across Core: B batch, T time (sequence), H query heads, G key/value
// heads, D head dim, C channels (model width), F MLP width, V vocabulary, N rows (B*T).

import Foundation

public final class Tensor {
    public let shape: [Int]
    public let storage: Storage
    /// Set on leaves (parameters, inputs) that want a gradient; propagated to op outputs.
    public var requiresGrad: Bool
    /// Accumulated gradient, same shape; nil until a backward pass reaches this tensor.
    public var grad: Tensor?
    /// An optional name for messages (parameter names are Hugging Face names).
    public var name: String?
    package var node: Node?

    /// Elements in the shape. A tensor reads the first `count` elements of its storage
    /// (the storage may be larger: a KV cache exposes the filled prefix of its buffer).
    public let count: Int
    public var rank: Int { shape.count }
    @inline(__always) public var data: UnsafeMutablePointer<Float> { storage.pointer }

    /// Wraps existing storage, which must hold at least the shape's element count.
    public init(shape: [Int], storage: Storage, requiresGrad: Bool = false) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        let count = Self.elementCount(shape)
        precondition(count <= storage.count, "shape \(shape) needs \(count) elements, storage has \(storage.count)")
        self.count = count
        self.shape = shape
        self.storage = storage
        self.requiresGrad = requiresGrad
    }

    public convenience init(shape: [Int], values: [Float], requiresGrad: Bool = false) {
        precondition(
            values.count == Self.elementCount(shape), "shape \(shape) needs \(Self.elementCount(shape)) values, got \(values.count)")
        let s = Storage(uninitialized: values.count)
        values.withUnsafeBufferPointer { s.pointer.update(from: $0.baseAddress!, count: values.count) }
        self.init(shape: shape, storage: s, requiresGrad: requiresGrad)
    }

    public static func zeros(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        Tensor(shape: shape, storage: Storage(zeroed: elementCount(shape)), requiresGrad: requiresGrad)
    }

    public static func full(_ shape: [Int], _ value: Float, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(shape: shape, storage: Storage(uninitialized: elementCount(shape)), requiresGrad: requiresGrad)
        t.data.update(repeating: value, count: t.count)
        return t
    }

    /// Uninitialised: every element must be written before it is read.
    public static func empty(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, storage: Storage(uninitialized: elementCount(shape)))
    }

    /// Uninitialised, in `arena` when given and `shape` is a matrix (a model's weights as they
    /// are loaded), else the pool's. Vectors stay out of the arena: a model's norm weights
    /// remain f32 when its matrices are packed (QLoRA), and a few kilobytes of them would keep
    /// the regions of all the dropped matrices alive.
    public static func empty(_ shape: [Int], in arena: HugePageArena?) -> Tensor {
        guard let arena, shape.count >= 2 else { return empty(shape) }
        return Tensor(shape: shape, storage: Storage(uninitialized: elementCount(shape), in: arena))
    }

    /// Normal(mean, std) entries drawn from `rng`.
    public static func randn(_ shape: [Int], std: Float = 1, mean: Float = 0, rng: inout RNG, requiresGrad: Bool = false)
        -> Tensor
    {
        let t = empty(shape)
        for i in 0..<t.count { t.data[i] = mean + std * Float(rng.normal()) }
        t.requiresGrad = requiresGrad
        return t
    }

    /// Uniform(low, high) entries drawn from `rng`.
    public static func uniform(_ shape: [Int], low: Float, high: Float, rng: inout RNG, requiresGrad: Bool = false)
        -> Tensor
    {
        let t = empty(shape)
        for i in 0..<t.count { t.data[i] = low + (high - low) * Float(rng.uniform()) }
        t.requiresGrad = requiresGrad
        return t
    }

    public static func elementCount(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    /// The values as an array (copies).
    public var values: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// The single value of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item needs a one-element tensor, shape is \(shape)")
        return data[0]
    }

    /// A new leaf sharing this tensor's storage, cut from the tape.
    public func detached() -> Tensor { Tensor(shape: shape, storage: storage) }

    /// A deep copy (new storage), cut from the tape.
    public func copy() -> Tensor {
        let t = Tensor.empty(shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// Sets the gradient to zero, keeping its buffer for the next step.
    public func zeroGrad() {
        if let g = grad { g.data.update(repeating: 0, count: g.count) }
    }

    /// The gradient buffer, created zero-filled on first use. Backward closures accumulate
    /// into it (`+=`, sgemm with beta 1).
    package func gradBuffer() -> UnsafeMutablePointer<Float> {
        if let g = grad { return g.data }
        let g = Tensor.zeros(shape)
        grad = g
        return g.data
    }
}

/// One recorded op: its inputs and the closure that accumulates their gradients.
package final class Node {
    let inputs: [Tensor]
    /// Receives the output's gradient (same shape as the output).
    let backward: (UnsafeMutablePointer<Float>) -> Void

    init(inputs: [Tensor], backward: @escaping (UnsafeMutablePointer<Float>) -> Void) {
        self.inputs = inputs
        self.backward = backward
    }
}

// MARK: - Grad mode

public enum GradMode {
    @TaskLocal static var enabled = true

    /// Whether ops currently record the tape.
    public static var isEnabled: Bool { enabled }

    /// Runs `body` without recording the tape (inference, evaluation, optimizer updates).
    public static func withoutGrad<R>(_ body: () throws -> R) rethrows -> R {
        try $enabled.withValue(false, operation: body)
    }
}

extension Tensor {
    /// Records `backward` for `output` when grad mode is on and some input requires a
    /// gradient. Op implementations call this once, right after computing the forward.
    @inline(__always)
    package static func record(
        _ output: Tensor, _ inputs: [Tensor], _ backward: @escaping (UnsafeMutablePointer<Float>) -> Void
    ) {
        guard GradMode.isEnabled, inputs.contains(where: { $0.requiresGrad }) else { return }
        output.requiresGrad = true
        output.node = Node(inputs: inputs, backward: backward)
    }

    /// Reverse-mode pass from this tensor. A one-element tensor is seeded with 1; otherwise
    /// pass `seed` (same shape). Leaf gradients accumulate across calls until `zeroGrad`;
    /// the intermediate gradients and the recorded graph are released as the pass goes.
    public func backward(seed: Tensor? = nil) {
        precondition(requiresGrad, "backward() on a tensor that does not require grad (shape \(shape))")
        if let seed {
            precondition(seed.shape == shape, "backward seed shape \(seed.shape) != tensor shape \(shape)")
        } else {
            precondition(count == 1, "backward() without a seed needs a one-element tensor, shape is \(shape)")
        }
        // Topological order by iterative depth-first search over recorded nodes.
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (t, expanded) = stack.popLast() {
            if expanded {
                order.append(t)
                continue
            }
            guard visited.insert(ObjectIdentifier(t)).inserted else { continue }
            stack.append((t, true))
            if let node = t.node {
                for input in node.inputs where input.requiresGrad && !visited.contains(ObjectIdentifier(input)) {
                    stack.append((input, false))
                }
            }
        }
        let g = gradBuffer()
        if let seed {
            for i in 0..<count { g[i] += seed.data[i] }
        } else {
            g[0] += 1
        }
        for t in order.reversed() {
            guard let node = t.node else { continue }
            if let grad = t.grad { node.backward(grad.data) }
            t.node = nil
            t.grad = nil
        }
    }
}

extension Tensor {
    /// The index of the first element that is NaN or infinite, or nil when all are finite.
    public func firstNonFinite() -> Int? {
        let p = data
        for i in 0..<count where !p[i].isFinite { return i }
        return nil
    }
}

extension Tensor {
    /// `body(x)` without keeping its activations (activation checkpointing, Chen et al. 2016):
    /// the forward's own tape is dropped as soon as it returns, keeping only the output's
    /// values, and the backward runs `body` again on x and back-propagates through that run.
    /// Memory: the tape holds x instead of everything `body` computes; time: one more forward
    /// of `body`. `parameters` are the trainable tensors `body` reads (their gradients come
    /// from the second run). `body` must compute the same function both times: a caller with
    /// random draws inside (dropout) replays their state. Both runs record the tape, so ops
    /// that behave differently while training (dropout) do so in both.
    public static func checkpointed(_ x: Tensor, parameters: [Tensor], _ body: @escaping (Tensor) -> Tensor) -> Tensor {
        guard GradMode.isEnabled, x.requiresGrad || parameters.contains(where: \.requiresGrad) else { return body(x) }
        // A leaf over x's values: a run's graph ends there instead of reaching into x's.
        func run() -> (input: Tensor, output: Tensor) {
            let input = Tensor(shape: x.shape, storage: x.storage, requiresGrad: x.requiresGrad)
            return (input, body(input))
        }
        let first = run().output
        let y = Tensor(shape: first.shape, storage: first.storage)  // the values, without the graph
        record(y, [x] + parameters) { dy in
            let (input, out) = GradMode.$enabled.withValue(true) { run() }
            guard out.requiresGrad else { return }
            let seed = Tensor.empty(out.shape)
            seed.data.update(from: dy, count: seed.count)
            out.backward(seed: seed)
            guard x.requiresGrad, let g = input.grad else { return }
            if x.grad == nil {
                x.grad = g
            } else {
                let dst = x.gradBuffer()
                for i in 0..<g.count { dst[i] += g.data[i] }
            }
        }
        return y
    }
}
