/* Lazy roadmap (Lazy PRM, Bohlin and Kavraki, ICRA 2000) for repeated queries on one
 * planning scene and one active box set.
 *
 * Vertices: a fixed, deterministic set of configurations (own generator with a fixed
 * seed) that are free on the fast path, joined to their k nearest neighbours (joint-space
 * Euclidean distance, symmetrised). Edges are NOT checked when the roadmap is built: a
 * query searches the shortest path (A*) over the edges not yet known to collide, checks
 * the edges of that path only (motion_free of plan.c: the same check spacing and the same
 * safety argument as the RRT), marks a colliding edge invalid and searches again.
 *
 * Every edge verdict is memoised in a hash table keyed by the pair of vertex ids. A
 * verdict is a pure function of the two configurations, the scene, the active set and
 * the fast path, so the memo changes the time of a query, never its result: the path
 * returned is the shortest path over the edges that are free (ties aside, measure zero),
 * whatever was checked before. Query endpoints (start, goal) become "anchors": ids above
 * the vertices, found again by exact value, with their own k nearest vertices; anchors
 * are never vertices of other queries' searches, so earlier queries do not change the
 * graph a later query searches.
 */
#include "ccheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RM_PI 3.14159265358979323846

static uint64_t rm_splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rm_unif(uint64_t *s) { return (double)(rm_splitmix(s) >> 11) * 0x1p-53; }

static double dist(const double *a, const double *b)
{
    double s = 0.0;
    for (int j = 0; j < CC_NJ; j++) s += (a[j] - b[j]) * (a[j] - b[j]);
    return sqrt(s);
}

/* k nearest of q among the n vertices (ids in out, nearest first); returns the count */
static int knn(const double *V, int n, const double *q, int k, int skip, int *out)
{
    double bd[CC_RM_MAXK];
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (i == skip) continue;
        const double d = dist(V + CC_NJ * i, q);
        if (m == k && d >= bd[m - 1]) continue;
        int p = m < k ? m++ : m - 1;
        while (p > 0 && bd[p - 1] > d) { bd[p] = bd[p - 1]; out[p] = out[p - 1]; p--; }
        bd[p] = d;
        out[p] = i;
    }
    return m;
}

/* ---- memo: open addressing, key = (lo id << 32 | hi id) + 1, 0 = empty ---- */
static void memo_clear(cc_roadmap *R)
{
    if (R->hkey) memset(R->hkey, 0, R->hcap * sizeof *R->hkey);
    R->hcount = 0;
}

static uint64_t memo_key(int a, int b)
{
    const uint64_t lo = (uint64_t)(a < b ? a : b), hi = (uint64_t)(a < b ? b : a);
    return ((lo << 32) | hi) + 1;
}

static size_t memo_slot(const cc_roadmap *R, uint64_t key)
{
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    size_t i = (size_t)(h >> 20) & (R->hcap - 1);
    while (R->hkey[i] && R->hkey[i] != key) i = (i + 1) & (R->hcap - 1);
    return i;
}

static int memo_get(const cc_roadmap *R, int a, int b)
{
    if (!R->hkey) return 0;
    const size_t i = memo_slot(R, memo_key(a, b));
    return R->hkey[i] ? R->hval[i] : 0;
}

static void memo_put(cc_roadmap *R, int a, int b, int v)
{
    if (2 * (R->hcount + 1) > R->hcap) {
        size_t ncap = R->hcap ? 2 * R->hcap : 4096;
        uint64_t *nk = calloc(ncap, sizeof *nk);
        uint8_t *nv = malloc(ncap);
        if (!nk || !nv) { free(nk); free(nv); memo_clear(R); return; }
        uint64_t *ok = R->hkey;
        uint8_t *ov = R->hval;
        const size_t ocap = R->hcap;
        R->hkey = nk; R->hval = nv; R->hcap = ncap;
        for (size_t i = 0; i < ocap; i++)
            if (ok[i]) {
                size_t s = memo_slot(R, ok[i]);
                R->hkey[s] = ok[i];
                R->hval[s] = ov[i];
            }
        free(ok);
        free(ov);
    }
    const uint64_t key = memo_key(a, b);
    const size_t i = memo_slot(R, key);
    if (!R->hkey[i]) R->hcount++;
    R->hkey[i] = key;
    R->hval[i] = (uint8_t)v;
}

