/* Float32 fast path kernel, written once and compiled for several instruction
 * sets by fast.c (which defines KFN(name), KATTR, KVL and the vector helpers
 * KVMAX, KVMIN, KVBITS, KVSET1, KVLE and optionally KVOVERLAP before including
 * this file).
 *
 * Works on blocks of CC_W configurations ("lanes") in three phases:
 *   1. kinematics for all lanes at once (structure of arrays, double), link
 *      segments rounded to float;
 *   2. branch-free culls: for every (link, active box) and every self pair, one
 *      lane bit mask of the configurations that might touch; non-empty masks go
 *      to a work list (no early exit inside this phase);
 *   3. exact float32 sphere tests only for the listed (link, box, lane) hits, one
 *      configuration at a time with its spheres across the vector, skipping lanes
 *      already known to collide; stop once every lane collides.
 * Only IEEE-exact operations (+ - * / sqrt, compare, select, min/max, abs by
 * clearing the sign bit) are used and FMA contraction is off, so every level
 * produces the same bits and therefore the same verdicts.
 *
 * Soundness: FK runs in double (error ~1e-15 m). Link segment end points are then
 * rounded to float and every link is covered by spheres whose radii contain the
 * capsule inflated by the safety margin and by scene->eps, a bound on the float32
 * rounding error of the sphere/box test (computed in scene.py). A lane is "free"
 * only if no covering sphere touches any active box and no self-collision pair's
 * spheres touch, so a configuration whose exact clearance is below the margin is
 * never reported free. The culls only skip sphere tests that provably miss in
 * float32: aligned boxes and self pairs by the per-axis interval tests of
 * cc_fast_prepare (fast.c, with their rounding arguments), oriented boxes by a
 * bounding sphere around the link's cover (radius >= half length + sphere radius +
 * eps) tested with the same float32 arithmetic. The verdict of every lane is
 * therefore exactly "joint limits violated or some sphere test hits" (checked
 * against an uncull'd float32 reference in tests/motion/test_motion_fastpath_blocks.py).
 */

#define W CC_W
#define NV (W / KVL)

typedef float KFN(vf) __attribute__((vector_size(KVL * 4)));
typedef int32_t KFN(vi) __attribute__((vector_size(KVL * 4)));
#define VF KFN(vf)
#define VI KFN(vi)

#ifdef KPORTABLE
static inline VF KFN(vsel)(VI m, VF a, VF b) { return (VF)((m & (VI)a) | (~m & (VI)b)); }
static inline uint32_t KFN(vbits)(VI m)
{
    uint32_t r = 0;
    for (int i = 0; i < KVL; i++) r |= (uint32_t)(m[i] & 1) << i;
    return r;
}
#endif

#ifndef KVOVERLAP
/* not separated on any axis; a NaN compares as "not separated" (conservative) */
#define KVOVERLAP(lo, hi, l, h)                                                        \
    KVBITS(~((lo[0] > h[0]) | (hi[0] < l[0]) | (lo[1] > h[1]) | (hi[1] < l[1]) |      \
             (lo[2] > h[2]) | (hi[2] < l[2])))
#define KVOVERLAP_DEFAULT 1
#endif

CC_SINCOS_DEF(KFN(sincos), KATTR)

KATTR static inline VF KFN(ld)(const float *p)
{
    VF v;
    memcpy(&v, p, sizeof v);
    return v;
}

KATTR static inline VF KFN(bcast)(float x) { return KVSET1(x); }

KATTR static inline VF KFN(vabs)(VF x) { return (VF)((VI)x & 0x7fffffff); }

/* Does any sphere of link k (configuration with segment start x0 and float
 * direction d) touch box b? Spheres across the vector; same float32 arithmetic
 * as the scalar definition c = e0 + t d, e = max(|R^T (c - bc)| - h, 0),
 * hit iff e.e <= r * r. */
