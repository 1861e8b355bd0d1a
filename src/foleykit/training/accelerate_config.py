"""Run files (YAML or JSON) for the accelerate trainer, the data they point at, and :func:`run_training`.

A run file::

    task: mapper                 # mapper | manifold | remixer | temporal | grounding
    model: {kind: diffusion_transformer}        # the module's config fields (dims read from the data)
    options: {val_sample_steps: 25}             # loss / task settings
    data:
      train: runs/vggsound-emb                  # an extraction folder, or a .safetensors/.pt/.npz file
      val: null                                 # optional; else trainer.val_fraction is held out
      keys: {clip: clip, clap: clap}            # batch key -> feature / tensor name
      in_memory: true                           # load whole features (false: memory-mapped per item)
      manifold: null                            # remixer: a trained manifold that computes missing codes
    trainer: {epochs: 100, batch_size: 448, optimizer: {lr: 1.1e-4}, ...}   # TrainerConfig fields
    models: null                                # model set (grounding: whose AudioLDM UNet)

``configs/`` holds the papers' settings. Launch on one machine with ``foleykit train run FILE`` or on
many GPUs / nodes with ``accelerate launch -m foleykit.cli train run FILE``.
Overrides: ``--set trainer.epochs=3 --set data.train=DIR`` (values parsed as YAML).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from .trainer import TensorDictDataset, Trainer, TrainerConfig, TrainResult

CONFIG_DIR_ENV = "FOLEYKIT_CONFIGS"


def _yaml():
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML comes with huggingface_hub
        return None
    return yaml


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML or JSON mapping from a file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"config file not found: {p}")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            yaml = _yaml()
            if yaml is None:
                raise InputError(f"{p}: reading YAML needs PyYAML (pip install pyyaml), or use JSON")
            data = yaml.safe_load(text)
    except (json.JSONDecodeError, Exception) as exc:  # yaml.YAMLError without importing yaml here
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'} ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected a mapping at the top level")
    return data


def find_config(name_or_path: str) -> Path:
    """A run file by path, or by name in ``configs/`` (``mapper_v2a`` → ``configs/mapper_v2a.yaml``)."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    roots = [Path(os.environ[CONFIG_DIR_ENV])] if os.environ.get(CONFIG_DIR_ENV) else []
    roots += [Path.cwd() / "configs", Path(__file__).resolve().parents[3] / "configs"]
    for root in roots:
        for suffix in ("", ".yaml", ".yml", ".json"):
            cand = root / f"{name_or_path}{suffix}"
            if cand.is_file():
                return cand
    raise InputError(f"config {name_or_path!r} not found (looked in {', '.join(str(r) for r in roots)})")


def set_values(config: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with ``{"a.b.c": value}`` assignments (paths as strings, tuples as lists,
    as a run file would hold them)."""
    out = copy.deepcopy(config)
    for key, value in values.items():
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        elif isinstance(value, tuple):
            value = list(value)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"setting {key}: {part} is not a mapping")
        node[parts[-1]] = value
    return out


def apply_overrides(config: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``a.b.c=value`` assignments (values parsed as YAML: numbers, lists, null)."""
    yaml = _yaml()
    values: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise InputError(f"override {item!r} is not key.path=value")
        key, raw = item.split("=", 1)
        values[key] = yaml.safe_load(raw) if yaml is not None else json.loads(raw)
    return set_values(config, values)


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------


def _load_tensor_file(p: Path, what: str = "training tensors") -> dict[str, torch.Tensor]:
    import numpy as np

    suffix = p.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(p))
        if suffix in (".pt", ".pth"):
            data = torch.load(p, map_location="cpu", weights_only=True)
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as npz:
                data = {k: torch.from_numpy(npz[k]) for k in npz.files}
        else:
            raise InputError(f"{p}: unsupported data format {suffix!r}; use an extraction folder, .safetensors, .pt or .npz")
    except InputError:
        raise
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise InputError(f"{p}: cannot read {what} ({type(exc).__name__}: {msg})") from None
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected a mapping of named tensors")
    return {k: torch.as_tensor(v) for k, v in data.items()}