const double *cc_roadmap_q(const cc_roadmap *R, int id)
{
    return id < R->n ? R->q + CC_NJ * id : R->aq + CC_NJ * (id - R->n);
}

/* memoised edge check (1 free, 0 not); *checks counts the edges actually checked */
int cc_roadmap_edge(cc_roadmap *R, const cc_scene *S, const uint64_t *active, cc_fast_fn fast,
                    int a, int b, double step, long *checks)
{
    int v = memo_get(R, a, b);
    if (v) return v == 1;
    (*checks)++;
    const int ok = cc_motion_free(S, active, fast, cc_roadmap_q(R, a), cc_roadmap_q(R, b), step);
    memo_put(R, a, b, ok ? 1 : 2);
    return ok;
}

int cc_roadmap_known_bad(const cc_roadmap *R, int a, int b) { return memo_get(R, a, b) == 2; }

/* anchor id of q (added with its k nearest vertices if new); -1 if no room */
int cc_roadmap_anchor(cc_roadmap *R, const double *q)
{
    for (int i = 0; i < R->nanch; i++)
        if (memcmp(R->aq + CC_NJ * i, q, CC_NJ * sizeof(double)) == 0) return R->n + i;
    if (R->nanch >= CC_RM_MAX_ANCHORS) return -1;
    const int i = R->nanch++;
    memcpy(R->aq + CC_NJ * i, q, CC_NJ * sizeof(double));
    R->ank[i] = knn(R->q, R->n, q, R->ka, -1, R->anbr + (size_t)R->ka * i);
    return R->n + i;
}

/* room for `anchors` new anchors: a full anchor list is dropped with the memo (a cache:
 * results do not change); call before taking a query's anchors */
void cc_roadmap_reserve(cc_roadmap *R, int anchors)
{
    if (R->nanch + anchors > CC_RM_MAX_ANCHORS) {
        R->nanch = 0;
        memo_clear(R);
    }
}

void cc_roadmap_free(cc_roadmap *R)
{
    if (!R) return;
    free(R->q); free(R->adj_off); free(R->adj); free(R->aq); free(R->anbr); free(R->ank);
    free(R->hkey); free(R->hval);
    free(R);
}

