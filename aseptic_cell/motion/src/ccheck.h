/* Shared declarations for the arm collision / trajectory checker (_ccheck).
 *
 * Plain C11. The scene is built once from the configuration (see
 * aseptic_cell/motion/scene.py, which computes every derived number: sphere
 * covers, float32 error inflation, Lipschitz motion bounds) and is read-only
 * afterwards, so the kernels can run without the GIL.
 *
 * Conventions
 *   - Frames: frame 0 = arm base in the isolator frame, frame k = after joint k
 *     (standard DH, T_k = Rz(q_k) Tz(d_k) Tx(a_k) Rx(alpha_k)).
 *   - Rotations are row-major 3x3; a box's rotation has the box axes as columns.
 *   - "Entities" are the things whose clearance is tracked separately:
 *     entity k < nlinks is "link k vs. the environment" (all active boxes that
 *     are not allowed contacts), entity nlinks + p is self-collision pair p.
 *   - Pair ids (reported as the closest pair): link k vs box b = k * nboxes + b,
 *     self pair p = nlinks * nboxes + p.
 */
#ifndef ASEPTIC_CELL_CCHECK_H
#define ASEPTIC_CELL_CCHECK_H

#include <stdint.h>
#include <stddef.h>

#define CC_MAX_LINKS 16
/* Boxes live in heap arrays sized at scene_new; this is only a sanity cap on the
 * input (the broad phase keeps the per-configuration cost to the boxes near the arm). */
#define CC_MAX_BOXES (1 << 20)
#define CC_MAX_PAIRS 64
#define CC_MAX_ZONES 16
#define CC_MAX_SPHERES 256
#define CC_MAX_ENT (CC_MAX_LINKS + CC_MAX_PAIRS)
#define CC_NJ 6
#define CC_FPAD 16   /* fast path: per-link sphere arrays padded to this multiple */
#define CC_FSPH (CC_MAX_SPHERES + CC_FPAD * CC_MAX_LINKS)

