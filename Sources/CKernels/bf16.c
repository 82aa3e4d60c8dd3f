// bf16 products, for training over a frozen bf16 weight (LoRA's base) and for the decode
// engine's bf16 weights: see include/kernels.h for the contracts.
//
// C = A B with both operands in bf16 and f32 sums, on AVX-512 BF16's vdpbf16ps, which
// multiplies 32 pairs of bf16 values and adds each pair's two products into one of 16 f32
// lanes: per instruction twice the multiply-adds of an f32 FMA. The inner dimension therefore
// comes in pairs, and each pair (A[i, 2p], A[i, 2p + 1]) is broadcast as one 32-bit value. B
// is packed once per product into panels of 32 columns, pair after pair, so one pair of a
// panel is two 64-byte loads:
//   panel j, pair p:  B[2p, 32j + t], B[2p + 1, 32j + t]  for t = 0 ... 31   (64 bf16)
// A is copied a block (MC rows, KC pairs) at a time into groups of 12 rows whose pairs sit
// side by side (or read in place for at most two panels), and the micro-kernel keeps a 12 x 32 block of C in 24 registers while it runs
// down the block's pairs. KC is large (768 pairs) because each block ends with C loaded and
// stored again; measured on Zen 4 at 1024 x 576 x 576, 160 pairs gave 183 GFLOP/s forward and
// 768 gave 210, one core.

#include "kernels.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define DK_X86 1
#endif

// f32 -> bf16 by rounding to nearest even, as vcvtne2ps2bf16 does: denormals become signed
// zeros and NaNs stay NaNs (quieted).
static inline uint16_t bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static inline float bf16_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

enum { NR = 32, MR = 12, KC = 768, MC = 384 };

// Inputs from which the decode engine's bf16 products run on the bf16 kernel (one panel of 32
// columns: at 16 inputs half of it works, at twice f32's rate).
enum { BF16_GEMM_FROM = 16 };

size_t dk_bf16_packed_count(int kd, int n) { return (size_t)((n + NR - 1) / NR) * (size_t)((kd + 1) / 2) * 2 * NR; }

static void from_f32_scalar(const float *x, size_t count, uint16_t *out) {
    for (size_t i = 0; i < count; i++) out[i] = bf16_round(x[i]);
}

void dk_bf16_to_f32(const uint16_t *x, size_t count, float *out) {
    for (size_t i = 0; i < count; i++) out[i] = bf16_float(x[i]);
}

static void pack_scalar(const uint16_t *w, int kd, int n, int ldw, uint16_t *bp) {
    int pairs = (kd + 1) / 2, panels = (n + NR - 1) / NR;
    for (int j = 0; j < panels; j++)
        for (int p = 0; p < pairs; p++) {
            uint16_t *d = bp + ((size_t)j * pairs + p) * 2 * NR;
            for (int t = 0; t < NR; t++) {
                int col = j * NR + t;
                int in = col < n;
                d[2 * t] = in ? w[(size_t)(2 * p) * ldw + col] : 0;
                d[2 * t + 1] = in && 2 * p + 1 < kd ? w[(size_t)(2 * p + 1) * ldw + col] : 0;
            }
        }
}

#if DK_X86
#define BF16 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

static int cpu_bf16(void) {
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512vl");
    }
    return known;
}

BF16 static void from_f32_avx512(const float *x, size_t count, uint16_t *out) {
    size_t i = 0;
    for (; i + 32 <= count; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
        _mm512_storeu_si512(out + i, (__m512i)v);
    }
    for (; i < count; i += 16) {
        __mmask16 m = count - i >= 16 ? 0xffff : (__mmask16)((1u << (count - i)) - 1);
        __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + i));
        _mm256_mask_storeu_epi16(out + i, m, (__m256i)v);
    }
}

