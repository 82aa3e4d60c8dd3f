// Decode kernels: see include/kernels.h for the contracts.
//
// The quantized products follow llama.cpp's approach for a CPU: the activations are quantized
// to int8 blocks of 32 once per product, each weight block's dot product with them is exact
// integer arithmetic (maddubs/madd on AVX2, vpdpbusd on AVX-512 VNNI), and only the per-block
// scales are floating point. Q4_0 and Q4_1 carry unsigned nibbles, whose offset (-8, or the
// minimum m) is applied through the activation block's integer sum.

#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define DK_X86 1
#endif

// MARK: f16 scales

static inline float half_to_float(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, sign = (uint32_t)(h & 0x8000) << 16, bits;
    if (exp != 0 && exp != 31) {
        bits = sign | ((exp + 112) << 23) | (man << 13);  // normal: rebias 15 -> 127
    } else {
        float f = exp == 0 ? ldexpf((float)man, -24) : man ? NAN : INFINITY;  // zero, subnormal, inf, NaN
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline void float_to_half(float f, uint8_t *p) {
    _Float16 h = (_Float16)f;  // round to nearest even, as F16C and numpy do
    memcpy(p, &h, 2);
}

// roundf (half away from zero) without the library call, so the activation loops vectorize:
// v - trunc(v) is exact, and a half or more moves one step away from zero.
static inline __attribute__((always_inline)) float round_half_away(float v) {
    float t = truncf(v), rest = v - t;
    return t + (float)(rest >= 0.5f) - (float)(rest <= -0.5f);
}

// MARK: levels

static int max_level(void) {
#if DK_X86
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    int vnni = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    return vnni ? 2 : avx2 ? 1 : 0;
#else
    return 0;
#endif
}

static int current_level = -1;
// A thread's own choice (tests comparing levels run side by side); -1 when it has none.
static _Thread_local int thread_level = -1;

int dk_max_level(void) { return max_level(); }

int dk_set_thread_level(int level) {
    int top = max_level();
    thread_level = level < 0 ? -1 : level > top ? top : level;
    return thread_level;
}

int dk_thread_level(void) { return thread_level; }

int dk_level(void) {
    if (thread_level >= 0) return thread_level;
    if (current_level < 0) {
        int level = max_level();
        const char *env = getenv("DISTILL_KERNELS");
        if (env && strcmp(env, "scalar") == 0) level = 0;
        else if (env && strcmp(env, "avx2") == 0 && level > 1) level = 1;
        current_level = level;
    }
    return current_level;
}

// MARK: formats

static int block_bytes(dk_format f) {
    switch (f) {
    case DK_Q8_0: return 34;
    case DK_Q4_0: return 18;
    case DK_Q4_1: return 20;
    default: return 0;
    }
}

size_t dk_row_bytes(dk_format format, int k) {
    if (format == DK_F32 || format == DK_BF16) return (size_t)k * (format == DK_F32 ? 4 : 2);
    return (size_t)(k / 32) * (size_t)block_bytes(format);
}

void dk_quantize(dk_format format, const float *x, int rows, int k, void *out) {
    if (format == DK_F32) {
        memcpy(out, x, (size_t)rows * (size_t)k * 4);
        return;
    }
    if (format == DK_BF16) return dk_bf16_from_f32(x, (size_t)rows * (size_t)k, out);
    int nb = k / 32, bb = block_bytes(format);
    for (int r = 0; r < rows; r++) {
        for (int b = 0; b < nb; b++) {
            const float *v = x + (size_t)r * k + b * 32;
            uint8_t *blk = (uint8_t *)out + ((size_t)r * nb + b) * bb;
            if (format == DK_Q8_0) {
                float amax = 0;
                for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(v[j]));
                float d = amax / 127, id = d != 0 ? 1 / d : 0;
                float_to_half(d, blk);
                for (int j = 0; j < 32; j++) ((int8_t *)blk)[2 + j] = (int8_t)roundf(v[j] * id);
            } else if (format == DK_Q4_0) {
                float amax = 0, max = 0;  // the value of largest magnitude, with its sign
                for (int j = 0; j < 32; j++)
                    if (fabsf(v[j]) > amax) amax = fabsf(v[j]), max = v[j];
                float d = max / -8, id = d != 0 ? 1 / d : 0;
                float_to_half(d, blk);
                for (int j = 0; j < 16; j++) {
                    int lo = (int)(int8_t)(v[j] * id + 8.5f), hi = (int)(int8_t)(v[j + 16] * id + 8.5f);
                    lo = lo > 15 ? 15 : lo;
                    hi = hi > 15 ? 15 : hi;
                    blk[2 + j] = (uint8_t)(lo | (hi << 4));
                }
            } else {
                float min = v[0], max = v[0];
                for (int j = 1; j < 32; j++) min = fminf(min, v[j]), max = fmaxf(max, v[j]);
                float d = (max - min) / 15, id = d != 0 ? 1 / d : 0;
                float_to_half(d, blk);
                float_to_half(min, blk + 2);
                for (int j = 0; j < 16; j++) {
                    int lo = (int)(int8_t)((v[j] - min) * id + 0.5f), hi = (int)(int8_t)((v[j + 16] - min) * id + 0.5f);
                    lo = lo > 15 ? 15 : lo;
                    hi = hi > 15 ? 15 : hi;
                    blk[4 + j] = (uint8_t)(lo | (hi << 4));
                }
            }
        }
    }
}

void dk_dequantize(dk_format format, const void *w, int rows, int k, float *out) {
    if (format == DK_F32) {
        memcpy(out, w, (size_t)rows * (size_t)k * 4);
        return;
    }
    if (format == DK_BF16) return dk_bf16_to_f32(w, (size_t)rows * (size_t)k, out);
    int nb = k / 32, bb = block_bytes(format);
    for (size_t b = 0; b < (size_t)rows * nb; b++) {
        const uint8_t *blk = (const uint8_t *)w + b * bb;
        float *o = out + b * 32, d = half_to_float(blk);
        if (format == DK_Q8_0) {
            for (int j = 0; j < 32; j++) o[j] = d * ((const int8_t *)blk)[2 + j];
        } else if (format == DK_Q4_0) {
            for (int j = 0; j < 16; j++) {
                o[j] = d * ((blk[2 + j] & 15) - 8);
                o[j + 16] = d * ((blk[2 + j] >> 4) - 8);
            }
        } else {
            float m = half_to_float(blk + 2);
            for (int j = 0; j < 16; j++) {
                o[j] = d * (blk[4 + j] & 15) + m;
                o[j + 16] = d * (blk[4 + j] >> 4) + m;
            }
        }
    }
}

static inline __attribute__((always_inline)) void quantize_activations(
    const float *x, int rows, int k, int8_t *q, float *scale, float *sum) {
    int nb = k / 32;
    for (size_t b = 0; b < (size_t)rows * nb; b++) {
        const float *v = x + b * 32;
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(v[j]));
        float d = amax / 127, id = d != 0 ? 1 / d : 0;
        int32_t s = 0;
        for (int j = 0; j < 32; j++) {
            int8_t qj = (int8_t)round_half_away(v[j] * id);
            q[b * 32 + j] = qj;
            s += qj;
        }
        scale[b] = d;
        sum[b] = d * (float)s;
    }
}

