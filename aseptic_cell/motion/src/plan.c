/* Joint-space planner over the float32 fast path: RRT-Connect (Kuffner and LaValle,
 * ICRA 2000) with straight-line first try and shortcutting, deterministic for a
 * seed (own splitmix64 generator, iteration budget rather than a time budget).
 *
 * Motion validity. The planner runs on a scene whose safety margin is the real
 * margin plus a buffer delta (built by motion/planner.py). An edge qa -> qb is
 * checked at configurations no more than `step` = delta of link motion apart,
 * measured by the same Lipschitz bound as the certified check: link k moves by at
 * most sum_j |dq_j| lip[k][j] along a straight joint motion. Between two checked
 * configurations every point of a link is within D / 2 of its position at one of
 * them (D <= delta the sub-interval's bound), so its clearance to a box stays
 * above margin + delta - delta / 2; two links move relative to each other by at
 * most 2 D, which keeps a self pair above margin + delta - delta. The result is
 * then re-checked by the exact certified trajectory check (scene.plan).
 */
#include "ccheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unif(uint64_t *s) { return (double)(splitmix(s) >> 11) * 0x1p-53; }

/* largest link motion bound of the straight joint move qa -> qb (m) */
static double motion_bound(const cc_scene *S, const double *qa, const double *qb)
{
    double best = 0.0;
    for (int k = 0; k < S->nlinks; k++) {
        double s = 0.0;
        for (int j = 0; j < CC_NJ; j++) s += fabs(qb[j] - qa[j]) * S->lip[k][j];
        if (s > best) best = s;
    }
    return best;
}

static int config_free(const cc_scene *S, const uint64_t *active, cc_fast_fn fast, const double *q)
{
    uint8_t out = 0;
    fast(S, q, 1, active, &out);
    return out != 0;
}

/* Straight motion qa -> qb free at every checked configuration; with_end: qb itself
 * is checked too, in the first block (the usual reason an extension stops). */
static int motion_free(const cc_scene *S, const uint64_t *active, cc_fast_fn fast, const double *qa,
                       const double *qb, double step, int with_end, int coarse_only)
{
    const double D = motion_bound(S, qa, qb);
    long n = (long)ceil(D / step);
    if (n < 1) n = 1;
    if (n > 1000000) return 0;
    /* interior points t = i / n, 0 < i < n, in blocks of CC_WS, stopping at the first
     * block with a colliding point */
    enum { CH = CC_WS };
    double buf[CH * CC_NJ];
    uint8_t out[CH];
    int m = 0;
    if (with_end) {
        memcpy(buf, qb, CC_NJ * sizeof(double));
        m = 1;
    }
    /* the first block: the coarsest interior points in bit-reversed order (an edge that
     * collides usually fails there); then the rest in order, so each later block's
     * configurations are neighbours and visit the same few BVH nodes. Every interior point
     * is checked exactly once either way, so the verdict does not depend on the order. */
    long coarse[CH];
    int nco = 0;
    long bits = 0;
    while ((1L << bits) < n) bits++;
    const long total = 1L << bits;
    for (long r = 0; r < total && m < CH; r++) {
        long i = 0;
        for (long b = 0; b < bits; b++)
            if (r & (1L << b)) i |= 1L << (bits - 1 - b);
        if (i == 0 || i >= n) continue;
        coarse[nco++] = i;
        const double t = (double)i / (double)n;
        for (int j = 0; j < CC_NJ; j++) buf[m * CC_NJ + j] = qa[j] + t * (qb[j] - qa[j]);
        m++;
    }
    if (m > 0) {
        fast(S, buf, m, active, out);
        for (int l = 0; l < m; l++)
            if (!out[l]) return 0;
        m = 0;
    }
    if (coarse_only) return 1;
    for (long i = 1; i < n; i++) {
        int seen = 0;
        for (int c = 0; c < nco; c++) seen |= coarse[c] == i;
        if (seen) continue;
        const double t = (double)i / (double)n;
        for (int j = 0; j < CC_NJ; j++) buf[m * CC_NJ + j] = qa[j] + t * (qb[j] - qa[j]);
        if (++m == CH) {
            fast(S, buf, m, active, out);
            for (int l = 0; l < m; l++)
                if (!out[l]) return 0;
            m = 0;
        }
    }
    if (m > 0) {
        fast(S, buf, m, active, out);
        for (int l = 0; l < m; l++)
            if (!out[l]) return 0;
    }
    return 1;
}

