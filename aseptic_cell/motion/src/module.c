/* Thin CPython wrapper: aseptic_cell.motion._ccheck.
 *
 * Arrays cross the boundary through the buffer protocol (C-contiguous, exact
 * item format checked). Joint arrays are float64 with 6 values per
 * configuration; any non-finite value or |q| > 1e5 rad raises ValueError. The
 * GIL is released while the kernels run. The Python layer (scene.py) builds the
 * scene arrays; this file only copies them into a cc_scene.
 */

#include "pymod.h"   /* Python.h first */

#include <math.h>
#include <stdlib.h>
#include <string.h>


#define Q_ABS_MAX 1e5
#define CAPSULE_NAME "aseptic_cell.motion._ccheck.scene"

/* ------------------------------------------------------------ SIMD dispatch */

enum { LVL_GENERIC = 0, LVL_AVX2 = 1, LVL_AVX512 = 2 };
static const char *const level_names[] = {"generic", "avx2", "avx512"};
static int best_level = LVL_GENERIC;
static int cur_level = LVL_GENERIC;
static cc_fast_fn fast_fns[] = {cc_fast_generic, cc_fast_avx2, cc_fast_avx512};

static void detect_levels(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best_level = LVL_AVX2;
    if (best_level == LVL_AVX2 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw"))
        best_level = LVL_AVX512;
#endif
    cur_level = best_level;
}

static int level_from_name(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, level_names[i]) == 0) return i;
    return -1;
}

/* ------------------------------------------------------------ buffers */

static int fmt_ok(const Py_buffer *v, const char *accept)
{
    const char *f = v->format ? v->format : "B";
    while (*f == '@' || *f == '=' || *f == '<') f++;
    if (f[0] == 0 || f[1] != 0) return 0;
    return strchr(accept, f[0]) != NULL;
}

/* Get a C-contiguous buffer of items with one of the format chars in accept.
 * count < 0: any length; otherwise the exact number of items. */
static int get_buf(PyObject *o, Py_buffer *v, const char *accept, Py_ssize_t itemsize,
                   Py_ssize_t count, const char *name, int writable)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(o, v, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous%s buffer", name,
                     writable ? " writable" : "");
        return -1;
    }
    if (v->itemsize != itemsize || !fmt_ok(v, accept)) {
        PyErr_Format(PyExc_ValueError, "%s: wrong item type (format '%s', itemsize %zd)", name,
                     v->format ? v->format : "B", v->itemsize);
        PyBuffer_Release(v);
        return -1;
    }
    Py_ssize_t n = v->len / itemsize;
    if (count >= 0 && n != count) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items, got %zd", name, count, n);
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

/* Joint array: float64, multiple of 6, all finite and |q| <= Q_ABS_MAX. */
static int get_q(PyObject *o, Py_buffer *v, Py_ssize_t *n)
{
    if (get_buf(o, v, "d", 8, -1, "q", 0) < 0) return -1;
    Py_ssize_t len = v->len / 8;
    if (len % CC_NJ != 0) {
        PyErr_Format(PyExc_ValueError, "q: %zd values is not a multiple of %d joints", len, CC_NJ);
        PyBuffer_Release(v);
        return -1;
    }
    const double *q = (const double *)v->buf;
    Py_ssize_t bad = -1;
    for (Py_ssize_t i = 0; i < len; i++) {
        if (!(fabs(q[i]) <= Q_ABS_MAX)) { bad = i; break; }  /* also catches NaN */
    }
    if (bad >= 0) {
        PyObject *val = PyFloat_FromDouble(q[bad]);
        if (val) {
            PyErr_Format(PyExc_ValueError,
                         "q: configuration %zd joint %zd is not a finite angle within +-1e5 rad "
                         "(%R)", bad / CC_NJ, bad % CC_NJ, val);
            Py_DECREF(val);
        }
        PyBuffer_Release(v);
        return -1;
    }
    *n = len / CC_NJ;
    return 0;
}

static cc_scene *get_scene(PyObject *o)
{
    return (cc_scene *)PyCapsule_GetPointer(o, CAPSULE_NAME);
}

