// The only file that imports CBLAS. Everything else calls `BLAS.sgemm` and reads
// `BLAS.runtime` for what the library is doing.

import CBLAS
import Foundation
import Synchronization

/// How OpenBLAS was set up for this process: which kernel family it runs, why, and with
/// how many threads.
public struct BLASRuntime: Sendable, Codable, Equatable {
    /// Where the kernel choice came from.
    public enum Source: String, Sendable, Codable {
        /// The user set `OPENBLAS_CORETYPE` before distill started; distill kept it.
        case user
        /// distill chose the kernel from the CPU's features and switched OpenBLAS to it.
        case distill
        /// OpenBLAS's own detection agreed with distill's choice (or distill had none).
        case library
    }

    /// Kernel family OpenBLAS reports running now ("Haswell", "Zen", "SkylakeX", ...).
    public var core: String
    /// Kernel family OpenBLAS picked by itself before distill looked.
    public var libraryCore: String
    public var source: Source
    /// OpenBLAS's build string (version, DYNAMIC_ARCH, threading).
    public var config: String
    /// Threads OpenBLAS uses for one sgemm.
    public var threads: Int
    /// log2 of the cycles an idle OpenBLAS worker spins before sleeping
    /// (OPENBLAS_THREAD_TIMEOUT), or nil when OpenBLAS's default (2^28) is in force.
    public var threadTimeout: Int?
    /// A note when the preferred kernel could not be applied (static OpenBLAS build, ...).
    public var warning: String?
}

/// Thin, checked wrappers over the few CBLAS calls distill makes.
public enum BLAS {
    /// Configured once per process, before the first BLAS call, thread-safe by Swift's
    /// lazy-global semantics. Every entry point below touches it.
    public static let runtime: BLASRuntime = configure()

    /// The kernel family distill prefers for a CPU with these features, or nil when the
    /// library's own detection is as good as anything distill knows.
    ///
    /// Debian 12's OpenBLAS 0.3.21 misdetects recent CPUs as Prescott (SSE3, about a tenth
    /// of the attainable sgemm throughput), so the choice is made from the features:
    /// AVX-512 (F, BW, VL, DQ) -> SkylakeX (Cooperlake with BF16), AVX2 + FMA -> Haswell
    /// (Zen on AMD, the same micro-kernels with AMD blocking), AVX -> SandyBridge.
    public static func preferredCore(vendor: String, flags: Set<String>) -> String? {
        if ["avx512f", "avx512bw", "avx512vl", "avx512dq"].allSatisfy(flags.contains) {
            return flags.contains("avx512_bf16") ? "Cooperlake" : "SkylakeX"
        }
        if flags.contains("avx2") && flags.contains("fma") {
            return vendor == "AuthenticAMD" ? "Zen" : "Haswell"
        }
        if flags.contains("avx") { return "SandyBridge" }
        return nil
    }

    /// log2 cycles idle OpenBLAS workers spin before sleeping, unless the user sets
    /// OPENBLAS_THREAD_TIMEOUT.
    static let defaultThreadTimeout = 12

    /// Whether distill splits large sgemms over its own workers (OpenBLAS then runs
    /// single-threaded). Off unless DISTILL_BLAS_SPLIT=1: not yet shown to be faster.
    public static let splitWork = ProcessInfo.processInfo.environment["DISTILL_BLAS_SPLIT"] == "1"

    private static func configure() -> BLASRuntime {
        let libraryCore = String(cString: openblas_get_corename())
        let config = String(cString: openblas_get_config())
        var source = BLASRuntime.Source.library
        var warning: String?
        let env = ProcessInfo.processInfo.environment
        let userSet = env["OPENBLAS_CORETYPE"].map { !$0.isEmpty } ?? false
        // DISTILL_BLAS_CORE names the kernel distill should switch to instead of its own
        // choice (for comparing kernels without restarting under OPENBLAS_CORETYPE).
        let override = env["DISTILL_BLAS_CORE"].flatMap { $0.isEmpty ? nil : $0 }
        let preferred = override ?? CPUInfo.current.flatMap { preferredCore(vendor: $0.vendor, flags: $0.flags) }
        if userSet {
            source = .user
        } else if let want = preferred, want.lowercased() != libraryCore.lowercased() {
            setenv("OPENBLAS_CORETYPE", want, 1)
            if distill_blas_reselect() != 0 {
                warning = "this OpenBLAS build cannot switch kernels (not DYNAMIC_ARCH); running \(libraryCore)"
            } else {
                let now = String(cString: openblas_get_corename())
                if now.lowercased() == want.lowercased() {
                    source = .distill
                } else {
                    warning = "asked OpenBLAS for \(want), it runs \(now)"
                }
            }
        }
        // OpenBLAS's idle workers spin (sched_yield) for 2^28 cycles after each sgemm and
        // steal the cores from distill's own kernels between sgemms; measured on config S,
        // a timeout of 2^12 cycles made training steps 1.7x faster. A user's setting wins.
        var timeout = env["OPENBLAS_THREAD_TIMEOUT"].flatMap { Int($0) }
        if timeout == nil {
            setenv("OPENBLAS_THREAD_TIMEOUT", String(defaultThreadTimeout), 1)
            if distill_blas_restart_threads() == 0 { timeout = defaultThreadTimeout }
        }
        openblas_set_num_threads(Int32(splitWork ? 1 : Threads.count))
        return BLASRuntime(
            core: String(cString: openblas_get_corename()), libraryCore: libraryCore, source: source,
            config: config.trimmingCharacters(in: .whitespaces), threads: Int(openblas_get_num_threads()),
            threadTimeout: timeout, warning: warning)
    }

