import CHost


/// distill's version, reported by `distill doctor` and written into checkpoints.
public enum DistillVersion {
    public static let string = "0.1.0"

    /// The Swift compiler that built this binary (major.minor).
    public static var swift: String {
        #if compiler(>=6.4)
            return ">= 6.4"
        #elseif compiler(>=6.3)
            return "6.3"
        #elseif compiler(>=6.2)
            return "6.2"
        #elseif compiler(>=6.1)
            return "6.1"
        #else
            return "6.0"
        #endif
    }

    /// The instruction set the Swift code was compiled for: "haswell" (AVX2, FMA, BMI2,
    /// F16C; chosen by Package.swift when the building machine has them) or "x86-64"
    /// (portable). The binary refuses to start on a CPU that lacks the former's features.
    public static var codegen: String {
        #if arch(x86_64)
            return distill_native_codegen() != 0 ? "haswell" : "x86-64"
        #else
            return "generic"
        #endif
    }
}
