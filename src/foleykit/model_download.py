"""``foleykit models download``: fetch exactly the files each role of a model set loads into the
Hugging Face cache, so that afterwards everything runs with ``HF_HUB_OFFLINE=1``.

The plan is data: :data:`ROLE_SUBFOLDERS` says which folders of its repo a role loads (one line per
role; a role not listed loads a transformers folder from the repo root), :data:`NOT_ON_HUB` says what
to do for roles whose weights are not on the hub. In each folder only configs, tokenizers and
weights are taken (the suffixes :func:`foleykit.hub.wanted_suffixes` names, the same ones the offline
lookup accepts): safetensors where the folder has them (PyTorch ``.bin`` only where it has none), no
Flax/TF/ONNX copies, no fp16/bf16 variants, no other folders (Karlo's repo also holds GBs of decoders
and super-resolution models that we never load).

Resuming: every file goes through ``huggingface_hub.hf_hub_download`` into the normal cache, and a
file already in the cache at the planned commit and size is not fetched again, so running the
command again after an interruption continues with the files still missing. Within one file,
huggingface_hub retries a dropped connection from where it stopped (an HTTP Range request); a file
cut off by a killed process starts again from its beginning, because huggingface_hub (since 1.18;
2.4 here) writes each attempt to a fresh temporary file and deletes it on failure
(huggingface/huggingface_hub#4228, #4196). A failed file is retried a few times before the command
stops, naming it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, ModelNotAvailableError
from .hub import wanted_suffixes
from .model_sets import ModelSet, resolve_model_set

__all__ = [
    "AUDIOLDM_CLAP_NOTE",
    "NOT_ON_HUB",
    "ROLE_SUBFOLDERS",
    "DownloadPlan",
    "DownloadReport",
    "PlannedFile",
    "RolePlan",
    "download_plan",
    "format_size",
    "plan_downloads",
    "select_files",
]

#: Role → the folders of its repo that our loaders read. A role not listed loads a transformers
#: model folder from the repo root (config, weights, tokenizer/processor files).
ROLE_SUBFOLDERS: dict[str, tuple[str, ...]] = {
    "audioldm": ("unet", "vae", "vocoder", "scheduler", "text_encoder", "tokenizer"),  # generator/pipeline.py
    "prior": ("text_encoder", "tokenizer", "prior", "prior_scheduler"),  # encoders/prior.py (Karlo)
}

#: The converted AudioLDM CLAP (both towers) is made locally from the original checkpoint.
AUDIOLDM_CLAP_NOTE = (
    "AudioLDM's own CLAP audio tower is not on the hub: make it from the original AudioLDM checkpoint "
    "(audioldm-s-full-v2.ckpt) with `foleykit models import-audioldm-clap CKPT -o DIR`"
)

#: Roles whose weights are not published on the hub, and what to do instead.
NOT_ON_HUB: dict[str, str] = {
    "clap": AUDIOLDM_CLAP_NOTE,
    "mapper": "no published V2A-Mapper weights: train one (`foleykit train mapper`) and pass --mapper DIR",
    "ss2a": "the released SS2A weights (ssv2a.pth, ssv2a.json, agg.pth) are on the authors' Google Drive: "
            "pass them with --ss2a",
}

#: Weight variants our loaders never read.
_VARIANT_MARKERS = (".fp16.", ".bf16.", ".fp32.", ".non_ema.", ".ema.")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class PlannedFile:
    """One file of a repo: its path in the repo and its size in bytes (None when the hub did not say)."""

    path: str
    size: int | None = None


@dataclass
class RolePlan:
    """What to fetch for one role: ``repo`` at ``revision`` (None = the default branch), which the
    listing resolved to ``commit``."""

    role: str
    repo: str
    revision: str | None
    commit: str | None
    folders: tuple[str, ...]
    files: list[PlannedFile]

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]


@dataclass
class DownloadPlan:
    roles: list[RolePlan]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (role, why)
    notes: list[str] = field(default_factory=list)

    @property
    def num_files(self) -> int:
        return sum(len(r.files) for r in self.roles)

    @property
    def size(self) -> int | None:
        sizes = [r.size for r in self.roles]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]

    def lines(self) -> list[str]:
        """The plan as text: one line per role (repo, folders, file count, size), then skips and notes."""
        out = []
        for r in self.roles:
            where = "root" if not r.folders else ", ".join(r.folders)
            rev = f"@{r.commit[:10]}" if r.commit else (f"@{r.revision}" if r.revision else "")
            out.append(f"{r.role:<12} {r.repo}{rev}  [{where}]  {len(r.files)} files, {format_size(r.size)}")
        out.append(f"{'total':<12} {self.num_files} files, {format_size(self.size)}")
        out += [f"{role:<12} nothing to fetch: {why}" for role, why in self.skipped]
        out += [f"note: {n}" for n in self.notes]
        return out


@dataclass
class DownloadReport:
    fetched: list[tuple[str, str]] = field(default_factory=list)  # (repo, path)
    present: list[tuple[str, str]] = field(default_factory=list)
    bytes_fetched: int = 0


def format_size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


# ---------------------------------------------------------------------- choosing files


def select_files(listing: Iterable[PlannedFile], folders: tuple[str, ...]) -> list[PlannedFile]:
    """The files of a repo listing that a role loading ``folders`` (() = the repo root) needs.

    Per folder: files directly in it with a wanted suffix, minus weight variants (fp16, …); PyTorch
    ``.bin`` weights only where the folder has no safetensors. Sorted by path."""
    by_folder: dict[str, list[PlannedFile]] = {}
    for f in listing:
        by_folder.setdefault(f.path.rpartition("/")[0], []).append(f)
    chosen: list[PlannedFile] = []
    for folder in folders or ("",):
        files = [f for f in by_folder.get(folder, []) if not any(m in f.path for m in _VARIANT_MARKERS)]
        has_safetensors = any(f.path.endswith(".safetensors") for f in files)
        suffixes = wanted_suffixes(with_bin=not has_safetensors)
        chosen += [f for f in files if f.path.endswith(suffixes)]
    return sorted(chosen, key=lambda f: f.path)


def _is_hub_id(ref: str) -> bool:
    return not ref.startswith((".", "~", "/")) and ref.count("/") == 1 and not Path(ref).expanduser().exists()


def _roles(ms: ModelSet) -> dict[str, str | None]:
    core = {k: v for k, v in ms.to_dict().items() if k not in ("name", "extra")}
    return {**core, **ms.extra}  # type: ignore[dict-item]


Lister = Callable[[str, str | None], tuple[str | None, list[PlannedFile]]]


def hub_listing(repo: str, revision: str | None) -> tuple[str | None, list[PlannedFile]]:
    """(commit, files with sizes) of a hub repo, from one ``model_info(files_metadata=True)`` call."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo, revision=revision, files_metadata=True)
    return info.sha, [PlannedFile(s.rfilename, s.size) for s in (info.siblings or [])]


