/* Shared declarations of the CPython wrapper files module.c and pyplan.c. */
#ifndef ASEPTIC_CELL_PYMOD_H
#define ASEPTIC_CELL_PYMOD_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "ccheck.h"

/* module.c: buffers, joint arrays, active box sets, the scene capsule, the fast path in use */
int cc_py_get_buf(PyObject *o, Py_buffer *v, const char *accept, Py_ssize_t itemsize,
                  Py_ssize_t count, const char *name, int writable);
int cc_py_get_q(PyObject *o, Py_buffer *v, Py_ssize_t *n);
int cc_py_get_active(PyObject *o, const cc_scene *S, uint64_t **out);
cc_scene *cc_py_get_scene(PyObject *o);
cc_fast_fn cc_py_fast_fn(void);

/* pyplan.c */
PyObject *cc_py_set_broad_phase(PyObject *self, PyObject *args);
PyObject *cc_py_plan(PyObject *self, PyObject *args);
PyObject *cc_py_motion_free(PyObject *self, PyObject *args);
PyObject *cc_py_roadmap_new(PyObject *self, PyObject *args);
PyObject *cc_py_roadmap_info(PyObject *self, PyObject *args);
PyObject *cc_py_timing_pass(PyObject *self, PyObject *args);

#endif
