/* Exact (double precision) path: forward kinematics, capsule-box and
 * capsule-capsule clearance, and the trajectory check (limits, TCP speed,
 * collisions at the samples and, in certified mode, between them).
 *
 * Clearance of a capsule (segment + radius r) to a box is dist(segment, box) - r;
 * between two capsules it is dist(segment, segment) - r_a - r_b. A value <= 0
 * means contact (penetration depth is not measured). A configuration collides
 * when some clearance is below the safety margin.
 */
#include "ccheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void cc_sincos(double x, double *s, double *c) { cc_sincos_inl(x, s, c); }

void cc_fk(const cc_scene *S, const double *q, cc_frames *F)
{
    memcpy(F->R[0], S->base_R, sizeof S->base_R);
    memcpy(F->p[0], S->base_p, sizeof S->base_p);
    for (int k = 0; k < CC_NJ; k++) {
        const double *R = F->R[k], *p = F->p[k];
        double *Rn = F->R[k + 1], *pn = F->p[k + 1];
        double s, c;
        cc_sincos_inl(q[k], &s, &c);
        const double ca = S->dh_ca[k], sa = S->dh_sa[k], a = S->dh_a[k], d = S->dh_d[k];
        for (int i = 0; i < 3; i++) {
            /* row i of R = (X_i, Y_i, Z_i); new X = cX + sY, W = cY - sX,
             * new Y = ca W + sa Z, new Z = ca Z - sa W, origin += a X_new + d Z */
            double x = R[3 * i], y = R[3 * i + 1], z = R[3 * i + 2];
            double nx = c * x + s * y;
            double w = c * y - s * x;
            Rn[3 * i] = nx;
            Rn[3 * i + 1] = ca * w + sa * z;
            Rn[3 * i + 2] = ca * z - sa * w;
            pn[i] = p[i] + a * nx + d * z;
        }
    }
}

static inline void xform(const double R[9], const double p[3], const double v[3], double out[3])
{
    for (int i = 0; i < 3; i++)
        out[i] = p[i] + R[3 * i] * v[0] + R[3 * i + 1] * v[1] + R[3 * i + 2] * v[2];
}

void cc_link_segment(const cc_scene *S, const cc_frames *F, int k, double e0[3], double e1[3])
{
    int f = S->link_frame[k];
    xform(F->R[f], F->p[f], S->link_p0[k], e0);
    xform(F->R[f], F->p[f], S->link_p1[k], e1);
}

void cc_tcp(const cc_scene *S, const cc_frames *F, double out[3])
{
    xform(F->R[CC_NJ], F->p[CC_NJ], S->tcp, out);
}

/* v expressed in the box frame: local_i = axis_i . v (axes are the columns of R). */
static inline void to_local(const double R[9], const double v[3], double out[3])
{
    for (int i = 0; i < 3; i++) out[i] = R[i] * v[0] + R[3 + i] * v[1] + R[6 + i] * v[2];
}

static inline double point_box_dist2_local(const double p[3], const double h[3])
{
    double s = 0.0;
    for (int i = 0; i < 3; i++) {
        double e = fabs(p[i]) - h[i];
        if (e > 0.0) s += e * e;
    }
    return s;
}

double cc_point_box_dist(const double x[3], const double c[3], const double R[9],
                             const double h[3])
{
    double v[3] = {x[0] - c[0], x[1] - c[1], x[2] - c[2]}, l[3];
    to_local(R, v, l);
    return sqrt(point_box_dist2_local(l, h));
}

/* Distance from x to the axis-aligned box [lo, hi]. */
static inline double aabb_dist(const double x[3], const double lo[3], const double hi[3])
{
    double s = 0.0;
    for (int i = 0; i < 3; i++) {
        double e = lo[i] - x[i];
        if (x[i] - hi[i] > e) e = x[i] - hi[i];
        if (e > 0.0) s += e * e;
    }
    return sqrt(s);
}

/* Lower bound on the clearance of a capsule (segment with midpoint mid, half length
 * + radius off, AABB [slo, shi], radius r) to anything inside node nd: the larger
 * of the sphere bound and the AABB bound. */
struct cc_node;
static inline double aabb_aabb_dist(const double alo[3], const double ahi[3], const double blo[3],
                                    const double bhi[3]);
static inline double node_lb(const double mid[3], double off, const double slo[3], const double shi[3],
                             double r, const cc_node *nd)
{
    double a = aabb_dist(mid, nd->dlo, nd->dhi) - off;
    double b = aabb_aabb_dist(slo, shi, nd->dlo, nd->dhi) - r;
    return a > b ? a : b;
}

/* Distance between two axis-aligned boxes [alo, ahi] and [blo, bhi]. */
static inline double aabb_aabb_dist(const double alo[3], const double ahi[3], const double blo[3],
                                    const double bhi[3])
{
    double s = 0.0;
    for (int i = 0; i < 3; i++) {
        double e = blo[i] - ahi[i];
        if (alo[i] - bhi[i] > e) e = alo[i] - bhi[i];
        if (e > 0.0) s += e * e;
    }
    return sqrt(s);
}

/* Distance from segment e0-e1 to an oriented box. In the box frame the squared
 * distance f(t) = sum_i max(|a_i + t d_i| - h_i, 0)^2 is convex and piecewise
 * quadratic in t, with breakpoints where a_i + t d_i = +-h_i. On each piece the
 * active terms are a fixed quadratic, minimised in closed form and clamped to
 * the piece; the smallest piece minimum is the exact minimum. */