static void scene_free(PyObject *cap)
{
    cc_scene_free((cc_scene *)PyCapsule_GetPointer(cap, CAPSULE_NAME));
}

/* Active box set: a Python int (bit b = box b) or a bytes-like object of at least
 * nwords little-endian 64-bit words. Writes a malloc'ed copy of nwords words to
 * *out (free it). */
static int get_active(PyObject *o, const cc_scene *S, uint64_t **out)
{
    const int nw = S->nwords > 0 ? S->nwords : 1;
    uint64_t *w = calloc((size_t)nw, sizeof(uint64_t));
    if (!w) { PyErr_NoMemory(); return -1; }
    PyObject *bytes = NULL;
    if (PyLong_Check(o)) {
        PyObject *zero = PyLong_FromLong(0);
        const int neg = zero ? PyObject_RichCompareBool(o, zero, Py_LT) : -1;
        Py_XDECREF(zero);
        if (neg != 0) {
            if (neg < 0) { free(w); return -1; }
            free(w);
            PyErr_SetString(PyExc_ValueError, "active: negative box mask");
            return -1;
        }
        bytes = PyObject_CallMethod(o, "to_bytes", "ns", (Py_ssize_t)nw * 8, "little");
        if (!bytes) { free(w); return -1; }
        o = bytes;
    }
    Py_buffer v;
    if (PyObject_GetBuffer(o, &v, PyBUF_C_CONTIGUOUS) < 0) {
        Py_XDECREF(bytes);
        free(w);
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "active: expected an int mask or a bytes-like word array");
        return -1;
    }
    size_t n = (size_t)v.len < (size_t)nw * 8 ? (size_t)v.len : (size_t)nw * 8;
    memcpy(w, v.buf, n);
    PyBuffer_Release(&v);
    Py_XDECREF(bytes);
    /* bits past the last box are ignored */
    if (S->nboxes % 64) w[nw - 1] &= ((uint64_t)1 << (S->nboxes % 64)) - 1;
    if (S->nboxes == 0) w[0] = 0;
    *out = w;
    return 0;
}

/* ------------------------------------------------------------ scene_new */

static PyObject *py_scene_new(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o_dh, *o_base, *o_lim, *o_tcp, *o_links, *o_lframe, *o_lmask, *o_lip, *o_tlip,
        *o_boxes, *o_fboxes, *o_pairs, *o_zones, *o_sph, *o_sphl, *o_bound, *o_fmask;
    double margin;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOOOOOOd", &o_dh, &o_base, &o_lim, &o_tcp, &o_links,
                          &o_lframe, &o_lmask, &o_lip, &o_tlip, &o_boxes, &o_fboxes, &o_pairs,
                          &o_zones, &o_sph, &o_sphl, &o_bound, &o_fmask, &margin))
        return NULL;
    enum { NB = 17 };
    Py_buffer b[NB];
    int nb = 0;
    cc_scene *S = NULL;
    PyObject *res = NULL;
