"""Give freed host memory back to the operating system after a generation.

glibc keeps the heap pages of freed activations (decoder and vocoder buffers of a few to tens of MB)
for reuse; in a long-running process (the web app, a batch) the retained heap rides on top of the next
request's peak. At real sizes (BENCHMARKS.md, issue 15) the same vocoder call left +14 MiB resident in
one run and +650 MiB in another. ``malloc_trim(0)`` returns those pages (about 50 ms for a heap of
~750 MB of freed tensors, 1-2 ms when little is free) and is a no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and friends have no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Hand the C heap's free pages back to the OS (glibc; thread-safe). True when memory was returned."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