double cc_seg_box_dist(const double e0[3], const double e1[3], const double c[3],
                       const double R[9], const double h[3])
{
    double v[3] = {e0[0] - c[0], e0[1] - c[1], e0[2] - c[2]};
    double w[3] = {e1[0] - e0[0], e1[1] - e0[1], e1[2] - e0[2]};
    double a[3], d[3];
    to_local(R, v, a);
    to_local(R, w, d);
    double t[8];
    int nt = 0;
    t[nt++] = 0.0;
    for (int i = 0; i < 3; i++) {
        if (d[i] == 0.0) continue;
        double t1 = (h[i] - a[i]) / d[i], t2 = (-h[i] - a[i]) / d[i];
        if (t1 > 0.0 && t1 < 1.0) t[nt++] = t1;
        if (t2 > 0.0 && t2 < 1.0) t[nt++] = t2;
    }
    t[nt++] = 1.0;
    /* insertion sort of the interior breakpoints */
    for (int i = 2; i < nt - 1; i++) {
        double x = t[i];
        int j = i - 1;
        while (j > 0 && t[j] > x) { t[j + 1] = t[j]; j--; }
        t[j + 1] = x;
    }
    double best = INFINITY;
    for (int k = 0; k + 1 < nt; k++) {
        double lo = t[k], hi = t[k + 1], tm = 0.5 * (lo + hi);
        double A = 0.0, B = 0.0;
        for (int i = 0; i < 3; i++) {
            double pm = a[i] + tm * d[i];
            if (pm > h[i]) { double o = a[i] - h[i]; A += o * d[i]; B += d[i] * d[i]; }
            else if (pm < -h[i]) { double o = a[i] + h[i]; A += o * d[i]; B += d[i] * d[i]; }
        }
        double ts = B > 0.0 ? -A / B : lo;
        if (ts < lo) ts = lo;
        if (ts > hi) ts = hi;
        double p[3] = {a[0] + ts * d[0], a[1] + ts * d[1], a[2] + ts * d[2]};
        double f = point_box_dist2_local(p, h);
        if (f < best) best = f;
        if (best == 0.0) break;
    }
    return sqrt(best);
}

static double point_seg_dist2(const double p[3], const double a[3], const double u[3], double uu)
{
    double w[3] = {p[0] - a[0], p[1] - a[1], p[2] - a[2]};
    double t = uu > 0.0 ? (w[0] * u[0] + w[1] * u[1] + w[2] * u[2]) / uu : 0.0;
    if (t < 0.0) t = 0.0;
    if (t > 1.0) t = 1.0;
    double x = w[0] - t * u[0], y = w[1] - t * u[1], z = w[2] - t * u[2];
    return x * x + y * y + z * z;
}

/* Distance between segments p0-p1 and q0-q1. |P(s) - Q(t)| is convex on the unit
 * square: the minimum is the interior stationary point if it lies inside,
 * otherwise it is on an edge, i.e. an endpoint-to-segment distance. */
double cc_seg_seg_dist(const double p0[3], const double p1[3], const double q0[3],
                       const double q1[3])
{
    double u[3] = {p1[0] - p0[0], p1[1] - p0[1], p1[2] - p0[2]};
    double v[3] = {q1[0] - q0[0], q1[1] - q0[1], q1[2] - q0[2]};
    double w[3] = {p0[0] - q0[0], p0[1] - q0[1], p0[2] - q0[2]};
    double a = u[0] * u[0] + u[1] * u[1] + u[2] * u[2];
    double b = u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
    double c = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
    double d = u[0] * w[0] + u[1] * w[1] + u[2] * w[2];
    double e = v[0] * w[0] + v[1] * w[1] + v[2] * w[2];
    double best = point_seg_dist2(p0, q0, v, c);
    double x = point_seg_dist2(p1, q0, v, c);
    if (x < best) best = x;
    x = point_seg_dist2(q0, p0, u, a);
    if (x < best) best = x;
    x = point_seg_dist2(q1, p0, u, a);
    if (x < best) best = x;
    double den = a * c - b * b;
    if (den > 1e-12 * a * c) {
        double s = (b * e - c * d) / den, t = (a * e - b * d) / den;
        if (s > 0.0 && s < 1.0 && t > 0.0 && t < 1.0) {
            double dx = w[0] + s * u[0] - t * v[0];
            double dy = w[1] + s * u[1] - t * v[1];
            double dz = w[2] + s * u[2] - t * v[2];
            x = dx * dx + dy * dy + dz * dz;
            if (x < best) best = x;
        }
    }
    return sqrt(best);
}

/* Lower bounds on the clearance of link capsule (midpoint mid, half length + radius
 * off, segment AABB [slo, shi], radius r) to every box of a flat scene (S->sbx): the
 * larger of dist(mid, box) - off and dist(segment AABB, box AABB) - r (the two bounds
 * of node_lb / the BVH leaves), in float, minus the scene's slack, which exceeds the
 * float rounding (cc_bvh_build): each value is a lower bound of the double bound, so a
 * box it prunes could not have been nearer. Compiled for several instruction sets
 * (target_clones); the exact distances stay in double. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#endif
static void flat_lbs(const float *restrict sbx, int P, const double mid[3], double off,
                     const double slo[3], const double shi[3], double r, double slack,
                     float *restrict lb)
{
    const float *cx = sbx, *cy = sbx + P, *cz = sbx + 2 * P;
    const float *R0 = sbx + 3 * P, *R1 = sbx + 4 * P, *R2 = sbx + 5 * P, *R3 = sbx + 6 * P;
    const float *R4 = sbx + 7 * P, *R5 = sbx + 8 * P, *R6 = sbx + 9 * P, *R7 = sbx + 10 * P;
    const float *R8 = sbx + 11 * P, *hx = sbx + 12 * P, *hy = sbx + 13 * P, *hz = sbx + 14 * P;
    const float *lx = sbx + 15 * P, *ly = sbx + 16 * P, *lz = sbx + 17 * P;
    const float *ux = sbx + 18 * P, *uy = sbx + 19 * P, *uz = sbx + 20 * P;
    const float mx = (float)mid[0], my = (float)mid[1], mz = (float)mid[2];
    const float sl0 = (float)slo[0], sl1 = (float)slo[1], sl2 = (float)slo[2];
    const float sh0 = (float)shi[0], sh1 = (float)shi[1], sh2 = (float)shi[2];
    const float foff = (float)(off + slack), fr = (float)(r + slack);
    for (int b = 0; b < P; b++) {
        const float vx = mx - cx[b], vy = my - cy[b], vz = mz - cz[b];
        /* to_local: local_i = R[i] vx + R[3 + i] vy + R[6 + i] vz */
        const float ax = R0[b] * vx + R3[b] * vy + R6[b] * vz;
        const float ay = R1[b] * vx + R4[b] * vy + R7[b] * vz;
        const float az = R2[b] * vx + R5[b] * vy + R8[b] * vz;
        float ex = fabsf(ax) - hx[b], ey = fabsf(ay) - hy[b], ez = fabsf(az) - hz[b];
        ex = ex > 0.0f ? ex : 0.0f;
        ey = ey > 0.0f ? ey : 0.0f;
        ez = ez > 0.0f ? ez : 0.0f;
        const float d1 = sqrtf(ex * ex + ey * ey + ez * ez) - foff;
        float gx = lx[b] - sh0, gy = ly[b] - sh1, gz = lz[b] - sh2;
        gx = sl0 - ux[b] > gx ? sl0 - ux[b] : gx;
        gy = sl1 - uy[b] > gy ? sl1 - uy[b] : gy;
        gz = sl2 - uz[b] > gz ? sl2 - uz[b] : gz;
        gx = gx > 0.0f ? gx : 0.0f;
        gy = gy > 0.0f ? gy : 0.0f;
        gz = gz > 0.0f ? gz : 0.0f;
        const float d2 = sqrtf(gx * gx + gy * gy + gz * gz) - fr;
        lb[b] = d1 > d2 ? d1 : d2;
    }
}