#define GET(o, acc, isz, cnt, nm)                                  \
    do {                                                           \
        if (get_buf(o, &b[nb], acc, isz, cnt, nm, 0) < 0) goto out; \
        nb++;                                                      \
    } while (0)
    GET(o_dh, "d", 8, 18, "dh");
    GET(o_base, "d", 8, 12, "base");
    GET(o_lim, "d", 8, 24, "limits");
    GET(o_tcp, "d", 8, 3, "tcp");
    GET(o_links, "d", 8, -1, "links");
    Py_ssize_t L = b[4].len / 8 / 7;
    if (L < 1 || L > CC_MAX_LINKS || L * 7 * 8 != b[4].len) {
        PyErr_SetString(PyExc_ValueError, "links: need 1..16 rows of 7");
        goto out;
    }
    GET(o_lframe, "i", 4, L, "link_frame");
    GET(o_lmask, "LQ", 8, -1, "link_box_mask");
    GET(o_lip, "d", 8, L * CC_NJ, "lip");
    GET(o_tlip, "d", 8, CC_NJ, "tcp_lip");
    GET(o_boxes, "d", 8, -1, "boxes");
    Py_ssize_t B = b[9].len / 8 / 15;
    if (B > CC_MAX_BOXES || B * 15 * 8 != b[9].len) {
        PyErr_SetString(PyExc_ValueError, "boxes: need 0..2^20 rows of 15");
        goto out;
    }
    const Py_ssize_t NW = B > 0 ? (B + 63) / 64 : 1;
    if (b[6].len != L * NW * 8) {
        PyErr_SetString(PyExc_ValueError, "link_box_mask: need nlinks * ceil(nboxes / 64) words");
        goto out;
    }
    GET(o_fboxes, "f", 4, B * 15, "fboxes");
    GET(o_pairs, "i", 4, -1, "pairs");
    Py_ssize_t P = b[11].len / 4 / 3;
    if (P > CC_MAX_PAIRS || P * 3 * 4 != b[11].len) {
        PyErr_SetString(PyExc_ValueError, "pairs: need 0..64 rows of 3");
        goto out;
    }
    GET(o_zones, "d", 8, -1, "zones");
    Py_ssize_t Z = b[12].len / 8 / 15;
    if (Z > CC_MAX_ZONES || Z * 15 * 8 != b[12].len) {
        PyErr_SetString(PyExc_ValueError, "zones: need 0..16 rows of 15");
        goto out;
    }
    GET(o_sph, "f", 4, -1, "spheres");
    Py_ssize_t NS = b[13].len / 4 / 3;
    if (NS > CC_MAX_SPHERES || NS * 3 * 4 != b[13].len) {
        PyErr_SetString(PyExc_ValueError, "spheres: need 0..256 rows of 3");
        goto out;
    }
    GET(o_sphl, "i", 4, NS, "sphere_link");
    GET(o_bound, "f", 4, L * 2, "bound_r");
    GET(o_fmask, "LQ", 8, L * NW, "fast_box_mask");
