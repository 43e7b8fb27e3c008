"""Models a forked child inherits are never destroyed in it.

ONNX Runtime's sessions and OpenVINO's compiled models start their thread pools when they are
made. A child forked after that has a copy of the pools' condition variables with the parent's
threads still counted as waiting on them, so destroying the model there (at the child's exit,
or when it drops the Reranker) waited for those threads for good: a gunicorn ``--preload``
worker never finished exiting (its master waited ``--graceful-timeout`` for each, then killed
it; a worker recycled by ``--max-requests`` held its slot meanwhile), and an ``os.fork`` child
never exited. The child keeps them instead; the operating system frees their memory at exit.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

Holder = TypeVar("Holder", bound=Callable[..., Any])

# What holds each native model made in this process (its forward function); weak, so that a
# model dropped in the process that made it is freed there as usual.
_MADE_HERE: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


def kept_in_forked_children(holder: Holder) -> Holder:
    """``holder`` (and the native model it holds) is never destroyed in a forked child."""
    _MADE_HERE.add(holder)
    return holder


def _keep_inherited() -> None:
    for holder in list(_MADE_HERE):
        # One reference nobody drops: not even the interpreter's exit destroys it.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(holder))
    _MADE_HERE.clear()  # those made from now on are this child's own


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_keep_inherited)