/* Self pairs (entities L .. L + npairs - 1): exact segment distances unless the
 * midpoint bound is at or above the cap (or, shared, the best so far). */
static void pairs_clearance(const cc_scene *S, double e0[][3], double e1[][3], double mid[][3],
                            const double *hl, const double *cap, int shared, double *global,
                            double *out_c, int *out_pair)
{
    const int L = S->nlinks, B = S->nboxes;
    for (int p = 0; p < S->npairs; p++) {
        int a = S->pair_a[p], b = S->pair_b[p];
        double rr = S->link_r[a] + S->link_r[b];
        double dx = mid[a][0] - mid[b][0], dy = mid[a][1] - mid[b][1], dz = mid[a][2] - mid[b][2];
        double lbv = sqrt(dx * dx + dy * dy + dz * dz) - hl[a] - hl[b] - rr;
        double c = cap[L + p];
        if (shared && *global < c) c = *global;
        if (lbv >= c) { out_c[L + p] = lbv; out_pair[L + p] = -1; continue; }
        double dist = cc_seg_seg_dist(e0[a], e1[a], e0[b], e1[b]) - rr;
        out_c[L + p] = dist;
        out_pair[L + p] = L * B + p;
        if (dist < *global) *global = dist;
    }
}

/* Core of the exact path. cap[e]: values at or above it need not be exact. With
 * shared != 0 the cap also drops to the best clearance found so far over all
 * entities (for a plain minimum-clearance query). */
static int entity_clearance_impl(const cc_scene *S, const cc_frames *F, const uint64_t *active,
                                 const double *cap, int shared, double *out_c, int *out_pair)
{
    const int L = S->nlinks, B = S->nboxes;
    double e0[CC_MAX_LINKS][3], e1[CC_MAX_LINKS][3], mid[CC_MAX_LINKS][3], hl[CC_MAX_LINKS] = {0};
    double slo[CC_MAX_LINKS][3], shi[CC_MAX_LINKS][3];   /* segment AABBs */
    double global = INFINITY;
    for (int k = 0; k < L; k++) {
        cc_link_segment(S, F, k, e0[k], e1[k]);
        double dx = e1[k][0] - e0[k][0], dy = e1[k][1] - e0[k][1], dz = e1[k][2] - e0[k][2];
        hl[k] = 0.5 * sqrt(dx * dx + dy * dy + dz * dz);
        for (int i = 0; i < 3; i++) {
            mid[k][i] = 0.5 * (e0[k][i] + e1[k][i]);
            slo[k][i] = e0[k][i] < e1[k][i] ? e0[k][i] : e1[k][i];
            shi[k][i] = e0[k][i] < e1[k][i] ? e1[k][i] : e0[k][i];
        }
    }
    const int NW = S->nwords;
    if (shared) pairs_clearance(S, e0, e1, mid, hl, cap, shared, &global, out_c, out_pair);
    for (int k = 0; k < L; k++) {
        /* branch and bound over the BVH: a node's boxes are at least
         * dist(mid, node AABB) - half length - r away from the link's capsule */
        const uint64_t *lm = S->link_box_mask + (size_t)k * NW;
        const double r = S->link_r[k], off = hl[k] + r;
        double best = cap[k];
        if (shared && global < best) best = global;
        int pair = -1;
        if (S->sbx && !S->exact_bvh) {
            /* flat: SIMD lower bounds of every box, then exact distances of the active
             * boxes below the bound, nearest first */
            float lb[CC_EXACT_FLAT_MAX];
            int cand[CC_EXACT_FLAT_MAX], nc = 0;
            flat_lbs(S->sbx, S->nbox_pad, mid[k], off, slo[k], shi[k], r, S->sbx_slack, lb);
            for (int w = 0; w < NW; w++) {
                uint64_t m = lm[w] & active[w];
                while (m) {
                    const int b = 64 * w + __builtin_ctzll(m);
                    m &= m - 1;
                    if ((double)lb[b] < best) cand[nc++] = b;
                }
            }
            for (;;) {
                int j = -1;
                double v = best;
                for (int i = 0; i < nc; i++)
                    if ((double)lb[cand[i]] < v) { v = (double)lb[cand[i]]; j = i; }
                if (j < 0) break;
                const int b = cand[j];
                cand[j] = cand[--nc];
                double dist = cc_seg_box_dist(e0[k], e1[k], S->box_c[b], S->box_R[b], S->box_h[b]) - r;
                if (dist < best) { best = dist; pair = k * B + b; }
            }
            out_c[k] = best;
            out_pair[k] = pair;
            if (pair >= 0 && best < global) global = best;
            continue;
        }
        int stk[CC_BVH_STACK];
        double stb[CC_BVH_STACK];
        int sp = 0;
        if (S->nnodes > 0) {
            stk[0] = 0;
            stb[0] = node_lb(mid[k], off, slo[k], shi[k], r, &S->nodes[0]);
            sp = 1;
        }
        while (sp > 0) {
            sp--;
            if (stb[sp] >= best) continue;
            const cc_node *nd = &S->nodes[stk[sp]];
            if (nd->count == 0) {
                const cc_node *a = &S->nodes[nd->left], *c = &S->nodes[nd->right];
                double la = node_lb(mid[k], off, slo[k], shi[k], r, a);
                double lc = node_lb(mid[k], off, slo[k], shi[k], r, c);
                int ia = nd->left, ic = nd->right;
                if (la < lc) {   /* nearer child popped first */
                    double t = la; la = lc; lc = t;
                    int ti = ia; ia = ic; ic = ti;
                }
                if (la < best) { stk[sp] = ia; stb[sp++] = la; }
                if (lc < best) { stk[sp] = ic; stb[sp++] = lc; }
                continue;
            }
            for (int bi = nd->first; bi < nd->first + nd->count; bi++) {
                const int b = S->bvh_box[bi];
                if (!(cc_bit(active, b) & cc_bit(lm, b))) continue;
                if (S->box_aligned[b]) {
                    const double *c = S->box_c[b], *h = S->box_h[b];
                    const double blo[3] = {c[0] - h[0], c[1] - h[1], c[2] - h[2]};
                    const double bhi[3] = {c[0] + h[0], c[1] + h[1], c[2] + h[2]};
                    if (aabb_aabb_dist(slo[k], shi[k], blo, bhi) - r >= best) continue;
                }
                if (cc_point_box_dist(mid[k], S->box_c[b], S->box_R[b], S->box_h[b]) - off >= best)
                    continue;
                double dist = cc_seg_box_dist(e0[k], e1[k], S->box_c[b], S->box_R[b], S->box_h[b]) - r;
                if (dist < best) { best = dist; pair = k * B + b; }
            }
        }
        out_c[k] = best;
        out_pair[k] = pair;
        if (pair >= 0 && best < global) global = best;
    }
    if (!shared) pairs_clearance(S, e0, e1, mid, hl, cap, shared, &global, out_c, out_pair);
    return L + S->npairs;
}

