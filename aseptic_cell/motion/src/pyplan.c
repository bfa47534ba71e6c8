/* CPython wrappers of the planner and the broad-phase switch (the rest is in module.c). */
#include "pymod.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RM_CAPSULE "aseptic_cell.motion._ccheck.roadmap"

/* A roadmap capsule: the roadmap, the scene capsule it was built on (kept alive), its
 * active set, and a busy flag (a call that finds it in use plans without it). */
typedef struct {
    cc_roadmap *R;
    PyObject *scene;
    uint64_t *active;
    int busy;
} rm_box;

static void rm_capsule_free(PyObject *cap)
{
    rm_box *b = PyCapsule_GetPointer(cap, RM_CAPSULE);
    if (!b) return;
    cc_roadmap_free(b->R);
    Py_XDECREF(b->scene);
    free(b->active);
    free(b);
}

/* roadmap_new(scene, active, n, k, seed) -> roadmap capsule (for plan on that scene and
 * that active set only). */
PyObject *cc_py_roadmap_new(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *os, *oact;
    int n, k;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "OOiiK", &os, &oact, &n, &k, &seed)) return NULL;
    const cc_scene *S = cc_py_get_scene(os);
    if (!S) return NULL;
    if (n < 2 || n > 1000000 || k < 1 || k > CC_RM_MAXK) {
        PyErr_SetString(PyExc_ValueError, "invalid roadmap options");
        return NULL;
    }
    uint64_t *active;
    if (cc_py_get_active(oact, S, &active) < 0) return NULL;
    rm_box *b = calloc(1, sizeof *b);
    if (!b) { free(active); return PyErr_NoMemory(); }
    cc_fast_fn fn = cc_py_fast_fn();
    cc_roadmap *R;
    Py_BEGIN_ALLOW_THREADS
    R = cc_roadmap_new(S, active, fn, n, k, (uint64_t)seed);
    Py_END_ALLOW_THREADS
    if (!R) {
        free(active);
        free(b);
        PyErr_SetString(PyExc_RuntimeError, "roadmap: out of memory or no free configuration found");
        return NULL;
    }
    b->R = R;
    b->active = active;
    b->scene = os;
    Py_INCREF(os);
    PyObject *cap = PyCapsule_New(b, RM_CAPSULE, rm_capsule_free);
    if (!cap) {
        b->scene = NULL;
        Py_DECREF(os);
        cc_roadmap_free(R);
        free(active);
        free(b);
    }
    return cap;
}

/* roadmap_info(roadmap) -> (vertices, edges, anchors, memoised edge verdicts) */
PyObject *cc_py_roadmap_info(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *orm;
    if (!PyArg_ParseTuple(args, "O", &orm)) return NULL;
    rm_box *b = PyCapsule_GetPointer(orm, RM_CAPSULE);
    if (!b) return NULL;
    return Py_BuildValue("iiin", b->R->n, b->R->adj_off[b->R->n] / 2, b->R->nanch,
                         (Py_ssize_t)b->R->hcount);
}

/* plan(scene, q_start, q_goal, active, seed, max_samples, shortcut_iters, step, extend,
 * out[, roadmap, max_rounds]) -> (code, n_waypoints, iterations, method, edges_checked);
 * out: float64 buffer of max_out * 6; roadmap: None or a capsule of roadmap_new built on
 * this scene and this active set. */