static inline __attribute__((always_inline)) void round_activations(float *x, int rows, int k) {
    for (size_t b = 0; b < (size_t)rows * (k / 32); b++) {
        float *v = x + b * 32, amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(v[j]));
        float d = amax / 127, id = d != 0 ? 1 / d : 0;
        for (int j = 0; j < 32; j++) v[j] = round_half_away(v[j] * id) * d;
    }
}

#if DK_X86
// The same loops compiled for AVX2, where truncation is an instruction rather than a call.
__attribute__((target("avx2,fma,f16c"))) static void quantize_activations_avx2(
    const float *x, int rows, int k, int8_t *q, float *scale, float *sum) {
    quantize_activations(x, rows, k, q, scale, sum);
}
__attribute__((target("avx2,fma,f16c"))) static void round_activations_avx2(float *x, int rows, int k) {
    round_activations(x, rows, k);
}
#endif

void dk_quantize_activations(const float *x, int rows, int k, int8_t *q, float *scale, float *sum) {
#if DK_X86
    if (dk_level() >= 1) return quantize_activations_avx2(x, rows, k, q, scale, sum);
#endif
    quantize_activations(x, rows, k, q, scale, sum);
}

void dk_round_activations(float *x, int rows, int k) {
#if DK_X86
    if (dk_level() >= 1) return round_activations_avx2(x, rows, k);
#endif
    round_activations(x, rows, k);
}

// MARK: quantized products, scalar

// The integer dot product of weight block `blk` with 32 activations, and the block's scales.
static inline int32_t block_dot_scalar(dk_format f, const uint8_t *blk, const int8_t *x) {
    int32_t s = 0;
    if (f == DK_Q8_0) {
        for (int j = 0; j < 32; j++) s += ((const int8_t *)blk)[2 + j] * x[j];
    } else {
        const uint8_t *qs = blk + (f == DK_Q4_0 ? 2 : 4);
        for (int j = 0; j < 16; j++) s += (qs[j] & 15) * x[j] + (qs[j] >> 4) * x[j + 16];
    }
    return s;
}

static void matmul_quantized_scalar(
    dk_format f, const void *w, int k, int r0, int r1, const int8_t *xq, const float *xscale, const float *xsum,
    int n, float *y, int ldy) {
    int nb = k / 32, bb = block_bytes(f);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * nb * bb;
        for (int j = 0; j < n; j++) {
            float acc = 0;
            for (int b = 0; b < nb; b++) {
                const uint8_t *blk = row + b * bb;
                float dw = half_to_float(blk), dx = xscale[(size_t)j * nb + b];
                int32_t dot = block_dot_scalar(f, blk, xq + ((size_t)j * nb + b) * 32);
                float xs = xsum[(size_t)j * nb + b];  // dx times the block's integer sum
                if (f == DK_Q8_0) acc += dw * dx * (float)dot;
                else if (f == DK_Q4_0) acc += dw * dx * (float)dot - 8 * dw * xs;
                else acc += dw * dx * (float)dot + half_to_float(blk + 2) * xs;
            }
            y[(size_t)j * ldy + r] = acc;
        }
    }
}

static void matmul_f32_scalar(const float *w, int k, int r0, int r1, const float *x, int n, float *y, int ldy) {
    for (int r = r0; r < r1; r++) {
        const float *row = w + (size_t)r * k;
        for (int j = 0; j < n; j++) {
            const float *xj = x + (size_t)j * k;
            float acc = 0;
            for (int i = 0; i < k; i++) acc += row[i] * xj[i];
            y[(size_t)j * ldy + r] = acc;
        }
    }
}

static void attend_scalar(
    const float *q, int h, int g, int d, const float *k, const float *v, int keys, int stride, float scale, float *out,
    float *p, float *stats) {
    int group = h / g;
    for (int head = 0; head < h; head++) {
        const float *qh = q + head * d;
        int kv = head / group;
        float top = -INFINITY;
        for (int j = 0; j < keys; j++) {
            const float *kj = k + (size_t)j * stride + kv * d;
            float s = 0;
            for (int i = 0; i < d; i++) s += qh[i] * kj[i];
            p[j] = s * scale;
            top = fmaxf(top, p[j]);
        }
        float total = 0;
        for (int j = 0; j < keys; j++) total += (p[j] = expf(p[j] - top));
        if (stats) stats[2 * head] = top, stats[2 * head + 1] = total;
        float *o = out + head * d;
        for (int i = 0; i < d; i++) o[i] = 0;
        for (int j = 0; j < keys; j++) {
            const float *vj = v + (size_t)j * stride + kv * d;
            float pj = p[j] / total;
            for (int i = 0; i < d; i++) o[i] += pj * vj[i];
        }
    }
}

