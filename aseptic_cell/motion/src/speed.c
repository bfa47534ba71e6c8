/* Certified TCP speed between trajectory samples (used by cc_check_trajectory, exact.c). */
#include "ccheck.h"

#include <math.h>

/* TCP velocity J(q) qd for frames F: sum_j qd_j z_j x (tcp - o_j), joint j turning
 * about z of frame j. */
double cc_tcp_speed(const cc_scene *S, const cc_frames *F, const double qd[CC_NJ])
{
    double tcp[3], v[3] = {0.0, 0.0, 0.0};
    cc_tcp(S, F, tcp);
    for (int j = 0; j < CC_NJ; j++) {
        const double *R = F->R[j], *o = F->p[j];
        const double z[3] = {R[2], R[5], R[8]};
        const double w[3] = {tcp[0] - o[0], tcp[1] - o[1], tcp[2] - o[2]};
        v[0] += qd[j] * (z[1] * w[2] - z[2] * w[1]);
        v[1] += qd[j] * (z[2] * w[0] - z[0] * w[2]);
        v[2] += qd[j] * (z[0] * w[1] - z[1] * w[0]);
    }
    return sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
}

/* Certified TCP speed over the straight joint motion qa -> qb run at the constant
 * joint velocity qd (rad/s) for h seconds. Along it the TCP acceleration is
 * d/dt (J qd) = sum_j qd_j [sum_{i<j} qd_i (z_i x (z_j x w_j) + z_j x (z_i x w_j))
 * + z_j x sum_{i>=j} qd_i z_i x w_i], w_j = tcp - o_j, whose terms are bounded by
 * the distances of the TCP from the joint axes (tcp_lip), so |a| <= A = 3 (sum_i
 * |qd_i|) (sum_j |qd_j| tcp_lip_j). Hence |v(t)| <= min(va + A t, vb + A (h - t))
 * <= (va + vb + A h) / 2 over the interval. Bisects while that bound is above the
 * limit and neither end is; returns 0 (certified), 1 (an end above the limit) or 2
 * (undecided at max_depth). *bound receives the largest certified bound (or the
 * failing value). */
int cc_speed_cert(const cc_scene *S, const double *qa, const double *qb, const double qd[CC_NJ],
                      double va, double vb, double h, double A, double limit, int depth,
                      int max_depth, double *bound)
{
    double b = 0.5 * (va + vb + A * h);
    if (b <= limit) {
        if (b > *bound) *bound = b;
        return 0;
    }
    if (va > limit || vb > limit) {
        *bound = va > vb ? va : vb;
        return 1;
    }
    if (depth >= max_depth) {
        *bound = b;
        return 2;
    }
    double qm[CC_NJ];
    for (int j = 0; j < CC_NJ; j++) qm[j] = 0.5 * (qa[j] + qb[j]);
    cc_frames F;
    cc_fk(S, qm, &F);
    const double vm = cc_tcp_speed(S, &F, qd);
    int r = cc_speed_cert(S, qa, qm, qd, va, vm, 0.5 * h, A, limit, depth + 1, max_depth, bound);
    if (r) return r;
    return cc_speed_cert(S, qm, qb, qd, vm, vb, 0.5 * h, A, limit, depth + 1, max_depth, bound);
}
