// The `distill` binary as a user runs it: exit codes, --help on every subcommand, and the
// doctor's view of the BLAS kernel, including the switch to a kernel distill chooses.

import Foundation
import Testing

/// Runs the distill executable built next to the test bundle.
func distill(_ args: [String], environment: [String: String] = [:]) throws -> (status: Int32, out: String, err: String) {
    // The test runner lives in the products folder next to the distill binary.
    let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    let products = runner.deletingLastPathComponent()
    let process = Process()
    process.executableURL = products.appendingPathComponent("distill")
    process.arguments = args
    var env = ProcessInfo.processInfo.environment
    env["OPENBLAS_CORETYPE"] = nil
    for (k, v) in environment { env[k] = v }
    process.environment = env
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

struct DoctorJSON: Decodable {
    struct BLAS: Decodable {
        var core: String
        var libraryCore: String
        var source: String
        var threads: Int
    }
    var distill: String
    var swift: String
    var blas: BLAS
    var threads: Int
    var hdf5: String
    var cpu: String
    var features: [String]
}

@Suite struct CLITests {
    @Test("--help works on every subcommand", arguments: [[], ["doctor"], ["bench"], ["bench", "kernels"]])
    func helpEverywhere(_ command: [String]) throws {
        let r = try distill(command + ["--help"])
        #expect(r.status == 0)
        #expect(r.out.contains("USAGE:"))
    }

    @Test func doctorReportsAnOptimisedKernel() throws {
        let r = try distill(["doctor", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let report = try JSONDecoder().decode(DoctorJSON.self, from: Data(r.out.utf8))
        #expect(report.hdf5.hasPrefix("1."))
        #expect(!report.cpu.isEmpty)
        #expect(report.threads >= 1 && report.blas.threads == report.threads)
        if report.features.contains("avx") { #expect(report.blas.core != "Prescott") }
    }

    /// The switch path: distill asked for a kernel other than the one OpenBLAS picked
    /// switches OpenBLAS to it and says so.
    @Test func doctorSwitchesToTheKernelDistillChooses() throws {
        let natural = try JSONDecoder().decode(DoctorJSON.self, from: Data(try distill(["doctor", "--json"]).out.utf8))
        guard natural.features.contains("avx2") else { return }
        let other = natural.blas.libraryCore == "Haswell" ? "SandyBridge" : "Haswell"
        let r = try distill(["doctor", "--json"], environment: ["DISTILL_BLAS_CORE": other])
        let report = try JSONDecoder().decode(DoctorJSON.self, from: Data(r.out.utf8))
        #expect(report.blas.core == other)
        #expect(report.blas.source == "distill")
        #expect(report.blas.libraryCore == natural.blas.libraryCore)
    }

    @Test func anExplicitCoreTypeIsRespected() throws {
        let r = try distill(["doctor", "--json"], environment: ["OPENBLAS_CORETYPE": "Prescott"])
        let report = try JSONDecoder().decode(DoctorJSON.self, from: Data(r.out.utf8))
        #expect(report.blas.core == "Prescott")
        #expect(report.blas.source == "user")
    }

    @Test func threadsOptionIsAppliedAndValidated() throws {
        let r = try distill(["doctor", "--json", "--threads", "1"])
        let report = try JSONDecoder().decode(DoctorJSON.self, from: Data(r.out.utf8))
        #expect(report.threads == 1 && report.blas.threads == 1)
        let bad = try distill(["doctor", "--threads", "0"])
        #expect(bad.status == 64)
        #expect(bad.err.contains("--threads must be at least 1"))
    }

    @Test func unknownCommandIsAUsageError() throws {
        let r = try distill(["frobnicate"])
        #expect(r.status == 64)
    }
}
