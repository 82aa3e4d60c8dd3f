// The decode engine's inner loops: block-quantized weight formats (ggml's Q8_0, Q4_0 and Q4_1
// layouts, byte for byte), products of such weights with int8-quantized activations, an f32
// matrix-vector product and one token's attention over its cached keys. Each entry point has a
// scalar version and, on x86-64, AVX2 and AVX-512 VNNI versions chosen once at run time from
// the CPU (or DISTILL_KERNELS=scalar|avx2|avx512vnni). Sources/Core/PackedMatrix.swift is the
// Swift side.
#ifndef DISTILL_KERNELS_H
#define DISTILL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Weight formats. Quantized rows are blocks of 32 values: Q8_0 an f16 scale d and 32 int8
/// (x = d q); Q4_0 d and 16 bytes of nibbles (x = d (q - 8)); Q4_1 d, an f16 minimum m and
/// 16 bytes (x = d q + m). Value j of a block is the low nibble of byte j (j < 16) or the high
/// nibble of byte j - 16. BF16: each value the top 16 bits of its f32, rounded to nearest
/// even (no blocks; its products are in the bf16 section below, not the int8 ones).
typedef enum { DK_F32 = 0, DK_Q8_0 = 1, DK_Q4_0 = 2, DK_Q4_1 = 3, DK_BF16 = 4 } dk_format;

/// Which implementation runs: 0 scalar, 1 AVX2, 2 AVX-512 VNNI.
int dk_level(void);
/// Makes the calling thread use `level` (no higher than the CPU supports; -1 drops the
/// thread's choice); returns the level set. `parallelChunks` carries it to its workers.
int dk_set_thread_level(int level);
/// The calling thread's own level, or -1 when it follows the process's.
int dk_thread_level(void);
/// The best level this CPU supports.
int dk_max_level(void);

/// Bytes of one row of k values (k a multiple of 32 for the quantized formats).
size_t dk_row_bytes(dk_format format, int k);

/// Quantizes `rows` rows of k floats as ggml's reference quantizers do (round half away from
/// zero; scales rounded to f16 after use).
void dk_quantize(dk_format format, const float *x, int rows, int k, void *out);
/// Decodes `rows` rows back to floats.
void dk_dequantize(dk_format format, const void *w, int rows, int k, float *out);

/// Activations for the quantized products: each row of k floats as blocks of 32 int8 q with an
/// f32 scale d (amax / 127, round half away from zero) and d times the block's sum of q (which
/// carries Q4_0's offset and Q4_1's minimum).
void dk_quantize_activations(const float *x, int rows, int k, int8_t *q, float *scale, float *sum);

/// x replaced by its int8 activations decoded (q * scale), in place: sgemm on these and on the
/// decoded weights gives the quantized product up to float summation order.
void dk_round_activations(float *x, int rows, int k);

/// y[j * ldy + r] = (row r of w) . (activation row j), for rows r in [r0, r1) of a quantized
/// w [*, k] and n activation rows.
void dk_matmul_quantized(
    dk_format format, const void *w, int k, int r0, int r1, const int8_t *xq, const float *xscale,
    const float *xsum, int n, float *y, int ldy);

/// A quantized matrix interleaved by groups of 8 rows, for products that need no horizontal
/// sums: per group and block, the 8 rows' f16 scales d (and for Q4_1 their minima m), then
/// chunks of 32 bytes, chunk c holding bytes 4c...4c+3 of each row's values in row order (4
/// chunks of the 4-bit formats' 16 bytes of nibbles, 8 of Q8_0's 32 int8 values). Same size
/// as the row layout; `rows` a multiple of 8.
void dk_interleave(dk_format format, const void *w, int rows, int k, void *out);
/// Rows [r0, r1) of an interleaved matrix decoded to floats ([r1 - r0, k]).
void dk_dequantize_interleaved(dk_format format, const void *w, int k, int r0, int r1, float *out);
/// `dk_matmul_quantized` for an interleaved matrix. From 3 activation rows on,
/// each block is unpacked once for all of them rather than once per two; every row's results
/// are bitwise those of the row alone.
void dk_matmul_interleaved(
    dk_format format, const void *w, int k, int r0, int r1, const int8_t *xq, const float *xscale,
    const float *xsum, int n, float *y, int ldy);

