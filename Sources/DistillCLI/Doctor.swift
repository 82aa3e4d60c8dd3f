import ArgumentParser
import Core
import Formats
import Foundation
import JSON

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Report the toolchain, BLAS kernel, threads, HDF5 and CPU distill sees.")

    @Flag(help: "Print the report as JSON.") var json = false
    @OptionGroup var compute: ComputeOptions

    func run() throws {
        compute.apply()
        let report = DoctorReport.current()
        if json {
            try printJSON(report)
        } else {
            print(report.text)
        }
    }
}

struct DoctorReport: Codable {
    var distill: String
    var swift: String
    /// The instruction set the Swift code was compiled for (see Package.swift).
    var codegen: String
    var blas: BLASRuntime
    var threads: Int
    var hdf5: String
    var cpu: String
    var vendor: String
    var features: [String]
    /// The decode kernels chosen (scalar, avx2, avx512vnni; `DISTILL_KERNELS` can lower it).
    var kernels: String
    /// Whether bf16 products run on AVX-512 BF16 here (else as sgemm, at f32's speed).
    var bf16Products: Bool

    static func current() -> DoctorReport {
        let cpu = CPUInfo.current
        return DoctorReport(
            distill: DistillVersion.string, swift: DistillVersion.swift, codegen: DistillVersion.codegen, blas: BLAS.runtime, threads: Threads.count,
            hdf5: HDF5Library.version, cpu: cpu?.model ?? "unknown", vendor: cpu?.vendor ?? "unknown",
            features: cpu?.simdFeatures ?? [], kernels: String(describing: KernelLevel.current),
            bf16Products: KernelLevel.bf16ProductsAvailable)
    }

    var text: String {
        var lines = [
            "distill \(distill) (Swift \(swift), code for \(codegen))",
            "BLAS     OpenBLAS, core \(blas.core) (\(sourceNote)), \(blas.threads) threads",
            "         \(blas.config)",
            "         idle workers sleep after \(blas.threadTimeout.map { "2^\($0)" } ?? "2^28 (OpenBLAS default)") cycles",
            "threads  \(threads)",
            "HDF5     \(hdf5)",
            "CPU      \(cpu) [\(vendor)]",
            "features \(features.joined(separator: " "))",
            "kernels  \(kernels); bf16 products \(bf16Products ? "on AVX-512 BF16" : "as sgemm (no AVX-512 BF16): a bf16 base trains at f32's speed")",
        ]
        if let w = blas.warning { lines.append("warning  \(w)") }
        return lines.joined(separator: "\n")
    }

    private var sourceNote: String {
        switch blas.source {
        case .user: return "set by OPENBLAS_CORETYPE"
        case .distill: return "chosen by distill from CPU features; OpenBLAS picked \(blas.libraryCore)"
        case .library: return "OpenBLAS's own detection, as distill would choose"
        }
    }
}