    /// C[m, n] = alpha * op(A) op(B) + beta * C, all row-major, with leading dimensions.
    /// op(A) is [m, k] (A stored [k, m] when `transA`), op(B) is [k, n] (B stored [n, k]
    /// when `transB`). Leading dimensions let callers address a head inside [B, T, H, D]
    /// activations without copying.
    ///
    /// With `split` (the default) a large product is cut into one block of rows (or columns)
    /// per worker thread, each a single-threaded sgemm, so distill's one thread pool does
    /// all the parallel work; kernels that already run sgemms on several workers pass false.
    @inline(__always)
    public static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, split: Bool = true
    ) {
        _ = runtime
        guard m > 0, n > 0 else { return }
        if split && splitWork && Threads.count > 1 && m * n * k >= 1 << 20 && k > 0 {
            if m >= n || m >= 64 {
                parallelChunks(m, grain: 16) { rows in
                    let r0 = rows.lowerBound
                    cblas_sgemm(
                        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                        Int32(rows.count), Int32(n), Int32(k), alpha, transA ? a + r0 : a + r0 * lda, Int32(lda), b,
                        Int32(ldb), beta, c + r0 * ldc, Int32(ldc))
                }
            } else {
                parallelChunks(n, grain: 16) { cols in
                    let c0 = cols.lowerBound
                    cblas_sgemm(
                        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                        Int32(m), Int32(cols.count), Int32(k), alpha, a, Int32(lda), transB ? b + c0 * ldb : b + c0,
                        Int32(ldb), beta, c + c0, Int32(ldc))
                }
            }
            return
        }
        if k == 0 {
            // BLAS leaves C untouched when k == 0 only for beta == 1; make it explicit.
            for i in 0..<m {
                let row = c + i * ldc
                for j in 0..<n { row[j] = beta == 0 ? 0 : beta * row[j] }
            }
            return
        }
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Runs `body` with OpenBLAS limited to one thread, for kernels that call many small
    /// sgemms from several of distill's own worker threads at once (no oversubscription).
    ///
    /// Regions nest and may be entered from several threads (data-parallel replicas each
    /// run attention inside the replicas' region): OpenBLAS returns to `Threads.count`
    /// threads only when the outermost region ends, so no sgemm ever runs with a thread
    /// count that another thread just changed.
    public static func singleThreaded<R>(_ body: () throws -> R) rethrows -> R {
        _ = runtime
        if Threads.count == 1 || splitWork { return try body() }
        if singleThreadedDepth.wrappingAdd(1, ordering: .sequentiallyConsistent).oldValue == 0 {
            openblas_set_num_threads(1)
        }
        defer {
            if singleThreadedDepth.wrappingSubtract(1, ordering: .sequentiallyConsistent).newValue == 0 {
                openblas_set_num_threads(Int32(Threads.count))
            }
        }
        return try body()
    }

    private static let singleThreadedDepth = Atomic<Int>(0)

    /// Changes the OpenBLAS thread count (the `threads` setting calls this).
    static func setThreads(_ n: Int) {
        _ = runtime
        // Inside a single-threaded region the region's end applies the new count.
        if singleThreadedDepth.load(ordering: .sequentiallyConsistent) == 0 {
            openblas_set_num_threads(Int32(splitWork ? 1 : n))
        }
    }
}

/// What the CPU says about itself (Linux /proc/cpuinfo).
public struct CPUInfo: Sendable, Codable, Equatable {
    public var model: String
    public var vendor: String
    public var flags: Set<String>

    public static let current: CPUInfo? = read()

    /// The SIMD features that matter for kernel choice, in a stable order.
    public var simdFeatures: [String] {
        let interesting = [
            "sse3", "ssse3", "sse4_1", "sse4_2", "avx", "fma", "f16c", "avx2", "avx512f", "avx512dq",
            "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile", "neon", "asimd",
        ]
        return interesting.filter(flags.contains)
    }

    static func read() -> CPUInfo? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        var model = "unknown", vendor = "unknown", flags = Set<String>()
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            switch key {
            case "model name" where model == "unknown": model = value
            case "vendor_id" where vendor == "unknown": vendor = value
            case "flags" where flags.isEmpty, "Features" where flags.isEmpty:
                flags = Set(value.split(separator: " ").map(String.init))
                if flags.contains("pni") { flags.insert("sse3") }  // Linux calls SSE3 "pni"
            default: break
            }
        }
        return CPUInfo(model: model, vendor: vendor, flags: flags)
    }
}
