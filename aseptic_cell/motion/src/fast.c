/* Float32 fast path, compiled three times from fast_impl.h: generic x86-64 (SSE2),
 * AVX2 and AVX-512. The module picks one at import with __builtin_cpu_supports
 * (see module.c); ASEPTIC_CELL_SIMD can force a lower level. On non-x86 targets
 * only the generic version exists and the others alias it.
 *
 * Each instantiation defines KFN(name) (function name suffix), KATTR (target
 * attributes), KVL (float lanes per vector) and the vector helpers used by the
 * kernel: KVMAX(a, b) / KVMIN(a, b) (maxps/minps semantics: a > b ? a : b and
 * a < b ? a : b), KVBITS(m), the lane bit mask of a comparison result,
 * KVSET1(x), x in every lane, and KVLE(a, b), the lane bit mask of a <= b.
 * Optionally KVOVERLAP(lo, hi, l, h): lane bits where, on all three axes i, neither
 * lo[i] > h[i] nor hi[i] < l[i] (default: from vector compares). */
#include "ccheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CC_X86 1
#else
#define CC_X86 0
#endif

/* ------------------------------------------------------------ generic */
/* blocks of CC_WS lanes for small calls (the planner's edge checks), then CC_W */
#define KFN(name) name##_generic_s
#define KW CC_WS
#define KATTR __attribute__((optimize("no-trapping-math")))
#define KVL 4
#if CC_X86
#define KVMAX(a, b) ((KFN(vf))_mm_max_ps((__m128)(a), (__m128)(b)))
#define KVMIN(a, b) ((KFN(vf))_mm_min_ps((__m128)(a), (__m128)(b)))
#define KVBITS(m) ((uint32_t)_mm_movemask_ps((__m128)(m)))
#define KVSET1(x) ((KFN(vf))_mm_set1_ps(x))
#define KVLE(a, b) KVBITS((a) <= (b))
#else
#define KVMAX(a, b) KFN(vsel)((a) > (b), (a), (b))
#define KVMIN(a, b) KFN(vsel)((a) < (b), (a), (b))
#define KVBITS(m) KFN(vbits)(m)
#define KVSET1(x) ((KFN(vf)){x, x, x, x})
#define KVLE(a, b) KVBITS((a) <= (b))
#define KPORTABLE 1
#endif
#include "fast_impl.h"
#undef KFN
#undef KW
#define KFN(name) name##_generic
#define KW CC_W
#define KSMALL(name) name##_generic_s
#include "fast_impl.h"
#undef KSMALL
#undef KW
#undef KFN
#undef KATTR
#undef KVL
#undef KVMAX
#undef KVMIN
#undef KVBITS
#undef KVSET1
#undef KVLE
#undef KPORTABLE

#if CC_X86
/* ------------------------------------------------------------ AVX2 */
/* blocks of CC_WS lanes for small calls (the planner's edge checks), then CC_W */
#define KFN(name) name##_avx2_s
#define KW CC_WS
#define KATTR __attribute__((target("avx2,fma"), optimize("no-trapping-math")))
#define KVL 8
#define KVMAX(a, b) ((KFN(vf))_mm256_max_ps((__m256)(a), (__m256)(b)))
#define KVMIN(a, b) ((KFN(vf))_mm256_min_ps((__m256)(a), (__m256)(b)))
#define KVBITS(m) ((uint32_t)_mm256_movemask_ps((__m256)(m)))
#define KVSET1(x) ((KFN(vf))_mm256_set1_ps(x))
#define KVLE(a, b) KVBITS((a) <= (b))
#include "fast_impl.h"
#undef KFN
#undef KW
#define KFN(name) name##_avx2
#define KW CC_W
#define KSMALL(name) name##_avx2_s
#include "fast_impl.h"
#undef KSMALL
#undef KW
#undef KFN
#undef KATTR
#undef KVL
#undef KVMAX
#undef KVMIN
#undef KVBITS
#undef KVSET1
#undef KVLE

/* ------------------------------------------------------------ AVX-512 */
/* The double-precision kinematics loops use 512-bit vectors; the float32 culls and
 * sphere tests use 256-bit vectors with VEX compares and movemask. Measured on
 * Zen 4 (which runs 512-bit operations as two halves): 16-lane float vectors were
 * ~15 % slower and compares into mask registers (vector-extension compares under
 * AVX-512VL become k-mask compares) ~10 % slower than this. */
