/* Broad phase: a static bounding volume hierarchy over the scene's boxes.
 *
 * Each box's world AABB is c +- |R| h (per axis i: sum_j |R_ij| h_j, R's columns
 * are the box axes). Nodes are split at the median of the box centres along the
 * longest axis of the centres' extent, down to CC_BVH_LEAF boxes per leaf, so the
 * depth is ceil(log2(B / CC_BVH_LEAF)) + 1 (<= 20 for a million boxes; the
 * traversal stacks hold CC_BVH_STACK entries). Node bounds are kept in double
 * (exact path) and rounded outwards to float (fast path).
 *
 * The tree is a filter only: the fast path still runs its per-(link, box) culls
 * and sphere tests on every box of a leaf it reaches, and the exact path still
 * computes exact distances; what the tree must guarantee is that it never hides a
 * box the leaf tests would have found (argument at bvh_infl below).
 */
#include "ccheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double key;
    int idx;
} keyed;

static int cmp_keyed(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->key < y->key) return -1;
    if (x->key > y->key) return 1;
    return x->idx - y->idx;   /* deterministic order for equal keys */
}

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

typedef struct {
    cc_scene *S;
    double (*lo)[3], (*hi)[3];   /* per-box world AABB */
    keyed *tmp;
} build_ctx;

static int build(build_ctx *c, int first, int count)
{
    cc_scene *S = c->S;
    const int n = S->nnodes++;
    cc_node *nd = &S->nodes[n];
    double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
    double clo[3] = {INFINITY, INFINITY, INFINITY}, chi[3] = {-INFINITY, -INFINITY, -INFINITY};
    for (int i = first; i < first + count; i++) {
        const int b = S->bvh_box[i];
        for (int a = 0; a < 3; a++) {
            if (c->lo[b][a] < lo[a]) lo[a] = c->lo[b][a];
            if (c->hi[b][a] > hi[a]) hi[a] = c->hi[b][a];
            const double m = 0.5 * (c->lo[b][a] + c->hi[b][a]);
            if (m < clo[a]) clo[a] = m;
            if (m > chi[a]) chi[a] = m;
        }
    }
    for (int a = 0; a < 3; a++) {
        nd->dlo[a] = lo[a];
        nd->dhi[a] = hi[a];
        nd->flo[a] = f32_down(lo[a]);
        nd->fhi[a] = f32_up(hi[a]);
    }
    nd->flo[3] = nd->fhi[3] = 0.0f;
    if (count <= CC_BVH_LEAF) {
        nd->first = first;
        nd->count = count;
        nd->left = nd->right = -1;
        return n;
    }
    int axis = 0;
    for (int a = 1; a < 3; a++)
        if (chi[a] - clo[a] > chi[axis] - clo[axis]) axis = a;
    for (int i = 0; i < count; i++) {
        const int b = S->bvh_box[first + i];
        c->tmp[i].key = 0.5 * (c->lo[b][axis] + c->hi[b][axis]);
        c->tmp[i].idx = b;
    }
    qsort(c->tmp, (size_t)count, sizeof(keyed), cmp_keyed);
    for (int i = 0; i < count; i++) S->bvh_box[first + i] = c->tmp[i].idx;
    const int half = count / 2;
    nd->count = 0;
    nd->first = first;
    const int l = build(c, first, half);
    const int r = build(c, first + half, count - half);
    S->nodes[n].left = l;   /* nd may not be used after the recursion (same array, ok) */
    S->nodes[n].right = r;
    return n;
}

/* bvh_infl[k]: the fast path tests a node against link k's per-axis sphere-centre
 * range [lo, hi] of a lane (sphere centres and the cover's midpoint lie in it,
 * fast_impl.h) widened to fl(lo - infl), fl(hi + infl). The leaf tests are
 * (a) aligned boxes: the range overlaps [cull_lo, cull_hi] = c -+ (h + rmax + X)
 *     rounded outwards (X = 16 u (M + rmax), cc_fast_prepare), so the range
 *     widened by rmax + X + 2 u M overlaps the box's AABB [c - h, c + h];
 * (b) oriented boxes: the float32 distance from the cover's midpoint to the box
 *     is <= bound_r_env; its rounding error is below 64 u (M + bound_r_env) (a
 *     handful of roundings of magnitudes <= M, with a margin), so the midpoint --
 *     and the range -- lies within bound_r_env + 64 u (M + bound_r_env) of the
 *     box's AABB on every axis.
 * infl is the larger of the two plus 8 u (M + infl) for the rounding of
 * fl(lo - infl) (error <= u (M + infl)), rounded up to float. The node's float
 * bounds contain every box AABB below it (outward rounding), so any (lane, box)
 * a leaf test could pass is never culled above it. */