def load_training_data(path: str | os.PathLike | Mapping[str, torch.Tensor], keys: Mapping[str, str], *,
                       in_memory: bool = True,
                       optional: Sequence[str] = (), what: str = "training tensors",
                       embeddings: Sequence[str] = (),
                       prepare: Callable[[Path, dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
                       ) -> tuple[torch.utils.data.Dataset, str, dict[str, tuple[int, ...]]]:
    """(dataset, fingerprint, per-item shapes) for an extraction folder, a tensors file, or a dict of
    tensors in memory (checked as a file's would be).

    ``keys`` maps batch keys to stored names (in a tensors file, a tensor named like the batch key
    stands in for a mapped name it lacks); keys in ``optional`` may be absent from the data.
    ``what`` names the data in error messages; ``prepare(path, tensors)`` may derive tensors of a
    file before the keys are looked up (the remixer's codes from a manifold). Keys in ``embeddings``
    hold one embedding per row: an all-zero row (no embedding) is refused.
    """
    from .extraction import INDEX_FILE, EmbeddingStore, StoreDataset

    if isinstance(path, Mapping):
        p, data = Path("<tensors>"), {k: torch.as_tensor(v) for k, v in path.items()}
    else:
        p, data = Path(path).expanduser(), None
    if data is None and p.is_dir():
        if not (p / INDEX_FILE).is_file():
            raise InputError(f"{p} is not an extraction folder (no {INDEX_FILE})")
        store = EmbeddingStore(p)
        present = {k: v for k, v in keys.items() if v in store.features or k not in optional}
        missing = [v for v in present.values() if v not in store.features]
        if missing:
            raise InputError(f"{p} has no feature(s) {', '.join(missing)} (has {', '.join(store.features)})")
        fp = f"{store.index['run_key']}:{len(store)}"
        shapes = {k: tuple(store.features[v]["shape"]) for k, v in present.items()}
        if in_memory:
            loaded = store.load(list(present.values()))
            return TensorDictDataset({k: loaded[v].float() for k, v in present.items()}), fp, shapes
        return StoreDataset(store, dict(present)), fp, shapes
    if data is None:
        if not p.is_file():
            raise InputError(f"training data not found: {p}")
        data = _load_tensor_file(p, what)
    if prepare is not None:
        data = prepare(p, data)
    # A tensors file may name its tensors by batch key ('clip') where the run file maps the key to an
    # extraction feature ('clip_mean'): the file's own name is used then.
    keys = {k: (k if v not in data and k in data else v) for k, v in keys.items()}
    present = {k: v for k, v in keys.items() if v in data or k not in optional}
    missing = [v for v in present.values() if v not in data]
    if missing:
        raise InputError(f"{p}: missing tensor {', '.join(repr(v) for v in missing)}; found {sorted(data)}")
    tensors = {}
    for k, v in present.items():
        t = data[v]
        if not isinstance(t, torch.Tensor) or t.ndim == 0:
            raise InputError(f"{p}: {v!r} is not a tensor with one row per example")
        if t.dtype == torch.bool or k == "padding_mask":
            tensors[k] = t.bool()
        else:
            if not torch.isfinite(t.float()).all():
                raise InputError(f"{p}: tensor {v!r} contains NaN or infinite values")
            if k in embeddings and t.ndim >= 2:
                zero = (t.float().flatten(1).norm(dim=1) == 0).nonzero()
                if len(zero):
                    raise InputError(f"{p}: {v!r} row {int(zero[0])} is all zeros (not an embedding)")
            tensors[k] = t.float()
    ds = TensorDictDataset(tensors)
    return ds, ds.fingerprint(), {k: tuple(t.shape[1:]) for k, t in tensors.items()}


DEFAULT_KEYS: dict[str, dict[str, str]] = {
    "mapper": {"clip": "clip", "clap": "clap"},
    "manifold": {"clip": "clip", "clap": "clap"},
    "remixer": {"codes": "codes", "clips": "clips", "target_clap": "target_clap", "padding_mask": "padding_mask"},
    "temporal": {"frame_claps": "frame_claps", "target_clap": "target_clap", "padding_mask": "padding_mask"},
    "grounding": {"latents": "latents", "text_emb": "text_emb", "patch_emb": "patch_emb"},
}
OPTIONAL_KEYS = ("padding_mask",)

#: The run file each task starts from (the papers' settings, in ``configs/``).
DEFAULT_RUN_FILES = {"mapper": "mapper_v2a", "manifold": "manifold_ss2a", "remixer": "remixer_ss2a",
                     "temporal": "temporal_ss2a", "grounding": "grounding_sto"}

#: Batch keys holding one embedding per row (an all-zero row is an error, not an embedding).
EMBEDDING_KEYS = {"mapper": ("clip", "clap"), "manifold": ("clip", "clap"), "remixer": ("target_clap",),
                  "temporal": ("target_clap",)}

#: How each task's data is named in error messages.
DATA_WHAT = {"mapper": "embedding pairs", "manifold": "embedding pairs", "remixer": "remixer scenes",
             "temporal": "video windows", "grounding": "grounding tensors"}

#: Per-item dimensions of each batch key (the leading N excluded), and keys that share a dimension.
_ITEM_SHAPES: dict[str, dict[str, str]] = {
    "mapper": {"clip": "D", "clap": "C"},
    "manifold": {"clip": "D", "clap": "C"},
    "remixer": {"codes": "MS", "clips": "MD", "target_clap": "C", "padding_mask": "M"},
    "temporal": {"frame_claps": "TC", "target_clap": "C", "padding_mask": "T"},
    "grounding": {"latents": "ZHW", "text_emb": "E", "patch_emb": "PD"},
}


def check_item_shapes(task: str, shapes: Mapping[str, tuple[int, ...]], source: Any) -> None:
    """Refuse data whose per-item shapes do not fit the task (rank, and dims shared between keys)."""
    spec = _ITEM_SHAPES.get(task, {})
    seen: dict[str, tuple[str, int]] = {}
    for key, dims in spec.items():
        if key not in shapes:
            continue
        shape = tuple(shapes[key])
        if len(shape) != len(dims):
            want = "[N, " + ", ".join(dims) + "]"
            raise InputError(f"{source}: {key!r} must have shape {want} for {task}, got [N, "
                             f"{', '.join(str(d) for d in shape)}]")
        for letter, size in zip(dims, shape):
            if letter in ("M", "T") and letter in seen and seen[letter][1] != size:
                other = seen[letter][0]
                raise InputError(f"{source}: {key!r} has {size} {'slots' if letter == 'M' else 'frames'} but "
                                 f"{other!r} has {seen[letter][1]}; they must match")
            seen.setdefault(letter, (key, size))
    if task == "temporal" and "frame_claps" in shapes and "target_clap" in shapes:
        if shapes["frame_claps"][-1:] != shapes["target_clap"][-1:]:
            raise InputError(f"{source}: frame_claps and target_clap must have the same CLAP size, got "
                             f"{shapes['frame_claps'][-1]} and {shapes['target_clap'][-1]}")


def compute_remixer_codes(scenes: str | os.PathLike, manifold: str | os.PathLike, clips: torch.Tensor,
                          padding: torch.Tensor | None, audio: torch.Tensor | None,
                          is_audio: torch.Tensor | None) -> torch.Tensor:
    """The Remixer's source codes [N, M, S] of scene slots, from a trained CMSS manifold folder.

    ``clips`` [N, M, C] (zero for audio and empty slots), ``padding`` [N, M] (True = empty slot),
    optional ``audio`` [N, M, 512] + ``is_audio`` [N, M] for slots that are audio clips.
    """
    from ..modules.cycle_mix import SourceSlots, manifold_codes, remixer_source_codes
    from ..modules.manifold import CMSSManifold

    _check_shape(scenes, "clips", clips, (None, None, None))
    n, m, clip_dim = clips.shape
    if padding is not None:
        _check_shape(scenes, "padding_mask", padding, (n, m))
    path = Path(manifold).expanduser()
    man = CMSSManifold.from_folder(path, what="manifold").eval()
    if man.config.clip_dim != clip_dim:
        raise InputError(f"manifold {path} takes {man.config.clip_dim}-d CLIP, {scenes} holds {clip_dim}-d")
    if (audio is None) != (is_audio is None):
        raise InputError(f"{scenes}: 'audio_claps' and 'is_audio' go together")
    if audio is not None:
        _check_shape(scenes, "audio_claps", audio, (n, m, man.config.clap_dim))
        _check_shape(scenes, "is_audio", is_audio, (n, m))
        audio, is_audio = audio.float(), is_audio.bool()
    mask = padding.bool() if padding is not None else torch.zeros(n, m, dtype=torch.bool)
    with torch.no_grad():
        return torch.cat([
            remixer_source_codes(man, manifold_codes(man, SourceSlots(
                clips[i:i + 256].float(), mask[i:i + 256], None if audio is None else audio[i:i + 256],
                None if is_audio is None else is_audio[i:i + 256])), "manifold")
            for i in range(0, n, 256)
        ])


def _check_shape(path: Any, name: str, t: torch.Tensor, shape: tuple[int | None, ...]) -> None:
    """``t`` must have ``len(shape)`` dims, matching every non-None entry; else one InputError line."""
    if t.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise InputError(f"{path}: {name!r} must have shape {want}, got {list(t.shape)}")


def _remixer_prepare(data_cfg: Mapping[str, Any], keys: Mapping[str, str]):
    """``prepare`` for remixer files: codes from ``data.manifold`` when the file has none."""
    manifold = data_cfg.get("manifold")

    def prepare(p: Path, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        codes_key = keys.get("codes", "codes")
        pad = tensors.get(keys.get("padding_mask", "padding_mask"))
        if isinstance(pad, torch.Tensor) and pad.ndim == 2 and pad.bool().all(dim=1).any():
            raise InputError(f"{p}: scene {int(pad.bool().all(dim=1).nonzero()[0])} has no source (all slots padded)")
        if codes_key in tensors:
            return tensors
        if not manifold:
            raise InputError(f"{p} has no {codes_key!r}; pass --manifold DIR (data.manifold in a run file), "
                             "a trained CMSS manifold, to compute them")
        names = {"clips": keys.get("clips", "clips"), "padding_mask": keys.get("padding_mask", "padding_mask")}
        if names["clips"] not in tensors:
            raise InputError(f"{p}: missing tensor {names['clips']!r}; found {sorted(tensors)}")
        out = dict(tensors)
        out[codes_key] = compute_remixer_codes(
            p, manifold, tensors[names["clips"]].float(),
            None if names["padding_mask"] not in tensors else tensors[names["padding_mask"]].bool(),
            tensors.get("audio_claps"), None if "is_audio" not in tensors else tensors["is_audio"].bool())
        return out

    return prepare


def _folder_digest(path: Any) -> str:
    """sha256 of a model folder's config.json + model.safetensors (what a derived input depends on)."""
    import hashlib

    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        f = Path(path).expanduser() / name
        if f.is_file():
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def _data_name(source: Any) -> str:
    return "<tensors>" if isinstance(source, Mapping) else str(source)


def run_training(config: Mapping[str, Any], *, progress: bool = True, resume: str | None = "auto",
                 overwrite: bool = False) -> TrainResult:
    """Train from a run-file mapping (see the module docstring). ``overwrite`` discards a previous
    run in the output folder; else a rerun continues from its newest checkpoint (``resume="auto"``)."""
    from .accelerate_tasks import TASK_NAMES, build_task

    known = {"task", "model", "options", "data", "trainer", "models", "description"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise InputError(f"unknown run-file section(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    task = config.get("task")
    if task not in TASK_NAMES:
        raise InputError(f"run file: task must be one of {', '.join(TASK_NAMES)}, got {task!r}")
    data = dict(config.get("data") or {})
    if data.get("train") is None or (not isinstance(data["train"], Mapping) and not data["train"]):
        raise InputError("run file: data.train (an extraction folder or a tensors file) is required")
    keys = {**DEFAULT_KEYS[task], **(data.get("keys") or {})}
    in_memory = bool(data.get("in_memory", True))
    load = dict(in_memory=in_memory, optional=OPTIONAL_KEYS, what=DATA_WHAT[task],
                embeddings=EMBEDDING_KEYS.get(task, ()),
                prepare=_remixer_prepare(data, keys) if task == "remixer" else None)
    from .provenance import check_provenance, check_training_data, read_provenance

    for part in ("train", "val"):  # embeddings from the encoders the module will meet, else one line
        if data.get(part) is not None and not isinstance(data[part], Mapping):  # tensors in memory: no record
            check_provenance(task, read_provenance(data[part]), data[part])  # CLIP role
            check_training_data(data[part], keys, config.get("models"))  # CLAP space
    train_ds, fp, shapes = load_training_data(data["train"], keys, **load)
    check_item_shapes(task, shapes, _data_name(data["train"]))
    if task == "remixer" and data.get("manifold"):
        fp = f"{fp}|manifold:{_folder_digest(data['manifold'])}"
    val_ds = None
    if data.get("val") is not None and (isinstance(data["val"], Mapping) or data["val"]):
        val_ds, vfp, vshapes = load_training_data(data["val"], keys, **load)
        check_item_shapes(task, vshapes, _data_name(data["val"]))
        fp = f"{fp}+{vfp}"
    # What run.json records: tensors given in memory by their fingerprint, not their values.
    recorded = dict(config, data={
        k: (f"<tensors {fp[:16]}>" if k in ("train", "val") and isinstance(v, Mapping) else v) for k, v in data.items()})
    trainer_cfg = TrainerConfig.from_dict(config.get("trainer") or {})
    factory = build_task(task, config.get("model") or {}, config.get("options") or {}, data_shapes=shapes,
                         models=config.get("models"))
    trainer = Trainer(factory, train_ds, trainer_cfg, val_data=val_ds, resume=resume, data_fingerprint=fp,
                      task_name=task, run_config=json.loads(json.dumps(recorded, default=str)), progress=progress,
                      overwrite=overwrite)
    return trainer.fit()
