// Every op's forward and backward against PyTorch (float64 reference on float32 inputs),
// and against central finite differences of the same forward.

import Core
import Foundation
import Testing

@Suite struct OpFixtureTests {
    @Test("forward and backward match PyTorch", arguments: Fixtures.opNames)
    func matchesPyTorch(_ name: String) {
        let c = Fixtures.op(name)
        let inputs = c.inputs.mapValues { $0.tensor }
        for key in c.gradInputs { inputs[key]!.requiresGrad = true }
        let out = runOp(c, inputs)
        #expect(out.shape == c.output.shape, "\(name): output shape")
        let fwd = closeness(out.values, c.output.data, atol: 1e-5, rtol: 1e-4)
        #expect(fwd.ratio <= 1, "\(name): output[\(fwd.index)] off by \(fwd.ratio)x tolerance")

        // L = Σ out * upstream, so dL/dout = upstream.
        out.backward(seed: c.upstream.tensor.reshaped(out.shape))
        for key in c.gradInputs {
            guard let want = c.grads[key], let got = inputs[key]!.grad else {
                Issue.record("\(name): no gradient for \(key)")
                continue
            }
            #expect(got.shape == want.shape, "\(name): grad \(key) shape")
            let r = closeness(got.values, want.data, atol: 1e-5, rtol: 1e-4)
            #expect(r.ratio <= 1, "\(name): d\(key)[\(r.index)] = \(got.values[max(r.index, 0)]) vs \(want.data[max(r.index, 0)])")
        }
    }

    /// Central differences of L = Σ out * upstream in Float32 with the loss summed in
    /// Double. With step h = 5e-4 * max(1, |x|) the float32 rounding of the forward
    /// contributes about 1e-7 * Σ|out * upstream| / h to each estimate, hence the absolute
    /// tolerance of 5e-3 plus 1% relative; a wrong backward is off by O(1).
    @Test("backward matches finite differences", arguments: Fixtures.opNames)
    func matchesFiniteDifferences(_ name: String) {
        let c = Fixtures.op(name)
        let inputs = c.inputs.mapValues { $0.tensor }
        for key in c.gradInputs { inputs[key]!.requiresGrad = true }
        let upstream = c.upstream.data
        let out = runOp(c, inputs)
        out.backward(seed: Tensor(shape: out.shape, values: upstream.map(Float.init)))

        func loss() -> Double {
            let o = GradMode.withoutGrad { runOp(c, inputs) }
            return zip(o.values, upstream).reduce(0) { $0 + Double($1.0) * $1.1 }
        }
        for key in c.gradInputs {
            let t = inputs[key]!
            let analytic = t.grad!.values
            // Every coordinate for small tensors, a fixed stride of them for larger ones.
            let step = max(1, t.count / 48)
            for i in stride(from: 0, to: t.count, by: step) {
                let saved = t.data[i]
                let h: Float = 5e-4 * max(1, abs(saved))
                t.data[i] = saved + h
                let up = loss()
                t.data[i] = saved - h
                let down = loss()
                t.data[i] = saved
                let fd = (up - down) / Double(2 * h)
                let err = abs(fd - Double(analytic[i]))
                #expect(err <= 5e-3 + 1e-2 * abs(fd), "\(name): d\(key)[\(i)] analytic \(analytic[i]) vs finite difference \(fd)")
            }
        }
    }
}