KATTR static inline int KFN(narrow_box)(const cc_scene *S, int k, int b, int aligned,
                                        const float x0[3], const float d[3])
{
    const VF X = KFN(bcast)(x0[0]), Y = KFN(bcast)(x0[1]), Z = KFN(bcast)(x0[2]);
    const VF DX = KFN(bcast)(d[0]), DY = KFN(bcast)(d[1]), DZ = KFN(bcast)(d[2]);
    const float *bcf = S->fbox_c[b], *hf = S->fbox_h[b], *ax = S->fbox_ax[b];
    const VF BX = KFN(bcast)(bcf[0]), BY = KFN(bcast)(bcf[1]), BZ = KFN(bcast)(bcf[2]);
    const VF HX = KFN(bcast)(hf[0]), HY = KFN(bcast)(hf[1]), HZ = KFN(bcast)(hf[2]);
    const VF zero = KFN(bcast)(0.0f);
    const int off = S->fsph_off[k], n = S->fsph_n[k];
    for (int g = 0; g < n; g += KVL) {
        const VF t = KFN(ld)(S->fsph_t + off + g);
        VF cx = X + t * DX, cy = Y + t * DY, cz = Z + t * DZ;
        VF lx = cx - BX, ly = cy - BY, lz = cz - BZ;
        if (!aligned) {
            VF dx = lx, dy = ly, dz = lz;
            lx = KFN(bcast)(ax[0]) * dx + KFN(bcast)(ax[3]) * dy + KFN(bcast)(ax[6]) * dz;
            ly = KFN(bcast)(ax[1]) * dx + KFN(bcast)(ax[4]) * dy + KFN(bcast)(ax[7]) * dz;
            lz = KFN(bcast)(ax[2]) * dx + KFN(bcast)(ax[5]) * dy + KFN(bcast)(ax[8]) * dz;
        }
        VF ex = KVMAX(KFN(vabs)(lx) - HX, zero);
        VF ey = KVMAX(KFN(vabs)(ly) - HY, zero);
        VF ez = KVMAX(KFN(vabs)(lz) - HZ, zero);
        VF d2 = ex * ex + ey * ey + ez * ez;
        if (KVLE(d2, KFN(ld)(S->fsph_rr_env + off + g))) return 1;
    }
    return 0;
}

/* Does any sphere pair of links a and b touch (self-collision, radii r_self)? */
KATTR static inline int KFN(narrow_pair)(const cc_scene *S, int a, int b, const float a0[3],
                                         const float ad[3], const float b0[3], const float bd[3])
{
    const VF X = KFN(bcast)(b0[0]), Y = KFN(bcast)(b0[1]), Z = KFN(bcast)(b0[2]);
    const VF DX = KFN(bcast)(bd[0]), DY = KFN(bcast)(bd[1]), DZ = KFN(bcast)(bd[2]);
    const int offa = S->fsph_off[a], na = S->fsph_n[a];
    const int offb = S->fsph_off[b], nb = S->fsph_n[b];
    for (int g = 0; g < nb; g += KVL) {
        const VF t = KFN(ld)(S->fsph_t + offb + g), rb = KFN(ld)(S->fsph_r_self + offb + g);
        const VF cx = X + t * DX, cy = Y + t * DY, cz = Z + t * DZ;
        uint32_t acc = 0;
        for (int s = 0; s < na; s++) {
            const float ta = S->fsph_t[offa + s];
            const float px = a0[0] + ta * ad[0], py = a0[1] + ta * ad[1], pz = a0[2] + ta * ad[2];
            const VF dx = KFN(bcast)(px) - cx, dy = KFN(bcast)(py) - cy, dz = KFN(bcast)(pz) - cz;
            const VF d2 = dx * dx + dy * dy + dz * dz;
            const VF r = KFN(bcast)(S->fsph_r_self[offa + s]) + rb;
            acc |= KVLE(d2, r * r);
        }
        if (acc) return 1;
    }
    return 0;
}

typedef struct {
    uint16_t a, b;   /* link, box (environment) or link, link (self pair) */
    uint32_t lanes;
} KFN(entry);

KATTR static void KFN(block)(const cc_scene *S, const double *q, int m, uint64_t active,
                             uint8_t *out)
{
    const uint32_t full = (uint32_t)((1ull << W) - 1);
    double qd[CC_NJ][W];
    int32_t bad[W];
    for (int l = 0; l < W; l++) {
        int src = l < m ? l : m - 1;
        for (int j = 0; j < CC_NJ; j++) qd[j][l] = q[CC_NJ * src + j];
    }
    /* joint position limits: outside = not free; lanes past m are padding */
    for (int l = 0; l < W; l++) bad[l] = 0;
    for (int j = 0; j < CC_NJ; j++) {
        const double lo = S->qmin[j], hi = S->qmax[j];
        for (int l = 0; l < W; l++) bad[l] |= (qd[j][l] >= lo && qd[j][l] <= hi) ? 0 : 1;
    }
    uint32_t col = full & ~(uint32_t)((1ull << m) - 1);
    for (int l = 0; l < W; l++) col |= (uint32_t)bad[l] << l;
    if (col == full) goto done;

    /* forward kinematics in double, link segments to float */
    const int L = S->nlinks;
    double R[9][W], p[3][W];
    for (int i = 0; i < 9; i++)
        for (int l = 0; l < W; l++) R[i][l] = S->base_R[i];
    for (int i = 0; i < 3; i++)
        for (int l = 0; l < W; l++) p[i][l] = S->base_p[i];
    float e0[CC_MAX_LINKS][3][W] __attribute__((aligned(64)));
    float dd[CC_MAX_LINKS][3][W] __attribute__((aligned(64)));
    for (int f = 0; f <= CC_NJ; f++) {
        if (f > 0) {
            const int k = f - 1;
            const double ca = S->dh_ca[k], sa = S->dh_sa[k], a = S->dh_a[k], d = S->dh_d[k];
            double sn[W], cs[W];
            for (int l = 0; l < W; l++) KFN(sincos)(qd[k][l], &sn[l], &cs[l]);
            for (int i = 0; i < 3; i++) {
                for (int l = 0; l < W; l++) {
                    double x = R[3 * i][l], y = R[3 * i + 1][l], z = R[3 * i + 2][l];
                    double nx = cs[l] * x + sn[l] * y;
                    double w = cs[l] * y - sn[l] * x;
                    R[3 * i][l] = nx;
                    R[3 * i + 1][l] = ca * w + sa * z;
                    R[3 * i + 2][l] = ca * z - sa * w;
                    p[i][l] = p[i][l] + a * nx + d * z;
                }
            }
        }
        for (int k = 0; k < L; k++) {
            if (S->link_frame[k] != f) continue;
            const double *v0 = S->link_p0[k], *v1 = S->link_p1[k];
            /* p + R v, skipping the terms with an exactly zero component of v: they
             * add +-0, which changes no value (at most the sign of a zero) */
            for (int i = 0; i < 3; i++) {
                double a0[W], a1[W];
                for (int l = 0; l < W; l++) a0[l] = a1[l] = p[i][l];
                for (int c = 0; c < 3; c++) {
                    const double *Rc = R[3 * i + c];
                    if (v0[c] != 0.0)
                        for (int l = 0; l < W; l++) a0[l] = a0[l] + Rc[l] * v0[c];
                    if (v1[c] != 0.0)
                        for (int l = 0; l < W; l++) a1[l] = a1[l] + Rc[l] * v1[c];
                }
                for (int l = 0; l < W; l++) {
                    float f0 = (float)a0[l];
                    e0[k][i][l] = f0;
                    dd[k][i][l] = (float)a1[l] - f0;
                }
            }
        }
    }

    /* ---- phase 2: culls -> work list */
    KFN(entry) ent[CC_MAX_LINKS * CC_MAX_BOXES + CC_MAX_PAIRS];
    int ne = 0;
    /* per-axis range of each link's sphere centres: between e0 and fl(e0 + d) */
    float lo[CC_MAX_LINKS][3][W] __attribute__((aligned(64)));
    float hi[CC_MAX_LINKS][3][W] __attribute__((aligned(64)));
    for (int k = 0; k < L; k++)
        for (int i = 0; i < 3; i++)
            for (int v = 0; v < NV; v++) {
                const VF a = KFN(ld)(&e0[k][i][v * KVL]);
                const VF b = a + KFN(ld)(&dd[k][i][v * KVL]);
                const VF mn = KVMIN(a, b), mx = KVMAX(a, b);
                memcpy(&lo[k][i][v * KVL], &mn, sizeof mn);
                memcpy(&hi[k][i][v * KVL], &mx, sizeof mx);
            }
    for (int k = 0; k < L; k++) {
        const uint64_t mk = S->fast_box_mask[k] & active;
        uint64_t ma = mk & S->aligned_mask;
        while (ma) {
            const int b = __builtin_ctzll(ma);
            ma &= ma - 1;
            const float *cl = S->cull_lo[k][b], *ch = S->cull_hi[k][b];
            const VF bl[3] = {KFN(bcast)(cl[0]), KFN(bcast)(cl[1]), KFN(bcast)(cl[2])};
            const VF bh[3] = {KFN(bcast)(ch[0]), KFN(bcast)(ch[1]), KFN(bcast)(ch[2])};
            uint32_t bits = 0;
            for (int v = 0; v < NV; v++) {
                const VF vlo[3] = {KFN(ld)(&lo[k][0][v * KVL]), KFN(ld)(&lo[k][1][v * KVL]),
                                   KFN(ld)(&lo[k][2][v * KVL])};
                const VF vhi[3] = {KFN(ld)(&hi[k][0][v * KVL]), KFN(ld)(&hi[k][1][v * KVL]),
                                   KFN(ld)(&hi[k][2][v * KVL])};
                bits |= KVOVERLAP(vlo, vhi, bl, bh) << (v * KVL);
            }
            ent[ne].a = (uint16_t)k;
            ent[ne].b = (uint16_t)b;
            ent[ne].lanes = bits & ~col;
            ne += (bits & ~col) != 0;
        }
        uint64_t mo = mk & ~S->aligned_mask;
        while (mo) {
            /* oriented box: bounding sphere of the cover (centre t = 0.5), float32
             * sphere/box test */
            const int b = __builtin_ctzll(mo);
            mo &= mo - 1;
            const float rb = S->bound_r_env[k];
            const VF rr = KFN(bcast)(rb * rb), zero = KFN(bcast)(0.0f), half = KFN(bcast)(0.5f);
            const float *bcf = S->fbox_c[b], *hf = S->fbox_h[b], *ax = S->fbox_ax[b];
            uint32_t bits = 0;
            for (int v = 0; v < NV; v++) {
                const VF mx = KFN(ld)(&e0[k][0][v * KVL]) + half * KFN(ld)(&dd[k][0][v * KVL]);
                const VF my = KFN(ld)(&e0[k][1][v * KVL]) + half * KFN(ld)(&dd[k][1][v * KVL]);
                const VF mz = KFN(ld)(&e0[k][2][v * KVL]) + half * KFN(ld)(&dd[k][2][v * KVL]);
                VF dx = mx - KFN(bcast)(bcf[0]);
                VF dy = my - KFN(bcast)(bcf[1]);
                VF dz = mz - KFN(bcast)(bcf[2]);
                VF lx = KFN(bcast)(ax[0]) * dx + KFN(bcast)(ax[3]) * dy + KFN(bcast)(ax[6]) * dz;
                VF ly = KFN(bcast)(ax[1]) * dx + KFN(bcast)(ax[4]) * dy + KFN(bcast)(ax[7]) * dz;
                VF lz = KFN(bcast)(ax[2]) * dx + KFN(bcast)(ax[5]) * dy + KFN(bcast)(ax[8]) * dz;
                VF ex = KVMAX(KFN(vabs)(lx) - KFN(bcast)(hf[0]), zero);
                VF ey = KVMAX(KFN(vabs)(ly) - KFN(bcast)(hf[1]), zero);
                VF ez = KVMAX(KFN(vabs)(lz) - KFN(bcast)(hf[2]), zero);
                VF d2 = ex * ex + ey * ey + ez * ez;
                bits |= KVLE(d2, rr) << (v * KVL);
            }
            ent[ne].a = (uint16_t)k;
            ent[ne].b = (uint16_t)b;
            ent[ne].lanes = bits & ~col;
            ne += (bits & ~col) != 0;
        }
    }
    const int ne_env = ne;
    /* self pairs: per-axis gap between the two centre ranges (cc_fast_prepare) */
    for (int pi = 0; pi < S->npairs; pi++) {
        const int a = S->fpair_outer[pi], b = S->fpair_inner[pi];
        const float T = S->pair_cull[pi];
        const VF pl[3] = {KFN(bcast)(-T), KFN(bcast)(-T), KFN(bcast)(-T)};
        const VF ph[3] = {KFN(bcast)(T), KFN(bcast)(T), KFN(bcast)(T)};
        uint32_t bits = 0;
        for (int v = 0; v < NV; v++) {
            VF glo[3], ghi[3];   /* fl(lo_a - hi_b) and fl(hi_a - lo_b) */
            for (int i = 0; i < 3; i++) {
                glo[i] = KFN(ld)(&lo[a][i][v * KVL]) - KFN(ld)(&hi[b][i][v * KVL]);
                ghi[i] = KFN(ld)(&hi[a][i][v * KVL]) - KFN(ld)(&lo[b][i][v * KVL]);
            }
            bits |= KVOVERLAP(glo, ghi, pl, ph) << (v * KVL);
        }
        ent[ne].a = (uint16_t)a;
        ent[ne].b = (uint16_t)b;
        ent[ne].lanes = bits & ~col;
        ne += (bits & ~col) != 0;
    }
    /* ---- phase 3: sphere tests for the hits only */
    for (int i = 0; i < ne; i++) {
        uint32_t lanes = ent[i].lanes & ~col;
        const int a = ent[i].a, b = ent[i].b;
        while (lanes) {
            const int l = __builtin_ctz(lanes);
            lanes &= lanes - 1;
            const float x0[3] = {e0[a][0][l], e0[a][1][l], e0[a][2][l]};
            const float xd[3] = {dd[a][0][l], dd[a][1][l], dd[a][2][l]};
            int hit;
            if (i < ne_env) {
                hit = KFN(narrow_box)(S, a, b, (int)((S->aligned_mask >> b) & 1u), x0, xd);
            } else {
                const float y0[3] = {e0[b][0][l], e0[b][1][l], e0[b][2][l]};
                const float yd[3] = {dd[b][0][l], dd[b][1][l], dd[b][2][l]};
                hit = KFN(narrow_pair)(S, a, b, x0, xd, y0, yd);
            }
            col |= (uint32_t)hit << l;
        }
        if (col == full) break;
    }
done:
    for (int l = 0; l < m; l++) out[l] = (col >> l) & 1u ? 0 : 1;
}

KATTR void KFN(cc_fast)(const cc_scene *S, const double *q, long n, uint64_t active,
                        uint8_t *out)
{
    for (long i = 0; i < n; i += W) {
        long m = n - i < W ? n - i : W;
        KFN(block)(S, q + CC_NJ * i, (int)m, active, out + i);
    }
}

#undef W
#undef NV
#undef VF
#undef VI
#ifdef KVOVERLAP_DEFAULT
#undef KVOVERLAP
#undef KVOVERLAP_DEFAULT
#endif