#undef GET

    S = (cc_scene *)calloc(1, sizeof *S);
    if (!S) { PyErr_NoMemory(); goto out; }
    {
        const size_t nb1 = (size_t)(B > 0 ? B : 1);
        S->nwords = (int)NW;
        S->link_box_mask = calloc((size_t)(L * NW), sizeof(uint64_t));
        S->fast_box_mask = calloc((size_t)(L * NW), sizeof(uint64_t));
        S->box_c = calloc(nb1, sizeof *S->box_c);
        S->box_R = calloc(nb1, sizeof *S->box_R);
        S->box_h = calloc(nb1, sizeof *S->box_h);
        S->box_aligned = calloc(nb1, 1);
        S->fbox_c = calloc(nb1, sizeof *S->fbox_c);
        S->fbox_ax = calloc(nb1, sizeof *S->fbox_ax);
        S->fbox_h = calloc(nb1, sizeof *S->fbox_h);
        if (!S->link_box_mask || !S->fast_box_mask || !S->box_c || !S->box_R || !S->box_h ||
            !S->box_aligned || !S->fbox_c || !S->fbox_ax || !S->fbox_h) {
            PyErr_NoMemory();
            goto out;
        }
    }
    const double *dh = b[0].buf, *base = b[1].buf, *lim = b[2].buf, *tcp = b[3].buf,
                 *links = b[4].buf, *lip = b[7].buf, *tlip = b[8].buf, *boxes = b[9].buf,
                 *zones = b[12].buf;
    const int *lframe = b[5].buf, *pairs = b[11].buf, *sphl = b[14].buf;
    const uint64_t *lmask = b[6].buf, *fmask = b[16].buf;
    const float *fboxes = b[10].buf, *sph = b[13].buf, *bound = b[15].buf;
    for (int j = 0; j < CC_NJ; j++) {
        S->dh_a[j] = dh[3 * j];
        S->dh_d[j] = dh[3 * j + 1];
        S->dh_ca[j] = cos(dh[3 * j + 2]);
        S->dh_sa[j] = sin(dh[3 * j + 2]);
        S->qmin[j] = lim[4 * j];
        S->qmax[j] = lim[4 * j + 1];
        S->vmax[j] = lim[4 * j + 2];
        S->amax[j] = lim[4 * j + 3];
        S->tcp_lip[j] = tlip[j];
    }
    memcpy(S->base_R, base, 9 * sizeof(double));
    memcpy(S->base_p, base + 9, 3 * sizeof(double));
    memcpy(S->tcp, tcp, 3 * sizeof(double));
    S->margin = margin;
    S->nlinks = (int)L;
    for (int k = 0; k < L; k++) {
        if (lframe[k] < 0 || lframe[k] > CC_NJ) {
            PyErr_SetString(PyExc_ValueError, "link_frame out of range");
            goto out;
        }
        S->link_frame[k] = lframe[k];
        memcpy(S->link_p0[k], links + 7 * k, 3 * sizeof(double));
        memcpy(S->link_p1[k], links + 7 * k + 3, 3 * sizeof(double));
        S->link_r[k] = links[7 * k + 6];
        for (Py_ssize_t w = 0; w < NW; w++) {
            S->link_box_mask[k * NW + w] = lmask[k * NW + w];
            S->fast_box_mask[k * NW + w] = lmask[k * NW + w] & fmask[k * NW + w];
        }
        memcpy(S->lip[k], lip + CC_NJ * k, CC_NJ * sizeof(double));
        S->bound_r_env[k] = bound[2 * k];
        S->bound_r_self[k] = bound[2 * k + 1];
    }
    S->nboxes = (int)B;
    for (int i = 0; i < B; i++) {
        memcpy(S->box_c[i], boxes + 15 * i, 3 * sizeof(double));
        memcpy(S->box_R[i], boxes + 15 * i + 3, 9 * sizeof(double));
        memcpy(S->box_h[i], boxes + 15 * i + 12, 3 * sizeof(double));
        memcpy(S->fbox_c[i], fboxes + 15 * i, 3 * sizeof(float));
        memcpy(S->fbox_ax[i], fboxes + 15 * i + 3, 9 * sizeof(float));
        memcpy(S->fbox_h[i], fboxes + 15 * i + 12, 3 * sizeof(float));
        const double *R = S->box_R[i];
        S->box_aligned[i] = R[0] == 1.0 && R[4] == 1.0 && R[8] == 1.0 && R[1] == 0.0 && R[2] == 0.0 &&
                            R[3] == 0.0 && R[5] == 0.0 && R[6] == 0.0 && R[7] == 0.0;
    }
    S->npairs = (int)P;
    for (int i = 0; i < P; i++) {
        int a = pairs[3 * i], c = pairs[3 * i + 1], fj = pairs[3 * i + 2];
        if (a < 0 || a >= L || c < 0 || c >= L || fj < 0 || fj > CC_NJ) {
            PyErr_SetString(PyExc_ValueError, "pairs: index out of range");
            goto out;
        }
        S->pair_a[i] = a;
        S->pair_b[i] = c;
        S->pair_first_joint[i] = fj;
    }
    S->nzones = (int)Z;
    for (int i = 0; i < Z; i++) {
        memcpy(S->zone_c[i], zones + 15 * i, 3 * sizeof(double));
        memcpy(S->zone_R[i], zones + 15 * i + 3, 9 * sizeof(double));
        memcpy(S->zone_h[i], zones + 15 * i + 12, 3 * sizeof(double));
    }
    S->nspheres = (int)NS;
    for (int k = 0; k < L; k++) { S->sph_first[k] = 0; S->sph_count[k] = 0; }
    for (int i = 0; i < NS; i++) {
        int k = sphl[i];
        if (k < 0 || k >= L || (i > 0 && sphl[i - 1] > k)) {
            PyErr_SetString(PyExc_ValueError, "sphere_link: must be sorted link indices");
            goto out;
        }
        if (S->sph_count[k] == 0) S->sph_first[k] = i;
        S->sph_count[k]++;
        S->sph_t[i] = sph[3 * i];
        S->sph_r_env[i] = sph[3 * i + 1];
        S->sph_r_self[i] = sph[3 * i + 2];
    }
    for (int k = 0; k < L; k++)
        if (S->sph_count[k] == 0) {
            PyErr_SetString(PyExc_ValueError, "every link needs at least one covering sphere");
            goto out;
        }
    if (cc_fast_prepare(S) < 0) {
        PyErr_NoMemory();
        goto out;
    }
    {
        /* geom_hash: the inputs the exact clearances depend on, margin excluded */
        uint64_t h = 1469598103934665603ull;
        const int parts[] = {0, 1, 4, 5, 6, 9, 11};
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
            const unsigned char *p = b[parts[i]].buf;
            for (Py_ssize_t t = 0; t < b[parts[i]].len; t++) {
                h ^= p[t];
                h *= 1099511628211ull;
            }
            h ^= (uint64_t)b[parts[i]].len;
            h *= 1099511628211ull;
        }
        S->geom_hash = h;
    }
    res = PyCapsule_New(S, CAPSULE_NAME, scene_free);
    if (res) S = NULL;
