"""Typed constructors for the asyncua values whose annotations are narrower than what asyncua takes.

asyncua annotates ``NodeId``'s identifier/namespace and ``StatusCode``'s value with its own marker
subclasses (``ua.Int32 | ua.String | ...``, ``ua.Int16``, ``ua.UInt32``), while its own code and
documentation pass plain ``int``/``str`` (``ua.NodeId(ua.ObjectIds.Server)``,
``ua.StatusCode(ua.StatusCodes.BadInternalError)``). These helpers are that call, unchanged, with
the stub gap acknowledged in one place instead of at every call site.
"""

from __future__ import annotations

from asyncua import ua


def node_id(identifier: int | str, namespace: int = 0) -> ua.NodeId:
    """``ua.NodeId(identifier, namespace)``: a numeric or string NodeId."""
    return ua.NodeId(identifier, namespace)  # type: ignore[arg-type]


def status_code(code: int) -> ua.StatusCode:
    """``ua.StatusCode(code)`` for a ``ua.StatusCodes`` value."""
    return ua.StatusCode(code)  # type: ignore[arg-type]