int cc_entity_clearance(const cc_scene *S, const cc_frames *F, const uint64_t *active,
                        const double *cap, double *out_c, int *out_pair)
{
    return entity_clearance_impl(S, F, active, cap, 0, out_c, out_pair);
}

double cc_min_clearance(const cc_scene *S, const double *q, const uint64_t *active, int *pair)
{
    cc_frames F;
    double cap[CC_MAX_ENT], c[CC_MAX_ENT];
    int pr[CC_MAX_ENT];
    cc_fk(S, q, &F);
    int ne = S->nlinks + S->npairs;
    for (int e = 0; e < CC_MAX_ENT; e++) cap[e] = INFINITY;
    entity_clearance_impl(S, &F, active, cap, 1, c, pr);
    double best = INFINITY;
    int bp = -1;
    for (int e = 0; e < ne; e++)
        if (pr[e] >= 0 && c[e] < best) { best = c[e]; bp = pr[e]; }
    *pair = bp;
    return best;
}

/* ---------------------------------------------------------------- trajectories */

/* Per-entity bound on how far any segment point can move (relative to whatever
 * the entity's clearance is measured against) for a joint step with |dq| = adq:
 * sum_j |dq_j| * (max distance of the link's points from joint j's axis). A
 * rotation by dq about an axis moves a point at distance rho by at most
 * rho * |dq| (arc length), and the bound holds along the whole straight-line
 * joint motion because rho is bounded for every configuration. */
static void entity_delta(const cc_scene *S, const double adq[CC_NJ], double *delta)
{
    const int L = S->nlinks;
    for (int k = 0; k < L; k++) {
        double s = 0.0;
        for (int j = 0; j < CC_NJ; j++) s += adq[j] * S->lip[k][j];
        delta[k] = s;
    }
    for (int p = 0; p < S->npairs; p++) {
        int a = S->pair_a[p], b = S->pair_b[p];
        double s = 0.0;
        for (int j = S->pair_first_joint[p]; j < CC_NJ; j++)
            s += adq[j] * (S->lip[a][j] + S->lip[b][j]);
        delta[L + p] = s;
    }
}

/* Runs (runs_certify): samples within CC_RUN_EPS / 2 rad of their run's segment. */
#define CC_RUN_EPS 1e-9
/* Runs: exact clearances at a run's ends and midpoints are computed up to margin + eta +
 * CC_RUN_CAP (m) only (larger values are lower bounds, which certify accepts); a larger
 * cap costs more box distances than the bisection it saves (measured on the 256- and
 * 1,024-box scenes of benchmarks/planning.py: 0.05 faster than 0.03, 0.1 and no cap).
 * Offering the midpoints to the fast path one at a time was slower still. */
#define CC_RUN_CAP 0.05

typedef struct {
    const cc_scene *S;
    const uint64_t *active;
    int max_depth;
    long evals;
    int pair;
    double pair_c;
    double eta;      /* extra clearance required (runs: deviation of the samples from the line) */
    double lo_min;   /* smallest accepted interval bound (runs: reported as a lower bound) */
} cert_ctx;

static int worst_entity(int ne, const double *c, const int *pr, int *pair, double *val)
{
    double v = INFINITY;
    int e = -1;
    for (int i = 0; i < ne; i++)
        if (c[i] < v) { v = c[i]; e = i; }
    *val = v;
    *pair = e >= 0 ? pr[e] : -1;
    return e;
}