typedef struct {
    /* kinematics */
    double dh_a[CC_NJ], dh_d[CC_NJ], dh_ca[CC_NJ], dh_sa[CC_NJ];
    double base_R[9], base_p[3];
    double qmin[CC_NJ], qmax[CC_NJ], vmax[CC_NJ], amax[CC_NJ];
    double tcp[3];           /* TCP point in frame 6 */
    double margin;           /* safety margin (m) */

    /* links (capsules) */
    int nlinks;
    int link_frame[CC_MAX_LINKS];
    double link_p0[CC_MAX_LINKS][3], link_p1[CC_MAX_LINKS][3], link_r[CC_MAX_LINKS];
    /* Box sets are bitsets of nwords 64-bit words (bit b of word b / 64).
     * link_box_mask + k * nwords: boxes link k is checked against; fast_box_mask:
     * the subset the link's sphere cover can reach at all (fast path). */
    int nwords;
    uint64_t *link_box_mask;
    uint64_t *fast_box_mask;
    /* lip[k][j]: bound on the distance of link k's segment points from joint j's
     * axis, for every configuration (Lipschitz constant of point motion in q_j). */
    double lip[CC_MAX_LINKS][CC_NJ];
    double tcp_lip[CC_NJ];

    /* boxes (double, exact path) */
    int nboxes;
    double (*box_c)[3], (*box_R)[9], (*box_h)[3];
    uint8_t *box_aligned;   /* rotation is exactly the identity */

    /* self-collision pairs; pair_first_joint: first joint whose motion changes the
     * relative pose of the two links (joints before it move both rigidly). */
    int npairs;
    int pair_a[CC_MAX_PAIRS], pair_b[CC_MAX_PAIRS], pair_first_joint[CC_MAX_PAIRS];

    /* near-product zones (oriented boxes) */
    int nzones;
    double zone_c[CC_MAX_ZONES][3], zone_R[CC_MAX_ZONES][9], zone_h[CC_MAX_ZONES][3];

    /* float32 fast path: sphere cover of each capsule, radii already inflated by
     * margin and by the float32 rounding bound, rounded up to float. */
    int nspheres;
    int sph_first[CC_MAX_LINKS], sph_count[CC_MAX_LINKS];
    float sph_t[CC_MAX_SPHERES];                 /* position along p0 -> p1 */
    float sph_r_env[CC_MAX_SPHERES], sph_r_self[CC_MAX_SPHERES];
    float bound_r_env[CC_MAX_LINKS], bound_r_self[CC_MAX_LINKS];  /* around t = 0.5 */
    float (*fbox_c)[3], (*fbox_ax)[9], (*fbox_h)[3];

    /* Derived by cc_fast_prepare (fast.c) for the fast path kernels. */
    /* sphere data of each link padded with copies of its last sphere to a multiple
     * of CC_FPAD, so one configuration's spheres are tested a vector at a time */
    int fsph_off[CC_MAX_LINKS], fsph_n[CC_MAX_LINKS];
    float fsph_t[CC_FSPH];
    float fsph_rr_env[CC_FSPH];  /* r_env * r_env (float) */
    float fsph_r_self[CC_FSPH];
    /* Axis-aligned cull of link k against aligned box b: a configuration whose link
     * k end points (both, per axis) lie above cull_hi[k][b][i] or below
     * cull_lo[k][b][i] on some axis i cannot make any of the link's spheres hit
     * the box in the float32 test (argument in cc_fast_prepare). */
    float (*cull_lo)[4], (*cull_hi)[4];   /* index k * nboxes + b */
    /* Broad phase (bvh.c): a static bounding volume hierarchy over the boxes' world
     * AABBs. Node bounds in double (exact path) and rounded outwards to float (fast
     * path). bvh_infl[k]: float inflation of link k's per-axis sphere-centre range
     * such that every (lane, box) pair that a leaf cull could pass overlaps every
     * ancestor node (argument in cc_bvh_build). */
    int use_bvh;             /* fast path: 1 = BVH, 0 = flat loop over boxes (exact path: exact_bvh) */
    int nnodes;
    struct cc_node *nodes;
    int *bvh_box;            /* leaf boxes, node.first .. first + count - 1 */
    float bvh_infl[CC_MAX_LINKS];
    /* Self pair p as tested by the fast path: spheres of fpair_outer one at a
     * time against those of fpair_inner across the vector (the link with fewer
     * spheres is the outer one). A configuration where, on some axis, the sphere
     * centre ranges of the two links are more than pair_cull[p] apart (computed as
     * fl(lo_a - hi_b) or fl(lo_b - hi_a) > pair_cull[p]) has no sphere pair hit. */
    int fpair_outer[CC_MAX_PAIRS], fpair_inner[CC_MAX_PAIRS];
    float pair_cull[CC_MAX_PAIRS];
    /* Exact path, scenes of up to CC_EXACT_FLAT_MAX boxes: the boxes as float structure
     * of arrays for the lower bounds that order and prune the exact distances (nbox_pad =
     * nboxes rounded up to 16; padding entries are never selected): sbx[0..2] centre,
     * [3..11] R row-major, [12..14] half extents, [15..17] world AABB low corner,
     * [18..20] high corner. A float bound minus sbx_slack (above its rounding error, see
     * cc_bvh_build) is a lower bound of the double one. NULL: use the BVH. */
    int nbox_pad;
    float *sbx;              /* 21 * nbox_pad floats, component-major */
    double sbx_slack;
    int exact_bvh;           /* exact path: 1 = BVH, 0 = flat over sbx (default: sbx == NULL) */
    /* FNV-1a hash of everything the clearances depend on except the margin (kinematics,
     * links, link box sets, boxes, self pairs; set by scene_new): two scenes with the same
     * value measure the same clearances, so one's fast path bounds the other's (see
     * cc_traj_opts.acc). */
    uint64_t geom_hash;
} cc_scene;

/* A BVH node: leaf if count > 0 (boxes bvh_box[first .. first + count)), else
 * children left and right. */
typedef struct cc_node {
    float flo[4], fhi[4];
    double dlo[3], dhi[3];
    int left, right, first, count;
    uint32_t fast_links;   /* bit k: some box below is in link k's fast_box_mask */
} cc_node;

#define CC_BVH_LEAF 4
/* Scenes with more boxes than this use the BVH (below it a flat loop over the
 * boxes is as fast; measured with benchmarks/collision.py). */
#define CC_BVH_MIN_BOXES 48
#define CC_BVH_STACK 128
/* Up to this many boxes the exact path computes every box's lower bound with SIMD
 * and visits the boxes nearest first (no BVH); measured with benchmarks/collision.py. */
#define CC_EXACT_FLAT_MAX 128

/* Bitset helpers. */
static inline int cc_bit(const uint64_t *w, int b) { return (int)((w[b >> 6] >> (b & 63)) & 1u); }

/* Frames for one configuration: frame k rotation R[k] (row-major) and origin p[k]. */
typedef struct {
    double R[CC_NJ + 1][9];
    double p[CC_NJ + 1][3];
} cc_frames;