int cc_motion_free(const cc_scene *S, const uint64_t *active, cc_fast_fn fast, const double *qa,
                   const double *qb, double step)
{
    return motion_free(S, active, fast, qa, qb, step, 0, 0);
}

int cc_motion_coarse(const cc_scene *S, const uint64_t *active, cc_fast_fn fast, const double *qa,
                     const double *qb, double step)
{
    return motion_free(S, active, fast, qa, qb, step, 0, 1);
}

typedef struct {
    double *q;
    int *parent;
    long n, cap;
} tree;

static int tree_add(tree *t, const double *q, int parent)
{
    if (t->n >= t->cap) return -1;
    memcpy(t->q + CC_NJ * t->n, q, CC_NJ * sizeof(double));
    t->parent[t->n] = parent;
    return (int)t->n++;
}

static int nearest(const tree *t, const double *q)
{
    int best = 0;
    double bd = INFINITY;
    for (long i = 0; i < t->n; i++) {
        const double *p = t->q + CC_NJ * i;
        double d = 0.0;
        for (int j = 0; j < CC_NJ; j++) d += (p[j] - q[j]) * (p[j] - q[j]);
        if (d < bd) { bd = d; best = (int)i; }
    }
    return best;
}

/* Move from `from` toward `to` by at most `ext` (max-norm, rad); 1 if reached `to`. */
static int steer(const double *from, const double *to, double ext, double *out)
{
    double mx = 0.0;
    for (int j = 0; j < CC_NJ; j++) {
        double a = fabs(to[j] - from[j]);
        if (a > mx) mx = a;
    }
    if (mx <= ext) {
        memcpy(out, to, CC_NJ * sizeof(double));
        return 1;
    }
    const double s = ext / mx;
    for (int j = 0; j < CC_NJ; j++) out[j] = from[j] + s * (to[j] - from[j]);
    return 0;
}

enum { EXT_TRAPPED = 0, EXT_ADVANCED = 1, EXT_REACHED = 2 };

static int extend(tree *t, const cc_scene *S, const uint64_t *active, cc_fast_fn fast,
                  const double *q, const cc_plan_opts *o, int *added)
{
    const int nn = nearest(t, q);
    double qn[CC_NJ];
    const int reached = steer(t->q + CC_NJ * nn, q, o->extend, qn);
    /* the end in the first block: in a cluttered scene the usual reason to stop */
    if (!motion_free(S, active, fast, t->q + CC_NJ * nn, qn, o->step, 1, 0)) return EXT_TRAPPED;
    *added = tree_add(t, qn, nn);
    if (*added < 0) return EXT_TRAPPED;
    return reached ? EXT_REACHED : EXT_ADVANCED;
}

/* Write the path root(a) .. node ia, node ib .. root(b) into out (start first if
 * a is the start tree). Returns the number of waypoints, or -1 if it does not fit. */
static long extract(const tree *a, int ia, const tree *b, int ib, int a_is_start, double *out,
                    long max_out)
{
    long na = 0, nb = 0;
    for (int i = ia; i >= 0; i = a->parent[i]) na++;
    for (int i = ib; i >= 0; i = b->parent[i]) nb++;
    /* ia and ib are the same configuration (connect reached it): drop one copy */
    const long n = na + nb - 1;
    if (n < 1 || n > max_out) return -1;
    double *tmp = malloc((size_t)n * CC_NJ * sizeof(double));
    if (!tmp) return -1;
    long w = na - 1;
    for (int i = ia; i >= 0; i = a->parent[i], w--) memcpy(tmp + CC_NJ * w, a->q + CC_NJ * i, CC_NJ * sizeof(double));
    w = na;
    for (int i = b->parent[ib]; i >= 0; i = b->parent[i], w++)
        memcpy(tmp + CC_NJ * w, b->q + CC_NJ * i, CC_NJ * sizeof(double));
    for (long i = 0; i < n; i++) {
        const long src = a_is_start ? i : n - 1 - i;
        memcpy(out + CC_NJ * i, tmp + CC_NJ * src, CC_NJ * sizeof(double));
    }
    free(tmp);
    return n;
}

