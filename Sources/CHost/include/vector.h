// Vector helpers for Swift's SIMD kernels. Swift's SIMD8<Float>.addingProduct is a lane
// loop that the optimiser sometimes turns into eight scalar FMAs, and Swift has no masked
// loads; these inline functions become single instructions in code built for AVX2 + FMA
// (they inline into the Swift caller, which sees an 8-lane float vector as SIMD8<Float>).
#ifndef DISTILL_VECTOR_H
#define DISTILL_VECTOR_H

#if defined(__AVX2__)
#include <immintrin.h>
#endif

typedef float distill_float8 __attribute__((ext_vector_type(8)));

/// a * b + c, rounded once where the build targets FMA, as a multiply and an add otherwise.
static inline __attribute__((always_inline)) distill_float8 distill_fma8(distill_float8 a, distill_float8 b, distill_float8 c) {
#if defined(__FMA__)
    return __builtin_elementwise_fma(a, b, c);
#else
    return a * b + c;
#endif
}

#if defined(__AVX2__)
/// Lanes 0..<n set (n in 0...8).
static inline __attribute__((always_inline)) __m256i distill_first_lanes(long n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

/// p[0..<n] in the first n lanes (n in 0...8), 0 in the others; nothing past p[n - 1] is read.
static inline __attribute__((always_inline)) distill_float8 distill_load_first(const float *p, long n) {
#if defined(__AVX2__)
    return (distill_float8)_mm256_maskload_ps(p, distill_first_lanes(n));
#else
    distill_float8 v = {0, 0, 0, 0, 0, 0, 0, 0};
    for (long i = 0; i < n; i++) v[i] = p[i];
    return v;
#endif
}

/// Writes the first n lanes of v to p[0..<n] (n in 0...8); nothing past p[n - 1] is written.
static inline __attribute__((always_inline)) void distill_store_first(float *p, distill_float8 v, long n) {
#if defined(__AVX2__)
    _mm256_maskstore_ps(p, distill_first_lanes(n), (__m256)v);
#else
    for (long i = 0; i < n; i++) p[i] = v[i];
#endif
}

#endif