/// The same for f32 weights and f32 activations x [n, k].
void dk_matmul_f32(const float *w, int k, int r0, int r1, const float *x, int n, float *y, int ldy);

/// One query token's attention: for each of h heads (head i reads kv head i / (h / g)),
/// softmax(scale q.k_j) over the `keys` cached positions j, times v. q [h, d]; k and v hold
/// `keys` positions of [g, d] each, `stride` floats apart; out [h, d]; scratch >= keys floats.
/// With `stats` (else NULL), head i's softmax maximum (of the scaled scores) and sum of
/// exponentials go to stats[2i] and stats[2i + 1], so attention over disjoint parts of the
/// keys can be merged into one softmax.
void dk_attend(
    const float *q, int h, int g, int d, const float *k, const float *v, int keys, int stride, float scale,
    float *out, float *scratch, float *stats);

// MARK: bf16 (Sources/CKernels/bf16.c)

/// Whether `dk_bf16_gemm` runs on this thread: AVX-512 BF16 on the CPU and the AVX-512 level
/// chosen (`dk_level`).
int dk_bf16_gemm_available(void);
/// count floats rounded to bf16 (nearest even; denormals to signed zero, NaNs quieted, as
/// the CPU's conversion does).
void dk_bf16_from_f32(const float *x, size_t count, uint16_t *out);
/// count bf16 values widened to f32 (exact).
void dk_bf16_to_f32(const uint16_t *x, size_t count, float *out);
/// bf16 values a packed B [kd, n] takes: panels of 32 columns, (kd + 1) / 2 pairs each.
size_t dk_bf16_packed_count(int kd, int n);
/// Packs B = w [kd, n] (bf16, rows ldw apart) for `dk_bf16_gemm`: per panel of 32 columns and
/// pair p, rows 2p and 2p + 1 interleaved column by column (zeros past the edges).
void dk_bf16_pack(const uint16_t *w, int kd, int n, int ldw, uint16_t *bp);
/// Packs B = xᵀ [kd, n] from f32 x [n, kd] (rows ldx apart), rounded to bf16.
void dk_bf16_pack_transposed(const float *x, int n, int kd, int ldx, uint16_t *bp);
/// C [m, n] = beta C + A B with A bf16 [m, kd] (rows lda apart, kd even, each pair of a row
/// read as one 32-bit value) and B packed; sums in f32 (vdpbf16ps: denormal inputs read as
/// zero). `trans`: C is stored transposed, C[i, j] at c[j * ldc + i]. beta 0 never reads C.
/// Returns 0, doing nothing, when the kernel is unavailable (`dk_bf16_gemm_available`) or kd
/// is odd or zero.
int dk_bf16_gemm(int m, int n, int kd, const uint16_t *a, int lda, const uint16_t *bp, float beta, float *c, int ldc, int trans);
/// The decode engine's product for bf16 weights, y[j, r] = W[r] . x[j] for rows [r0, r1) of
/// w [*, k] in bf16: like the training products, with the activations rounded to bf16 and
/// f32 sums (llama.cpp's bf16 products round them too). From 16 inputs on it runs on
/// `dk_bf16_gemm` where available; otherwise as f32 products on the widened weights and the
/// rounded activations (`dk_matmul_f32` itself from 8 inputs on).
void dk_matmul_bf16(const uint16_t *w, int k, int r0, int r1, const float *x, int n, float *y, int ldy);

/// A spin-wait hint (x86 `pause`), for threads waiting on a flag.
static inline void dk_pause(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

#endif