out:
    cc_scene_free(S);
    for (int i = 0; i < nb; i++) PyBuffer_Release(&b[i]);
    return res;
}

/* Accessors for the other wrapper file (pyplan.c), declared in pymod.h. */
int cc_py_get_buf(PyObject *o, Py_buffer *v, const char *accept, Py_ssize_t itemsize,
                  Py_ssize_t count, const char *name, int writable)
{
    return get_buf(o, v, accept, itemsize, count, name, writable);
}
int cc_py_get_q(PyObject *o, Py_buffer *v, Py_ssize_t *n) { return get_q(o, v, n); }
int cc_py_get_active(PyObject *o, const cc_scene *S, uint64_t **out) { return get_active(o, S, out); }
cc_scene *cc_py_get_scene(PyObject *o) { return get_scene(o); }
cc_fast_fn cc_py_fast_fn(void) { return fast_fns[cur_level]; }

/* ------------------------------------------------------------ kernels */

static PyObject *py_fk(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *os, *oq, *oo;
    if (!PyArg_ParseTuple(args, "OOO", &os, &oq, &oo)) return NULL;
    const cc_scene *S = get_scene(os);
    if (!S) return NULL;
    Py_buffer vq, vo;
    Py_ssize_t n;
    if (get_q(oq, &vq, &n) < 0) return NULL;
    if (get_buf(oo, &vo, "d", 8, n * (CC_NJ + 1) * 12, "out", 1) < 0) {
        PyBuffer_Release(&vq);
        return NULL;
    }
    const double *q = vq.buf;
    double *out = vo.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        cc_frames F;
        cc_fk(S, q + CC_NJ * i, &F);
        for (int f = 0; f <= CC_NJ; f++) {
            double *o = out + (i * (CC_NJ + 1) + f) * 12;
            memcpy(o, F.R[f], 9 * sizeof(double));
            memcpy(o + 9, F.p[f], 3 * sizeof(double));
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&vq);
    PyBuffer_Release(&vo);
    Py_RETURN_NONE;
}

static PyObject *py_fast_check(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *os, *oq, *oa, *oo;
    if (!PyArg_ParseTuple(args, "OOOO", &os, &oq, &oa, &oo)) return NULL;
    const cc_scene *S = get_scene(os);
    if (!S) return NULL;
    Py_buffer vq, vo;
    Py_ssize_t n;
    if (get_q(oq, &vq, &n) < 0) return NULL;
    if (get_buf(oo, &vo, "B?b", 1, n, "out", 1) < 0) {
        PyBuffer_Release(&vq);
        return NULL;
    }
    uint64_t *active;
    if (get_active(oa, S, &active) < 0) {
        PyBuffer_Release(&vq);
        PyBuffer_Release(&vo);
        return NULL;
    }
    cc_fast_fn fn = fast_fns[cur_level];
    Py_BEGIN_ALLOW_THREADS
    fn(S, vq.buf, n, active, vo.buf);
    Py_END_ALLOW_THREADS
    free(active);
    PyBuffer_Release(&vq);
    PyBuffer_Release(&vo);
    Py_RETURN_NONE;
}

