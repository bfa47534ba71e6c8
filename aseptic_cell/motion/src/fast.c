/* Float32 fast path, compiled three times from fast_impl.h: generic x86-64 (SSE2),
 * AVX2 and AVX-512. The module picks one at import with __builtin_cpu_supports
 * (see module.c); ASEPTIC_CELL_SIMD can force a lower level. On non-x86 targets
 * only the generic version exists and the others alias it. */
#include "ccheck.h"

#define KFN(name) name##_generic
#define KATTR __attribute__((optimize("no-trapping-math")))
#include "fast_impl.h"
#undef KFN
#undef KATTR

#if defined(__x86_64__) || defined(__i386__)
#define KFN(name) name##_avx2
#define KATTR __attribute__((target("avx2,fma"), optimize("no-trapping-math")))
#include "fast_impl.h"
#undef KFN
#undef KATTR

#define KFN(name) name##_avx512
#define KATTR __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,prefer-vector-width=512"), optimize("no-trapping-math")))
#include "fast_impl.h"
#undef KFN
#undef KATTR
#else
void cc_fast_avx2(const cc_scene *S, const double *q, long n, uint64_t active, uint8_t *out)
{
    cc_fast_generic(S, q, n, active, out);
}
void cc_fast_avx512(const cc_scene *S, const double *q, long n, uint64_t active, uint8_t *out)
{
    cc_fast_generic(S, q, n, active, out);
}
#endif