/* sin and cos of x, branch-free so that loops over lanes vectorise; identical
 * results on every SIMD level (no FMA contraction: -ffp-contract=off, no
 * reassociation). Cody-Waite reduction by pi/2 (fdlibm split constants), then
 * Taylor polynomials to degree 15/16 on |r| <= pi/4 (truncation < 5e-17).
 * Accurate to a few ulp for |x| < 1e5; the callers reject larger angles. */
/* Defines a sin/cos function NAME with function attributes ATTR (the fast path
 * instantiates it once per SIMD level so it inlines into the vector kernels). */
#define CC_SINCOS_DEF(NAME, ATTR)\
ATTR static inline void NAME(double x, double *s_out, double *c_out)                        \
{                                                                                           \
    const double magic = 6755399441055744.0;            /* 1.5 * 2^52: round to nearest */  \
    const double two_over_pi = 6.36619772367581382433e-01;                                  \
    const double pio2_1 = 1.57079632673412561417e+00;   /* first 33 bits of pi/2 */         \
    const double pio2_1t = 6.07710050650619224932e-11;  /* pi/2 - pio2_1 */                 \
    double kf = (x * two_over_pi + magic) - magic;                                          \
    double r = (x - kf * pio2_1) - kf * pio2_1t;                                            \
    double m = kf - 4.0 * ((kf * 0.25 + magic) - magic); /* kf mod 4 in {-2,-1,0,1,2} */    \
    double r2 = r * r;                                                                      \
    double ps = -7.6471637318198164759e-13;              /* -1/15! */                       \
    ps = ps * r2 + 1.6059043836821614599e-10;            /* 1/13! */                        \
    ps = ps * r2 - 2.5052108385441718775e-08;            /* -1/11! */                       \
    ps = ps * r2 + 2.7557319223985890653e-06;            /* 1/9! */                         \
    ps = ps * r2 - 1.9841269841269841270e-04;            /* -1/7! */                        \
    ps = ps * r2 + 8.3333333333333333333e-03;            /* 1/5! */                         \
    ps = ps * r2 - 1.6666666666666666667e-01;            /* -1/3! */                        \
    double sv = r + r * (r2 * ps);                                                          \
    double pc = 4.7794773323873852974e-14;               /* 1/16! */                        \
    pc = pc * r2 - 1.1470745597729724714e-11;            /* -1/14! */                       \
    pc = pc * r2 + 2.0876756987868098979e-09;            /* 1/12! */                        \
    pc = pc * r2 - 2.7557319223985890653e-07;            /* -1/10! */                       \
    pc = pc * r2 + 2.4801587301587301587e-05;            /* 1/8! */                         \
    pc = pc * r2 - 1.3888888888888888889e-03;            /* -1/6! */                        \
    pc = pc * r2 + 4.1666666666666666667e-02;            /* 1/4! */                         \
    pc = pc * r2 - 0.5;                                                                     \
    double cv = 1.0 + r2 * pc;                                                              \
    double am = m < 0.0 ? -m : m;                                                           \
    int swap = am == 1.0;                                /* quadrant 1 or 3 */              \
    double s1 = swap ? cv : sv;                                                             \
    double c1 = swap ? sv : cv;                                                             \
    int sneg = m < 0.0 || m == 2.0;                      /* quadrants 2, 3 */               \
    int cneg = m > 0.5 || m < -1.5;                      /* quadrants 1, 2 */               \
    *s_out = sneg ? -s1 : s1;                                                               \
    *c_out = cneg ? -c1 : c1;                                                               \
}

CC_SINCOS_DEF(cc_sincos_inl, )

/* ---- kinematics (exact.c) ---- */
void cc_sincos(double x, double *s, double *c);
void cc_fk(const cc_scene *S, const double *q, cc_frames *F);
void cc_link_segment(const cc_scene *S, const cc_frames *F, int k, double e0[3], double e1[3]);
void cc_tcp(const cc_scene *S, const cc_frames *F, double out[3]);

/* ---- exact geometry (exact.c) ---- */
double cc_seg_box_dist(const double e0[3], const double e1[3], const double c[3],
                       const double R[9], const double h[3]);
double cc_seg_seg_dist(const double p0[3], const double p1[3], const double q0[3],
                       const double q1[3]);

/* Per-entity clearances for one configuration. out_c[e] = exact clearance of entity
 * e if it is below cap[e], otherwise some value >= cap[e] (a valid lower bound is
 * all the certified check needs). out_pair[e] = pair id of the closest pair or -1.
 * Returns the number of entities. */
