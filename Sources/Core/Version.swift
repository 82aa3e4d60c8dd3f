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
}
