// Vector helpers for Swift's SIMD kernels. Swift's SIMD8<Float>.addingProduct is a lane
// loop that the optimiser sometimes turns into eight scalar FMAs; this inline function
// always becomes one vfmadd in code built for FMA (it inlines into the Swift caller, which
// sees an 8-lane float vector as SIMD8<Float>).
#ifndef DISTILL_VECTOR_H
#define DISTILL_VECTOR_H

typedef float distill_float8 __attribute__((ext_vector_type(8)));

/// a * b + c, rounded once where the build targets FMA, as a multiply and an add otherwise.
static inline __attribute__((always_inline)) distill_float8 distill_fma8(distill_float8 a, distill_float8 b, distill_float8 c) {
#if defined(__FMA__)
    return __builtin_elementwise_fma(a, b, c);
#else
    return a * b + c;
#endif
}

#endif