#if DK_X86

// MARK: AVX2 and AVX-512 VNNI

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static inline float half_f16c(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// A weight block's 32 values as bytes: signed for Q8_0, the unsigned nibbles for Q4_*.
AVX2 static inline __m256i load_weights(dk_format f, const uint8_t *blk) {
    if (f == DK_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + 2));
    __m128i raw = _mm_loadu_si128((const __m128i *)(blk + (f == DK_Q4_0 ? 2 : 4)));
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

// Eight int32 partial sums of w . x: maddubs takes unsigned x signed, so a signed Q8_0 weight
// gives its magnitude and moves its sign onto x (no overflow: |w| <= 127).
AVX2 static inline __m256i dot_avx2(dk_format f, __m256i wv, __m256i xv) {
    __m256i p16 = f == DK_Q8_0 ? _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv))
                               : _mm256_maddubs_epi16(wv, xv);
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

VNNI static inline __m256i dot_vnni(dk_format f, __m256i wv, __m256i xv) {
    if (f == DK_Q8_0) return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), wv, xv);
}

// One weight row against up to four activation rows, so each weight block is unpacked once
// for all of them; two blocks per iteration into two sets of accumulators (vector sums and the
// 4-bit formats' scalar offsets), so consecutive blocks' multiply-adds do not wait on each
// other: one chain through every block bounded the loop at its 4-cycle latency per block.
// Instantiated once per instruction set.
#define QUANTIZED_ROWS(NAME, ATTR, DOT)                                                                               \
    ATTR static inline __attribute__((always_inline)) void NAME##_block(                                                                             \
        dk_format f, const uint8_t *blk, size_t b, int nb, const int8_t *xq, const float *xscale, const float *xsum,  \
        int nj, __m256 *acc, float *offset) {                                                                         \
        __m256i wv = load_weights(f, blk);                                                                            \
        float dw = half_f16c(blk), mw = f == DK_Q4_1 ? half_f16c(blk + 2) : -8 * dw;                                  \
        for (int j = 0; j < nj; j++) {                                                                                \
            size_t xb = (size_t)j * nb + b;                                                                           \
            __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + xb * 32));                                        \
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xscale[xb]), _mm256_cvtepi32_ps(DOT(f, wv, xv)), acc[j]);    \
            if (f != DK_Q8_0) offset[j] += mw * xsum[xb];                                                             \
        }                                                                                                             \
    }                                                                                                                 \
    ATTR static inline __attribute__((always_inline)) void NAME(                                                      \
        dk_format f, const uint8_t *row, int nb, const int8_t *xq, const float *xscale, const float *xsum, int nj,   \
        float *y, int ldy) {                                                                                          \
        __m256 acc[2][4];                                                                                             \
        float offset[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};                                                            \
        for (int j = 0; j < 4; j++) acc[0][j] = acc[1][j] = _mm256_setzero_ps();                                      \
        int bb = block_bytes(f), b = 0;                                                                               \
        for (; b + 2 <= nb; b += 2) {                                                                                 \
            NAME##_block(f, row + b * bb, b, nb, xq, xscale, xsum, nj, acc[0], offset[0]);                            \
            NAME##_block(f, row + (b + 1) * bb, b + 1, nb, xq, xscale, xsum, nj, acc[1], offset[1]);                  \
        }                                                                                                             \
        if (b < nb) NAME##_block(f, row + b * bb, b, nb, xq, xscale, xsum, nj, acc[0], offset[0]);                    \
        for (int j = 0; j < nj; j++)                                                                                  \
            y[(size_t)j * ldy] = hsum8(_mm256_add_ps(acc[0][j], acc[1][j])) + (offset[0][j] + offset[1][j]);          \
    }

QUANTIZED_ROWS(quantized_rows_avx2, AVX2, dot_avx2)
QUANTIZED_ROWS(quantized_rows_vnni, VNNI, dot_vnni)

// The row loop, with the format and the number of activation rows (1 to 4) as constants in
// each of its twelve instances, so the accumulators stay in registers and no branch on the
// format is left inside the block loop.
#define QUANTIZED_LOOP(NAME, ATTR, ROWS, F, NJ)                                                                       \
    ATTR static void NAME##_##F##_##NJ(                                                                               \
        const void *w, int nb, int r0, int r1, const int8_t *xq, const float *xscale, const float *xsum, float *y,   \
        int ldy) {                                                                                                    \
        size_t rb = (size_t)nb * block_bytes(F);                                                                      \
        for (int r = r0; r < r1; r++) ROWS(F, (const uint8_t *)w + r * rb, nb, xq, xscale, xsum, NJ, y + r, ldy);     \
    }
#define QUANTIZED_LOOPS(NAME, ATTR, ROWS, F)                                                                          \
    QUANTIZED_LOOP(NAME, ATTR, ROWS, F, 1)                                                                            \
    QUANTIZED_LOOP(NAME, ATTR, ROWS, F, 2)                                                                            \
    QUANTIZED_LOOP(NAME, ATTR, ROWS, F, 3)                                                                            \
    QUANTIZED_LOOP(NAME, ATTR, ROWS, F, 4)