static PyObject *py_clearance(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *os, *oq, *oa, *od, *op;
    if (!PyArg_ParseTuple(args, "OOOOO", &os, &oq, &oa, &od, &op)) return NULL;
    const cc_scene *S = get_scene(os);
    if (!S) return NULL;
    Py_buffer vq, vd, vp;
    Py_ssize_t n;
    if (get_q(oq, &vq, &n) < 0) return NULL;
    if (get_buf(od, &vd, "d", 8, n, "out_distance", 1) < 0) {
        PyBuffer_Release(&vq);
        return NULL;
    }
    if (get_buf(op, &vp, "i", 4, n, "out_pair", 1) < 0) {
        PyBuffer_Release(&vq);
        PyBuffer_Release(&vd);
        return NULL;
    }
    uint64_t *active;
    if (get_active(oa, S, &active) < 0) {
        PyBuffer_Release(&vq);
        PyBuffer_Release(&vd);
        PyBuffer_Release(&vp);
        return NULL;
    }
    const double *q = vq.buf;
    double *d = vd.buf;
    int *p = vp.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) d[i] = cc_min_clearance(S, q + CC_NJ * i, active, &p[i]);
    Py_END_ALLOW_THREADS
    free(active);
    PyBuffer_Release(&vq);
    PyBuffer_Release(&vd);
    PyBuffer_Release(&vp);
    Py_RETURN_NONE;
}

static PyObject *py_check_trajectory(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *os, *oq, *oa, *oacc = NULL;
    cc_traj_opts o;
    memset(&o, 0, sizeof o);
    if (!PyArg_ParseTuple(args, "OOOdidddi|O", &os, &oq, &oa, &o.dt, &o.mode,
                          &o.speed_limit_outside, &o.speed_limit_zone, &o.fixed_step,
                          &o.max_depth, &oacc))
        return NULL;
    const cc_scene *S = get_scene(os);
    if (!S) return NULL;
    if (oacc && oacc != Py_None) {
        /* fast acceptance: a tuple of scenes with this scene's geometry and larger margins,
         * ascending (certified mode only) */
        if (!PyTuple_Check(oacc) || PyTuple_GET_SIZE(oacc) > CC_MAX_ACC) {
            PyErr_Format(PyExc_ValueError, "accept: need a tuple of at most %d scenes", CC_MAX_ACC);
            return NULL;
        }
        if (PyTuple_GET_SIZE(oacc) > 0 && o.mode != CC_MODE_CERTIFIED) {
            PyErr_SetString(PyExc_ValueError, "accept: fast acceptance needs certified mode");
            return NULL;
        }
        double prev = S->margin;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(oacc); k++) {
            const cc_scene *A = get_scene(PyTuple_GET_ITEM(oacc, k));
            if (!A) return NULL;
            if (A->geom_hash != S->geom_hash || A->nboxes != S->nboxes || A->nlinks != S->nlinks ||
                A->npairs != S->npairs || A->nwords != S->nwords) {
                PyErr_SetString(PyExc_ValueError, "accept: a scene's geometry differs from the checked scene's");
                return NULL;
            }
            if (!(A->margin > prev)) {
                PyErr_SetString(PyExc_ValueError, "accept: margins must be larger than the scene's, ascending");
                return NULL;
            }
            prev = A->margin;
            o.acc[o.nacc++] = A;
        }
        o.fast = fast_fns[cur_level];
    }
    if (!(isfinite(o.dt) && o.dt > 0.0)) {
        PyErr_SetString(PyExc_ValueError, "dt must be a finite positive number of seconds");
        return NULL;
    }
    if (o.mode < CC_MODE_SAMPLES || o.mode > CC_MODE_CERTIFIED) {
        PyErr_SetString(PyExc_ValueError, "unknown mode");
        return NULL;
    }
    if (!(isfinite(o.fixed_step) && o.fixed_step > 0.0) || o.max_depth < 0 || o.max_depth > 40 ||
        isnan(o.speed_limit_outside) || isnan(o.speed_limit_zone)) {
        PyErr_SetString(PyExc_ValueError, "invalid trajectory options");
        return NULL;
    }
    Py_buffer vq;
    Py_ssize_t n;
    if (get_q(oq, &vq, &n) < 0) return NULL;
    uint64_t *active;
    if (get_active(oa, S, &active) < 0) {
        PyBuffer_Release(&vq);
        return NULL;
    }
    cc_traj_result r;
    Py_BEGIN_ALLOW_THREADS
    cc_check_trajectory(S, vq.buf, n, active, &o, &r);
    Py_END_ALLOW_THREADS
    free(active);
    PyBuffer_Release(&vq);
    return Py_BuildValue("iliiddiddildddl", r.code, r.index, r.joint, r.zone, r.value, r.limit,
                         r.pair, r.pair_clearance, r.min_clearance, r.min_pair, r.evals,
                         r.speed_chord_max, r.speed_bound_max, r.min_bound, r.accepted);
}

