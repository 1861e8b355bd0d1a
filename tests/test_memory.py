"""``foleykit.memory.release_freed_memory`` really hands freed heap pages back to the OS (glibc)."""

from __future__ import annotations

import ctypes

import pytest

from foleykit.memory import _malloc_trim, release_freed_memory


def _rss_anon_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:")) / 1024


@pytest.mark.skipif(_malloc_trim() is None, reason="needs glibc's malloc_trim")
def test_freed_heap_pages_go_back_to_the_os():
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    n, size = 2000, 96 * 1024  # below glibc's 128 KiB mmap threshold: these live on the heap
    blocks = []
    for _ in range(n):
        p = libc.malloc(size)
        ctypes.memset(p, 1, size)  # make the pages resident
        blocks.append(p)
    # A fresh size, cut from the top of the heap above the blocks: free() alone cannot shrink the heap past it.
    guard = libc.malloc(size + 512)
    before = _rss_anon_mib()
    for p in blocks:
        libc.free(p)
    kept = _rss_anon_mib()
    assert kept > before - 0.25 * n * size / 2**20  # glibc keeps most of the freed pages ...
    assert release_freed_memory() is True
    after = _rss_anon_mib()
    libc.free(guard)
    assert after < kept - 0.75 * n * size / 2**20  # ... until they are trimmed: at least 3/4 of 187 MiB back