PyObject *cc_py_plan(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *os, *oa, *ob, *oact, *oo, *orm = Py_None;
    unsigned long long seed;
    long max_samples, max_rounds = 0;
    int shortcut_iters;
    double step, ext;
    if (!PyArg_ParseTuple(args, "OOOOKlidd" "O|Ol", &os, &oa, &ob, &oact, &seed, &max_samples,
                          &shortcut_iters, &step, &ext, &oo, &orm, &max_rounds))
        return NULL;
    const cc_scene *S = cc_py_get_scene(os);
    if (!S) return NULL;
    rm_box *rb = NULL;
    if (orm != Py_None) {
        rb = PyCapsule_GetPointer(orm, RM_CAPSULE);
        if (!rb) return NULL;
        if (rb->scene != os) {
            PyErr_SetString(PyExc_ValueError, "roadmap built on another scene");
            return NULL;
        }
    }
    if (!(step > 0.0 && isfinite(step)) || !(ext > 0.0 && isfinite(ext)) || max_samples < 0 ||
        max_samples > 100000000 || shortcut_iters < 0) {
        PyErr_SetString(PyExc_ValueError, "invalid planner options");
        return NULL;
    }
    Py_buffer va, vb, vo;
    Py_ssize_t na, nb;
    if (cc_py_get_q(oa, &va, &na) < 0) return NULL;
    if (cc_py_get_q(ob, &vb, &nb) < 0) { PyBuffer_Release(&va); return NULL; }
    if (na != 1 || nb != 1) {
        PyErr_SetString(PyExc_ValueError, "q_start and q_goal must be single configurations");
        PyBuffer_Release(&va);
        PyBuffer_Release(&vb);
        return NULL;
    }
    if (cc_py_get_buf(oo, &vo, "d", 8, -1, "out", 1) < 0) {
        PyBuffer_Release(&va);
        PyBuffer_Release(&vb);
        return NULL;
    }
    uint64_t *active;
    if (cc_py_get_active(oact, S, &active) < 0) {
        PyBuffer_Release(&va);
        PyBuffer_Release(&vb);
        PyBuffer_Release(&vo);
        return NULL;
    }
    cc_roadmap *R = NULL;
    if (rb && !rb->busy) {
        if (memcmp(rb->active, active, (size_t)S->nwords * sizeof(uint64_t)) != 0) {
            PyErr_SetString(PyExc_ValueError, "roadmap built for another active box set");
            free(active);
            PyBuffer_Release(&va);
            PyBuffer_Release(&vb);
            PyBuffer_Release(&vo);
            return NULL;
        }
        R = rb->R;
        rb->busy = 1;
    }
    cc_plan_opts o = {(uint64_t)seed, max_samples, shortcut_iters, step, ext};
    long nout = 0, samples = 0, checks = 0;
    int code, method = 0;
    cc_fast_fn fn = cc_py_fast_fn();
    Py_BEGIN_ALLOW_THREADS
    code = cc_plan_rm(S, active, fn, va.buf, vb.buf, &o, R, max_rounds, vo.buf,
                      (long)(vo.len / 8 / CC_NJ), &nout, &samples, &method, &checks);
    Py_END_ALLOW_THREADS
    if (R) rb->busy = 0;
    free(active);
    PyBuffer_Release(&va);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&vo);
    return Py_BuildValue("illil", code, nout, samples, method, checks);
}

/* motion_free(scene, q_a, q_b, active, step) -> bool (fast path, see plan.c). */
PyObject *cc_py_motion_free(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *os, *oa, *ob, *oact;
    double step;
    if (!PyArg_ParseTuple(args, "OOOOd", &os, &oa, &ob, &oact, &step)) return NULL;
    const cc_scene *S = cc_py_get_scene(os);
    if (!S) return NULL;
    if (!(step > 0.0 && isfinite(step))) {
        PyErr_SetString(PyExc_ValueError, "step must be positive");
        return NULL;
    }
    Py_buffer va, vb;
    Py_ssize_t na, nb;
    if (cc_py_get_q(oa, &va, &na) < 0) return NULL;
    if (cc_py_get_q(ob, &vb, &nb) < 0) { PyBuffer_Release(&va); return NULL; }
    uint64_t *active = NULL;
    if (na != 1 || nb != 1 || cc_py_get_active(oact, S, &active) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "single configurations expected");
        PyBuffer_Release(&va);
        PyBuffer_Release(&vb);
        return NULL;
    }
    int ok;
    cc_fast_fn fn = cc_py_fast_fn();
    Py_BEGIN_ALLOW_THREADS
    ok = cc_motion_free(S, active, fn, va.buf, vb.buf, step);
    Py_END_ALLOW_THREADS
    free(active);
    PyBuffer_Release(&va);
    PyBuffer_Release(&vb);
    return PyBool_FromLong(ok);
}

/* set_broad_phase(scene, mode): "bvh", "flat" or "auto" (all give the same verdicts; for
 * tests and benchmarks); returns the previous mode. */
PyObject *cc_py_set_broad_phase(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *os;
    const char *mode;
    if (!PyArg_ParseTuple(args, "Os", &os, &mode)) return NULL;
    cc_scene *S = cc_py_get_scene(os);
    if (!S) return NULL;
    /* "bvh": both paths on the BVH; "flat": both flat (the exact path flat only if the
     * scene has its flat arrays, <= CC_EXACT_FLAT_MAX boxes); "auto": the defaults
     * (fast path BVH above CC_BVH_MIN_BOXES, exact path flat up to CC_EXACT_FLAT_MAX) */
    const char *prev = S->use_bvh && S->exact_bvh     ? "bvh"
                       : !S->use_bvh && (S->exact_bvh == (S->sbx == NULL)) ? "flat"
                                                                            : "auto";
    if (strcmp(mode, "bvh") == 0) {
        S->use_bvh = 1;
        S->exact_bvh = 1;
    } else if (strcmp(mode, "flat") == 0) {
        S->use_bvh = 0;
        S->exact_bvh = S->sbx == NULL;
    } else if (strcmp(mode, "auto") == 0) {
        S->use_bvh = S->nboxes > CC_BVH_MIN_BOXES;
        S->exact_bvh = S->sbx == NULL;
    } else {
        PyErr_SetString(PyExc_ValueError, "broad phase must be 'bvh', 'flat' or 'auto'");
        return NULL;
    }
    return PyUnicode_FromString(prev);
}