int cc_bvh_build(cc_scene *S, double M)
{
    const int B = S->nboxes;
    const double u = 0x1p-24;
    for (int k = 0; k < S->nlinks; k++) {
        double rmax = 0.0;
        for (int s = S->sph_first[k]; s < S->sph_first[k] + S->sph_count[k]; s++)
            if (S->sph_r_env[s] > rmax) rmax = S->sph_r_env[s];
        const double a = rmax + 16.0 * u * (M + rmax) + 2.0 * u * M;
        const double rb = S->bound_r_env[k];
        const double o = rb + 64.0 * u * (M + rb);
        double infl = a > o ? a : o;
        infl += 8.0 * u * (M + infl);
        S->bvh_infl[k] = f32_up(infl);
    }
    S->nnodes = 0;
    S->use_bvh = B > CC_BVH_MIN_BOXES;
    if (B == 0) return 0;
    S->nodes = calloc((size_t)(2 * B), sizeof(cc_node));
    S->bvh_box = malloc((size_t)B * sizeof(int));
    build_ctx c = {S, malloc((size_t)B * sizeof *c.lo), malloc((size_t)B * sizeof *c.hi),
                   malloc((size_t)B * sizeof(keyed))};
    int ok = S->nodes && S->bvh_box && c.lo && c.hi && c.tmp;
    if (ok) {
        for (int b = 0; b < B; b++) {
            S->bvh_box[b] = b;
            for (int i = 0; i < 3; i++) {
                double e = 0.0;
                for (int j = 0; j < 3; j++) e += fabs(S->box_R[b][3 * i + j]) * S->box_h[b][j];
                /* a hair outwards against the rounding of the sum (relative 1e-12) */
                e = e * (1.0 + 1e-12) + 1e-12;
                c.lo[b][i] = S->box_c[b][i] - e;
                c.hi[b][i] = S->box_c[b][i] + e;
            }
        }
        build(&c, 0, B);
        if (B <= CC_EXACT_FLAT_MAX) {
            /* float lower bounds: every input is within M of the origin (M as for the fast
             * path: arm reach plus the largest box coordinate; world AABBs within M plus
             * the box extent), every intermediate within 4 M, so a dozen roundings leave the
             * float bound within 40 u M (u = 2^-24) of the double one; the slack is
             * 1e-4 m + 1e-5 M (> 160 u M) */
            double mb = 0.0;
            for (int b = 0; b < B; b++)
                for (int i = 0; i < 3; i++) {
                    if (fabs(c.lo[b][i]) > mb) mb = fabs(c.lo[b][i]);
                    if (fabs(c.hi[b][i]) > mb) mb = fabs(c.hi[b][i]);
                }
            const double Mx = M + mb;
            S->sbx_slack = 1e-4 + 1e-5 * Mx;
            const int P = (B + 15) / 16 * 16;
            S->nbox_pad = P;
            S->sbx = calloc((size_t)21 * (size_t)P, sizeof(float));
            if (!S->sbx) ok = 0;
            for (int b = 0; ok && b < B; b++) {
                for (int i = 0; i < 3; i++) {
                    S->sbx[(size_t)i * P + b] = (float)S->box_c[b][i];
                    S->sbx[(size_t)(12 + i) * P + b] = (float)S->box_h[b][i];
                    S->sbx[(size_t)(15 + i) * P + b] = (float)c.lo[b][i];
                    S->sbx[(size_t)(18 + i) * P + b] = (float)c.hi[b][i];
                }
                for (int i = 0; i < 9; i++) S->sbx[(size_t)(3 + i) * P + b] = (float)S->box_R[b][i];
            }
        }
        /* per node, the links whose fast-path box set (fast_box_mask: reachable, not an
         * allowed contact) has a box below it; children come after their parent */
        const int NW = S->nwords;
        for (int n = S->nnodes - 1; n >= 0; n--) {
            cc_node *nd = &S->nodes[n];
            uint32_t lm = 0;
            if (nd->left < 0) {
                for (int i = nd->first; i < nd->first + nd->count; i++)
                    for (int k = 0; k < S->nlinks; k++)
                        if (cc_bit(S->fast_box_mask + (size_t)k * NW, S->bvh_box[i])) lm |= 1u << k;
            } else {
                lm = S->nodes[nd->left].fast_links | S->nodes[nd->right].fast_links;
            }
            nd->fast_links = lm;
        }
    }
    S->exact_bvh = S->sbx == NULL;
    free(c.lo);
    free(c.hi);
    free(c.tmp);
    return ok ? 0 : -1;
}

void cc_scene_free(cc_scene *S)
{
    if (!S) return;
    free(S->link_box_mask);
    free(S->fast_box_mask);
    free(S->box_c);
    free(S->box_R);
    free(S->box_h);
    free(S->box_aligned);
    free(S->fbox_c);
    free(S->fbox_ax);
    free(S->fbox_h);
    free(S->cull_lo);
    free(S->cull_hi);
    free(S->nodes);
    free(S->bvh_box);
    free(S->sbx);
    free(S);
}