cc_roadmap *cc_roadmap_new(const cc_scene *S, const uint64_t *active, cc_fast_fn fast, int n,
                           int k, uint64_t seed)
{
    if (n < 2 || k < 1 || k > CC_RM_MAXK) return NULL;
    cc_roadmap *R = calloc(1, sizeof *R);
    if (!R) return NULL;
    R->k = k;
    R->ka = CC_RM_MAXK;
    R->q = malloc((size_t)n * CC_NJ * sizeof(double));
    R->aq = malloc((size_t)CC_RM_MAX_ANCHORS * CC_NJ * sizeof(double));
    R->anbr = malloc((size_t)CC_RM_MAX_ANCHORS * R->ka * sizeof(int));
    R->ank = malloc((size_t)CC_RM_MAX_ANCHORS * sizeof(int));
    int *nb = malloc((size_t)n * k * sizeof(int)), *cnt = calloc((size_t)n, sizeof(int));
    if (!R->q || !R->aq || !R->anbr || !R->ank || !nb || !cnt) goto fail;
    /* vertices: uniform in the joint limits clipped to [-pi, pi] (one turn of each joint
     * holds every pose of the arm; anchors outside still join their nearest vertices) */
    double lo[CC_NJ], hi[CC_NJ];
    for (int j = 0; j < CC_NJ; j++) {
        lo[j] = S->qmin[j] > -RM_PI ? S->qmin[j] : -RM_PI;
        hi[j] = S->qmax[j] < RM_PI ? S->qmax[j] : RM_PI;
        if (hi[j] < lo[j]) { lo[j] = S->qmin[j]; hi[j] = S->qmax[j]; }
    }
    uint64_t rng = seed ^ 0x70adaa9f00d5eedull;
    enum { BATCH = 256 };
    double buf[BATCH * CC_NJ];
    uint8_t ok[BATCH];
    long tries = 0;
    while (R->n < n && tries < 50L * n) {
        for (int i = 0; i < BATCH; i++)
            for (int j = 0; j < CC_NJ; j++) buf[CC_NJ * i + j] = lo[j] + rm_unif(&rng) * (hi[j] - lo[j]);
        fast(S, buf, BATCH, active, ok);
        tries += BATCH;
        for (int i = 0; i < BATCH && R->n < n; i++)
            if (ok[i]) memcpy(R->q + CC_NJ * R->n++, buf + CC_NJ * i, CC_NJ * sizeof(double));
    }
    if (R->n < 2) goto fail;
    /* k nearest of every vertex, symmetrised into CSR adjacency lists */
    for (int i = 0; i < R->n; i++) {
        int m = knn(R->q, R->n, R->q + CC_NJ * i, k, i, nb + (size_t)k * i);
        for (int t = m; t < k; t++) nb[(size_t)k * i + t] = -1;
    }
    for (int i = 0; i < R->n; i++)
        for (int t = 0; t < k; t++) {
            const int j = nb[(size_t)k * i + t];
            if (j < 0) continue;
            cnt[i]++;
            int mutual = 0;
            for (int u = 0; u < k; u++) mutual |= nb[(size_t)k * j + u] == i;
            if (!mutual) cnt[j]++;
        }
    R->adj_off = malloc((size_t)(R->n + 1) * sizeof(int));
    if (!R->adj_off) goto fail;
    R->adj_off[0] = 0;
    for (int i = 0; i < R->n; i++) R->adj_off[i + 1] = R->adj_off[i] + cnt[i];
    R->adj = malloc((size_t)R->adj_off[R->n] * sizeof(int));
    if (!R->adj) goto fail;
    memset(cnt, 0, (size_t)R->n * sizeof(int));
    for (int i = 0; i < R->n; i++)
        for (int t = 0; t < k; t++) {
            const int j = nb[(size_t)k * i + t];
            if (j < 0) continue;
            R->adj[R->adj_off[i] + cnt[i]++] = j;
            int mutual = 0;
            for (int u = 0; u < k; u++) mutual |= nb[(size_t)k * j + u] == i;
            if (!mutual) R->adj[R->adj_off[j] + cnt[j]++] = i;
        }
    free(nb);
    free(cnt);
    return R;
fail:
    free(nb);
    free(cnt);
    cc_roadmap_free(R);
    return NULL;
}

/* ---- A* over the roadmap plus the query's start (node n) and goal (node n + 1) ---- */
typedef struct { double f; int v; } hitem;

static void hpush(hitem *h, int *hn, double f, int v)
{
    int i = (*hn)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (h[p].f < f || (h[p].f == f && h[p].v <= v)) break;
        h[i] = h[p];
        i = p;
    }
    h[i].f = f;
    h[i].v = v;
}