/* Remove waypoints that can be skipped: random pairs first, then a greedy pass
 * that joins each kept waypoint to the farthest one it sees directly. */
static long shortcut(const cc_scene *S, const uint64_t *active, cc_fast_fn fast, double *p, long n,
                     const cc_plan_opts *o, uint64_t *rng)
{
    for (int it = 0; it < o->shortcut_iters && n > 2; it++) {
        long i = (long)(unif(rng) * (double)n), j = (long)(unif(rng) * (double)n);
        if (i > j) { long t = i; i = j; j = t; }
        if (j - i < 2) continue;
        if (!cc_motion_free(S, active, fast, p + CC_NJ * i, p + CC_NJ * j, o->step)) continue;
        memmove(p + CC_NJ * (i + 1), p + CC_NJ * j, (size_t)(n - j) * CC_NJ * sizeof(double));
        n -= j - i - 1;
    }
    /* kept waypoints are compacted to the front; writes (index w) never pass the
     * reads of later iterations (index >= i >= w) */
    long w = 0, i = 0;
    while (i < n - 1) {
        long j = n - 1;
        while (j > i + 1 && !cc_motion_free(S, active, fast, p + CC_NJ * i, p + CC_NJ * j, o->step)) j--;
        w++;
        if (w != j) memcpy(p + CC_NJ * w, p + CC_NJ * j, CC_NJ * sizeof(double));
        i = j;
    }
    n = w + 1;
    return n;
}

/* shortcut() on a path of roadmap ids, every edge through the roadmap's memo */
static long shortcut_ids(cc_roadmap *R, const cc_scene *S, const uint64_t *active, cc_fast_fn fast,
                         int *p, long n, const cc_plan_opts *o, uint64_t *rng, long *checks)
{
    for (int it = 0; it < o->shortcut_iters && n > 2; it++) {
        long i = (long)(unif(rng) * (double)n), j = (long)(unif(rng) * (double)n);
        if (i > j) { long t = i; i = j; j = t; }
        if (j - i < 2) continue;
        if (!cc_roadmap_edge(R, S, active, fast, p[i], p[j], o->step, checks)) continue;
        memmove(p + i + 1, p + j, (size_t)(n - j) * sizeof(int));
        n -= j - i - 1;
    }
    long w = 0, i = 0;
    while (i < n - 1) {
        long j = n - 1;
        while (j > i + 1 && !cc_roadmap_edge(R, S, active, fast, p[i], p[j], o->step, checks)) j--;
        p[++w] = p[j];
        i = j;
    }
    return w + 1;
}

int cc_plan(const cc_scene *S, const uint64_t *active, cc_fast_fn fast, const double *qs,
            const double *qg, const cc_plan_opts *o, double *out, long max_out, long *nout,
            long *samples)
{
    int method;
    long checks = 0;
    return cc_plan_rm(S, active, fast, qs, qg, o, NULL, 0, out, max_out, nout, samples, &method,
                      &checks);
}

