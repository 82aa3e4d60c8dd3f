// Loads the golden values written by tools/make_fixtures.py (PyTorch, float64 reference)
// and runs the matching distill op on the same float32 inputs.

import Core
import Foundation

struct FixtureTensor: Decodable {
    var shape: [Int]
    var data: [Double]
    var tensor: Tensor { Tensor(shape: shape, values: data.map(Float.init)) }
}

struct FixtureInts: Decodable {
    var shape: [Int]
    var data: [Int]
    var int32: [Int32] { data.map(Int32.init) }
}

enum Attr: Decodable {
    case bool(Bool), number(Double), ints([Int]), strings([String]), null

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let d = try? c.decode(Double.self) {
            self = .number(d)
        } else if let i = try? c.decode([Int].self) {
            self = .ints(i)
        } else {
            self = .strings(try c.decode([String].self))
        }
    }

    var bool: Bool { if case .bool(let b) = self { return b } else { fatalError("not a bool: \(self)") } }
    var number: Double { if case .number(let d) = self { return d } else { fatalError("not a number: \(self)") } }
    var int: Int? { if case .number(let d) = self { return Int(d) } else { return nil } }
    var ints: [Int] { if case .ints(let i) = self { return i } else { fatalError("not an int list: \(self)") } }
    var strings: [String] { if case .strings(let s) = self { return s } else { return [] } }
}

struct OpCase: Decodable {
    var name: String
    var op: String
    var attrs: [String: Attr]
    var inputs: [String: FixtureTensor]
    var ints: [String: FixtureInts]
    var upstream: FixtureTensor
    var output: FixtureTensor
    var grads: [String: FixtureTensor]

    /// Float inputs that receive gradients, in a stable order.
    var gradInputs: [String] { inputs.keys.filter { !(attrs["noGrad"]?.strings ?? []).contains($0) }.sorted() }
}

struct OpFile: Decodable { var cases: [OpCase] }

enum Fixtures {
    static func url(_ name: String) -> URL {
        guard let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures") else {
            fatalError("fixture \(name) missing from the test bundle; regenerate with tools/make_fixtures.py")
        }
        return url
    }

    static func load<T: Decodable>(_ type: T.Type, _ name: String) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(contentsOf: url(name)))
        } catch {
            fatalError("cannot decode fixture \(name): \(error)")
        }
    }

    static let ops: [OpCase] = load(OpFile.self, "ops.json").cases
    static var opNames: [String] { ops.map(\.name) }
    static func op(_ name: String) -> OpCase { ops.first { $0.name == name }! }
}

/// Runs the distill op a fixture case names, on tensors built from its inputs.
func runOp(_ c: OpCase, _ x: [String: Tensor]) -> Tensor {
    let a = c.attrs
    let ints = c.ints
    switch c.op {
    case "matmul", "bmm":
        return Tensor.matmul(x["a"]!, x["b"]!, transposeA: a["transA"]!.bool, transposeB: a["transB"]!.bool)
    case "add": return x["a"]! + x["b"]!
    case "sub": return x["a"]! - x["b"]!
    case "mul": return x["a"]! * x["b"]!
    case "div": return x["a"]! / x["b"]!
    case "add_scalar": return x["x"]! + Float(a["scalar"]!.number)
    case "mul_scalar": return x["x"]! * Float(a["scalar"]!.number)
    case "pow_scalar": return x["x"]!.pow(Float(a["scalar"]!.number))
    case "sum": return x["x"]!.sum(axis: a["axis"]!.int, keepDims: a["keepDims"]!.bool)
    case "mean": return x["x"]!.mean(axis: a["axis"]!.int, keepDims: a["keepDims"]!.bool)
    case "max": return x["x"]!.max(axis: a["axis"]!.int, keepDims: a["keepDims"]!.bool)
    case "permute": return x["x"]!.permuted(a["perm"]!.ints)
    case "transpose": return x["x"]!.transposed(a["dim0"]!.int!, a["dim1"]!.int!)
    case "slice": return x["x"]!.slice(axis: a["axis"]!.int!, a["start"]!.int!..<a["end"]!.int!)
    case "concat": return Tensor.concat([x["a"]!, x["b"]!, x["c"]!], axis: a["axis"]!.int!)
    case "embedding":
        return Tensor.embedding(x["weight"]!, ids: ints["ids"]!.int32, shape: ints["ids"]!.shape)
    case "gather_last": return x["x"]!.gatherLast(ints["index"]!.int32)
    case "where": return Tensor.where(ints["cond"]!.data.map { $0 != 0 }, x["a"]!, x["b"]!)
    case "exp": return x["x"]!.exp()
    case "log": return x["x"]!.log()
    case "sqrt": return x["x"]!.sqrt()
    case "rsqrt": return x["x"]!.rsqrt()
    case "relu": return x["x"]!.relu()
    case "gelu": return x["x"]!.gelu()
    case "gelu_tanh": return x["x"]!.geluTanh()
    case "silu": return x["x"]!.silu()
    case "sigmoid": return x["x"]!.sigmoid()
    case "tanh": return x["x"]!.tanh()
    case "neg": return -x["x"]!
    case "softmax": return x["x"]!.softmax()
    case "log_softmax": return x["x"]!.logSoftmax()
    case "rmsnorm": return Tensor.rmsNorm(x["x"]!, weight: x["weight"]!, eps: Float(a["eps"]!.number))
    case "swiglu": return Tensor.swiglu(gate: x["gate"]!, up: x["up"]!)
    case "rope":
        return Tensor.rope(x["x"]!, positions: ints["positions"]!.int32, theta: Float(a["theta"]!.number))
    case "attention":
        return Tensor.attention(
            q: x["q"]!, k: x["k"]!, v: x["v"]!, causal: a["causal"]!.bool, scale: Float(a["scale"]!.number),
            segments: ints["segments"]?.int32)
    case "cross_entropy":
        return Tensor.crossEntropy(
            x["logits"]!, targets: ints["targets"]!.int32, ignoreIndex: Int32(a["ignoreIndex"]!.number),
            weights: x["weights"]?.values)
    default:
        fatalError("fixture op \(c.op) has no distill counterpart in runOp")
    }
}

/// Largest violation of |got - want| <= atol + rtol * |want|, as a ratio (<= 1 passes),
/// with the index where it happens.
func closeness(_ got: [Float], _ want: [Double], atol: Double, rtol: Double) -> (ratio: Double, index: Int) {
    precondition(got.count == want.count, "length \(got.count) vs \(want.count)")
    var worst = (0.0, -1)
    for i in 0..<got.count {
        let r = abs(Double(got[i]) - want[i]) / (atol + rtol * abs(want[i]))
        if !(r <= worst.0) { worst = (r.isNaN ? .infinity : r, i) }
    }
    return worst
}
