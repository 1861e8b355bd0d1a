"""Atomic output: write to a temporary file beside the target, then rename.

A crash or an error never leaves a half-written output, and an existing file is only replaced
once the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import OutputError


def check_output_path(output: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse an output equal to an input, or in a directory that does not exist or is not writable."""
    out = Path(output).expanduser()
    out_resolved = out.resolve()
    for inp in inputs:
        if inp is None:
            continue
        try:
            if Path(inp).expanduser().resolve() == out_resolved:
                raise OutputError(f"output path {out} is the same file as input {inp}; choose another output")
        except OSError:
            continue
    if out.exists() and out.is_dir():
        raise OutputError(f"output path {out} is a directory; give a file name")
    parent = out_resolved.parent
    if not parent.exists():
        raise OutputError(f"output directory {parent} does not exist")
    # Probe with a real file: os.access says yes to root even where the filesystem says no.
    try:
        fd, probe = tempfile.mkstemp(prefix=".foleykit-probe.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"output directory {parent} is not writable ({exc.strerror or exc})") from None
    return out


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``target`` on success.

    The temporary file keeps the target's suffix so that format-sniffing writers (soundfile, PyAV)
    pick the right container.
    """
    target = Path(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".part{target.suffix}", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write in {target.parent}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600 files; give the output the permissions a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
