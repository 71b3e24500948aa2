"""A ggml CPU threadpool with a chosen spin ("poll") level, attached to a llama context.

llama.cpp's default pool spins its idle threads between graph computations. In a server
that is the wrong trade on a small machine: between two decode steps the Python side
(sampling, streaming the token to the client) needs a core, and a spinning ggml thread
takes it. llama-cpp-python does not bind these calls, so they are declared here with
ctypes against the libraries it ships.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("openclone.engines.llamacpp")

_GGML_MAX_N_THREADS = 512


class _ThreadpoolParams(ctypes.Structure):
    # Mirrors struct ggml_threadpool_params (ggml/include/ggml-cpu.h).
    _fields_ = [
        ("cpumask", ctypes.c_bool * _GGML_MAX_N_THREADS),
        ("n_threads", ctypes.c_int),
        ("prio", ctypes.c_int),
        ("poll", ctypes.c_uint32),
        ("strict_cpu", ctypes.c_bool),
        ("paused", ctypes.c_bool),
    ]


class Threadpool:
    """Owns one ggml threadpool; ``attach`` gives it to a context, ``free`` after the context."""

    def __init__(self, n_threads: int, poll: int) -> None:
        from llama_cpp import llama_cpp

        libdir = Path(llama_cpp.__file__).parent / "lib"
        self._cpu = ctypes.CDLL(str(libdir / "libggml-cpu.so"))
        self._llama = ctypes.CDLL(str(libdir / "libllama.so"))
        self._cpu.ggml_threadpool_params_default.restype = _ThreadpoolParams
        self._cpu.ggml_threadpool_params_default.argtypes = [ctypes.c_int]
        self._cpu.ggml_threadpool_new.restype = ctypes.c_void_p
        self._cpu.ggml_threadpool_new.argtypes = [ctypes.POINTER(_ThreadpoolParams)]
        self._cpu.ggml_threadpool_free.argtypes = [ctypes.c_void_p]
        self._llama.llama_attach_threadpool.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        params = self._cpu.ggml_threadpool_params_default(n_threads)
        if params.n_threads != n_threads:  # the struct layout is not what this build uses
            raise RuntimeError("unexpected ggml_threadpool_params layout")
        params.poll = poll
        self._pool = self._cpu.ggml_threadpool_new(ctypes.byref(params))
        if not self._pool:
            raise RuntimeError("ggml_threadpool_new failed")

    def attach(self, ctx: Any) -> None:
        self._llama.llama_attach_threadpool(ctx, self._pool, self._pool)

    def free(self) -> None:
        if self._pool:
            self._cpu.ggml_threadpool_free(self._pool)
            self._pool = None


def make_threadpool(ctx: Any, n_threads: int, poll: int) -> Threadpool | None:
    """Attach a pool with ``poll`` to ``ctx``; None (llama.cpp's own pool) if this build can't."""
    try:
        pool = Threadpool(n_threads, poll)
        pool.attach(ctx)
        return pool
    except (OSError, AttributeError, RuntimeError) as exc:
        log.warning("using llama.cpp's default threadpool: %s", exc)
        return None