// r[a] lane b -> r[b] lane a, for 16 x 16 32-bit values: pairs of rows interleaved by 32
// and 64 bits, then the 128-bit lanes of each fourth register transposed as 4 x 4 blocks.
BF16 static inline __attribute__((always_inline)) void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    // r[4g + c], 128-bit lane l: column 4l + c of rows 4g ... 4g + 3.
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int c = 0; c < 4; c++) {
        __m512i u0 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0x44), u1 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0xEE);
        __m512i u2 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0x44), u3 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0xEE);
        t[c] = _mm512_shuffle_i32x4(u0, u2, 0x88);
        t[4 + c] = _mm512_shuffle_i32x4(u0, u2, 0xDD);
        t[8 + c] = _mm512_shuffle_i32x4(u1, u3, 0x88);
        t[12 + c] = _mm512_shuffle_i32x4(u1, u3, 0xDD);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

// B = xᵀ for f32 x [n, kd] (rows ldx apart), rounded: each row of x is one column of B. Sixteen
// rows at a time, 32 values (16 pairs) of each converted into one register, the 16 x 16 pairs
// transposed, so each of a pair's registers is 16 columns of its panel. Rows past n (to the
// panels' end) are zeros, so every value of the packing is written.
BF16 static void pack_transposed_avx512(const float *x, int n, int kd, int ldx, uint16_t *bp) {
    int pairs = (kd + 1) / 2, panels = (n + NR - 1) / NR;
    uint32_t *out = (uint32_t *)bp;  // one 32-bit pair per (panel, pair, column)
    for (int t0 = 0; t0 < panels * NR; t0 += 16) {
        uint32_t *group = out + (size_t)(t0 / NR) * pairs * NR + t0 % NR;
        for (int i = 0; i < kd; i += 32) {
            int left = kd - i;
            __mmask16 lo = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
            __mmask16 hi = left >= 32 ? 0xffff : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
            __m512i r[16];
            for (int a = 0; a < 16; a++) {
                if (t0 + a < n) {
                    const float *xr = x + (size_t)(t0 + a) * ldx + i;
                    r[a] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, xr + 16), _mm512_maskz_loadu_ps(lo, xr));
                } else {
                    r[a] = _mm512_setzero_si512();
                }
            }
            transpose16(r);
            int p0 = i / 2, count = pairs - p0 < 16 ? pairs - p0 : 16;
            for (int q = 0; q < count; q++) _mm512_storeu_si512(group + (size_t)(p0 + q) * NR, r[q]);
        }
    }
}

// B = w [kd, n] (bf16 rows ldw apart): rows 2p and 2p + 1 interleaved, 32 columns a panel.
BF16 static void pack_avx512(const uint16_t *w, int kd, int n, int ldw, uint16_t *bp) {
    int pairs = (kd + 1) / 2, panels = (n + NR - 1) / NR;
    // Lanes 0-31 of the result take a[t] and b[t] alternately for t = 0..15 (lo) or 16..31 (hi).
    uint16_t lo_index[32], hi_index[32];
    for (int t = 0; t < 16; t++) {
        lo_index[2 * t] = (uint16_t)t, lo_index[2 * t + 1] = (uint16_t)(32 + t);
        hi_index[2 * t] = (uint16_t)(16 + t), hi_index[2 * t + 1] = (uint16_t)(48 + t);
    }
    __m512i lo_i = _mm512_loadu_si512(lo_index), hi_i = _mm512_loadu_si512(hi_index);
    for (int j = 0; j < panels; j++) {
        int left = n - j * NR;
        __mmask32 m = left >= 32 ? 0xffffffffu : (__mmask32)((1u << left) - 1);
        for (int p = 0; p < pairs; p++) {
            const uint16_t *r0 = w + (size_t)(2 * p) * ldw + j * NR;
            __m512i a = _mm512_maskz_loadu_epi16(m, r0);
            __m512i b = 2 * p + 1 < kd ? _mm512_maskz_loadu_epi16(m, r0 + ldw) : _mm512_setzero_si512();
            uint16_t *d = bp + ((size_t)j * pairs + p) * 2 * NR;
            _mm512_storeu_si512(d, _mm512_permutex2var_epi16(a, lo_i, b));
            _mm512_storeu_si512(d + NR, _mm512_permutex2var_epi16(a, hi_i, b));
        }
    }
}