#define QUANTIZED_MATMUL(NAME, ATTR, ROWS)                                                                            \
    QUANTIZED_LOOPS(NAME, ATTR, ROWS, DK_Q8_0)                                                                        \
    QUANTIZED_LOOPS(NAME, ATTR, ROWS, DK_Q4_0)                                                                        \
    QUANTIZED_LOOPS(NAME, ATTR, ROWS, DK_Q4_1)                                                                        \
    static void NAME(                                                                                                 \
        dk_format f, const void *w, int k, int r0, int r1, const int8_t *xq, const float *xscale, const float *xsum,  \
        int n, float *y, int ldy) {                                                                                   \
        typedef void (*loop)(const void *, int, int, int, const int8_t *, const float *, const float *, float *, int); \
        static const loop loops[3][4] = {                                                                             \
            {NAME##_DK_Q8_0_1, NAME##_DK_Q8_0_2, NAME##_DK_Q8_0_3, NAME##_DK_Q8_0_4},                                 \
            {NAME##_DK_Q4_0_1, NAME##_DK_Q4_0_2, NAME##_DK_Q4_0_3, NAME##_DK_Q4_0_4},                                 \
            {NAME##_DK_Q4_1_1, NAME##_DK_Q4_1_2, NAME##_DK_Q4_1_3, NAME##_DK_Q4_1_4}};                                \
        int nb = k / 32;                                                                                              \
        for (int j0 = 0; j0 < n; j0 += 4) {                                                                           \
            int nj = n - j0 < 4 ? n - j0 : 4;                                                                         \
            size_t at = (size_t)j0 * nb;                                                                              \
            loops[f - 1][nj - 1](w, nb, r0, r1, xq + at * 32, xscale + at, xsum + at, y + (size_t)j0 * ldy, ldy);     \
        }                                                                                                             \
    }

QUANTIZED_MATMUL(matmul_quantized_avx2, AVX2, quantized_rows_avx2)
QUANTIZED_MATMUL(matmul_quantized_vnni, VNNI, quantized_rows_vnni)

// f32: four activation rows per pass over a weight row, 8 lanes, two accumulators each.
AVX2 static void matmul_f32_avx2(const float *w, int k, int r0, int r1, const float *x, int n, float *y, int ldy) {
    int k16 = k & ~15;
    for (int j0 = 0; j0 < n; j0 += 4) {
        int nj = n - j0 < 4 ? n - j0 : 4;
        for (int r = r0; r < r1; r++) {
            const float *row = w + (size_t)r * k;
            __m256 a[4][2];
            for (int j = 0; j < 4; j++) a[j][0] = a[j][1] = _mm256_setzero_ps();
            for (int i = 0; i < k16; i += 16) {
                __m256 w0 = _mm256_loadu_ps(row + i), w1 = _mm256_loadu_ps(row + i + 8);
                for (int j = 0; j < nj; j++) {
                    const float *xj = x + (size_t)(j0 + j) * k + i;
                    a[j][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xj), a[j][0]);
                    a[j][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xj + 8), a[j][1]);
                }
            }
            for (int j = 0; j < nj; j++) {
                const float *xj = x + (size_t)(j0 + j) * k;
                float s = hsum8(_mm256_add_ps(a[j][0], a[j][1]));
                for (int i = k16; i < k; i++) s += row[i] * xj[i];
                y[(size_t)(j0 + j) * ldy + r] = s;
            }
        }
    }
}

// y[j, r] = W[r] . x[j] for R (at most 4) weight rows and J (at most 3) input rows: 12
// accumulators of 8 lanes, 7 loads per 12 FMAs. R and J are constants where it is inlined.
AVX2 static inline __attribute__((always_inline)) void f32_block_avx2(
    const float *w, int k, int r, int R, const float *x, int j, int J, float *y, int ldy) {
    __m256 acc[4][3];
    for (int a = 0; a < R; a++)
        for (int b = 0; b < J; b++) acc[a][b] = _mm256_setzero_ps();
    int k8 = k & ~7;
    for (int i = 0; i < k8; i += 8) {
        __m256 xv[3];
        for (int b = 0; b < J; b++) xv[b] = _mm256_loadu_ps(x + (size_t)(j + b) * k + i);
        for (int a = 0; a < R; a++) {
            __m256 wv = _mm256_loadu_ps(w + (size_t)(r + a) * k + i);
            for (int b = 0; b < J; b++) acc[a][b] = _mm256_fmadd_ps(wv, xv[b], acc[a][b]);
        }
    }
    for (int a = 0; a < R; a++)
        for (int b = 0; b < J; b++) {
            const float *wr = w + (size_t)(r + a) * k, *xj = x + (size_t)(j + b) * k;
            float s = hsum8(acc[a][b]);
            for (int i = k8; i < k; i++) s += wr[i] * xj[i];
            y[(size_t)(j + b) * ldy + r + a] = s;
        }
}

// Every input row against the weight rows four at a time: the four rows stay in L1 while the
// inputs pass by three at a time, so each weight is read from memory once per product
// however many inputs there are (the kernel above reads it once per four inputs, but streams
// one row at a time, which is faster while memory, not arithmetic, is the limit: below 8
// inputs). Each dot product sums in the same order whatever the number of inputs.
AVX2 static void matmul_f32_wide_avx2(const float *w, int k, int r0, int r1, const float *x, int n, float *y, int ldy) {
    int r = r0;
    for (; r + 4 <= r1; r += 4) {
        int j = 0;
        for (; j + 3 <= n; j += 3) f32_block_avx2(w, k, r, 4, x, j, 3, y, ldy);
        if (n - j == 2) f32_block_avx2(w, k, r, 4, x, j, 2, y, ldy);
        if (n - j == 1) f32_block_avx2(w, k, r, 4, x, j, 1, y, ldy);
    }
    for (; r < r1; r++) {
        int j = 0;
        for (; j + 3 <= n; j += 3) f32_block_avx2(w, k, r, 1, x, j, 3, y, ldy);
        if (n - j == 2) f32_block_avx2(w, k, r, 1, x, j, 2, y, ldy);
        if (n - j == 1) f32_block_avx2(w, k, r, 1, x, j, 1, y, ldy);
    }
}

AVX2 static inline float dot_f32_avx2(const float *a, const float *b, int d) {
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= d; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum8(acc);
    for (; i < d; i++) s += a[i] * b[i];
    return s;
}

// Lane t of the result is the sum of the lanes of a[t].
AVX2 static inline __m256 hsum8x8(const __m256 *a) {
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// exp(x) for x <= 0 (scores minus their maximum): 2^n e^r with |r| <= ln2/2, e^r by a degree-6
// polynomial (relative error below 2e-7); x below -87 gives 0.
AVX2 static inline __m256 exp_nonpositive(__m256 x) {
    __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(bits)));
}

// Scores eight keys at a time (one dot product per key, reduced together), the softmax's
// exponentials eight at a time, and the weighted values 64 dimensions at a time with the keys
// outermost, so each value row is read once per head.
AVX2 static void attend_avx2(
    const float *q, int h, int g, int d, const float *k, const float *v, int keys, int stride, float scale, float *out,
    float *p, float *stats) {
    int group = h / g;
    for (int head = 0; head < h; head++) {
        const float *qh = q + head * d;
        const float *kh = k + (head / group) * d, *vh = v + (head / group) * d;
        int j = 0;
        if (d % 8 == 0) {
            for (; j + 8 <= keys; j += 8) {
                __m256 acc[8];
                for (int t = 0; t < 8; t++) acc[t] = _mm256_setzero_ps();
                for (int i = 0; i < d; i += 8) {
                    __m256 qv = _mm256_loadu_ps(qh + i);
                    for (int t = 0; t < 8; t++)
                        acc[t] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kh + (size_t)(j + t) * stride + i), acc[t]);
                }
                _mm256_storeu_ps(p + j, _mm256_mul_ps(hsum8x8(acc), _mm256_set1_ps(scale)));
            }
        }
        for (; j < keys; j++) p[j] = dot_f32_avx2(qh, kh + (size_t)j * stride, d) * scale;
        float top = -INFINITY;
        for (j = 0; j < keys; j++) top = fmaxf(top, p[j]);
        __m256 sum = _mm256_setzero_ps();
        for (j = 0; j + 8 <= keys; j += 8) {
            __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(p + j), _mm256_set1_ps(top)));
            _mm256_storeu_ps(p + j, e);
            sum = _mm256_add_ps(sum, e);
        }
        float total = hsum8(sum);
        for (; j < keys; j++) total += (p[j] = expf(p[j] - top));
        if (stats) stats[2 * head] = top, stats[2 * head + 1] = total;
        float *o = out + head * d;
        int i = 0;
        for (; i + 64 <= d; i += 64) {
            __m256 acc[8];
            for (int t = 0; t < 8; t++) acc[t] = _mm256_setzero_ps();
            for (j = 0; j < keys; j++) {
                __m256 pj = _mm256_set1_ps(p[j]);
                const float *vj = vh + (size_t)j * stride + i;
                for (int t = 0; t < 8; t++) acc[t] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * t), acc[t]);
            }
            for (int t = 0; t < 8; t++) _mm256_storeu_ps(o + i + 8 * t, _mm256_mul_ps(acc[t], _mm256_set1_ps(1 / total)));
        }
        for (; i + 8 <= d; i += 8) {
            __m256 acc = _mm256_setzero_ps();
            for (j = 0; j < keys; j++)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(vh + (size_t)j * stride + i), acc);
            _mm256_storeu_ps(o + i, _mm256_mul_ps(acc, _mm256_set1_ps(1 / total)));
        }
        for (; i < d; i++) {
            float acc = 0;
            for (j = 0; j < keys; j++) acc += p[j] * vh[(size_t)j * stride + i];
            o[i] = acc / total;
        }
    }
}