static hitem hpop(hitem *h, int *hn)
{
    hitem top = h[0], last = h[--(*hn)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *hn) break;
        if (c + 1 < *hn && (h[c + 1].f < h[c].f || (h[c + 1].f == h[c].f && h[c + 1].v < h[c].v))) c++;
        if (last.f < h[c].f || (last.f == h[c].f && last.v <= h[c].v)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

/* Lazy shortest path start -> goal. Returns the number of path nodes written to path
 * (memo ids, start first), 0 if the free edges join no path, -1 out of memory or over
 * the round budget. *rounds: searches run; *checks: edges checked. */
long cc_roadmap_query(cc_roadmap *R, const cc_scene *S, const uint64_t *active, cc_fast_fn fast,
                      int sid, int gid, double step, long max_rounds, int *path, long max_path,
                      long *rounds, long *checks)
{
    const int n = R->n, N = n + 2, SN = n, GN = n + 1;
    const double *qg = cc_roadmap_q(R, gid);
    double *g = malloc((size_t)N * sizeof(double));
    int *par = malloc((size_t)N * sizeof(int));
    uint8_t *closed = malloc((size_t)N), *gnb = calloc((size_t)N, 1);
    const long hcap = (long)R->adj_off[n] + 4L * R->ka + 8;
    hitem *heap = malloc((size_t)hcap * sizeof(hitem));
    long res = -1;
    if (!g || !par || !closed || !gnb || !heap) goto out;
    const int ai_s = sid - n, ai_g = gid - n;
    for (int t = 0; t < R->ank[ai_g]; t++) gnb[R->anbr[(size_t)R->ka * ai_g + t]] = 1;
    for (*rounds = 0; *rounds < max_rounds;) {
        (*rounds)++;
        for (int i = 0; i < N; i++) { g[i] = INFINITY; par[i] = -1; closed[i] = 0; }
        int hn = 0;
        g[SN] = 0.0;
        hpush(heap, &hn, dist(cc_roadmap_q(R, sid), qg), SN);
        int found = 0;
        while (hn > 0) {
            hitem it = hpop(heap, &hn);
            const int u = it.v;
            if (closed[u]) continue;
            closed[u] = 1;
            if (u == GN) { found = 1; break; }
            const int uid = u == SN ? sid : u;
            const double *qu = cc_roadmap_q(R, uid);
            /* neighbours: the start's anchor list; a vertex's adjacency plus the goal */
            const int *lst;
            int cnt;
            if (u == SN) { lst = R->anbr + (size_t)R->ka * ai_s; cnt = R->ank[ai_s]; }
            else { lst = R->adj + R->adj_off[u]; cnt = R->adj_off[u + 1] - R->adj_off[u]; }
            for (int t = 0; t <= cnt; t++) {
                int v;
                if (t < cnt) v = lst[t];
                else if (u != SN && gnb[u]) v = GN;
                else break;
                if (closed[v]) continue;
                const int vid = v == GN ? gid : v;
                if (cc_roadmap_known_bad(R, uid, vid)) continue;
                const double nd = g[u] + dist(qu, cc_roadmap_q(R, vid));
                if (nd < g[v]) {
                    g[v] = nd;
                    par[v] = u;
                    if (hn >= hcap) goto out;
                    hpush(heap, &hn, nd + (v == GN ? 0.0 : dist(cc_roadmap_q(R, vid), qg)), v);
                }
            }
        }
        if (!found) { res = 0; goto out; }
        long m = 0;
        for (int v = GN; v >= 0; v = par[v]) m++;
        if (m > max_path) goto out;
        long w = m - 1;
        for (int v = GN; v >= 0; v = par[v], w--) path[w] = v == SN ? sid : v == GN ? gid : v;
        /* the coarsest points of every unknown edge of the path first (a colliding edge
         * usually fails there, before the free ones are checked in full); then every
         * unknown edge in full. The first colliding edge is removed. The order changes
         * what is checked, not the result: the shortest path over the free edges. */
        int all = 1;
        for (long i = 0; i + 1 < m && all; i++) {
            if (memo_get(R, path[i], path[i + 1])) continue;
            if (!cc_motion_coarse(S, active, fast, cc_roadmap_q(R, path[i]), cc_roadmap_q(R, path[i + 1]),
                                  step)) {
                memo_put(R, path[i], path[i + 1], 2);
                all = 0;
            }
        }
        for (long i = 0; i + 1 < m && all; i++)
            all = cc_roadmap_edge(R, S, active, fast, path[i], path[i + 1], step, checks);
        if (all) { res = m; goto out; }
    }
out:
    free(g); free(par); free(closed); free(gnb); free(heap);
    return res;
}