/* blocks of CC_WS lanes for small calls (the planner's edge checks), then CC_W */
#define KFN(name) name##_avx512_s
#define KW CC_WS
#define KATTR __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,prefer-vector-width=512"), optimize("no-trapping-math")))
#define KVL 8
#define KVMAX(a, b) ((KFN(vf))_mm256_max_ps((__m256)(a), (__m256)(b)))
#define KVMIN(a, b) ((KFN(vf))_mm256_min_ps((__m256)(a), (__m256)(b)))
#define KVBITS(m) ((uint32_t)_mm256_movemask_ps((__m256)(m)))
#define KVSET1(x) ((KFN(vf))_mm256_set1_ps(x))
#define KVLE(a, b) ((uint32_t)_mm256_movemask_ps(_mm256_cmp_ps((__m256)(a), (__m256)(b), _CMP_LE_OQ)))
#define KVOVERLAP(lo, hi, l, h)                                                            \
    (0xffu & ~(uint32_t)_mm256_movemask_ps(_mm256_or_ps(                                   \
        _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps((__m256)lo[0], (__m256)h[0], _CMP_GT_OQ),   \
                                  _mm256_cmp_ps((__m256)hi[0], (__m256)l[0], _CMP_LT_OQ)),  \
                     _mm256_or_ps(_mm256_cmp_ps((__m256)lo[1], (__m256)h[1], _CMP_GT_OQ),   \
                                  _mm256_cmp_ps((__m256)hi[1], (__m256)l[1], _CMP_LT_OQ))), \
        _mm256_or_ps(_mm256_cmp_ps((__m256)lo[2], (__m256)h[2], _CMP_GT_OQ),                \
                     _mm256_cmp_ps((__m256)hi[2], (__m256)l[2], _CMP_LT_OQ)))))
#include "fast_impl.h"
#undef KFN
#undef KW
#define KFN(name) name##_avx512
#define KW CC_W
#define KSMALL(name) name##_avx512_s
#include "fast_impl.h"
#undef KSMALL
#undef KW
#undef KFN
#undef KATTR
#undef KVL
#undef KVMAX
#undef KVMIN
#undef KVBITS
#undef KVSET1
#undef KVLE
#undef KVOVERLAP
#else
void cc_fast_avx2(const cc_scene *S, const double *q, long n, const uint64_t *active, uint8_t *out)
{
    cc_fast_generic(S, q, n, active, out);
}
void cc_fast_avx512(const cc_scene *S, const double *q, long n, const uint64_t *active, uint8_t *out)
{
    cc_fast_generic(S, q, n, active, out);
}
#endif

/* ------------------------------------------------------------ scene preparation */

static float f32_up(double x)
{
    float f = (float)x;
    if ((double)f < x) f = nextafterf(f, INFINITY);
    return f;
}

static float f32_down(double x)
{
    float f = (float)x;
    if ((double)f > x) f = nextafterf(f, -INFINITY);
    return f;
}

static double norm3(const double v[3]) { return sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]); }

/* Derived fast-path data (see cc_scene).
 *
 * Axis-aligned cull bounds. The fast path's float32 test of a sphere (centre c,
 * radius r, all floats) against an aligned box (float centre bc, half extents h)
 * computes, per axis, e = max(fl(|fl(c - bc)|) - h, 0) rounded, then
 * d2 = fl(fl(ex^2 + ey^2) + ez^2) and calls it a hit iff d2 <= fl(r * r).
 *
 * Claim: if c_i > bc_i + h_i + r + X on some axis i, with X = 16 u (M + r), u =
 * 2^-24 and M >= |c_i| + |bc_i|, the test misses (likewise c_i < bc_i - h_i - r - X).
 * Let D = c_i - bc_i - h_i > r + X. fl(c - bc) >= (c - bc)(1 - u) >= c - bc - u M,
 * so a - h >= D - u M > r + X - u M > 0; e >= (r + X - u M)(1 - u); each of the
 * two additions and the square lose at most a factor (1 - u) (all terms are >= 0),
 * so d2 >= (r + X - u M)^2 (1 - u)^5, while fl(r * r) <= r^2 (1 + u). Since
 * X - u M >= 15 u (M + r) >= 15 u r, d2 >= r^2 (1 + 15u)^2 (1 - u)^5 > r^2 (1 + u):
 * a miss. (The double rounding of the bounds, ~1e-16 M, is far inside that slack.)
 *
 * Sphere centres are c = fl(e0 + fl(t * d)) with t in [0, 1], d = fl(e1' - e0)
 * the float segment; rounding is monotone, so every centre coordinate lies in
 * [min(e0, fl(e0 + d)), max(e0, fl(e0 + d))] exactly -- the interval the kernel
 * compares with cull_lo / cull_hi (rounded outwards from the double values
 * bc -+ (h + r_max + X)). Hence a culled (link, box, configuration) has no
 * sphere hit: the cull changes no verdict, only skips work.
 *
 * M: every float end point is within |base_p| + sum_j hypot(a_j, d_j) + max|p|
 * (rotations preserve length; + 1 m for FK and float rounding) of the origin,
 * and the centres lie between the end points; plus the largest |bc_i|. */