// C[0:mr, 0:cols] (+)= A[0:mr, pairs] B-panel, pair p of row i at 32-bit value
// p * pstride + i * rstride of a (a packed group: MR and 1; A in place: 1 and lda / 2):
// `first` applies beta to C (0: C is not read), later blocks of pairs add to it. `trans`:
// C[i, t] lives at c[t * ldc + i].
BF16 static inline __attribute__((always_inline)) void micro(
    int mr, int np, const uint16_t *a, size_t pstride, size_t rstride, const uint16_t *b, float *c, int ldc, int trans,
    int first, float beta, int cols) {
    __m512 acc[MR][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int p = 0; p < np; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + (size_t)p * 2 * NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + (size_t)p * 2 * NR + NR);
#pragma clang loop unroll(full)
        for (int i = 0; i < MR; i++) {
            if (i < mr) {
                int32_t pair;
                memcpy(&pair, a + ((size_t)p * pstride + i * rstride) * 2, 4);
                __m512bh ai = (__m512bh)_mm512_set1_epi32(pair);
                acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
                acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
            }
        }
    }
    if (!trans) {
        __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
        __mmask16 m1 = cols >= 32 ? 0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
        for (int i = 0; i < mr; i++) {
            float *ci = c + (size_t)i * ldc;
            __m512 o0 = acc[i][0], o1 = acc[i][1];
            if (!first || beta != 0) {
                __m512 s = _mm512_set1_ps(first ? beta : 1);
                o0 = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(m0, ci), o0);
                o1 = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(m1, ci + 16), o1);
            }
            _mm512_mask_storeu_ps(ci, m0, o0);
            _mm512_mask_storeu_ps(ci + 16, m1, o1);
        }
    } else {
        float t[MR][NR];
        for (int i = 0; i < mr; i++) _mm512_storeu_ps(t[i], acc[i][0]), _mm512_storeu_ps(t[i] + 16, acc[i][1]);
        float s = first ? beta : 1;
        for (int col = 0; col < cols; col++) {
            float *cc = c + (size_t)col * ldc;
            if (!first || beta != 0)
                for (int i = 0; i < mr; i++) cc[i] = s * cc[i] + t[i][col];
            else
                for (int i = 0; i < mr; i++) cc[i] = t[i][col];
        }
    }
}

// A[i0:i1, pairs p0:p0+np] in groups of MR rows, each pair of a group's rows side by side
// (MR 32-bit values per pair; rows past i1 as zeros), so the micro-kernel reads one line.
static void pack_a(const uint16_t *a, int lda, int i0, int i1, int p0, int np, uint32_t *out) {
    for (int g = i0; g < i1; g += MR) {
        uint32_t *o = out + (size_t)(g - i0) * np;
        int rows = i1 - g < MR ? i1 - g : MR;
        for (int i = 0; i < rows; i++) {
            const uint16_t *row = a + (size_t)(g + i) * lda + 2 * p0;
            for (int p = 0; p < np; p++) memcpy(o + (size_t)p * MR + i, row + 2 * p, 4);
        }
        for (int i = rows; i < MR; i++)
            for (int p = 0; p < np; p++) o[(size_t)p * MR + i] = 0;
    }
}