def plan_downloads(
    models: str | os.PathLike | ModelSet | None = "default",
    *,
    roles: Iterable[str] | None = None,
    revisions: dict[str, str] | None = None,
    lister: Lister | None = None,
) -> DownloadPlan:
    """The files to fetch for every role of a model set (or only ``roles``).

    Local folders need nothing; roles in :data:`NOT_ON_HUB` without a hub id are skipped with what to do
    instead. ``lister(repo, revision) -> (commit, files)`` lists a repo (default: the hub API)."""
    ms = models if isinstance(models, ModelSet) else resolve_model_set(models)
    available = _roles(ms)
    wanted = list(available) if roles is None else list(roles)
    unknown = [r for r in wanted if r not in available]
    if unknown:
        raise InputError(f"model set {ms.name!r} has no role {', '.join(map(repr, unknown))}; "
                         f"its roles: {', '.join(available)}")
    if lister is None:  # the hub is needed only once a role has to be listed (tiny needs nothing)
        checked: list[bool] = []

        def lister(repo: str, revision: str | None) -> tuple[str | None, list[PlannedFile]]:
            if not checked:
                _require_hub()
                checked.append(True)
            return hub_listing(repo, revision)
    plan = DownloadPlan(roles=[])
    for role in wanted:
        ref = available[role]
        if ref is None or not _is_hub_id(str(ref)):
            if ref is not None and Path(str(ref)).expanduser().is_dir():
                plan.skipped.append((role, f"local folder {ref}"))
            else:
                why = NOT_ON_HUB.get(role, f"{ref!r} is neither a hub id nor a local folder")
                plan.skipped.append((role, why))
            continue
        folders = ROLE_SUBFOLDERS.get(role, ())
        revision = (revisions or {}).get(role)
        try:
            commit, listing = lister(str(ref), revision)
        except ModelNotAvailableError:
            raise
        except Exception as exc:  # missing repo, revision, network: one line
            raise ModelNotAvailableError(f"could not list the files of {ref} for the {role} role "
                                         f"({type(exc).__name__}: {exc})") from None
        files = select_files(listing, folders)
        if not files:
            raise ModelNotAvailableError(
                f"{ref} has none of the files the {role} role loads "
                f"(folders: {', '.join(folders) or 'root'})")
        missing = [d for d in folders if not any(f.path.startswith(d + "/") for f in files)]
        if missing:
            raise ModelNotAvailableError(
                f"{ref} lacks the folder(s) {', '.join(missing)} that the {role} role loads")
        plan.roles.append(RolePlan(role, str(ref), revision, commit, folders, files))
    clap = available.get("clap")
    clap_is_local = clap is not None and Path(str(clap)).expanduser().is_dir()
    if "clap" in wanted and not clap_is_local and all(role != "clap" for role, _ in plan.skipped):
        plan.notes.append(AUDIOLDM_CLAP_NOTE)
    return plan


