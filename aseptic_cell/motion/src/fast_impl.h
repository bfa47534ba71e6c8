/* Float32 fast path kernel, written once and compiled for several instruction
 * sets by fast.c (which defines KFN(name) and KATTR before including this file).
 *
 * Works on blocks of CC_W configurations in structure-of-arrays form; every inner
 * loop runs over the CC_W lanes so the compiler vectorises it (SSE2, AVX2 or
 * AVX-512 depending on KATTR). Only IEEE-exact operations (+ - * / sqrt, compare,
 * select) are used and FMA contraction is off, so every level produces the same
 * bits and therefore the same verdicts.
 *
 * Soundness: FK runs in double (error ~1e-15 m). Link segment end points are then
 * rounded to float and every link is covered by spheres whose radii contain the
 * capsule inflated by the safety margin and by scene->eps, a bound on the float32
 * rounding error of the sphere/box test (computed in scene.py). A lane is "free"
 * only if no covering sphere touches any active box and no self-collision pair's
 * spheres touch, so a configuration whose exact clearance is below the margin is
 * never reported free. Bounding spheres around each link's cover cull the boxes
 * and pairs that are far away.
 */

#define W CC_W

CC_SINCOS_DEF(KFN(sincos), KATTR)

/* Sphere(s) vs axis-aligned box (rotation exactly the identity). */
KATTR static int KFN(sph_aabb)(const float *cx, const float *cy, const float *cz, float rr,
                               const float *bc, const float *h, const int32_t *col,
                               int32_t *hit)
{
    int32_t any = 0;
    for (int l = 0; l < W; l++) {
        float ex = (cx[l] - bc[0] < 0.0f ? bc[0] - cx[l] : cx[l] - bc[0]) - h[0];
        float ey = (cy[l] - bc[1] < 0.0f ? bc[1] - cy[l] : cy[l] - bc[1]) - h[1];
        float ez = (cz[l] - bc[2] < 0.0f ? bc[2] - cz[l] : cz[l] - bc[2]) - h[2];
        ex = ex > 0.0f ? ex : 0.0f;
        ey = ey > 0.0f ? ey : 0.0f;
        ez = ez > 0.0f ? ez : 0.0f;
        float d2 = ex * ex + ey * ey + ez * ez;
        int32_t hl = d2 <= rr ? 1 : 0;
        hit[l] = hl;
        any |= hl & (col[l] ^ 1);
    }
    return any;
}

/* Sphere(s) vs oriented box. */

KATTR static int KFN(sph_box)(const float *cx, const float *cy, const float *cz, float rr,
                              const float *bc, const float *ax, const float *h,
                              const int32_t *col, int32_t *hit)
{
    int32_t any = 0;
    for (int l = 0; l < W; l++) {
        float dx = cx[l] - bc[0], dy = cy[l] - bc[1], dz = cz[l] - bc[2];
        float lx = ax[0] * dx + ax[3] * dy + ax[6] * dz;
        float ly = ax[1] * dx + ax[4] * dy + ax[7] * dz;
        float lz = ax[2] * dx + ax[5] * dy + ax[8] * dz;
        float ex = (lx < 0.0f ? -lx : lx) - h[0];
        float ey = (ly < 0.0f ? -ly : ly) - h[1];
        float ez = (lz < 0.0f ? -lz : lz) - h[2];
        ex = ex > 0.0f ? ex : 0.0f;
        ey = ey > 0.0f ? ey : 0.0f;
        ez = ez > 0.0f ? ez : 0.0f;
        float d2 = ex * ex + ey * ey + ez * ez;
        int32_t hl = d2 <= rr ? 1 : 0;
        hit[l] = hl;
        any |= hl & (col[l] ^ 1);
    }
    return any;
}

KATTR static int KFN(sph_sph)(const float *ax_, const float *ay, const float *az,
                              const float *bx, const float *by, const float *bz, float rr,
                              const int32_t *col, int32_t *hit)
{
    int32_t any = 0;
    for (int l = 0; l < W; l++) {
        float dx = ax_[l] - bx[l], dy = ay[l] - by[l], dz = az[l] - bz[l];
        float d2 = dx * dx + dy * dy + dz * dz;
        int32_t hl = d2 <= rr ? 1 : 0;
        hit[l] = hl;
        any |= hl & (col[l] ^ 1);
    }
    return any;
}

KATTR static int KFN(all_set)(const int32_t *col)
{
    int32_t a = 1;
    for (int l = 0; l < W; l++) a &= col[l];
    return a;
}

KATTR static void KFN(or_into)(int32_t *col, const int32_t *hit)
{
    for (int l = 0; l < W; l++) col[l] |= hit[l];
}

KATTR static void KFN(sphere_center)(float e0[3][W], float d[3][W], float t,
                                     float c[3][W])
{
    for (int i = 0; i < 3; i++)
        for (int l = 0; l < W; l++) c[i][l] = e0[i][l] + t * d[i][l];
}

