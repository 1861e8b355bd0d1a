"""Atomic output: write to a temporary file beside the target, then rename
(:func:`staged_outputs`: several files, e.g. an output and its sidecar, together).

A crash or an error never leaves a half-written output, and an existing file is only replaced
once the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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


@contextlib.contextmanager
def staged_outputs(*targets: str | os.PathLike) -> Iterator[list[Path]]:
    """Write several files (an output and its sidecar) so that they appear together or not at all.

    Yields one staging path per target: the target's own file name, inside a hidden folder beside
    it, so that suffix-sniffing writers and ``<name>.json`` sidecars keep working. When the block
    succeeds the staged files are renamed onto their targets, in the order given; pass the sidecar
    before its output, so that whoever sees the output also sees its sidecar. If the block or any
    rename fails, the targets already renamed are rolled back (a file that was replaced is put
    back) and the staging folders are removed, so a failure never leaves one file without the other.
    """
    finals = [Path(t).expanduser() for t in targets]
    stage_dirs: dict[Path, Path] = {}
    staged: list[Path] = []
    try:
        try:
            for final in finals:
                parent = final.resolve().parent
                if parent not in stage_dirs:
                    stage_dirs[parent] = Path(tempfile.mkdtemp(prefix=".foleykit-stage.", dir=parent))
                staged.append(stage_dirs[parent] / final.name)
        except OSError as exc:
            raise OutputError(f"cannot write in {exc.filename or finals[0].parent}: {exc.strerror or exc}") from None
        yield list(staged)
        _commit(staged, finals, stage_dirs)
    finally:
        for d in stage_dirs.values():
            shutil.rmtree(d, ignore_errors=True)


def _commit(staged: list[Path], finals: list[Path], stage_dirs: dict[Path, Path]) -> None:
    """Rename each staged file onto its target; on any failure undo the renames already done."""
    for tmp, final in zip(staged, finals):
        if not tmp.is_file():
            raise OutputError(f"nothing was written for {final}")
    done: list[tuple[Path, Path | None]] = []  # (target, backup of the file it replaced)
    mask = _umask()
    try:
        for i, (tmp, final) in enumerate(zip(staged, finals)):
            os.chmod(tmp, 0o666 & ~mask)
            backup = None
            if final.is_file():
                backup = stage_dirs[final.resolve().parent] / f".backup-{i}"
                try:
                    os.link(final, backup)  # the old file stays in place until the rename
                except OSError:
                    shutil.copy2(final, backup)
            os.replace(tmp, final)
            done.append((final, backup))
    except BaseException as exc:
        for written, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, written)
                else:
                    written.unlink()
        if isinstance(exc, OSError):
            raise OutputError(f"could not write {final}: {exc.strerror or exc}") from exc
        raise
