// A bias-free linear layer, y = x Wᵀ with W stored [out, in] as in Hugging Face.
// A class so that adapters (LoRA) can wrap or replace it in place and be found by type.
// W is an f32 tensor (trainable or frozen), or a frozen packed matrix in a quantized format
// (QLoRA's base, `LlamaModel.packed(_:)`): its products decode the blocks tile by tile and
// it never gets a gradient.

import Core

open class Linear {
    /// The f32 weight [out, in]; nil when the layer holds it packed.
    public let dense: Tensor?
    /// The frozen packed weight [out, in]; nil for an f32 layer.
    public let packed: PackedMatrix?

    public init(weight: Tensor) {
        precondition(weight.rank == 2, "linear weight must be [out, in], got \(weight.shape)")
        (dense, packed) = (weight, nil)
    }

    public init(packed: PackedMatrix) { (dense, self.packed) = (nil, packed) }

    /// A layer over `other`'s weight, dense or packed (for wrappers and replicas).
    public init(sameWeightAs other: Linear) { (dense, packed) = (other.dense, other.packed) }

    /// The f32 weight. A packed layer has none: callers that may meet one check `packed` first.
    public var weight: Tensor {
        guard let dense else { preconditionFailure("a packed (\(packed!.format.rawValue)) linear layer has no f32 weight") }
        return dense
    }

    public var inFeatures: Int { dense?.shape[1] ?? packed!.columns }
    public var outFeatures: Int { dense?.shape[0] ?? packed!.rows }

    /// [..., in] -> [..., out]
    open func callAsFunction(_ x: Tensor) -> Tensor {
        if let packed { return Tensor.linear(x, packed) }
        return Tensor.linear(x, weight)
    }
}