int cc_fast_prepare(cc_scene *S)
{
    const int L = S->nlinks, B = S->nboxes;
    const size_t ncull = (size_t)L * (size_t)(B > 0 ? B : 1);
    S->cull_lo = calloc(ncull, sizeof *S->cull_lo);
    S->cull_hi = calloc(ncull, sizeof *S->cull_hi);
    if (!S->cull_lo || !S->cull_hi) return -1;

    int off = 0;
    for (int k = 0; k < L; k++) {
        const int first = S->sph_first[k], n = S->sph_count[k];
        const int padded = (n + CC_FPAD - 1) / CC_FPAD * CC_FPAD;
        S->fsph_off[k] = off;
        S->fsph_n[k] = n;
        for (int i = 0; i < padded; i++) {
            const int s = first + (i < n ? i : n - 1);
            const float r = S->sph_r_env[s];
            S->fsph_t[off + i] = S->sph_t[s];
            S->fsph_rr_env[off + i] = r * r;
            S->fsph_r_self[off + i] = S->sph_r_self[s];
        }
        off += padded;
    }

    double m_arm = norm3(S->base_p) + 1.0, pmax = 0.0, m_box = 0.0;
    for (int j = 0; j < CC_NJ; j++) m_arm += sqrt(S->dh_a[j] * S->dh_a[j] + S->dh_d[j] * S->dh_d[j]);
    for (int k = 0; k < L; k++) {
        double a = norm3(S->link_p0[k]), c = norm3(S->link_p1[k]);
        if (a > pmax) pmax = a;
        if (c > pmax) pmax = c;
    }
    m_arm += pmax;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < 3; i++)
            if (fabs((double)S->fbox_c[b][i]) > m_box) m_box = fabs((double)S->fbox_c[b][i]);
    const double M = m_arm + m_box, u = 0x1p-24;
    for (int k = 0; k < L; k++) {
        double rmax = 0.0;
        for (int s = S->sph_first[k]; s < S->sph_first[k] + S->sph_count[k]; s++)
            if (S->sph_r_env[s] > rmax) rmax = S->sph_r_env[s];
        const double X = 16.0 * u * (M + rmax);
        for (int b = 0; b < B; b++) {
            for (int i = 0; i < 3; i++) {
                const double c = S->fbox_c[b][i], h = S->fbox_h[b][i];
                S->cull_hi[(size_t)k * B + b][i] = f32_up(c + (h + rmax + X));
                S->cull_lo[(size_t)k * B + b][i] = f32_down(c - (h + rmax + X));
            }
            S->cull_hi[(size_t)k * B + b][3] = S->cull_lo[(size_t)k * B + b][3] = 0.0f;
        }
    }

    /* Self pairs. The kernel's sphere pair test: dx = fl(ca_x - cb_x) (likewise y,
     * z), d2 = fl(fl(dx^2 + dy^2) + dz^2), hit iff d2 <= fl(r * r), r = fl(ra + rb).
     * If ca_i - cb_i = D > (ra + rb)(1 + 5u) on some axis (or the same for cb - ca),
     * then |dx| >= |D| (1 - u), d2 >= D^2 (1 - u)^5 > (ra + rb)^2 (1 + u)^3 >= fl(r * r):
     * a miss. Every centre lies in its link's range [lo, hi] (see above), so
     * ca_i - cb_i >= lo_a - hi_b; and g = fl(lo_a - hi_b) > T implies lo_a - hi_b >
     * T / (1 + u). With T >= (Rs + X)(1 + 2u), Rs = max ra + max rb and X = 16 u
     * (M + Rs), lo_a - hi_b > Rs + X > Rs (1 + 5u): no sphere pair of the two
     * links hits. Swapping the loop order (outer/inner) changes no value:
     * fl(a - b) = -fl(b - a) and fl(ra + rb) = fl(rb + ra). */
    for (int p = 0; p < S->npairs; p++) {
        int a = S->pair_a[p], b = S->pair_b[p];
        if (S->sph_count[b] < S->sph_count[a]) { int t = a; a = b; b = t; }
        S->fpair_outer[p] = a;
        S->fpair_inner[p] = b;
        double ra = 0.0, rb = 0.0;
        for (int s = S->sph_first[a]; s < S->sph_first[a] + S->sph_count[a]; s++)
            if (S->sph_r_self[s] > ra) ra = S->sph_r_self[s];
        for (int s = S->sph_first[b]; s < S->sph_first[b] + S->sph_count[b]; s++)
            if (S->sph_r_self[s] > rb) rb = S->sph_r_self[s];
        const double rs = ra + rb, X = 16.0 * u * (M + rs);
        S->pair_cull[p] = f32_up((rs + X) * (1.0 + 4.0 * u));
    }
    return cc_bvh_build(S, M);
}