/* Certify straight-line joint motion qa -> qb, given entity clearance lower bounds
 * ca, cb at the ends (both already >= margin). Along the segment the clearance of
 * entity e at parameter t is at least max(ca - delta t, cb - delta (1 - t)) >=
 * (ca + cb - delta) / 2. If that is >= margin for every entity the motion is
 * free; otherwise bisect. Returns 0 certified, CC_FAIL_COLLISION_BETWEEN if a
 * midpoint collides, CC_FAIL_UNCERTIFIED if undecided at max depth. */
static int certify(cert_ctx *x, const double *qa, const double *ca, const double *qb,
                   const double *cb, const int *pra, const int *prb, int depth)
{
    const cc_scene *S = x->S;
    const int ne = S->nlinks + S->npairs;
    const double margin = S->margin;
    double adq[CC_NJ], delta[CC_MAX_ENT];
    for (int j = 0; j < CC_NJ; j++) adq[j] = fabs(qb[j] - qa[j]);
    entity_delta(S, adq, delta);
    int ok = 1, worst = -1;
    double worst_v = INFINITY, lo_min = INFINITY;
    for (int e = 0; e < ne; e++) {
        double lo = 0.5 * (ca[e] + cb[e] - delta[e]);
        if (lo < lo_min) lo_min = lo;
        if (!(lo >= margin + x->eta)) {
            ok = 0;
            if (lo < worst_v) { worst_v = lo; worst = e; }
        }
    }
    if (ok) {
        if (lo_min < x->lo_min) x->lo_min = lo_min;
        return 0;
    }
    if (depth >= x->max_depth) {
        x->pair = pra[worst] >= 0 ? pra[worst] : prb[worst];
        x->pair_c = worst_v;
        return CC_FAIL_UNCERTIFIED;
    }
    double qm[CC_NJ], cap[CC_MAX_ENT], cm[CC_MAX_ENT];
    int prm[CC_MAX_ENT];
    for (int j = 0; j < CC_NJ; j++) qm[j] = 0.5 * (qa[j] + qb[j]);
    for (int e = 0; e < ne; e++) cap[e] = margin + x->eta + 0.75 * delta[e];
    if (x->eta > 0.0)   /* runs: see CC_RUN_CAP */
        for (int e = 0; e < ne; e++)
            if (cap[e] > margin + x->eta + CC_RUN_CAP) cap[e] = margin + x->eta + CC_RUN_CAP;
    cc_frames F;
    cc_fk(S, qm, &F);
    cc_entity_clearance(S, &F, x->active, cap, cm, prm);
    x->evals++;
    int p;
    double v;
    worst_entity(ne, cm, prm, &p, &v);
    if (v < margin + x->eta) {
        x->pair = p;
        x->pair_c = v;
        return CC_FAIL_COLLISION_BETWEEN;
    }
    int r = certify(x, qa, ca, qm, cm, pra, prm, depth + 1);
    if (r) return r;
    return certify(x, qm, cm, qb, cb, prm, prb, depth + 1);
}

static int in_box(const double x[3], const double c[3], const double R[9], const double h[3])
{
    double v[3] = {x[0] - c[0], x[1] - c[1], x[2] - c[2]}, l[3];
    to_local(R, v, l);
    return fabs(l[0]) <= h[0] && fabs(l[1]) <= h[1] && fabs(l[2]) <= h[2];
}

static void fail(cc_traj_result *r, int code, long index)
{
    r->code = code;
    r->index = index;
}

/* Runs (with fast acceptance). A run is samples a..b (b >= a + 2) of which every interior
 * sample lies within CC_RUN_EPS / 2 (max norm, radians) of a point of the straight joint
 * segment q_a -> q_b (the timing keeps each segment's samples on the straight line between
 * its waypoints: only rounding moves them off it). The executed polyline q_a, ..., q_b is
 * then within CC_RUN_EPS / 2 of that segment everywhere (each of its points is a convex
 * combination of two samples, so of two segment points plus two deviations), and a link
 * point moves by at most eta_e = sum_j CC_RUN_EPS lip between a configuration and one
 * CC_RUN_EPS away (entity_delta; the factor 2 covers the bisection points' rounding). So if the segment q_a -> q_b is certified with every
 * clearance >= margin + max_e eta_e (certify with eta), every configuration of the polyline,
 * the samples a+1 .. b-1 included, has every clearance >= margin: those samples and the
 * intervals of the run need no check of their own. A run that does not certify (or whose
 * ends are too close) is left to the per-sample check, which then gives the exact failure.
 * Returns cov (n bytes, malloc'ed; bit 0: sample inside a certified run, bit 1: interval
 * i-1 -> i inside one) or NULL; the smallest certified bound minus eta goes to
 * r->min_bound (a lower bound of the clearance of the run's samples). */

static int run_fits(const double *q, long a, long b)
{
    const double *qa = q + CC_NJ * a, *qb = q + CC_NJ * b;
    double d[CC_NJ], dd = 0.0;
    for (int j = 0; j < CC_NJ; j++) { d[j] = qb[j] - qa[j]; dd += d[j] * d[j]; }
    if (!(dd > 0.0)) return 0;
    for (long i = a + 1; i < b; i++) {
        const double *qi = q + CC_NJ * i;
        double t = 0.0;
        for (int j = 0; j < CC_NJ; j++) t += (qi[j] - qa[j]) * d[j];
        t /= dd;
        t = t < 0.0 ? 0.0 : (t > 1.0 ? 1.0 : t);   /* a point of the segment */
        for (int j = 0; j < CC_NJ; j++)
            if (!(fabs(qi[j] - (qa[j] + t * d[j])) <= 0.5 * CC_RUN_EPS)) return 0;
    }
    return 1;
}

/* largest b such that samples a .. b look collinear (direction a -> a+1); run_fits decides */
static long run_end(const double *q, long n, long a)
{
    const double *qa = q + CC_NJ * a;
    double u[CC_NJ], uu = 0.0;
    for (int j = 0; j < CC_NJ; j++) { u[j] = qa[CC_NJ + j] - qa[j]; uu += u[j] * u[j]; }
    if (!(uu > 0.0)) return a + 1;
    long b = a + 1;
    while (b + 1 < n) {
        const double *qc = q + CC_NJ * (b + 1);
        double t = 0.0;
        for (int j = 0; j < CC_NJ; j++) t += (qc[j] - qa[j]) * u[j];
        t /= uu;
        int on = t > 0.0;
        for (int j = 0; j < CC_NJ && on; j++)
            on = fabs(qc[j] - (qa[j] + t * u[j])) <= 0.25 * CC_RUN_EPS;
        if (!on) break;
        b++;
    }
    return b;
}