int cc_entity_clearance(const cc_scene *S, const cc_frames *F, const uint64_t *active,
                        const double *cap, double *out_c, int *out_pair);

/* Exact minimum clearance over all entities (uncapped); returns the clearance and
 * writes the closest pair id. */
double cc_min_clearance(const cc_scene *S, const double *q, const uint64_t *active, int *pair);

/* ---- trajectory check (exact.c) ---- */
enum { CC_MODE_SAMPLES = 0, CC_MODE_FIXED = 1, CC_MODE_CERTIFIED = 2 };
enum {
    CC_OK = 0,
    CC_FAIL_POSITION = 1,
    CC_FAIL_VELOCITY = 2,
    CC_FAIL_ACCEL = 3,
    CC_FAIL_SPEED = 4,
    CC_FAIL_COLLISION = 5,        /* at a sample */
    CC_FAIL_COLLISION_BETWEEN = 6, /* found colliding between samples */
    CC_FAIL_UNCERTIFIED = 7,       /* could not certify at the minimum subdivision */
    CC_FAIL_SPEED_BETWEEN = 8      /* TCP speed bound above the limit between samples */
};

typedef void (*cc_fast_fn)(const cc_scene *S, const double *q, long n, const uint64_t *active,
                           uint8_t *out);
#define CC_MAX_ACC 16

typedef struct {
    int mode;
    double dt;
    double speed_limit_outside;   /* m/s, <= 0: none */
    double speed_limit_zone;      /* m/s inside near-product zones, <= 0: none */
    double fixed_step;            /* rad, fixed mode */
    int max_depth;                /* certified mode: bisection depth */
    /* Certified mode, fast acceptance: scenes with the same geometry (geom_hash) and larger
     * margins, ascending. A sample that one of them calls free on the fast path (fn fast) has
     * every clearance >= that scene's margin; if that margin is at least the scene's margin
     * plus the motion bound of both adjoining intervals, the sample needs no exact clearance
     * (argument in cc_check_trajectory). nacc = 0: every sample exact. */
    int nacc;
    const cc_scene *acc[CC_MAX_ACC];
    cc_fast_fn fast;
} cc_traj_opts;

typedef struct {
    int code;
    long index;       /* first failing sample index, -1 if ok */
    int joint;        /* joint (0-based) for limit failures */
    int zone;         /* zone for speed failures, -1 outside */
    double value, limit;
    int pair;         /* pair id for collision failures */
    double pair_clearance;
    double min_clearance;  /* exact min over the samples evaluated exactly (all without acc) */
    int min_pair;
    double min_bound;      /* fast acceptance: smallest margin by which a sample was accepted */
    long accepted;         /* samples accepted on the fast path (no exact clearance) */
    long evals;       /* number of exact evaluations (diagnostics) */
    double speed_chord_max;  /* largest chord TCP speed |tcp_i - tcp_i-1| / dt (m/s) */
    double speed_bound_max;  /* largest certified TCP speed bound (certified mode, m/s) */
} cc_traj_result;

/* Distance from point x to an oriented box (exact.c). */
double cc_point_box_dist(const double x[3], const double c[3], const double R[9], const double h[3]);
/* TCP speed |J(q) qd| for the frames F of q (speed.c). */
double cc_tcp_speed(const cc_scene *S, const cc_frames *F, const double qd[CC_NJ]);
/* Certify the TCP speed over the straight joint motion qa -> qb at joint velocity qd for
 * h seconds, given the end speeds va, vb and the acceleration bound A (speed.c). */
int cc_speed_cert(const cc_scene *S, const double *qa, const double *qb, const double qd[CC_NJ],
                  double va, double vb, double h, double A, double limit, int depth, int max_depth,
                  double *bound);

void cc_check_trajectory(const cc_scene *S, const double *q, long n, const uint64_t *active,
                         const cc_traj_opts *o, cc_traj_result *r);

/* ---- float32 fast path (fast.c) ---- */
#define CC_W 32    /* lanes per fast-path block (<= 32: lane sets are uint32 masks) */
#define CC_WS 16   /* lanes per block for calls of at most CC_WS configurations */
void cc_fast_generic(const cc_scene *S, const double *q, long n, const uint64_t *active, uint8_t *out);
void cc_fast_avx2(const cc_scene *S, const double *q, long n, const uint64_t *active, uint8_t *out);
void cc_fast_avx512(const cc_scene *S, const double *q, long n, const uint64_t *active, uint8_t *out);
/* Fill the derived fast-path fields of a scene whose other fields are set. */
int cc_fast_prepare(cc_scene *S);   /* 0 ok, -1 out of memory */
/* Build the BVH (bvh.c); 0 ok, -1 out of memory. Called by cc_fast_prepare. */
int cc_bvh_build(cc_scene *S, double M);
void cc_scene_free(cc_scene *S);

