/* CPython wrappers of the planner and the broad-phase switch (the rest is in module.c). */
#include "pymod.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* plan(scene, q_start, q_goal, active, seed, max_samples, shortcut_iters, step, extend,
 * out) -> (code, n_waypoints, samples); out: float64 buffer of max_out * 6. */
PyObject *cc_py_plan(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *os, *oa, *ob, *oact, *oo;
    unsigned long long seed;
    long max_samples;
    int shortcut_iters;
    double step, ext;
    if (!PyArg_ParseTuple(args, "OOOOKlidd" "O", &os, &oa, &ob, &oact, &seed, &max_samples,
                          &shortcut_iters, &step, &ext, &oo))
        return NULL;
    const cc_scene *S = cc_py_get_scene(os);
    if (!S) return NULL;
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
    cc_plan_opts o = {(uint64_t)seed, max_samples, shortcut_iters, step, ext};
    long nout = 0, samples = 0;
    int code;
    cc_fast_fn fn = cc_py_fast_fn();
    Py_BEGIN_ALLOW_THREADS
    code = cc_plan(S, active, fn, va.buf, vb.buf, &o, vo.buf, (long)(vo.len / 8 / CC_NJ), &nout,
                   &samples);
    Py_END_ALLOW_THREADS
    free(active);
    PyBuffer_Release(&va);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&vo);
    return Py_BuildValue("ill", code, nout, samples);
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