/* timing_pass(scene, waypoints (m, 6), steps (m-1,) int64, dt, samples_out (1 + sum steps, 6),
 * peaks_out (m-1,)): one pass of planner.time_parameterise with the same operations as its
 * NumPy reference: the first waypoint, then each segment's minimum-jerk samples
 * qa + s(u) (qb - qa), u = k / steps, s = 10 u^3 - 15 u^4 + 6 u^5; the TCP of every sample;
 * the largest chord TCP speed |tcp[i+1] - tcp[i]| / dt of each segment. */
/* The TCP as the NumPy reference computes it: p + (R @ tcp). */
static inline void tcp_of(const cc_scene *S, const cc_frames *F, double out[3])
{
    const double *R = F->R[CC_NJ], *p = F->p[CC_NJ], *t = S->tcp;
    for (int i = 0; i < 3; i++) out[i] = p[i] + (R[3 * i] * t[0] + R[3 * i + 1] * t[1] + R[3 * i + 2] * t[2]);
}

PyObject *cc_py_timing_pass(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *os, *ow, *ost, *osa, *ope;
    double dt;
    if (!PyArg_ParseTuple(args, "OOOdOO", &os, &ow, &ost, &dt, &osa, &ope)) return NULL;
    const cc_scene *S = cc_py_get_scene(os);
    if (!S) return NULL;
    Py_buffer vw, vst, vsa, vpe;
    Py_ssize_t m;
    if (cc_py_get_q(ow, &vw, &m) < 0) return NULL;
    if (m < 2) {
        PyBuffer_Release(&vw);
        PyErr_SetString(PyExc_ValueError, "waypoints: at least 2 rows");
        return NULL;
    }
    if (cc_py_get_buf(ost, &vst, "lq", 8, m - 1, "steps", 0) < 0) {
        PyBuffer_Release(&vw);
        return NULL;
    }
    const long long *steps = vst.buf;
    Py_ssize_t total = 1;
    for (Py_ssize_t s = 0; s < m - 1; s++) {
        if (steps[s] < 1 || steps[s] > 100000000) {
            PyBuffer_Release(&vw);
            PyBuffer_Release(&vst);
            PyErr_SetString(PyExc_ValueError, "steps: each in [1, 1e8]");
            return NULL;
        }
        total += (Py_ssize_t)steps[s];
    }
    if (cc_py_get_buf(osa, &vsa, "d", 8, total * CC_NJ, "samples_out", 1) < 0) {
        PyBuffer_Release(&vw);
        PyBuffer_Release(&vst);
        return NULL;
    }
    if (cc_py_get_buf(ope, &vpe, "d", 8, m - 1, "peaks_out", 1) < 0) {
        PyBuffer_Release(&vw);
        PyBuffer_Release(&vst);
        PyBuffer_Release(&vsa);
        return NULL;
    }
    const double *w = vw.buf;
    double *out = vsa.buf, *peaks = vpe.buf;
    Py_BEGIN_ALLOW_THREADS
    cc_frames F;
    double prev[3], cur[3];
    memcpy(out, w, CC_NJ * sizeof(double));
    cc_fk(S, out, &F);
    tcp_of(S, &F, prev);
    double *row = out + CC_NJ;
    for (Py_ssize_t s = 0; s < m - 1; s++) {
        const double *qa = w + CC_NJ * s, *qb = qa + CC_NJ;
        double dq[CC_NJ];
        for (int j = 0; j < CC_NJ; j++) dq[j] = qb[j] - qa[j];
        const double ns = (double)steps[s];
        double peak = -INFINITY;
        for (long long k = 1; k <= steps[s]; k++, row += CC_NJ) {
            const double u = (double)k / ns;
            const double sv = 10 * pow(u, 3) - 15 * pow(u, 4) + 6 * pow(u, 5);
            for (int j = 0; j < CC_NJ; j++) row[j] = qa[j] + sv * dq[j];
            cc_fk(S, row, &F);
            tcp_of(S, &F, cur);
            const double d0 = cur[0] - prev[0], d1 = cur[1] - prev[1], d2 = cur[2] - prev[2];
            const double v = sqrt(d0 * d0 + d1 * d1 + d2 * d2) / dt;
            if (v > peak || isnan(v)) peak = v;
            memcpy(prev, cur, sizeof prev);
        }
        peaks[s] = peak;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&vw);
    PyBuffer_Release(&vst);
    PyBuffer_Release(&vsa);
    PyBuffer_Release(&vpe);
    Py_RETURN_NONE;
}