// A block is copied (`pack_a`) when its rows serve several panels of B; with two panels or
// fewer (the decode engine's steps: 64 inputs at most) the copy would cost about what the
// products do, and A is read in place, MR rows lda apart.
BF16 static void gemm_avx512(
    int m, int n, int kd, const uint16_t *a, int lda, const uint16_t *bp, float beta, float *c, int ldc, int trans) {
    int pairs = kd / 2, panels = (n + NR - 1) / NR, copy = panels > 2 || lda % 2;
    uint32_t *packed = copy ? aligned_alloc(64, sizeof(uint32_t) * (MC + MR) * KC) : NULL;
    for (int p0 = 0; p0 < pairs; p0 += KC) {
        int np = pairs - p0 < KC ? pairs - p0 : KC;
        for (int i0 = 0; i0 < m; i0 += MC) {
            int i1 = i0 + MC < m ? i0 + MC : m;
            if (copy) pack_a(a, lda, i0, i1, p0, np, packed);
            for (int j = 0; j < panels; j++) {
                const uint16_t *b = bp + ((size_t)j * pairs + p0) * 2 * NR;
                int cols = n - j * NR < NR ? n - j * NR : NR;
                for (int i = i0; i < i1; i += MR) {
                    float *cij = trans ? c + (size_t)j * NR * ldc + i : c + (size_t)i * ldc + j * NR;
                    int mr = i + MR <= i1 ? MR : i1 - i;
                    if (copy) {
                        const uint16_t *ai = (const uint16_t *)(packed + (size_t)(i - i0) * np);
                        if (mr == MR)
                            micro(MR, np, ai, MR, 1, b, cij, ldc, trans, p0 == 0, beta, cols);
                        else
                            micro(mr, np, ai, MR, 1, b, cij, ldc, trans, p0 == 0, beta, cols);
                    } else {
                        const uint16_t *ai = a + (size_t)i * lda + 2 * p0;
                        if (mr == MR)
                            micro(MR, np, ai, 1, (size_t)lda / 2, b, cij, ldc, trans, p0 == 0, beta, cols);
                        else
                            micro(mr, np, ai, 1, (size_t)lda / 2, b, cij, ldc, trans, p0 == 0, beta, cols);
                    }
                }
            }
        }
    }
    free(packed);
}

// The decode engine's matrix-vector product with bf16 weights and (already rounded) f32
// activations: each weight widened to f32 exactly (a 16-bit shift), so this is the f32
// product on the decoded matrix. Four activation rows per pass over a weight row, 16 weights
// a step in two accumulators each (one chain of 8 left a batch-1 decode at 14 GB/s, bound by
// the FMA's latency). It mirrors kernels.c's f32 loop rather than calling it on widened rows:
// widening eight rows into a tile for `dk_matmul_f32` at batch 1 decoded 28-30 tokens/s
// against this loop's 77-84.
__attribute__((target("avx2,fma"))) static inline __m256 widen8(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

__attribute__((target("avx2,fma"))) static void matmul_avx2(
    const uint16_t *w, int k, int r0, int r1, const float *x, int n, float *y, int ldy) {
    int k16 = k & ~15;
    for (int j0 = 0; j0 < n; j0 += 4) {
        int nj = n - j0 < 4 ? n - j0 : 4;
        for (int r = r0; r < r1; r++) {
            const uint16_t *row = w + (size_t)r * k;
            __m256 acc[4][2];
            for (int j = 0; j < 4; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
            for (int i = 0; i < k16; i += 16) {
                __m256 w0 = widen8(row + i), w1 = widen8(row + i + 8);
                for (int j = 0; j < nj; j++) {
                    const float *xj = x + (size_t)(j0 + j) * k + i;
                    acc[j][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xj), acc[j][0]);
                    acc[j][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xj + 8), acc[j][1]);
                }
            }
            for (int j = 0; j < nj; j++) {
                __m256 a = _mm256_add_ps(acc[j][0], acc[j][1]);
                __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
                s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                s = _mm_add_ss(s, _mm_movehdup_ps(s));
                float sum = _mm_cvtss_f32(s);
                const float *xj = x + (size_t)(j0 + j) * k;
                for (int i = k16; i < k; i++) sum += bf16_float(row[i]) * xj[i];
                y[(size_t)(j0 + j) * ldy + r] = sum;
            }
        }
    }
}
#endif