#endif

// MARK: interleaved rows

// Activation rows from which the interleaved product unpacks each block once for all of them.
enum { INTERLEAVED_WIDE_FROM = 3 };

// Bytes of one group-block: 8 scales (and 8 minima), then 128 bytes of nibbles or 256 of
// Q8_0's int8 values, in chunks of 32 (4 bytes of each row).
static int group_block_bytes(dk_format f) { return 8 * block_bytes(f); }
static int scale_bytes(dk_format f) { return f == DK_Q4_1 ? 32 : 16; }
static int chunk_count(dk_format f) { return f == DK_Q8_0 ? 8 : 4; }

void dk_interleave(dk_format f, const void *w, int rows, int k, void *out) {
    int nb = k / 32, bb = block_bytes(f), gb = group_block_bytes(f), sb = scale_bytes(f), qs = f == DK_Q4_1 ? 4 : 2;
    int chunks = chunk_count(f);
    for (int g = 0; g < rows / 8; g++) {
        for (int b = 0; b < nb; b++) {
            uint8_t *o = (uint8_t *)out + ((size_t)g * nb + b) * gb;
            for (int lane = 0; lane < 8; lane++) {
                const uint8_t *blk = (const uint8_t *)w + ((size_t)(g * 8 + lane) * nb + b) * bb;
                memcpy(o + 2 * lane, blk, 2);
                if (f == DK_Q4_1) memcpy(o + 16 + 2 * lane, blk + 2, 2);
                for (int c = 0; c < chunks; c++) memcpy(o + sb + 32 * c + 4 * lane, blk + qs + 4 * c, 4);
            }
        }
    }
}

// Row r's block b back in the row layout.
static void deinterleave_block(dk_format f, const uint8_t *w, int nb, int r, int b, uint8_t *blk) {
    int gb = group_block_bytes(f), sb = scale_bytes(f), qs = f == DK_Q4_1 ? 4 : 2, lane = r % 8;
    const uint8_t *g = w + ((size_t)(r / 8) * nb + b) * gb;
    memcpy(blk, g + 2 * lane, 2);
    if (f == DK_Q4_1) memcpy(blk + 2, g + 16 + 2 * lane, 2);
    for (int c = 0; c < chunk_count(f); c++) memcpy(blk + qs + 4 * c, g + sb + 32 * c + 4 * lane, 4);
}

