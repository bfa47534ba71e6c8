"""Snapshots of a whole in-process cell + supervisor frozen as pickle bytes, thawed into an
independent copy per fuzz sequence (tests/unit/test_patients_stateful.py).

``copy.deepcopy`` of a 4-batch cell walks ~55,000 objects in Python (~25-45 ms CPU); the C
unpickler rebuilds the same graph from bytes in ~6 ms. What is copied and what is shared is the
same as :func:`.fuzz.deep_clone`: ``shared`` objects (configuration, collision scene, user
directory, compiled rules), pydantic models, classes, code objects, module globals, py_trees
loggers and closure-free functions are *not* serialised: they are kept in a process-wide
registry and the bytes name them by ``id`` (valid in this process only: the registry keeps them
alive); functions with a closure get copies of their cells, generators are dropped (py_trees
builds a new one per tick), locks are new, a :class:`.fuzz_patients.MemoryRecord`'s entries
(immutable) are shared. For fuzzing only: the bytes never leave the process.
"""

from __future__ import annotations

import io
import pickle
import sys
import threading
import types
from typing import Any

_SHARED: dict[int, Any] = {}
"""id -> object that the frozen bytes name instead of holding (kept alive for the ids to stay valid)."""
_RLOCK, _LOCK = type(threading.RLock()), type(threading.Lock())


def _shared(key: int) -> Any:
    return _SHARED[key]


def _function(code: Any, globs: Any, name: str, defaults: Any, kwdefaults: Any, cells: tuple[Any, ...],
              attrs: dict[str, Any] | None) -> types.FunctionType:
    f = types.FunctionType(code, globs, name, defaults, tuple(types.CellType(c) for c in cells))
    f.__kwdefaults__ = kwdefaults
    if attrs:
        f.__dict__.update(attrs)
    return f


def _none() -> None:
    return None


def _new(cls: Any) -> Any:
    return cls.__new__(cls)


def _set_dict(obj: Any, state: dict[str, Any]) -> None:
    """State setter of classes whose ``__getattr__`` delegates (``__setstate__`` would be looked up
    on an empty instance and recurse)."""
    obj.__dict__.update(state)


class _Ref:
    """Stands for a shared object inside a reduce tuple (a code object, a globals dict)."""

    __slots__ = ("key",)

    def __init__(self, key: int) -> None:
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:
        return (_shared, (self.key,))


def _ref(obj: Any) -> _Ref:
    _SHARED[id(obj)] = obj
    return _Ref(id(obj))


_HELPERS = {_shared, _function, _none, _new, _set_dict}


class _Freezer(pickle.Pickler):
    def __init__(self, buf: io.BytesIO, shared: set[int], by_state: tuple[type, ...],
                 immutable_lists: tuple[type, ...]) -> None:
        super().__init__(buf, protocol=pickle.HIGHEST_PROTOCOL)
        self.shared, self.by_state, self.immutable_lists = shared, by_state, immutable_lists

    def reducer_override(self, obj: Any) -> Any:  # noqa: PLR0911 - one branch per kind of object
        import py_trees
        import pydantic

        t = type(obj)
        if t is type and (obj is _Ref or obj in self.by_state or obj in self.immutable_lists):
            return NotImplemented
        if id(obj) in self.shared or isinstance(obj, (type, pydantic.BaseModel, types.CodeType, types.ModuleType,
                                                      py_trees.logging.Logger)):
            return (_shared, (_ref(obj).key,))
        if t is types.FunctionType:
            if obj in _HELPERS:
                return NotImplemented  # importable: by reference
            if not obj.__closure__:
                return (_shared, (_ref(obj).key,))
            return (_function, (_ref(obj.__code__), _ref(obj.__globals__), obj.__name__, obj.__defaults__,
                                obj.__kwdefaults__, tuple(c.cell_contents for c in obj.__closure__),
                                obj.__dict__ or None))
        if t is types.GeneratorType:
            return (_none, ())
        if t is _RLOCK:
            return (threading.RLock, ())
        if t is _LOCK:
            return (threading.Lock, ())
        if t in self.immutable_lists:
            return (t, (_ref(tuple(obj)),))
        if t in self.by_state:
            return (_new, (t,), dict(obj.__dict__), None, None, _set_dict)
        return NotImplemented


def freeze(obj: Any, shared: list[Any], *, by_state: tuple[type, ...] = (),
           immutable_lists: tuple[type, ...] = ()) -> bytes:
    """``obj``'s object graph as bytes for :func:`thaw` (see the module docstring). ``by_state``:
    classes rebuilt from their ``__dict__`` without ``__setstate__`` lookups; ``immutable_lists``:
    list subclasses whose items are immutable and shared by every thawed copy."""
    for x in shared:
        _SHARED[id(x)] = x
    buf = io.BytesIO()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # the pickler recurses per nesting level (py_trees trees)
    try:
        _Freezer(buf, {id(x) for x in shared}, by_state, immutable_lists).dump(obj)
    finally:
        sys.setrecursionlimit(limit)
    return buf.getvalue()


def thaw(data: bytes) -> Any:
    """A new, independent copy of the frozen object graph."""
    import gc

    # the unpickler allocates ~15,000 containers: with the collector on, the collections they
    # trigger walk the whole heap (loads 5 -> 19 ms CPU, measured); nothing is garbage here
    was = gc.isenabled()
    gc.disable()
    try:
        return pickle.loads(data)  # noqa: S301 - bytes made by freeze() in this process, never from outside
    finally:
        if was:
            gc.enable()


__all__ = ["freeze", "thaw"]