static uint8_t *runs_certify(const cc_scene *S, const double *q, long n, const uint64_t *active,
                             const cc_traj_opts *o, cc_traj_result *r)
{
    const int ne = S->nlinks + S->npairs;
    uint8_t *cov = calloc((size_t)n, 1);
    if (!cov) return NULL;
    double adq[CC_NJ], eta_e[CC_MAX_ENT], eta = 0.0;
    /* eta for a deviation of CC_RUN_EPS, twice what run_fits allows: the other half
     * covers the rounding of the bisection points (each within a few ulp of the segment,
     * ~1e-14 rad after 40 halvings), so the samples are within CC_RUN_EPS of the
     * polyline of bisection points that certify actually proves */
    for (int j = 0; j < CC_NJ; j++) adq[j] = CC_RUN_EPS;
    entity_delta(S, adq, eta_e);
    for (int e = 0; e < ne; e++)
        if (eta_e[e] > eta) eta = eta_e[e];
    double ca[CC_MAX_ENT], cb[CC_MAX_ENT], cap[CC_MAX_ENT], delta[CC_MAX_ENT];
    int pa[CC_MAX_ENT], pb[CC_MAX_ENT];
    long have = -1;   /* sample whose clearances are in ca / pa */
    for (long a = 0; a + 2 < n;) {
        long b = run_end(q, n, a);
        if (b < a + 2 || !run_fits(q, a, b)) { a++; continue; }
        for (int j = 0; j < CC_NJ; j++) adq[j] = fabs(q[CC_NJ * b + j] - q[CC_NJ * a + j]);
        entity_delta(S, adq, delta);
        for (int e = 0; e < ne; e++) cap[e] = S->margin + eta + 1.0001 * delta[e];
        for (int e = 0; e < ne; e++)
            if (cap[e] > S->margin + eta + CC_RUN_CAP) cap[e] = S->margin + eta + CC_RUN_CAP;
        cc_frames F;
        if (have != a) {
            cc_fk(S, q + CC_NJ * a, &F);
            cc_entity_clearance(S, &F, active, cap, ca, pa);
            r->evals++;
        }
        cc_fk(S, q + CC_NJ * b, &F);
        cc_entity_clearance(S, &F, active, cap, cb, pb);
        r->evals++;
        int ends_ok = 1;
        for (int e = 0; e < ne; e++)
            if (!(ca[e] >= S->margin + eta && cb[e] >= S->margin + eta)) ends_ok = 0;
        /* the per-sample resolution: max_depth halvings of each of the run's intervals */
        const int depth = o->max_depth + (int)ceil(log2((double)(b - a)));
        cert_ctx x = {S, active, depth, 0, -1, 0.0, eta, INFINITY};
        if (ends_ok && certify(&x, q + CC_NJ * a, ca, q + CC_NJ * b, cb, pa, pb, 0) == 0) {
            for (long i = a + 1; i <= b; i++) cov[i] |= 2;
            for (long i = a + 1; i < b; i++) cov[i] |= 1;
            if (x.lo_min - eta < r->min_bound) r->min_bound = x.lo_min - eta;
        }
        r->evals += x.evals;
        memcpy(ca, cb, sizeof ca);
        memcpy(pa, pb, sizeof pa);
        have = b;
        a = b;
    }
    return cov;
}

/* Fast acceptance (certified mode, o->nacc > 0). For each sample i let need_i be
 * 1.0001 * the largest motion bound delta_e (entity_delta) of the intervals i-1 -> i and
 * i -> i+1 over all entities. The sample is offered to the companion scene with the
 * smallest margin M_k >= margin + need_i (same geometry: geom_hash); if its float32 fast
 * path calls the sample free, every clearance at the sample is >= M_k (the fast path's
 * conservative guarantee on that scene) and lb[i] = M_k, else lb[i] = -inf (exact).
 * An accepted sample then enters the trajectory check with the lower bound M_k for every
 * entity, in place of an exact clearance:
 *   - at the sample: M_k >= margin, so it is free;
 *   - between samples (certify): the bound for entity e over an interval with motion
 *     bound delta_e is (c_a + c_b - delta_e) / 2 with c_a, c_b lower bounds at its ends.
 *     An accepted end gives c >= margin + 1.0001 delta_e; an end evaluated exactly gives
 *     its clearance or, if that is at least its cap (>= margin + 1.0001 delta_e), the cap.
 *     So an interval between an accepted end and an end whose clearance reaches its cap
 *     is certified at once, and any other case is bisected as before with true lower
 *     bounds: nothing the exact-only check would refuse is accepted.
 * Samples are grouped per companion and each group goes through the fast path in one
 * call. Returns lb (n values, malloc'ed) or NULL (no acceptance: out of memory). */