void dk_dequantize_interleaved(dk_format f, const void *w, int k, int r0, int r1, float *out) {
    int nb = k / 32, gb = group_block_bytes(f), sb = scale_bytes(f);
    for (int r = r0; r < r1; r++) {
        int lane = r % 8;
        const uint8_t *g = (const uint8_t *)w + (size_t)(r / 8) * nb * gb;
        float *o = out + (size_t)(r - r0) * k;
        for (int b = 0; b < nb; b++, g += gb, o += 32) {
            // The same arithmetic as dk_dequantize, so both layouts decode to the same bits.
            float d = half_to_float(g + 2 * lane), m = f == DK_Q4_1 ? half_to_float(g + 16 + 2 * lane) : 0;
            const uint8_t *q = g + sb + 4 * lane;
            if (f == DK_Q8_0) {
                for (int c = 0; c < 8; c++)
                    for (int t = 0; t < 4; t++) o[4 * c + t] = d * (float)(int8_t)q[32 * c + t];
                continue;
            }
            for (int c = 0; c < 4; c++)
                for (int t = 0; t < 4; t++) {
                    int byte = q[32 * c + t], lo = byte & 15, hi = byte >> 4;
                    if (f == DK_Q4_0) {
                        o[4 * c + t] = d * (lo - 8);
                        o[16 + 4 * c + t] = d * (hi - 8);
                    } else {
                        o[4 * c + t] = d * lo + m;
                        o[16 + 4 * c + t] = d * hi + m;
                    }
                }
        }
    }
}

static void matmul_interleaved_scalar(
    dk_format f, const void *w, int k, int r0, int r1, const int8_t *xq, const float *xscale, const float *xsum,
    int n, float *y, int ldy) {
    int nb = k / 32;
    uint8_t blk[34];
    for (int r = r0; r < r1; r++)
        for (int j = 0; j < n; j++) {
            float acc = 0;
            for (int b = 0; b < nb; b++) {
                deinterleave_block(f, (const uint8_t *)w, nb, r, b, blk);
                size_t xb = (size_t)j * nb + b;
                float dw = half_to_float(blk), dx = xscale[xb];
                float dot = (float)block_dot_scalar(f, blk, xq + xb * 32);
                if (f == DK_Q8_0) acc += dw * dx * dot;
                else if (f == DK_Q4_0) acc += dw * dx * dot - 8 * dw * xsum[xb];
                else acc += dw * dx * dot + half_to_float(blk + 2) * xsum[xb];
            }
            y[(size_t)j * ldy + r] = acc;
        }
}

#if DK_X86
// One group of 8 rows against NJ (1 or 2) activation rows: lane r of every register is row r,
// so a block's dot products accumulate in place (x's 4-byte pieces broadcast) and the 8
// scales load as one vector: no horizontal sums. Each chunk of nibbles is unpacked once for
// both activation rows; two integer accumulators per row keep the multiply-adds independent.
// Q8_0's signed weights enter the unsigned-by-signed multiply-add as |w| against x with w's
// sign (x is within -127...127, so the sign never overflows); it has no offset term.
#define INTERLEAVED_GROUP(NAME, ATTR, DOT)                                                                            \
    ATTR static inline __attribute__((always_inline)) void NAME(                                                     \
        dk_format f, const uint8_t *g, int nb, const int8_t *xq, const float *xscale, const float *xsum, int nj,     \
        __m256 *out) {                                                                                                \
        int gb = group_block_bytes(f), sb = scale_bytes(f);                                                           \
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, offset[2] = {acc[0], acc[0]};                     \
        __m256i m4 = _mm256_set1_epi8(15);                                                                            \
        for (int b = 0; b < nb; b++, g += gb) {                                                                       \
            __m256i s[2][2];                                                                                          \
            for (int j = 0; j < nj; j++) s[j][0] = s[j][1] = _mm256_setzero_si256();                                  \
            for (int c = 0; f == DK_Q8_0 && c < 8; c++) {                                                             \
                __m256i q = _mm256_loadu_si256((const __m256i *)(g + sb + 32 * c)), a = _mm256_abs_epi8(q);           \
                for (int j = 0; j < nj; j++) {                                                                        \
                    const int32_t *x4 = (const int32_t *)(xq + ((size_t)j * nb + b) * 32);                            \
                    s[j][c & 1] = DOT(s[j][c & 1], a, _mm256_sign_epi8(_mm256_set1_epi32(x4[c]), q));                 \
                }                                                                                                     \
            }                                                                                                         \
            for (int c = 0; f != DK_Q8_0 && c < 4; c++) {                                                             \
                __m256i q = _mm256_loadu_si256((const __m256i *)(g + sb + 32 * c));                                  \
                __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);             \
                for (int j = 0; j < nj; j++) {                                                                        \
                    const int32_t *x4 = (const int32_t *)(xq + ((size_t)j * nb + b) * 32);                            \
                    s[j][c & 1] = DOT(s[j][c & 1], lo, _mm256_set1_epi32(x4[c]));                                     \
                    s[j][c & 1] = DOT(s[j][c & 1], hi, _mm256_set1_epi32(x4[4 + c]));                                 \
                }                                                                                                     \
            }                                                                                                         \
            __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));                                         \
            __m256 mins = f == DK_Q4_1 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16)))                  \
                                       : _mm256_mul_ps(d, _mm256_set1_ps(-8.0f));                                     \
            for (int j = 0; j < nj; j++) {                                                                            \
                size_t xb = (size_t)j * nb + b;                                                                       \
                __m256 dot = _mm256_cvtepi32_ps(_mm256_add_epi32(s[j][0], s[j][1]));                                  \
                acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xscale[xb])), dot, acc[j]);                  \
                if (f != DK_Q8_0) offset[j] = _mm256_fmadd_ps(mins, _mm256_set1_ps(xsum[xb]), offset[j]);              \
            }                                                                                                         \
        }                                                                                                             \
        for (int j = 0; j < nj; j++) out[j] = _mm256_add_ps(acc[j], offset[j]);                                       \
    }

