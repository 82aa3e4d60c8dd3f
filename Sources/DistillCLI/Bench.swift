import ArgumentParser
import Core
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks (ratios against a peer measured in the same run).",
        subcommands: [Kernels.self])

    struct Kernels: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Matmul through the Tensor API against raw sgemm, and fused GQA attention.")

        @Flag(help: "Print the result as JSON.") var json = false
        @Option(help: "Timed samples per contender (alternating; the median is reported).") var repeats = 10
        @OptionGroup var compute: ComputeOptions

        func validate() throws {
            if repeats < 1 { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
        }

        func run() throws {
            compute.apply()
            if !json { print("BLAS core \(BLAS.runtime.core), \(Threads.count) threads, \(repeats) samples each") }
            let result = KernelBench.run(repeats: repeats) { line in if !json { print(line) } }
            if json { try printJSON(result) }
        }
    }
}