/* ---- planner (plan.c) ---- */
typedef struct {
    uint64_t seed;
    long max_samples;     /* RRT-Connect iterations budget */
    int shortcut_iters;
    double step;          /* max per-link Cartesian motion between checked configs (m) */
    double extend;        /* RRT extension length in joint space (rad, max-norm) */
} cc_plan_opts;
enum { CC_PLAN_OK = 0, CC_PLAN_START = 1, CC_PLAN_GOAL = 2, CC_PLAN_BUDGET = 3, CC_PLAN_NOMEM = 4 };
/* Plan a collision-free joint path from qs to qg on the fast path of S (a scene
 * whose margin includes the planning buffer). Writes up to max_out waypoints to
 * out (6 doubles each) and their count to *nout. Returns a CC_PLAN_ code;
 * *samples: iterations used. */
int cc_plan(const cc_scene *S, const uint64_t *active, cc_fast_fn fast, const double *qs,
            const double *qg, const cc_plan_opts *o, double *out, long max_out, long *nout,
            long *samples);
/* Lazy roadmap (roadmap.c): fixed free vertices, k-nearest edges checked only when a
 * query's shortest path uses them, every edge verdict memoised. */
#define CC_RM_MAXK 16
#define CC_RM_MAX_ANCHORS 1024
typedef struct cc_roadmap {
    int n, k, ka;             /* vertices, neighbours per vertex, per anchor */
    double *q;                /* n * 6 */
    int *adj_off, *adj;       /* CSR adjacency (symmetrised k nearest) */
    int nanch;                /* anchors (query endpoints): ids n .. n + nanch - 1 */
    double *aq;
    int *anbr, *ank;          /* anchor's nearest vertices (ka each) and their count */
    uint64_t *hkey;           /* edge verdict memo (1 free, 2 not) */
    uint8_t *hval;
    size_t hcap, hcount;
} cc_roadmap;
cc_roadmap *cc_roadmap_new(const cc_scene *S, const uint64_t *active, cc_fast_fn fast, int n,
                           int k, uint64_t seed);
void cc_roadmap_free(cc_roadmap *R);
const double *cc_roadmap_q(const cc_roadmap *R, int id);
int cc_roadmap_anchor(cc_roadmap *R, const double *q);
void cc_roadmap_reserve(cc_roadmap *R, int anchors);
int cc_roadmap_edge(cc_roadmap *R, const cc_scene *S, const uint64_t *active, cc_fast_fn fast,
                    int a, int b, double step, long *checks);
long cc_roadmap_query(cc_roadmap *R, const cc_scene *S, const uint64_t *active, cc_fast_fn fast,
                      int sid, int gid, double step, long max_rounds, int *path, long max_path,
                      long *rounds, long *checks);
enum { CC_METHOD_STRAIGHT = 0, CC_METHOD_ROADMAP = 1, CC_METHOD_RRT = 2 };
/* cc_plan with an optional roadmap R (NULL: RRT-Connect only): the straight move, then
 * the lazy roadmap (at most max_rounds searches), then RRT-Connect. *method: how the
 * path was found; *checks: edges checked (roadmap). */
int cc_plan_rm(const cc_scene *S, const uint64_t *active, cc_fast_fn fast, const double *qs,
               const double *qg, const cc_plan_opts *o, cc_roadmap *R, long max_rounds,
               double *out, long max_out, long *nout, long *samples, int *method, long *checks);
/* Is the straight joint motion qa -> qb free on the fast path, with configurations
 * checked at most `step` metres of link motion apart (see plan.c)? */
int cc_motion_free(const cc_scene *S, const uint64_t *active, cc_fast_fn fast, const double *qa,
                   const double *qb, double step);
/* Only the first block of cc_motion_free's checks (the coarsest points): 0 if one of them
 * collides (the motion is not free), 1 otherwise (undecided: not a verdict of freedom). */
int cc_motion_coarse(const cc_scene *S, const uint64_t *active, cc_fast_fn fast, const double *qa,
                     const double *qb, double step);

#endif