static double *fast_accept(const cc_scene *S, const double *q, long n, const uint64_t *active,
                           const cc_traj_opts *o, const uint8_t *cov)
{
    const int ne = S->nlinks + S->npairs;
    double *lb = malloc((size_t)n * sizeof(double));
    double *need = malloc((size_t)n * sizeof(double));
    long *idx = malloc((size_t)n * sizeof(long));
    double *qb = malloc((size_t)n * CC_NJ * sizeof(double));
    uint8_t *free_ = malloc((size_t)n);
    int *lvl = malloc((size_t)n * sizeof(int));
    if (!lb || !need || !idx || !qb || !free_ || !lvl) {
        free(lb); free(need); free(idx); free(qb); free(free_); free(lvl);
        return NULL;
    }
    double prev = 0.0, delta[CC_MAX_ENT];
    for (long i = 0; i < n; i++) {
        double next = 0.0;
        if (i + 1 < n && !(cov && (cov[i + 1] & 2))) {   /* a run's intervals need no bound */
            double adq[CC_NJ];
            for (int j = 0; j < CC_NJ; j++) adq[j] = fabs(q[CC_NJ * (i + 1) + j] - q[CC_NJ * i + j]);
            entity_delta(S, adq, delta);
            for (int e = 0; e < ne; e++)
                if (delta[e] > next) next = delta[e];
        }
        need[i] = 1.0001 * (next > prev ? next : prev);
        prev = next;
        lb[i] = -INFINITY;
        lvl[i] = -1;
        if (cov && (cov[i] & 1)) continue;   /* inside a certified run: not evaluated */
        for (int k = 0; k < o->nacc; k++)
            if (o->acc[k]->margin - S->margin >= need[i]) { lvl[i] = k; break; }
    }
    for (int k = 0; k < o->nacc; k++) {
        long m = 0;
        for (long i = 0; i < n; i++)
            if (lvl[i] == k) {
                idx[m] = i;
                memcpy(qb + CC_NJ * m, q + CC_NJ * i, CC_NJ * sizeof(double));
                m++;
            }
        if (m == 0) continue;
        o->fast(o->acc[k], qb, m, active, free_);
        for (long t = 0; t < m; t++)
            if (free_[t]) lb[idx[t]] = o->acc[k]->margin;
    }
    free(need); free(idx); free(qb); free(free_); free(lvl);
    return lb;
}