int cc_plan_rm(const cc_scene *S, const uint64_t *active, cc_fast_fn fast, const double *qs,
               const double *qg, const cc_plan_opts *o, cc_roadmap *R, long max_rounds,
               double *out, long max_out, long *nout, long *samples, int *method, long *checks)
{
    *nout = 0;
    *samples = 0;
    *method = CC_METHOD_STRAIGHT;
    *checks = 0;
    if (!config_free(S, active, fast, qs)) return CC_PLAN_START;
    if (!config_free(S, active, fast, qg)) return CC_PLAN_GOAL;
    if (max_out < 2) return CC_PLAN_NOMEM;
    int sid = -1, gid = -1;
    if (R) {
        cc_roadmap_reserve(R, 2);
        sid = cc_roadmap_anchor(R, qs);
        gid = cc_roadmap_anchor(R, qg);
        if (sid < 0 || gid < 0) R = NULL;
    }
    const int straight = R ? cc_roadmap_edge(R, S, active, fast, sid, gid, o->step, checks)
                           : cc_motion_free(S, active, fast, qs, qg, o->step);
    if (straight) {
        memcpy(out, qs, CC_NJ * sizeof(double));
        memcpy(out + CC_NJ, qg, CC_NJ * sizeof(double));
        *nout = 2;
        return CC_PLAN_OK;
    }
    uint64_t rng = o->seed ^ 0x5eed5eed5eed5eedull;
    if (R && max_rounds > 0) {
        /* the lazy roadmap first; RRT-Connect if its free edges join no path */
        const long cap = max_out < R->n + 2 ? max_out : R->n + 2;
        int *path = malloc((size_t)cap * sizeof(int));
        long rounds = 0;
        long m = path ? cc_roadmap_query(R, S, active, fast, sid, gid, o->step, max_rounds, path, cap,
                                         &rounds, checks)
                      : -1;
        if (m >= 2) {
            m = shortcut_ids(R, S, active, fast, path, m, o, &rng, checks);
            for (long i = 0; i < m; i++)
                memcpy(out + CC_NJ * i, cc_roadmap_q(R, path[i]), CC_NJ * sizeof(double));
            /* exact endpoints (anchors hold the same values) */
            memcpy(out, qs, CC_NJ * sizeof(double));
            memcpy(out + CC_NJ * (m - 1), qg, CC_NJ * sizeof(double));
            free(path);
            *nout = m;
            *samples = rounds;
            *method = CC_METHOD_ROADMAP;
            return CC_PLAN_OK;
        }
        free(path);
    }
    *method = CC_METHOD_RRT;
    const long cap = o->max_samples + 2;
    tree ta = {malloc((size_t)cap * CC_NJ * sizeof(double)), malloc((size_t)cap * sizeof(int)), 0, cap};
    tree tb = {malloc((size_t)cap * CC_NJ * sizeof(double)), malloc((size_t)cap * sizeof(int)), 0, cap};
    int code = CC_PLAN_BUDGET;
    if (!ta.q || !ta.parent || !tb.q || !tb.parent) { code = CC_PLAN_NOMEM; goto done; }
    tree_add(&ta, qs, -1);
    tree_add(&tb, qg, -1);
    tree *a = &ta, *b = &tb;
    for (long it = 0; it < o->max_samples; it++) {
        *samples = it + 1;
        double qr[CC_NJ];
        for (int j = 0; j < CC_NJ; j++) qr[j] = S->qmin[j] + unif(&rng) * (S->qmax[j] - S->qmin[j]);
        int ia = -1;
        if (extend(a, S, active, fast, qr, o, &ia) != EXT_TRAPPED) {
            /* connect: extend b toward the new node until blocked or reached */
            const double *target = a->q + CC_NJ * ia;
            int ib = -1, res;
            do {
                res = extend(b, S, active, fast, target, o, &ib);
            } while (res == EXT_ADVANCED);
            if (res == EXT_REACHED) {
                long n = extract(a, ia, b, ib, a == &ta, out, max_out);
                if (n < 0) { code = CC_PLAN_NOMEM; goto done; }
                *nout = shortcut(S, active, fast, out, n, o, &rng);
                code = CC_PLAN_OK;
                goto done;
            }
        }
        tree *t = a; a = b; b = t;
    }
done:
    free(ta.q); free(ta.parent); free(tb.q); free(tb.parent);
    return code;
}