void dk_matmul_bf16(const uint16_t *w, int k, int r0, int r1, const float *x, int n, float *y, int ldy) {
    if (r1 <= r0 || n <= 0) return;
#if DK_X86
    if (n >= BF16_GEMM_FROM && k % 2 == 0 && dk_bf16_gemm_available()) {
        uint16_t *packed = malloc(sizeof(uint16_t) * dk_bf16_packed_count(k, n));
        dk_bf16_pack_transposed(x, n, k, k, packed);
        dk_bf16_gemm(r1 - r0, n, k, w + (size_t)r0 * k, k, packed, 0, y + r0, ldy, 1);
        free(packed);
        return;
    }
#endif
    // The activations rounded to bf16 and widened back, then f32 products on the widened weights.
    float *xr = malloc(sizeof(float) * (size_t)n * k);
    uint16_t *half = malloc(sizeof(uint16_t) * (size_t)n * k);
    dk_bf16_from_f32(x, (size_t)n * k, half);
    dk_bf16_to_f32(half, (size_t)n * k, xr);
    free(half);
#if DK_X86
    if (dk_level() >= 1 && n >= 8) {
        // Eight rows at a time widened into a scratch tile for the f32 kernel, which reads each
        // of them once for all the inputs: the widening is paid once per row, not per input.
        float *tile = malloc(sizeof(float) * 8 * (size_t)k);
        for (int r = r0; r < r1; r += 8) {
            int rows = r1 - r < 8 ? r1 - r : 8;
            dk_bf16_to_f32(w + (size_t)r * k, (size_t)rows * k, tile);
            dk_matmul_f32(tile, k, 0, rows, xr, n, y + r, ldy);
        }
        free(tile);
    } else if (dk_level() >= 1) {
        matmul_avx2(w, k, r0, r1, xr, n, y, ldy);
    } else
#endif
    {
        for (int r = r0; r < r1; r++)
            for (int j = 0; j < n; j++) {
                float sum = 0;
                for (int i = 0; i < k; i++) sum += bf16_float(w[(size_t)r * k + i]) * xr[(size_t)j * k + i];
                y[(size_t)j * ldy + r] = sum;
            }
    }
    free(xr);
}

int dk_bf16_gemm_available(void) {
#if DK_X86
    return dk_level() == 2 && cpu_bf16();
#else
    return 0;
#endif
}

void dk_bf16_from_f32(const float *x, size_t count, uint16_t *out) {
#if DK_X86
    if (dk_bf16_gemm_available()) return from_f32_avx512(x, count, out);
#endif
    from_f32_scalar(x, count, out);
}

void dk_bf16_pack(const uint16_t *w, int kd, int n, int ldw, uint16_t *bp) {
#if DK_X86
    if (dk_bf16_gemm_available()) return pack_avx512(w, kd, n, ldw, bp);
#endif
    pack_scalar(w, kd, n, ldw, bp);
}

void dk_bf16_pack_transposed(const float *x, int n, int kd, int ldx, uint16_t *bp) {
#if DK_X86
    if (dk_bf16_gemm_available()) return pack_transposed_avx512(x, n, kd, ldx, bp);
#endif
    int pairs = (kd + 1) / 2, panels = (n + NR - 1) / NR;
    for (int j = 0; j < panels; j++)
        for (int p = 0; p < pairs; p++) {
            uint16_t *d = bp + ((size_t)j * pairs + p) * 2 * NR;
            for (int t = 0; t < NR; t++) {
                int row = j * NR + t;
                const float *xr = x + (size_t)row * ldx;
                d[2 * t] = row < n ? bf16_round(xr[2 * p]) : 0;
                d[2 * t + 1] = row < n && 2 * p + 1 < kd ? bf16_round(xr[2 * p + 1]) : 0;
            }
        }
}

int dk_bf16_gemm(
    int m, int n, int kd, const uint16_t *a, int lda, const uint16_t *bp, float beta, float *c, int ldc, int trans) {
#if DK_X86
    if (dk_bf16_gemm_available() && kd % 2 == 0 && m > 0 && n > 0 && kd > 0) {
        gemm_avx512(m, n, kd, a, lda, bp, beta, c, ldc, trans);
        return 1;
    }
#endif
    (void)m, (void)n, (void)kd, (void)a, (void)lda, (void)bp, (void)beta, (void)c, (void)ldc, (void)trans;
    return 0;
}
