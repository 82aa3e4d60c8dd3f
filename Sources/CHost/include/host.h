// What the build assumed about the CPU, for `distill doctor` and the start-up check.
#ifndef DISTILL_CHOST_H
#define DISTILL_CHOST_H

#include <stddef.h>
#include <stdint.h>

/// 1 when the Swift targets were compiled for the Haswell feature set (AVX2, FMA, BMI2,
/// F16C), 0 for baseline x86-64 or another architecture.
int distill_native_codegen(void);

/// 1 when this CPU runs the code this build contains (always 1 for a portable build).
int distill_cpu_supports_build(void);

/// Makes the C standard output line-buffered even into a pipe or file, so a killed process's
/// log has every line it printed. Call before any output.
void distill_line_buffer_stdout(void);

/// SHA-256's round constant t (0..<64), shared with Platform's portable rounds.
uint32_t distill_sha256_round_constant(int t);

/// Compresses `blocks` 64-byte blocks of `data` into the SHA-256 `state` with the x86 SHA
/// extensions and returns 1, or returns 0 without touching anything where the CPU lacks them.
int distill_sha256_blocks(uint32_t state[8], const uint8_t *data, size_t blocks);

#endif