void cc_check_trajectory(const cc_scene *S, const double *q, long n, const uint64_t *active,
                         const cc_traj_opts *o, cc_traj_result *r)
{
    const int ne = S->nlinks + S->npairs;
    const double margin = S->margin, dt = o->dt;
    memset(r, 0, sizeof *r);
    r->code = CC_OK;
    r->index = -1;
    r->joint = -1;
    r->zone = -1;
    r->pair = -1;
    r->min_clearance = INFINITY;
    r->min_pair = -1;
    r->min_bound = INFINITY;
    double cbuf[2][CC_MAX_ENT], dbuf[2][CC_MAX_ENT], cap[CC_MAX_ENT];
    double *lb = NULL;
    int pbuf[2][CC_MAX_ENT];
    double tcp_prev[3] = {0, 0, 0};
    cc_frames Fprev;
    int cur = 0;
    for (int e = 0; e < ne; e++) dbuf[0][e] = dbuf[1][e] = 0.0;
    cert_ctx cx = {S, active, o->max_depth, 0, -1, 0.0, 0.0, INFINITY};
    uint8_t *cov = (o->mode == CC_MODE_CERTIFIED && o->nacc > 0 && n > 2) ? runs_certify(S, q, n, active, o, r)
                                                                          : NULL;
    if (o->mode == CC_MODE_CERTIFIED && o->nacc > 0 && n > 0) lb = fast_accept(S, q, n, active, o, cov);

    for (long i = 0; i < n; i++) {
        const double *qi = q + CC_NJ * i;
        int failed = r->code != CC_OK;
        if (!failed) {
            for (int j = 0; j < CC_NJ && !failed; j++) {
                if (qi[j] < S->qmin[j] || qi[j] > S->qmax[j]) {
                    fail(r, CC_FAIL_POSITION, i);
                    r->joint = j;
                    r->value = qi[j];
                    r->limit = qi[j] < S->qmin[j] ? S->qmin[j] : S->qmax[j];
                    failed = 1;
                }
            }
            for (int j = 0; j < CC_NJ && !failed && i >= 1; j++) {
                double v = (qi[j] - qi[j - CC_NJ]) / dt;
                if (fabs(v) > S->vmax[j]) {
                    fail(r, CC_FAIL_VELOCITY, i);
                    r->joint = j; r->value = v; r->limit = S->vmax[j];
                    failed = 1;
                }
            }
            for (int j = 0; j < CC_NJ && !failed && i >= 1 && i + 1 < n; j++) {
                double acc = (qi[j + CC_NJ] - 2.0 * qi[j] + qi[j - CC_NJ]) / (dt * dt);
                if (fabs(acc) > S->amax[j]) {
                    fail(r, CC_FAIL_ACCEL, i);
                    r->joint = j; r->value = acc; r->limit = S->amax[j];
                    failed = 1;
                }
            }
        }
        cc_frames F;
        cc_fk(S, qi, &F);
        double tcp[3];
        if (i == 0) Fprev = F;
        cc_tcp(S, &F, tcp);
        if (!failed && i >= 1) {
            double dx = tcp[0] - tcp_prev[0], dy = tcp[1] - tcp_prev[1], dz = tcp[2] - tcp_prev[2];
            double speed = sqrt(dx * dx + dy * dy + dz * dz) / dt;
            if (speed > r->speed_chord_max) r->speed_chord_max = speed;
            double midp[3] = {0.5 * (tcp[0] + tcp_prev[0]), 0.5 * (tcp[1] + tcp_prev[1]),
                              0.5 * (tcp[2] + tcp_prev[2])};
            int zone = -1;
            for (int z = 0; z < S->nzones && zone < 0; z++)
                if (in_box(tcp, S->zone_c[z], S->zone_R[z], S->zone_h[z]) ||
                    in_box(tcp_prev, S->zone_c[z], S->zone_R[z], S->zone_h[z]) ||
                    in_box(midp, S->zone_c[z], S->zone_R[z], S->zone_h[z]))
                    zone = z;
            if (zone >= 0 && o->speed_limit_zone > 0.0 && speed > o->speed_limit_zone) {
                fail(r, CC_FAIL_SPEED, i);
                r->zone = zone; r->value = speed; r->limit = o->speed_limit_zone;
                failed = 1;
            } else if (o->speed_limit_outside > 0.0 && speed > o->speed_limit_outside) {
                fail(r, CC_FAIL_SPEED, i);
                r->zone = -1; r->value = speed; r->limit = o->speed_limit_outside;
                failed = 1;
            }
        }
        if (o->mode == CC_MODE_CERTIFIED && i >= 1) {
            /* certified TCP speed between samples i-1 and i (constant joint velocity) */
            double qd[CC_NJ], A1 = 0.0, A2 = 0.0, D = 0.0;
            for (int j = 0; j < CC_NJ; j++) {
                qd[j] = (qi[j] - qi[j - CC_NJ]) / dt;
                A1 += fabs(qd[j]);
                A2 += fabs(qd[j]) * S->tcp_lip[j];
                D += fabs(qi[j] - qi[j - CC_NJ]) * S->tcp_lip[j];
            }
            /* the TCP stays within D / 2 of one of the two ends: a zone closer than
             * that to either end may be entered */
            int zone = -1;
            for (int z = 0; z < S->nzones && zone < 0; z++)
                if (cc_point_box_dist(tcp, S->zone_c[z], S->zone_R[z], S->zone_h[z]) <= 0.5 * D ||
                    cc_point_box_dist(tcp_prev, S->zone_c[z], S->zone_R[z], S->zone_h[z]) <= 0.5 * D)
                    zone = z;
            double limit = o->speed_limit_outside;
            if (zone >= 0 && o->speed_limit_zone > 0.0 &&
                (limit <= 0.0 || o->speed_limit_zone < limit))
                limit = o->speed_limit_zone;
            else
                zone = -1;
            if (limit > 0.0) {
                const double va = cc_tcp_speed(S, &Fprev, qd), vb = cc_tcp_speed(S, &F, qd);
                double bound = 0.0;
                int res = cc_speed_cert(S, qi - CC_NJ, qi, qd, va, vb, dt, 3.0 * A1 * A2, limit, 0,
                                     o->max_depth, &bound);
                if (bound > r->speed_bound_max) r->speed_bound_max = bound;
                if (res && !failed) {
                    fail(r, CC_FAIL_SPEED_BETWEEN, i);
                    r->zone = zone; r->value = bound; r->limit = limit;
                    failed = 1;
                }
            }
        }
        memcpy(tcp_prev, tcp, sizeof tcp);
        Fprev = F;

        /* motion bound of the next segment (the previous one is dbuf[1 - cur]) */
        double *dnext = dbuf[cur], *dprev = dbuf[1 - cur];
        if (i + 1 < n) {
            double adq[CC_NJ];
            for (int j = 0; j < CC_NJ; j++) adq[j] = fabs(qi[j + CC_NJ] - qi[j]);
            entity_delta(S, adq, dnext);
        } else {
            for (int e = 0; e < ne; e++) dnext[e] = 0.0;
        }
        double *ci = cbuf[cur];
        int *pi = pbuf[cur];
        int wp;
        double wv;
        const int covered = cov && (cov[i] & 1);
        if (covered) {
            /* inside a certified run: its clearance and both its intervals are certified */
            r->accepted++;
            cur = 1 - cur;
            continue;
        }
        if (lb && lb[i] > -INFINITY) {
            /* accepted on the fast path: lower bound lb[i] for every entity */
            for (int e = 0; e < ne; e++) { ci[e] = lb[i]; pi[e] = -1; }
            wv = lb[i];
            wp = -1;
            if (lb[i] < r->min_bound) r->min_bound = lb[i];
            r->accepted++;
            goto checked;
        }
        for (int e = 0; e < ne; e++) {
            /* values at or above the smaller of the running minima cannot lower the
             * reported minimum (see the Python wrapper for what is reported) */
            double c = r->min_clearance < r->min_bound ? r->min_clearance : r->min_bound;
            if (!failed) {
                double need = margin;
                if (o->mode == CC_MODE_CERTIFIED)
                    need += 1.0001 * (dnext[e] > dprev[e] ? dnext[e] : dprev[e]);
                if (need > c || c != c) c = need;
            }
            cap[e] = c;
        }
        cc_entity_clearance(S, &F, active, cap, ci, pi);
        cx.evals++;
        worst_entity(ne, ci, pi, &wp, &wv);
        if (wv < r->min_clearance && wp >= 0) { r->min_clearance = wv; r->min_pair = wp; }
    checked:
        if (!failed) {
            if (wv < margin) {
                fail(r, CC_FAIL_COLLISION, i);
                r->pair = wp; r->pair_clearance = wv;
            } else if (i >= 1 && o->mode == CC_MODE_CERTIFIED && !(cov && (cov[i] & 2))) {
                int res = certify(&cx, qi - CC_NJ, cbuf[1 - cur], qi, ci, pbuf[1 - cur], pi, 0);
                if (res) {
                    fail(r, res, i);
                    r->pair = cx.pair; r->pair_clearance = cx.pair_c;
                }
            } else if (i >= 1 && o->mode == CC_MODE_FIXED) {
                const double *qa = qi - CC_NJ;
                double mx = 0.0;
                for (int j = 0; j < CC_NJ; j++) {
                    double a = fabs(qi[j] - qa[j]);
                    if (a > mx) mx = a;
                }
                long nsub = (long)ceil(mx / o->fixed_step);
                for (long s = 1; s < nsub; s++) {
                    double t = (double)s / (double)nsub, qs[CC_NJ], cs[CC_MAX_ENT];
                    int ps[CC_MAX_ENT];
                    for (int j = 0; j < CC_NJ; j++) qs[j] = qa[j] + t * (qi[j] - qa[j]);
                    for (int e = 0; e < ne; e++) cap[e] = margin;
                    cc_frames Fs;
                    cc_fk(S, qs, &Fs);
                    cc_entity_clearance(S, &Fs, active, cap, cs, ps);
                    cx.evals++;
                    worst_entity(ne, cs, ps, &wp, &wv);
                    if (wv < margin) {
                        fail(r, CC_FAIL_COLLISION_BETWEEN, i);
                        r->pair = wp; r->pair_clearance = wv;
                        break;
                    }
                }
            }
        }
        cur = 1 - cur;
    }
    r->evals += cx.evals;
    free(lb);
    free(cov);
}
