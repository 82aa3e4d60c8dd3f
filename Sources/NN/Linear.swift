// A bias-free linear layer, y = x Wᵀ with W stored [out, in] as in Hugging Face.
// A class so that adapters (LoRA) can wrap or replace it in place and be found by type.

import Core

open class Linear {
    public let weight: Tensor  // [out, in]

    public init(weight: Tensor) {
        precondition(weight.rank == 2, "linear weight must be [out, in], got \(weight.shape)")
        self.weight = weight
    }

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    /// [..., in] -> [..., out]
    open func callAsFunction(_ x: Tensor) -> Tensor { Tensor.linear(x, weight) }
}