AVX2 static inline __m256i dot4_avx2(__m256i acc, __m256i w, __m256i x) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)));
}
VNNI static inline __m256i dot4_vnni(__m256i acc, __m256i w, __m256i x) { return _mm256_dpbusd_epi32(acc, w, x); }

INTERLEAVED_GROUP(interleaved_group_avx2, AVX2, dot4_avx2)
INTERLEAVED_GROUP(interleaved_group_vnni, VNNI, dot4_vnni)

// Activation rows two at a time; the format and the row count are constants in each call of
// the group function, so its loops unroll and its accumulators stay in registers.
#define INTERLEAVED_MATMUL(NAME, ATTR, GROUP)                                                                         \
    ATTR static void NAME(                                                                                            \
        dk_format f, const void *w, int k, int r0, int r1, const int8_t *xq, const float *xscale, const float *xsum, \
        int n, float *y, int ldy) {                                                                                   \
        int nb = k / 32;                                                                                              \
        size_t stride = (size_t)nb * group_block_bytes(f);                                                            \
        for (int j0 = 0; j0 < n; j0 += 2) {                                                                           \
            int nj = n - j0 < 2 ? n - j0 : 2;                                                                         \
            size_t at = (size_t)j0 * nb;                                                                              \
            for (int g0 = r0 / 8 * 8; g0 < r1; g0 += 8) {                                                             \
                const uint8_t *g = (const uint8_t *)w + (size_t)(g0 / 8) * stride;                                    \
                __m256 v[2];                                                                                          \
                if (f == DK_Q8_0 && nj == 1) GROUP(DK_Q8_0, g, nb, xq + at * 32, xscale + at, xsum + at, 1, v);       \
                else if (f == DK_Q8_0) GROUP(DK_Q8_0, g, nb, xq + at * 32, xscale + at, xsum + at, 2, v);             \
                else if (f == DK_Q4_0 && nj == 1) GROUP(DK_Q4_0, g, nb, xq + at * 32, xscale + at, xsum + at, 1, v);  \
                else if (f == DK_Q4_0) GROUP(DK_Q4_0, g, nb, xq + at * 32, xscale + at, xsum + at, 2, v);             \
                else if (nj == 1) GROUP(DK_Q4_1, g, nb, xq + at * 32, xscale + at, xsum + at, 1, v);                  \
                else GROUP(DK_Q4_1, g, nb, xq + at * 32, xscale + at, xsum + at, 2, v);                               \
                for (int j = 0; j < nj; j++) {                                                                        \
                    float lanes[8];                                                                                   \
                    _mm256_storeu_ps(lanes, v[j]);                                                                    \
                    for (int r = g0 < r0 ? r0 : g0; r < g0 + 8 && r < r1; r++)                                        \
                        y[(size_t)(j0 + j) * ldy + r] = lanes[r - g0];                                                \
                }                                                                                                     \
            }                                                                                                         \
        }                                                                                                             \
    }

INTERLEAVED_MATMUL(matmul_interleaved_avx2, AVX2, interleaved_group_avx2)
INTERLEAVED_MATMUL(matmul_interleaved_vnni, VNNI, interleaved_group_vnni)

// Activation rows a tile at a time of the wide kernel below; its float sums (two vectors a
// row) take 4 KB of stack.
enum { WIDE_TILE = 64 };

