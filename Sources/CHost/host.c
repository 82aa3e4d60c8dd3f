// Start-up check for natively built binaries (see Package.swift): a binary compiled for
// AVX2 and FMA dies with SIGILL somewhere arbitrary on a CPU without them. This constructor
// runs before any Swift code, is itself compiled for baseline x86-64, and turns that crash
// into a message and exit code 70 (EX_SOFTWARE).

#include "host.h"

#include <stdio.h>
#include <stdlib.h>

int distill_native_codegen(void) {
#if defined(DISTILL_NATIVE_HASWELL)
    return 1;
#else
    return 0;
#endif
}

int distill_cpu_supports_build(void) {
#if defined(DISTILL_NATIVE_HASWELL) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2")
        && __builtin_cpu_supports("f16c");
#else
    return 1;
#endif
}

__attribute__((constructor)) static void distill_check_cpu(void) {
    if (distill_cpu_supports_build()) return;
    fputs(
        "error: this distill binary was compiled for CPUs with AVX2 and FMA (the machine that built it has them; "
        "this one does not).\n"
        "fix: rebuild on this machine (`swift package clean && swift build -c release`), or build a portable binary "
        "with DISTILL_PORTABLE=1 set during the build.\n",
        stderr);
    exit(70);
}

void distill_line_buffer_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }
