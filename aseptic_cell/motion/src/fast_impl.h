/* Float32 fast path kernel, written once and compiled for several instruction
 * sets by fast.c (which defines KFN(name), KATTR, KVL and the vector helpers
 * KVMAX, KVMIN, KVBITS, KVSET1, KVLE and optionally KVOVERLAP before including
 * this file).
 *
 * Works on blocks of KW configurations ("lanes": CC_W, or CC_WS for calls of at most
 * CC_WS configurations) in three phases:
 *   1. kinematics for all lanes at once (structure of arrays, double), link
 *      segments rounded to float;
 *   2. per link, the candidate boxes: every reachable active box (flat, small
 *      scenes) or the leaves of the BVH reached by a packet traversal (bvh.c:
 *      each node tested against every live lane's widened sphere-centre range);
 *      per candidate a branch-free cull, one lane bit mask of the configurations
 *      that might touch; non-empty masks go to a work list (flushed when full and
 *      after each link, so lanes found colliding drop out of later traversals);
 *   3. exact float32 sphere tests only for the listed (link, box, lane) hits, one
 *      configuration at a time with its spheres across the vector, skipping lanes
 *      already known to collide; stop once every lane collides. Self pairs: a
 *      per-axis cull, then the same sphere tests.
 * Large batches are processed in an order grouping similar first three joints
 * (KFN(cc_fast)); a configuration's verdict does not depend on its block.
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

#define W KW
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
    uint16_t a;      /* link */
    uint32_t b;      /* box */
    uint32_t lanes;
} KFN(entry);

/* Cull of link k against box b: lane bits of the configurations whose spheres might
 * touch the box. Aligned boxes: the per-axis interval test of cc_fast_prepare;
 * oriented boxes: a bounding sphere of the cover (centre t = 0.5), float32
 * sphere/box test. lo/hi: the link's sphere-centre ranges, e0/dd its segment. */
KATTR static inline uint32_t KFN(cull_box)(const cc_scene *S, int k, int b, const float lo[3][W],
                                           const float hi[3][W], const float e0[3][W],
                                           const float dd[3][W])
{
    uint32_t bits = 0;
    if (S->box_aligned[b]) {
        const float *cl = S->cull_lo[(size_t)k * S->nboxes + b];
        const float *ch = S->cull_hi[(size_t)k * S->nboxes + b];
        const VF bl[3] = {KFN(bcast)(cl[0]), KFN(bcast)(cl[1]), KFN(bcast)(cl[2])};
        const VF bh[3] = {KFN(bcast)(ch[0]), KFN(bcast)(ch[1]), KFN(bcast)(ch[2])};
        for (int v = 0; v < NV; v++) {
            const VF vlo[3] = {KFN(ld)(&lo[0][v * KVL]), KFN(ld)(&lo[1][v * KVL]), KFN(ld)(&lo[2][v * KVL])};
            const VF vhi[3] = {KFN(ld)(&hi[0][v * KVL]), KFN(ld)(&hi[1][v * KVL]), KFN(ld)(&hi[2][v * KVL])};
            bits |= KVOVERLAP(vlo, vhi, bl, bh) << (v * KVL);
        }
        return bits;
    }
    const float rb = S->bound_r_env[k];
    const VF rr = KFN(bcast)(rb * rb), zero = KFN(bcast)(0.0f), half = KFN(bcast)(0.5f);
    const float *bcf = S->fbox_c[b], *hf = S->fbox_h[b], *ax = S->fbox_ax[b];
    for (int v = 0; v < NV; v++) {
        const VF mx = KFN(ld)(&e0[0][v * KVL]) + half * KFN(ld)(&dd[0][v * KVL]);
        const VF my = KFN(ld)(&e0[1][v * KVL]) + half * KFN(ld)(&dd[1][v * KVL]);
        const VF mz = KFN(ld)(&e0[2][v * KVL]) + half * KFN(ld)(&dd[2][v * KVL]);
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
    return bits;
}

KATTR static void KFN(block)(const cc_scene *S, const double *q, int m, const uint64_t *active,
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

    /* ---- phase 2: broad phase + culls -> work list of (link, box, lanes); phase 3:
     * sphere tests of the listed lanes. The list is flushed through phase 3 when
     * full, so any number of boxes fits. */
    enum { NENT = 256 };
    KFN(entry) ent[NENT];
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
#define FLUSH_ENV()                                                                          \
    do {                                                                                     \
        for (int q_ = 0; q_ < ne; q_++) {                                                    \
            uint32_t lanes = ent[q_].lanes & ~col;                                           \
            const int a = ent[q_].a, b = ent[q_].b, al = S->box_aligned[b];                  \
            while (lanes) {                                                                  \
                const int l = __builtin_ctz(lanes);                                          \
                lanes &= lanes - 1;                                                          \
                const float x0[3] = {e0[a][0][l], e0[a][1][l], e0[a][2][l]};                 \
                const float xd[3] = {dd[a][0][l], dd[a][1][l], dd[a][2][l]};                 \
                col |= (uint32_t)KFN(narrow_box)(S, a, b, al, x0, xd) << l;                  \
            }                                                                                \
            if (col == full) goto done;                                                      \
        }                                                                                    \
        ne = 0;                                                                              \
    } while (0)
#define ADD_BOX(k_, b_, want_)                                                               \
    do {                                                                                     \
        const uint32_t cb_ = KFN(cull_box)(S, k_, b_, lo[k_], hi[k_], e0[k_], dd[k_]) &      \
                             (want_) & ~col;                                                 \
        ent[ne].a = (uint16_t)(k_);                                                          \
        ent[ne].b = (uint32_t)(b_);                                                          \
        ent[ne].lanes = cb_;                                                                 \
        ne += cb_ != 0;                                                                      \
        if (ne == NENT) FLUSH_ENV();                                                         \
    } while (0)
    const int NW = S->nwords;
    const uint32_t live = full & ~col;
    for (int k = 0; k < L; k++) {
        const uint64_t *fm = S->fast_box_mask + (size_t)k * NW;
        if (!S->use_bvh) {
            /* flat: every reachable active box */
            for (int w = 0; w < NW; w++) {
                uint64_t mk = fm[w] & active[w];
                while (mk) {
                    const int b = 64 * w + __builtin_ctzll(mk);
                    mk &= mk - 1;
                    ADD_BOX(k, b, live);
                }
            }
            FLUSH_ENV();
            continue;
        }
        /* BVH, a packet of lanes: the range widened by bvh_infl[k] (argument in bvh.c) */
        float wlo[3][W] __attribute__((aligned(64))), whi[3][W] __attribute__((aligned(64)));
        const VF infl = KFN(bcast)(S->bvh_infl[k]);
        for (int i = 0; i < 3; i++)
            for (int v = 0; v < NV; v++) {
                const VF a = KFN(ld)(&lo[k][i][v * KVL]) - infl;
                const VF b = KFN(ld)(&hi[k][i][v * KVL]) + infl;
                memcpy(&wlo[i][v * KVL], &a, sizeof a);
                memcpy(&whi[i][v * KVL], &b, sizeof b);
            }
        int stk[CC_BVH_STACK];
        uint32_t stl[CC_BVH_STACK];
        int sp = 0;
        if (S->nnodes > 0) {
            stk[0] = 0;
            stl[0] = live & ~col;
            sp = 1;
        }
        while (sp > 0) {
            sp--;
            const cc_node *nd = &S->nodes[stk[sp]];
            const uint32_t want = stl[sp];
            if (!((nd->fast_links >> k) & 1u)) continue;   /* no box of link k below */
            const VF nl[3] = {KFN(bcast)(nd->flo[0]), KFN(bcast)(nd->flo[1]), KFN(bcast)(nd->flo[2])};
            const VF nh[3] = {KFN(bcast)(nd->fhi[0]), KFN(bcast)(nd->fhi[1]), KFN(bcast)(nd->fhi[2])};
            uint32_t bits = 0;
            for (int v = 0; v < NV; v++) {
                const VF vlo[3] = {KFN(ld)(&wlo[0][v * KVL]), KFN(ld)(&wlo[1][v * KVL]),
                                   KFN(ld)(&wlo[2][v * KVL])};
                const VF vhi[3] = {KFN(ld)(&whi[0][v * KVL]), KFN(ld)(&whi[1][v * KVL]),
                                   KFN(ld)(&whi[2][v * KVL])};
                bits |= KVOVERLAP(vlo, vhi, nl, nh) << (v * KVL);
            }
            bits &= want;
            if (!bits) continue;
            if (nd->count == 0) {
                stk[sp] = nd->right;
                stl[sp++] = bits;
                stk[sp] = nd->left;
                stl[sp++] = bits;
                continue;
            }
            for (int bi = nd->first; bi < nd->first + nd->count; bi++) {
                const int b = S->bvh_box[bi];
                if (cc_bit(active, b) & cc_bit(fm, b)) ADD_BOX(k, b, bits);
            }
        }
        /* sphere tests per link: lanes found colliding drop out of the next links'
         * traversals */
        FLUSH_ENV();
    }
    FLUSH_ENV();
#undef ADD_BOX
#undef FLUSH_ENV
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
        uint32_t lanes = bits & ~col;
        while (lanes) {
            const int l = __builtin_ctz(lanes);
            lanes &= lanes - 1;
            const float x0[3] = {e0[a][0][l], e0[a][1][l], e0[a][2][l]};
            const float xd[3] = {dd[a][0][l], dd[a][1][l], dd[a][2][l]};
            const float y0[3] = {e0[b][0][l], e0[b][1][l], e0[b][2][l]};
            const float yd[3] = {dd[b][0][l], dd[b][1][l], dd[b][2][l]};
            col |= (uint32_t)KFN(narrow_pair)(S, a, b, x0, xd, y0, yd) << l;
        }
        if (col == full) break;
    }
done:
    for (int l = 0; l < m; l++) out[l] = (col >> l) & 1u ? 0 : 1;
}

KATTR void KFN(cc_fast)(const cc_scene *S, const double *q, long n, const uint64_t *active,
                        uint8_t *out)
{
#ifdef KSMALL
    /* a few configurations: the narrower block (same verdicts, less padding) */
    if (n <= CC_WS) {
        KSMALL(cc_fast)(S, q, n, active, out);
        return;
    }
#endif
    /* Large batches are processed in an order that groups configurations with
     * similar first three joints (which place the big links), so that a block's
     * lanes visit similar BVH nodes. The verdict of a configuration does not
     * depend on its block. */
    /* bins per joint: about 64 configurations per cell, 4 .. 16 */
    int BINS = (int)cbrt((double)n / 64.0);
    if (BINS < 4) BINS = 4;
    if (BINS > 16) BINS = 16;
    const int NKEY = BINS * BINS * BINS;
    long *perm = NULL, *cnt = NULL;
    uint16_t *key = NULL;
    double *qb = NULL;
    if (S->use_bvh && n >= 4 * W) {
        perm = malloc((size_t)n * sizeof(long));
        cnt = calloc((size_t)NKEY + 1, sizeof(long));
        key = malloc((size_t)n * sizeof(uint16_t));
        qb = malloc((size_t)W * CC_NJ * sizeof(double));
    }
    if (!perm || !cnt || !key || !qb) {
        free(perm); free(cnt); free(key); free(qb);
        for (long i = 0; i < n; i += W) {
            long m = n - i < W ? n - i : W;
            KFN(block)(S, q + CC_NJ * i, (int)m, active, out + i);
        }
        return;
    }
    /* bin of x (radians) = floor(x * scale) mod BINS, computed in double without integer
     * division (|q| <= 1e5 rad: every value involved is an exact integer below 2^53) */
    const double scale = BINS / (2.0 * 3.14159265358979323846), nb = (double)BINS;
    for (long i = 0; i < n; i++) {
        int k_ = 0;
        for (int j = 0; j < 3; j++) {
            const double f = floor(q[CC_NJ * i + j] * scale);
            double b = f - nb * floor(f / nb);
            if (!(b >= 0.0 && b < nb)) b = 0.0;   /* NaN or rounding: any bin is correct */
            k_ = k_ * BINS + (int)b;
        }
        key[i] = (uint16_t)k_;
        cnt[k_ + 1]++;
    }
    for (int k = 0; k < NKEY; k++) cnt[k + 1] += cnt[k];
    for (long i = 0; i < n; i++) perm[cnt[key[i]]++] = i;
    for (long i = 0; i < n; i += W) {
        const int m = (int)(n - i < W ? n - i : W);
        uint8_t o[W];
        for (int l = 0; l < m; l++) memcpy(qb + CC_NJ * l, q + CC_NJ * perm[i + l], CC_NJ * sizeof(double));
        /* the next block's rows are scattered: fetch them while this block runs */
        for (long l = i + W; l < n && l < i + 2 * W; l++) {
            __builtin_prefetch(q + CC_NJ * perm[l]);
            __builtin_prefetch(q + CC_NJ * perm[l] + CC_NJ - 1);
        }
        KFN(block)(S, qb, m, active, o);
        for (int l = 0; l < m; l++) out[perm[i + l]] = o[l];
    }
    free(perm); free(cnt); free(key); free(qb);
}

#undef W
#undef NV
#undef VF
#undef VI
#ifdef KVOVERLAP_DEFAULT
#undef KVOVERLAP
#undef KVOVERLAP_DEFAULT
#endif