/* Batched primitives for tests: seg_box_dist(e0, e1, c, R, h, out) with rows of 3/3/3/9/3
 * and seg_seg_dist(p0, p1, q0, q1, out), all float64. */
static PyObject *py_seg_box_dist(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o[6];
    if (!PyArg_ParseTuple(args, "OOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5])) return NULL;
    Py_buffer v[6];
    static const int width[6] = {3, 3, 3, 9, 3, 1};
    static const char *names[6] = {"e0", "e1", "c", "R", "h", "out"};
    Py_ssize_t n = -1;
    int got = 0;
    PyObject *res = NULL;
    for (int i = 0; i < 6; i++) {
        if (get_buf(o[i], &v[i], "d", 8, -1, names[i], i == 5) < 0) goto out;
        got++;
        Py_ssize_t m = v[i].len / 8 / width[i];
        if (m * width[i] * 8 != v[i].len || (n >= 0 && m != n)) {
            PyErr_Format(PyExc_ValueError, "%s: inconsistent length", names[i]);
            goto out;
        }
        n = m;
    }
    const double *e0 = v[0].buf, *e1 = v[1].buf, *c = v[2].buf, *R = v[3].buf, *h = v[4].buf;
    double *d = v[5].buf;
    for (Py_ssize_t i = 0; i < n; i++)
        d[i] = cc_seg_box_dist(e0 + 3 * i, e1 + 3 * i, c + 3 * i, R + 9 * i, h + 3 * i);
    res = Py_None;
    Py_INCREF(res);
out:
    for (int i = 0; i < got; i++) PyBuffer_Release(&v[i]);
    return res;
}

static PyObject *py_seg_seg_dist(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o[5];
    if (!PyArg_ParseTuple(args, "OOOOO", &o[0], &o[1], &o[2], &o[3], &o[4])) return NULL;
    Py_buffer v[5];
    static const int width[5] = {3, 3, 3, 3, 1};
    static const char *names[5] = {"p0", "p1", "q0", "q1", "out"};
    Py_ssize_t n = -1;
    int got = 0;
    PyObject *res = NULL;
    for (int i = 0; i < 5; i++) {
        if (get_buf(o[i], &v[i], "d", 8, -1, names[i], i == 4) < 0) goto out;
        got++;
        Py_ssize_t m = v[i].len / 8 / width[i];
        if (m * width[i] * 8 != v[i].len || (n >= 0 && m != n)) {
            PyErr_Format(PyExc_ValueError, "%s: inconsistent length", names[i]);
            goto out;
        }
        n = m;
    }
    const double *p0 = v[0].buf, *p1 = v[1].buf, *q0 = v[2].buf, *q1 = v[3].buf;
    double *d = v[4].buf;
    for (Py_ssize_t i = 0; i < n; i++)
        d[i] = cc_seg_seg_dist(p0 + 3 * i, p1 + 3 * i, q0 + 3 * i, q1 + 3 * i);
    res = Py_None;
    Py_INCREF(res);
out:
    for (int i = 0; i < got; i++) PyBuffer_Release(&v[i]);
    return res;
}

/* ------------------------------------------------------------ SIMD control */

static PyObject *py_simd_level(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyUnicode_FromString(level_names[cur_level]);
}

static PyObject *py_simd_levels(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    PyObject *t = PyTuple_New(best_level + 1);
    if (!t) return NULL;
    for (int i = 0; i <= best_level; i++) PyTuple_SET_ITEM(t, i, PyUnicode_FromString(level_names[i]));
    return t;
}

static PyObject *py_set_simd_level(PyObject *self, PyObject *args)
{
    (void)self;
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    int lvl = level_from_name(name);
    if (lvl < 0) {
        PyErr_Format(PyExc_ValueError, "unknown SIMD level %R (generic, avx2, avx512)",
                     PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    if (lvl > best_level) {
        PyErr_Format(PyExc_ValueError, "SIMD level %s is not supported by this CPU (best: %s)",
                     name, level_names[best_level]);
        return NULL;
    }
    cur_level = lvl;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"scene_new", py_scene_new, METH_VARARGS, "Build a scene capsule from packed arrays."},
    {"fk", py_fk, METH_VARARGS, "fk(scene, q, out): frames 0..6 as (R row-major, p) rows of 12."},
    {"fast_check", py_fast_check, METH_VARARGS,
     "fast_check(scene, q, active_mask, out_uint8): conservative float32 check, 1 = free."},
    {"clearance", py_clearance, METH_VARARGS,
     "clearance(scene, q, active_mask, out_distance, out_pair): exact minimum clearance."},
    {"check_trajectory", py_check_trajectory, METH_VARARGS,
     "check_trajectory(scene, q, active, dt, mode, v_out, v_zone, fixed_step, max_depth"
     "[, accept_scenes])."},
    {"set_broad_phase", cc_py_set_broad_phase, METH_VARARGS,
     "set_broad_phase(scene, 'bvh' | 'flat' | 'auto') -> previous mode."},
    {"plan", cc_py_plan, METH_VARARGS,
     "plan(scene, q_start, q_goal, active, seed, max_samples, shortcut_iters, step, extend, out"
     "[, roadmap, max_rounds])"
     " -> (code, n_waypoints, iterations, method, edges_checked)."},
    {"roadmap_new", cc_py_roadmap_new, METH_VARARGS,
     "roadmap_new(scene, active, n, k, seed): lazy roadmap for plan (see roadmap.c)."},
    {"roadmap_info", cc_py_roadmap_info, METH_VARARGS,
     "roadmap_info(roadmap) -> (vertices, edges, anchors, memoised edge verdicts)."},
    {"timing_pass", cc_py_timing_pass, METH_VARARGS,
     "timing_pass(scene, waypoints, steps, dt, samples_out, peaks_out): one timing pass."},
    {"motion_free", cc_py_motion_free, METH_VARARGS,
     "motion_free(scene, q_a, q_b, active, step): straight joint motion free on the fast path."},
    {"seg_box_dist", py_seg_box_dist, METH_VARARGS, "Batched segment-to-oriented-box distance."},
    {"seg_seg_dist", py_seg_seg_dist, METH_VARARGS, "Batched segment-to-segment distance."},
    {"simd_level", py_simd_level, METH_NOARGS, "Name of the SIMD level in use."},
    {"simd_levels", py_simd_levels, METH_NOARGS, "SIMD levels this CPU supports, lowest first."},
    {"set_simd_level", py_set_simd_level, METH_VARARGS,
     "Force a SIMD level (must be supported by this CPU)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_ccheck",
                                    "C collision and trajectory checks for the arm (hot path).",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__ccheck(void)
{
    detect_levels();
    const char *env = getenv("ASEPTIC_CELL_SIMD");
    if (env && *env) {
        int lvl = level_from_name(env);
        if (lvl < 0) {
            if (PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
                                 "ASEPTIC_CELL_SIMD=%s is not one of generic, avx2, avx512; "
                                 "using %s", env, level_names[best_level]) < 0)
                return NULL;
        } else if (lvl > best_level) {
            if (PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
                                 "ASEPTIC_CELL_SIMD=%s is not supported by this CPU; using %s",
                                 env, level_names[best_level]) < 0)
                return NULL;
        } else {
            cur_level = lvl;
        }
    }
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    if (PyModule_AddIntConstant(m, "MAX_LINKS", CC_MAX_LINKS) < 0 ||
        PyModule_AddIntConstant(m, "MAX_BOXES", CC_MAX_BOXES) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PAIRS", CC_MAX_PAIRS) < 0 ||
        PyModule_AddIntConstant(m, "MAX_ZONES", CC_MAX_ZONES) < 0 ||
        PyModule_AddIntConstant(m, "MAX_SPHERES", CC_MAX_SPHERES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