def _require_hub() -> None:
    from huggingface_hub import constants

    from .hub import hub_reachable

    if constants.HF_HUB_OFFLINE:
        raise ModelNotAvailableError(
            "models download needs the hub, but HF_HUB_OFFLINE=1 is set; unset it for this command")
    if not hub_reachable():
        raise ModelNotAvailableError(
            f"the hub ({constants.ENDPOINT}) is unreachable; models download needs it")


# ---------------------------------------------------------------------- fetching


Downloader = Callable[[str, str, str | None], str]
IsCached = Callable[[str, str, str | None, int | None], bool]


def _hub_download(repo: str, path: str, revision: str | None) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo, path, revision=revision)


def _in_hub_cache(repo: str, path: str, commit: str | None, size: int | None) -> bool:
    """The file is in the HF cache at ``commit`` (and has the listed size)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, path, revision=commit)
    if not isinstance(found, str) or not os.path.isfile(found):
        return False
    return size is None or os.path.getsize(found) == size


def download_plan(
    plan: DownloadPlan,
    *,
    downloader: Downloader | None = None,
    is_cached: IsCached | None = None,
    report: Callable[[str], None] | None = None,
    attempts: int = 3,
    retry_wait_s: float = 2.0,
) -> DownloadReport:
    """Fetch every planned file that is not in the cache yet. A file that keeps failing after
    ``attempts`` tries stops the run with :class:`ModelNotAvailableError` naming it; the files
    fetched so far stay in the cache, so the next run continues from there."""
    if downloader is None:
        _require_hub()
    downloader = downloader or _hub_download
    is_cached = is_cached or _in_hub_cache
    say = report or (lambda _line: None)
    out = DownloadReport()
    total = plan.num_files
    k = 0
    for role in plan.roles:
        # Fetch by the requested ref (default branch = "main"), so the cache records it for offline use.
        ref = role.revision or "main"
        for f in role.files:
            k += 1
            label = f"[{k}/{total}] {role.role}: {role.repo}/{f.path} ({format_size(f.size)})"
            if is_cached(role.repo, f.path, role.commit, f.size):
                out.present.append((role.repo, f.path))
                say(f"{label} already in the cache")
                continue
            say(label)
            for attempt in range(1, attempts + 1):
                try:
                    downloader(role.repo, f.path, ref)
                    break
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # network, server, disk: retry, then stop naming the file
                    if attempt == attempts:
                        raise ModelNotAvailableError(
                            f"could not download {role.repo}/{f.path} after {attempts} attempts "
                            f"({type(exc).__name__}: {exc}); run the command again to continue: "
                            f"{len(out.fetched) + len(out.present)} of {total} files are in the cache"
                        ) from None
                    say(f"  attempt {attempt} failed ({type(exc).__name__}: {exc}); retrying")
                    time.sleep(retry_wait_s * attempt)
            out.fetched.append((role.repo, f.path))
            out.bytes_fetched += f.size or 0
    return out