// Many activation rows: one group of 8 rows a block at a time, the block's nibbles unpacked
// once into eight registers (Q8_0: its eight chunks and their magnitudes) that stay while
// every activation row of the tile passes by, so the unpacking is paid once per block rather
// than once per two rows. Each (row, input) pair runs the same operations in the same order
// as the group kernel above (the integer sums are exact; the float ones are the same
// multiply-adds), so the results are bitwise equal to it.
#define INTERLEAVED_WIDE(NAME, ATTR, DOT)                                                                             \
    ATTR static void NAME(                                                                                            \
        dk_format f, const void *w, int k, int r0, int r1, const int8_t *xq, const float *xscale, const float *xsum, \
        int n, float *y, int ldy) {                                                                                   \
        int nb = k / 32, gb = group_block_bytes(f), sb = scale_bytes(f);                                              \
        size_t stride = (size_t)nb * gb;                                                                              \
        __m256i m4 = _mm256_set1_epi8(15), zero = _mm256_setzero_si256();                                             \
        __m256 acc[2 * WIDE_TILE];                                                                                    \
        for (int j0 = 0; j0 < n; j0 += WIDE_TILE) {                                                                   \
            int nj = n - j0 < WIDE_TILE ? n - j0 : WIDE_TILE;                                                         \
            for (int g0 = r0 / 8 * 8; g0 < r1; g0 += 8) {                                                             \
                const uint8_t *g = (const uint8_t *)w + (size_t)(g0 / 8) * stride;                                    \
                for (int j = 0; j < 2 * nj; j++) acc[j] = _mm256_setzero_ps();                                        \
                for (int b = 0; b < nb; b++, g += gb) {                                                               \
                    if (f == DK_Q8_0) {                                                                               \
                        __m256i q[8], a[8];                                                                           \
                        for (int c = 0; c < 8; c++) {                                                                 \
                            q[c] = _mm256_loadu_si256((const __m256i *)(g + sb + 32 * c));                           \
                            a[c] = _mm256_abs_epi8(q[c]);                                                             \
                        }                                                                                             \
                        __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));                             \
                        for (int j = 0; j < nj; j++) {                                                                \
                            size_t xb = (size_t)(j0 + j) * nb + b;                                                    \
                            const int32_t *x4 = (const int32_t *)(xq + xb * 32);                                      \
                            __m256i s0 = zero, s1 = zero;                                                             \
                            for (int c = 0; c < 8; c += 2) {                                                          \
                                s0 = DOT(s0, a[c], _mm256_sign_epi8(_mm256_set1_epi32(x4[c]), q[c]));                 \
                                s1 = DOT(s1, a[c + 1], _mm256_sign_epi8(_mm256_set1_epi32(x4[c + 1]), q[c + 1]));     \
                            }                                                                                         \
                            __m256 dot = _mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1));                                \
                            acc[2 * j] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xscale[xb])), dot, acc[2 * j]); \
                        }                                                                                             \
                        continue;                                                                                     \
                    }                                                                                                 \
                    __m256i lo[4], hi[4];                                                                             \
                    for (int c = 0; c < 4; c++) {                                                                     \
                        __m256i q = _mm256_loadu_si256((const __m256i *)(g + sb + 32 * c));                          \
                        lo[c] = _mm256_and_si256(q, m4);                                                              \
                        hi[c] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);                                        \
                    }                                                                                                 \
                    __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));                                 \
                    __m256 mins = f == DK_Q4_1 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16)))          \
                                               : _mm256_mul_ps(d, _mm256_set1_ps(-8.0f));                             \
                    for (int j = 0; j < nj; j++) {                                                                    \
                        size_t xb = (size_t)(j0 + j) * nb + b;                                                        \
                        const int32_t *x4 = (const int32_t *)(xq + xb * 32);                                          \
                        __m256i s0 = DOT(zero, lo[0], _mm256_set1_epi32(x4[0]));                                      \
                        __m256i s1 = DOT(zero, lo[1], _mm256_set1_epi32(x4[1]));                                      \
                        s0 = DOT(s0, hi[0], _mm256_set1_epi32(x4[4]));                                                \
                        s1 = DOT(s1, hi[1], _mm256_set1_epi32(x4[5]));                                                \
                        s0 = DOT(s0, lo[2], _mm256_set1_epi32(x4[2]));                                                \
                        s1 = DOT(s1, lo[3], _mm256_set1_epi32(x4[3]));                                                \
                        s0 = DOT(s0, hi[2], _mm256_set1_epi32(x4[6]));                                                \
                        s1 = DOT(s1, hi[3], _mm256_set1_epi32(x4[7]));                                                \
                        __m256 dot = _mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1));                                    \
                        acc[2 * j] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xscale[xb])), dot, acc[2 * j]);  \
                        acc[2 * j + 1] = _mm256_fmadd_ps(mins, _mm256_set1_ps(xsum[xb]), acc[2 * j + 1]);             \
                    }                                                                                                 \
                }                                                                                                     \
                for (int j = 0; j < nj; j++) {                                                                        \
                    float lanes[8];                                                                                   \
                    _mm256_storeu_ps(lanes, _mm256_add_ps(acc[2 * j], acc[2 * j + 1]));                               \
                    for (int r = g0 < r0 ? r0 : g0; r < g0 + 8 && r < r1; r++)                                        \
                        y[(size_t)(j0 + j) * ldy + r] = lanes[r - g0];                                                \
                }                                                                                                     \
            }                                                                                                         \
        }                                                                                                             \
    }

INTERLEAVED_WIDE(matmul_interleaved_wide_avx2, AVX2, dot4_avx2)
INTERLEAVED_WIDE(matmul_interleaved_wide_vnni, VNNI, dot4_vnni)
#endif

void dk_matmul_interleaved(
    dk_format format, const void *w, int k, int r0, int r1, const int8_t *xq, const float *xscale,
    const float *xsum, int n, float *y, int ldy) {
#if DK_X86
    int level = dk_level(), wide = n >= INTERLEAVED_WIDE_FROM;
    if (level == 2 && wide) return matmul_interleaved_wide_vnni(format, w, k, r0, r1, xq, xscale, xsum, n, y, ldy);
    if (level == 2) return matmul_interleaved_vnni(format, w, k, r0, r1, xq, xscale, xsum, n, y, ldy);
    if (level == 1 && wide) return matmul_interleaved_wide_avx2(format, w, k, r0, r1, xq, xscale, xsum, n, y, ldy);
    if (level == 1) return matmul_interleaved_avx2(format, w, k, r0, r1, xq, xscale, xsum, n, y, ldy);
#endif
    matmul_interleaved_scalar(format, w, k, r0, r1, xq, xscale, xsum, n, y, ldy);
}

// MARK: dispatch

void dk_matmul_quantized(
    dk_format format, const void *w, int k, int r0, int r1, const int8_t *xq, const float *xscale,
    const float *xsum, int n, float *y, int ldy) {
#if DK_X86
    int level = dk_level();
    if (level == 2) return matmul_quantized_vnni(format, w, k, r0, r1, xq, xscale, xsum, n, y, ldy);
    if (level == 1) return matmul_quantized_avx2(format, w, k, r0, r1, xq, xscale, xsum, n, y, ldy);
#endif
    matmul_quantized_scalar(format, w, k, r0, r1, xq, xscale, xsum, n, y, ldy);
}

void dk_matmul_f32(const float *w, int k, int r0, int r1, const float *x, int n, float *y, int ldy) {
#if DK_X86
    if (dk_level() >= 1) {
        if (n >= 8) return matmul_f32_wide_avx2(w, k, r0, r1, x, n, y, ldy);  // measured: equal at 8, faster above
        return matmul_f32_avx2(w, k, r0, r1, x, n, y, ldy);
    }
#endif
    matmul_f32_scalar(w, k, r0, r1, x, n, y, ldy);
}

void dk_attend(
    const float *q, int h, int g, int d, const float *k, const float *v, int keys, int stride, float scale,
    float *out, float *scratch, float *stats) {
#if DK_X86
    if (dk_level() >= 1) return attend_avx2(q, h, g, d, k, v, keys, stride, scale, out, scratch, stats);
#endif
    attend_scalar(q, h, g, d, k, v, keys, stride, scale, out, scratch, stats);
}