KATTR static void KFN(block)(const cc_scene *S, const double *q, int m, uint64_t active,
                             uint8_t *out)
{
    double qd[CC_NJ][W];
    int32_t col[W], hit[W];
    for (int l = 0; l < W; l++) {
        int src = l < m ? l : m - 1;
        for (int j = 0; j < CC_NJ; j++) qd[j][l] = q[CC_NJ * src + j];
    }
    /* joint position limits: outside = not free */
    for (int l = 0; l < W; l++) col[l] = 0;
    for (int j = 0; j < CC_NJ; j++) {
        const double lo = S->qmin[j], hi = S->qmax[j];
        for (int l = 0; l < W; l++) col[l] |= (qd[j][l] >= lo && qd[j][l] <= hi) ? 0 : 1;
    }

    /* forward kinematics in double, link segments to float */
    const int L = S->nlinks;
    double R[9][W], p[3][W];
    for (int i = 0; i < 9; i++)
        for (int l = 0; l < W; l++) R[i][l] = S->base_R[i];
    for (int i = 0; i < 3; i++)
        for (int l = 0; l < W; l++) p[i][l] = S->base_p[i];
    float e0[CC_MAX_LINKS][3][W], dd[CC_MAX_LINKS][3][W];
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
            for (int i = 0; i < 3; i++) {
                for (int l = 0; l < W; l++) {
                    double a0 = p[i][l] + R[3 * i][l] * v0[0] + R[3 * i + 1][l] * v0[1] +
                                R[3 * i + 2][l] * v0[2];
                    double a1 = p[i][l] + R[3 * i][l] * v1[0] + R[3 * i + 1][l] * v1[1] +
                                R[3 * i + 2][l] * v1[2];
                    float f0 = (float)a0;
                    e0[k][i][l] = f0;
                    dd[k][i][l] = (float)a1 - f0;
                }
            }
        }
    }

    /* link covers vs active boxes */
    float mc[CC_MAX_LINKS][3][W];
    for (int k = 0; k < L; k++) KFN(sphere_center)(e0[k], dd[k], 0.5f, mc[k]);
    if (KFN(all_set)(col)) goto done;
    for (int k = 0; k < L; k++) {
        uint64_t mk = S->fast_box_mask[k] & active;
        const float rb = S->bound_r_env[k];
        while (mk) {
            int b = __builtin_ctzll(mk);
            mk &= mk - 1;
            const int al = S->box_aligned[b];
            const float *bc = S->fbox_c[b], *bax = S->fbox_ax[b], *bh = S->fbox_h[b];
            int any = al ? KFN(sph_aabb)(mc[k][0], mc[k][1], mc[k][2], rb * rb, bc, bh, col, hit)
                         : KFN(sph_box)(mc[k][0], mc[k][1], mc[k][2], rb * rb, bc, bax, bh, col, hit);
            if (!any) continue;
            for (int s = S->sph_first[k]; s < S->sph_first[k] + S->sph_count[k]; s++) {
                float c[3][W];
                const float r = S->sph_r_env[s];
                KFN(sphere_center)(e0[k], dd[k], S->sph_t[s], c);
                any = al ? KFN(sph_aabb)(c[0], c[1], c[2], r * r, bc, bh, col, hit)
                         : KFN(sph_box)(c[0], c[1], c[2], r * r, bc, bax, bh, col, hit);
                if (any) KFN(or_into)(col, hit);
            }
            if (KFN(all_set)(col)) goto done;
        }
    }
    /* self-collision pairs */
    for (int pi = 0; pi < S->npairs; pi++) {
        const int a = S->pair_a[pi], b = S->pair_b[pi];
        const float rb = S->bound_r_self[a] + S->bound_r_self[b];
        if (!KFN(sph_sph)(mc[a][0], mc[a][1], mc[a][2], mc[b][0], mc[b][1], mc[b][2], rb * rb,
                          col, hit))
            continue;
        for (int sa = S->sph_first[a]; sa < S->sph_first[a] + S->sph_count[a]; sa++) {
            float ca[3][W];
            KFN(sphere_center)(e0[a], dd[a], S->sph_t[sa], ca);
            for (int sb = S->sph_first[b]; sb < S->sph_first[b] + S->sph_count[b]; sb++) {
                float cb[3][W];
                const float r = S->sph_r_self[sa] + S->sph_r_self[sb];
                KFN(sphere_center)(e0[b], dd[b], S->sph_t[sb], cb);
                if (KFN(sph_sph)(ca[0], ca[1], ca[2], cb[0], cb[1], cb[2], r * r, col, hit))
                    KFN(or_into)(col, hit);
            }
        }
        if (KFN(all_set)(col)) goto done;
    }
done:
    for (int l = 0; l < m; l++) out[l] = col[l] ? 0 : 1;
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
