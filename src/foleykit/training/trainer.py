"""One training loop for every learnable module, on 🤗 accelerate, with exact resume.

A module is trained through a :class:`TrainModule`: an ``nn.Module`` whose ``forward(batch,
generator)`` returns ``{"loss": tensor, "metrics": {name: tensor}}`` for a batch (a dict of
tensors). Putting the loss *inside* ``forward`` is what lets accelerate wrap it in DDP (gradients
are all-reduced only for work done in ``forward``) and in autocast. The task modules live in
:mod:`foleykit.training.accelerate_tasks` (mapper, manifold + mean teacher, remixer, temporal,
grounding).

What the :class:`Trainer` does:

* data order: a seeded permutation per epoch (a pure function of seed and epoch), padded and
  sharded across processes like ``DistributedSampler``, cut into micro-batches and groups of
  ``grad_accum_steps``. ``batch_size`` is the *global* batch per optimizer step (the papers' batch),
  so the same config means the same optimisation on 1 GPU or 64.
* mixed precision (``no`` / ``bf16`` / ``fp16`` with loss scaling) and gradient accumulation
  (no all-reduce on the non-final micro-batches), gradient clipping;
* checkpoints every ``checkpoint_every_steps`` and at each epoch end: accelerate's state (model,
  optimizer, scaler, per-process python/numpy/torch/cuda RNG states), the LR scheduler, each
  process's loss-noise generator and the loop position (epoch, micro-batch, step, running metric
  sums) — written to a temporary folder and renamed, so a killed run resumes from the last complete
  checkpoint *exactly*: the continued run computes the same numbers as an uninterrupted one;
* validation every epoch (sums all-reduced across processes, fixed noise so epochs compare);
* metrics as JSON lines (``metrics.jsonl``, trimmed back to the checkpoint on resume) and to
  TensorBoard when it is installed; the final weights via ``save_pretrained`` in ``final/``, and the
  exported module's ``config.json`` + ``model.safetensors`` also at the top of the run folder, so a
  finished run folder loads with ``from_pretrained`` like a model folder;
* a folder is never silently reused: a checkpoint of a different run (data, model, loss options,
  batch, optimizer, seed, processes) or a trained model without checkpoints is refused unless
  ``overwrite`` (which discards the previous run's files, and only those).

Multi-GPU / multi-node: the ``foleykit train ...`` commands under ``accelerate launch -m foleykit.cli train …``
— nothing in the loop changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError, OutputError

STATE_FILE = "trainer_state.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
FINAL_DIR = "final"
#: What a run writes at the top of its folder; ``overwrite`` removes exactly these.
RUN_ARTEFACTS = (CHECKPOINT_DIR, FINAL_DIR, f".tmp-{FINAL_DIR}", METRICS_FILE, "tensorboard", "run.json",
                 "config.json", "model.safetensors")
_MIX = 0x9E3779B97F4A7C15


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------


@dataclass
class OptimizerConfig:
    """AdamW (the three papers' optimiser)."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if not self.lr > 0:
            raise InputError(f"learning rate must be positive, got {self.lr}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise InputError(f"AdamW betas must be in [0, 1), got {self.betas}")
        if self.eps <= 0 or self.weight_decay < 0:
            raise InputError(f"eps must be > 0 and weight_decay >= 0, got {self.eps}, {self.weight_decay}")


@dataclass
class SchedulerConfig:
    """``constant`` (the papers state no schedule), ``cosine`` or ``linear`` decay, after a linear
    warm-up of ``warmup_steps``; decays to ``min_lr_ratio`` × lr."""

    name: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in ("constant", "cosine", "linear"):
            raise InputError(f"scheduler must be constant, cosine or linear, got {self.name!r}")
        if self.warmup_steps < 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise InputError("warmup_steps must be >= 0 and min_lr_ratio in [0, 1]")


@dataclass
class TrainerConfig:
    """Loop settings. ``batch_size`` is the global batch per optimizer step."""

    output_dir: str = "runs/train"
    epochs: int = 1
    batch_size: int = 64
    grad_accum_steps: int = 1
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    mixed_precision: str = "no"  # no | bf16 | fp16
    max_grad_norm: float | None = None
    seed: int = 0
    val_fraction: float = 0.1  # held out when no validation set is given
    drop_last: bool = False
    checkpoint_every_steps: int | None = None  # besides the one at each epoch end
    keep_checkpoints: int = 2
    log_every_steps: int = 10
    tensorboard: bool = True
    num_workers: int = 0
    max_steps: int | None = None  # stop (with a checkpoint) after this optimizer step
    cpu: bool = False  # force CPU even when an accelerator is present
    find_unused_parameters: bool = False
    handle_signals: bool = False  # SIGTERM/SIGINT: checkpoint at the next step, then stop

    def __post_init__(self) -> None:
        if isinstance(self.optimizer, Mapping):
            self.optimizer = OptimizerConfig(**self.optimizer)
        if isinstance(self.scheduler, Mapping):
            self.scheduler = SchedulerConfig(**self.scheduler)
        for name in ("epochs", "batch_size", "grad_accum_steps", "keep_checkpoints", "log_every_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise InputError(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise InputError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.checkpoint_every_steps is not None and self.checkpoint_every_steps < 1:
            raise InputError("checkpoint_every_steps must be positive (or None)")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError("max_steps must be positive (or None)")

    #: Settings a resumed run must share with the run it continues (else it is not the same run).
    RESUME_KEYS = ("batch_size", "grad_accum_steps", "optimizer", "scheduler", "mixed_precision",
                   "max_grad_norm", "seed", "val_fraction", "drop_last")

    def resume_fields(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in self.RESUME_KEYS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**dict(data))


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------


class TensorDictDataset(torch.utils.data.Dataset):
    """In-memory dict of equally long tensors; fetches whole batches at once (``__getitems__``)."""

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        if not tensors:
            raise InputError("training data has no tensors")
        lengths = {k: int(v.shape[0]) for k, v in tensors.items()}
        if len(set(lengths.values())) != 1:
            raise InputError(f"training tensors differ in length: {lengths}")
        self.tensors = dict(tensors)
        self.n = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}

    def __getitems__(self, indices: list[int]) -> dict[str, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {k: v[idx] for k, v in self.tensors.items()}

    def subset(self, indices: Tensor) -> TensorDictDataset:
        return TensorDictDataset({k: v[indices] for k, v in self.tensors.items()})

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for k in sorted(self.tensors):
            t = self.tensors[k].detach().cpu().contiguous()
            h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes())
        return h.hexdigest()


def collate_dicts(batch: Any) -> dict[str, Tensor]:
    """A dict batch (from ``__getitems__``) as is; a list of per-item dicts stacked."""
    if isinstance(batch, Mapping):
        return dict(batch)
    return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}


class _Subset(torch.utils.data.Dataset):
    def __init__(self, base: torch.utils.data.Dataset, indices: Tensor) -> None:
        self.base, self.indices = base, indices.tolist()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.base[self.indices[i]]


def split_dataset(dataset: torch.utils.data.Dataset, val_fraction: float, seed: int):
    """A seeded random (train, val) split; ``val`` is None when ``val_fraction`` is 0."""
    n = len(dataset)
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    if n - n_val < 1:
        raise InputError(f"{n} examples leave nothing to train on after holding out {n_val} for validation")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed % 2**63))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    if isinstance(dataset, TensorDictDataset):
        return dataset.subset(train_idx), (dataset.subset(val_idx) if n_val else None)
    return _Subset(dataset, train_idx), (_Subset(dataset, val_idx) if n_val else None)


@dataclass(frozen=True)
class EpochPlan:
    """This process's micro-batches for one epoch, grouped into optimizer steps."""

    groups: list[list[list[int]]]

    @property
    def steps(self) -> int:
        return len(self.groups)


def epoch_plan(n: int, *, epoch: int, seed: int, micro_batch: int, accum: int, rank: int, world: int,
               shuffle: bool = True, drop_last: bool = False) -> EpochPlan:
    """Indices for ``rank`` in ``epoch``: a permutation that depends only on (seed, epoch), padded
    (or cut, with ``drop_last``) to a multiple of ``world``, strided across ranks, cut into
    micro-batches and grouped ``accum`` at a time."""
    if shuffle:
        g = torch.Generator().manual_seed((seed + (epoch + 1) * _MIX) % 2**63)
        order = torch.randperm(n, generator=g).tolist()
    else:
        order = list(range(n))
    if world > 1:
        if drop_last:
            order = order[: n - n % world]
        else:
            pad = (-n) % world
            order = order + order[:pad]
    mine = order[rank::world]
    micro = [mine[i:i + micro_batch] for i in range(0, len(mine), micro_batch)]
    if drop_last and micro and len(micro[-1]) < micro_batch:
        micro = micro[:-1]
    return EpochPlan([micro[i:i + accum] for i in range(0, len(micro), accum)])


# ------------------------------------------------------------------------------------------------
# the module contract
# ------------------------------------------------------------------------------------------------


class TrainModule(nn.Module):
    """Base of the task modules. Subclasses set ``batch_keys`` and implement :meth:`forward`."""

    batch_keys: tuple[str, ...] = ()
    optional_keys: tuple[str, ...] = ()

    def forward(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Any]:
        raise NotImplementedError

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Per-batch *sums* of validation metrics (default: the loss terms) and ``count``."""
        out = self(batch, generator)
        b = batch_len(batch)
        sums = {"loss": out["loss"].detach().float() * b}
        for k, v in out.get("metrics", {}).items():
            sums[k] = torch.as_tensor(v).detach().float() * b
        sums["count"] = torch.tensor(float(b))
        return sums

    def on_train_start(self, total_steps: int) -> None:
        """Hook before the first step (schedules that depend on the run length)."""

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Hook after each optimizer step (the mean teacher's EMA)."""

    def extra_exports(self) -> dict[str, nn.Module]:
        """Further modules saved beside the exported one, in ``final/<name>/``."""
        return {}

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW groups: by default every trainable parameter with the configured weight decay."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "weight_decay": weight_decay}]

    def export(self) -> nn.Module:
        """What ``final/`` holds (``save_pretrained``)."""
        return self.model

    def check_batch_keys(self, keys: set[str]) -> None:
        missing = [k for k in self.batch_keys if k not in keys]
        if missing:
            raise InputError(
                f"{type(self).__name__} needs batch key(s) {', '.join(missing)}; the data has {', '.join(sorted(keys))}"
            )


def batch_len(batch: Mapping[str, Tensor]) -> int:
    return int(next(iter(batch.values())).shape[0])


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _lr_lambda(cfg: SchedulerConfig, total_steps: int) -> Callable[[int], float]:
    warm = cfg.warmup_steps

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if cfg.name == "constant":
            return 1.0
        span = max(1, total_steps - warm)
        t = min(1.0, (step - warm) / span)
        decay = 0.5 * (1 + math.cos(math.pi * t)) if cfg.name == "cosine" else 1.0 - t
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay

    return f


def _rng_state() -> dict[str, Any]:
    import random

    import numpy as np

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import random

    import numpy as np

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _GeneratorState:
    """A CPU generator whose state goes into checkpoints."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed % 2**63)

    def state_dict(self) -> dict[str, Tensor]:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.generator.set_state(state["state"])


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def _link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_json_durable(path: Path, obj: Any) -> None:
    from .extraction import write_durable

    write_durable(path, (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode())


#: How a run-identity setting is spelled on the command line, where it has an option.
_OPTION_NAMES = {"trainer.optimizer.lr": "--lr", "trainer.epochs": "--epochs", "trainer.batch_size": "--batch-size",
                 "trainer.grad_accum_steps": "--grad-accum", "trainer.seed": "--seed",
                 "trainer.mixed_precision": "--mixed-precision", "trainer.val_fraction": "--val-fraction",
                 "processes": "the number of processes", "data": "the training data"}


def _setting_changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``name old → new`` for every leaf setting that differs between two run identities."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += _setting_changes(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    if json.dumps(old, default=str, sort_keys=True) == json.dumps(new, default=str, sort_keys=True):
        return []
    key = prefix
    name = _OPTION_NAMES.get(key, key)
    if name != key:
        name = f"{name} ({key})"
    return [f"{name} {json.dumps(old, default=str)} → {json.dumps(new, default=str)}"]


def _float(x: Any) -> float:
    return float(x.detach().float().item()) if isinstance(x, Tensor) else float(x)


def _floats(d: Mapping[str, Any]) -> dict[str, float]:
    return {k: _float(v) for k, v in d.items()}


@dataclass
class _LoopState:
    epoch: int = 0
    groups_in_epoch: int = 0  # optimizer steps (groups of micro-batches) of this epoch already done
    global_step: int = 0
    samples: int = 0
    window: dict[str, float] = field(default_factory=dict)  # running sums since the last log line
    epoch_sums: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainResult:
    """``module`` is the trained TrainModule (unwrapped); ``model`` what it exports."""

    module: TrainModule
    history: list[dict[str, Any]]
    global_step: int
    epochs_done: int
    stopped_early: bool
    output_dir: Path
    final_dir: Path | None
    seed: int
    data_wait_s: float
    compute_s: float
    samples_per_s: float
    resumed_from: Path | None = None  # the checkpoint this run continued from
    start_step: int = 0  # the optimizer step it started at (== global_step: nothing left to do)
    autocast_dtype: str | None = None  # the dtype autocast ran the forward in (None: full precision)

    @property
    def model(self) -> nn.Module:
        return self.module.export()


# ------------------------------------------------------------------------------------------------
# the trainer
# ------------------------------------------------------------------------------------------------


class Trainer:
    """Train ``module`` on ``train_data`` (a dataset of dict items or a :class:`TensorDictDataset`).

    ``val_data`` None → ``config.val_fraction`` of ``train_data`` is held out (seeded split).
    ``resume``: ``"auto"`` continues from the newest checkpoint in ``output_dir`` if there is one,
    a path resumes from that checkpoint, None starts afresh (refusing a folder that holds checkpoints).
    ``overwrite`` discards a previous run in ``output_dir`` (its :data:`RUN_ARTEFACTS` only) and starts
    afresh; without it a folder holding a trained model but no checkpoint is refused.
    ``module_factory`` builds the module after seeding, so the initial weights depend on the seed
    only; pass a module instead when you built it yourself.
    """

    def __init__(
        self,
        module: TrainModule | Callable[[], TrainModule],
        train_data: torch.utils.data.Dataset,
        config: TrainerConfig,
        *,
        val_data: torch.utils.data.Dataset | None = None,
        resume: str | os.PathLike | None = "auto",
        data_fingerprint: str | None = None,
        task_name: str | None = None,
        run_config: Mapping[str, Any] | None = None,
        progress: bool = True,
        overwrite: bool = False,
    ) -> None:
        self.config = config
        self._module_arg = module
        self.resume = None if overwrite else resume
        self.overwrite = overwrite
        self.progress = progress
        self.task_name = task_name
        self.run_config = dict(run_config or {})
        if val_data is None and config.val_fraction > 0:
            train_data, val_data = split_dataset(train_data, config.val_fraction, config.seed)
        self.train_data, self.val_data = train_data, val_data
        if len(self.train_data) == 0:
            raise InputError("no training examples")
        if data_fingerprint is None and isinstance(train_data, TensorDictDataset):
            data_fingerprint = train_data.fingerprint()
        self.data_fingerprint = data_fingerprint
        self.output_dir = Path(config.output_dir).expanduser()
        self._stop_requested = False

    # ---- setup ----------------------------------------------------------------------------------

    def _accelerator(self):
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState, PartialState
        from accelerate.utils import DistributedDataParallelKwargs

        cfg = self.config
        if AcceleratorState._shared_state and PartialState().num_processes == 1:
            # A previous Trainer in this (single) process fixed the precision; start afresh.
            AcceleratorState._reset_state()
        handlers = [DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)]
        return Accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.cpu, kwargs_handlers=handlers,
                           gradient_accumulation_steps=1)

    def _micro_batch(self, world: int) -> int:
        cfg = self.config
        per = world * cfg.grad_accum_steps
        if cfg.batch_size % per:
            raise InputError(
                f"batch_size {cfg.batch_size} is not divisible by processes × grad_accum_steps = "
                f"{world} × {cfg.grad_accum_steps}"
            )
        return cfg.batch_size // per

    def _checkpoints(self) -> list[Path]:
        root = self.output_dir / CHECKPOINT_DIR
        if not root.is_dir():
            return []
        done = [p for p in root.glob("step-*") if (p / STATE_FILE).is_file()]
        return sorted(done, key=lambda p: p.name)

    def _identity(self, world: int) -> dict[str, Any]:
        return {"task": self.task_name, "trainer": self.config.resume_fields(), "data": self.data_fingerprint,
                "train_items": len(self.train_data), "val_items": len(self.val_data) if self.val_data else 0,
                "processes": world, "model": self.run_config.get("model"), "options": self.run_config.get("options")}

    def _check_identity(self, path: Path, world: int) -> dict[str, Any]:
        meta = json.loads((path / STATE_FILE).read_text())
        want = json.loads(json.dumps(self._identity(world), default=str))
        have = meta["identity"]
        if have != want:
            changed = _setting_changes(have, want)
            raise InputError(
                f"checkpoint {path} belongs to a different run ({'; '.join(changed)}); an exact resume "
                "needs the same data, model, loss options, batch, optimizer, seed and number of processes. "
                "Use a new output_dir, or pass --overwrite to start over."
            )
        return meta

    def _holds_model(self) -> bool:
        out = self.output_dir
        return (out / "model.safetensors").exists() or (out / FINAL_DIR).exists()

    def _discard_run(self) -> None:
        """Remove a previous run's files (and nothing else) from the output folder."""
        final = self.output_dir / FINAL_DIR
        published = [p.name for p in final.iterdir()] if final.is_dir() else []
        for name in (*published, *RUN_ARTEFACTS):
            _remove(self.output_dir / name)

    # ---- checkpoints ----------------------------------------------------------------------------

    def _save_checkpoint(self, acc, scheduler, gen: _GeneratorState, state: _LoopState) -> Path:
        root = self.output_dir / CHECKPOINT_DIR
        name = f"step-{state.global_step:08d}"
        final, tmp = root / name, root / f".tmp-{name}"
        if acc.is_main_process:
            root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
        acc.wait_for_everyone()
        try:
            acc.save_state(str(tmp))
            # accelerate saves RNG states too, but its loader cannot read them back under torch's
            # weights_only default (and says so only in a debug log): keep our own, per process.
            torch.save({"rng": _rng_state(), **gen.state_dict()}, tmp / f"generator_{acc.process_index}.pt")
            torch.save({"groups_in_epoch": state.groups_in_epoch}, tmp / f"position_{acc.process_index}.pt")
            acc.wait_for_everyone()
            if acc.is_main_process:
                torch.save(scheduler.state_dict(), tmp / "lr_scheduler.pt")
                _write_json_durable(tmp / STATE_FILE, {
                    "identity": self._identity(acc.num_processes),
                    "epoch": state.epoch,
                    "global_step": state.global_step,
                    "samples": state.samples,
                    "window": _floats(state.window),
                    "epoch_sums": _floats(state.epoch_sums),
                    "history": state.history,
                })
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
                for old in self._checkpoints()[:-self.config.keep_checkpoints]:
                    shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
            raise OutputError(f"could not write checkpoint {final}: {exc.strerror or exc}; earlier checkpoints are intact") from None
        acc.wait_for_everyone()
        return final

    def _load_checkpoint(self, path: Path, acc, scheduler, gen: _GeneratorState) -> _LoopState:
        meta = self._check_identity(path, acc.num_processes)
        acc.load_state(str(path))
        scheduler.load_state_dict(torch.load(path / "lr_scheduler.pt", weights_only=False))
        saved = torch.load(path / f"generator_{acc.process_index}.pt", weights_only=False)
        gen.load_state_dict(saved)
        _set_rng_state(saved["rng"])
        pos = torch.load(path / f"position_{acc.process_index}.pt", weights_only=False)
        return _LoopState(epoch=meta["epoch"], groups_in_epoch=pos["groups_in_epoch"],
                          global_step=meta["global_step"], samples=meta["samples"], window=meta["window"],
                          epoch_sums=meta["epoch_sums"], history=meta["history"])

    # ---- logging --------------------------------------------------------------------------------

    def _open_logs(self, acc, step: int):
        path = self.output_dir / METRICS_FILE
        writer = None
        if acc.is_main_process:
            keep: list[str] = []
            if step > 0 and path.exists():
                for line in path.read_text().splitlines():
                    with contextlib.suppress(json.JSONDecodeError):
                        if json.loads(line).get("step", 0) <= step:
                            keep.append(line)
            with open(path, "w") as f:
                f.write("".join(line + "\n" for line in keep))
            if self.config.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    writer = SummaryWriter(str(self.output_dir / "tensorboard"),
                                           purge_step=step + 1 if step else None)
                except ImportError:
                    writer = None
        return path, writer

    def _log(self, acc, path: Path, writer, record: dict[str, Any]) -> None:
        if not acc.is_main_process:
            return
        with open(path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if writer is not None:
            prefix = record.get("kind", "train")
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    writer.add_scalar(f"{prefix}/{k}", v, record["step"])

    # ---- validation -----------------------------------------------------------------------------

    def _validate(self, acc, module, micro: int) -> dict[str, float]:
        if self.val_data is None or len(self.val_data) == 0:
            return {}
        plan = epoch_plan(len(self.val_data), epoch=0, seed=self.config.seed, micro_batch=micro, accum=1,
                          rank=0, world=1, shuffle=False)
        # Batches strided over processes without padding, so every item counts exactly once.
        batches = [b for g in plan.groups for b in g]
        mine = batches[acc.process_index::acc.num_processes]
        gen = torch.Generator().manual_seed((self.config.seed + 12345) % 2**63)
        sums: dict[str, float] = {}
        module.eval()
        with torch.no_grad():
            for batch in (self._loader(self.val_data, mine) if mine else []):
                batch = {k: v.to(acc.device, non_blocking=True) for k, v in batch.items()}
                with acc.autocast():
                    part = acc.unwrap_model(module).validation_step(batch, gen)
                for k, v in part.items():
                    sums[k] = sums.get(k, 0.0) + _float(v)
        module.train()
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            total: dict[str, float] = {}
            for part in gather_object([sums]):
                for k, v in part.items():
                    total[k] = total.get(k, 0.0) + v
        else:
            total = sums
        count = total.pop("count", 0.0)
        return {f"val_{k}": v / count for k, v in sorted(total.items())} if count else {}

    def _loader(self, dataset, batches: list[list[int]]):
        pin = torch.cuda.is_available() and not self.config.cpu
        # A private generator: creating a DataLoader iterator otherwise draws from the global RNG,
        # which would shift dropout streams between an interrupted and an uninterrupted run.
        return torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=self.config.num_workers,
                                           collate_fn=collate_dicts, pin_memory=pin,
                                           generator=torch.Generator().manual_seed(self.config.seed % 2**63))

    # ---- the loop -------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        from accelerate.utils import set_seed
        from tqdm.auto import tqdm

        cfg = self.config
        acc = self._accelerator()
        world, rank = acc.num_processes, acc.process_index
        micro = self._micro_batch(world)

        checkpoints = self._checkpoints()
        resume_from: Path | None = None
        if self.resume == "auto":
            resume_from = checkpoints[-1] if checkpoints else None
        elif self.resume is not None:
            resume_from = Path(self.resume).expanduser()
            if not (resume_from / STATE_FILE).is_file():
                raise InputError(f"{resume_from} is not a complete checkpoint (no {STATE_FILE})")
        elif checkpoints and not self.overwrite:
            raise OutputError(f"{self.output_dir} already holds checkpoints; resume, use a new output_dir, "
                              "or pass --overwrite to start over")
        if resume_from is None and not self.overwrite and self._holds_model():
            raise OutputError(f"{self.output_dir} already holds a trained model; pass --overwrite to replace it, "
                              "or use a new output_dir")
        if resume_from is not None:
            self._check_identity(resume_from, world)  # before any work: a different run is refused at once

        set_seed(cfg.seed % 2**32)  # identical initial weights on every process
        module = self._module_arg() if callable(self._module_arg) and not isinstance(self._module_arg, nn.Module) else self._module_arg
        if not isinstance(module, TrainModule):
            raise TypeError("module must be a TrainModule (or a factory returning one)")
        probe = collate_dicts(self.train_data.__getitems__([0]) if hasattr(self.train_data, "__getitems__") else [self.train_data[0]])
        module.check_batch_keys(set(probe))
        set_seed((cfg.seed + 1_000_003 * rank) % 2**32)  # per-process dropout streams
        gen = _GeneratorState(cfg.seed * 7919 + rank)

        oc = cfg.optimizer
        optimizer = torch.optim.AdamW(module.parameter_groups(oc.weight_decay), lr=oc.lr, betas=oc.betas, eps=oc.eps)
        plan0 = epoch_plan(len(self.train_data), epoch=0, seed=cfg.seed, micro_batch=micro,
                           accum=cfg.grad_accum_steps, rank=rank, world=world, drop_last=cfg.drop_last)
        steps_per_epoch = plan0.steps
        if steps_per_epoch == 0:
            raise InputError(f"{len(self.train_data)} training examples make no batch of {micro} (drop_last); "
                             "pass a smaller --batch-size (trainer.batch_size)")
        total_steps = steps_per_epoch * cfg.epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg.scheduler, total_steps))
        module.on_train_start(total_steps)
        if acc.is_main_process:
            if self.overwrite:
                self._discard_run()
            self.output_dir.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        module, optimizer = acc.prepare(module, optimizer)
        autocast_dtype = self._autocast_dtype(acc)

        state = _LoopState()
        if resume_from is not None:
            state = self._load_checkpoint(resume_from, acc, scheduler, gen)
        start_step = state.global_step
        metrics_path, writer = self._open_logs(acc, state.global_step)
        if acc.is_main_process:
            _write_json_durable(self.output_dir / "run.json", {
                "task": self.task_name, "trainer": asdict(cfg), "run_config": self.run_config,
                "processes": world, "micro_batch": micro, "steps_per_epoch": steps_per_epoch,
                "train_items": len(self.train_data), "val_items": len(self.val_data) if self.val_data else 0,
                "data_fingerprint": self.data_fingerprint, "autocast_dtype": autocast_dtype,
                "resumed_from": str(resume_from) if resume_from is not None else None,
            })

        old_handlers = self._install_signals() if cfg.handle_signals else {}
        wait_s = compute_s = 0.0
        t_run = time.perf_counter()
        samples_at_start = state.samples
        stopped = False
        # --max-steps already reached (a rerun of a run that stopped there): nothing to train, export as is.
        reached = cfg.max_steps is not None and state.global_step >= cfg.max_steps
        unwrapped = acc.unwrap_model(module)
        bar = tqdm(total=total_steps, initial=state.global_step, desc=f"train {self.task_name or ''}".strip(),
                   unit="step", disable=not (self.progress and acc.is_local_main_process), dynamic_ncols=True)
        module.train()
        try:
            while state.epoch < cfg.epochs and not stopped and not reached:
                plan = epoch_plan(len(self.train_data), epoch=state.epoch, seed=cfg.seed, micro_batch=micro,
                                  accum=cfg.grad_accum_steps, rank=rank, world=world, drop_last=cfg.drop_last)
                groups = plan.groups[state.groups_in_epoch:]
                loader = iter(self._loader(self.train_data, [b for g in groups for b in g]))
                for group in groups:
                    t0 = time.perf_counter()
                    group_items = sum(len(b) for b in group)
                    for j, _ in enumerate(group):
                        tw = time.perf_counter()
                        batch = next(loader)
                        batch = {k: v.to(acc.device, non_blocking=True) for k, v in batch.items()}
                        wait_s += time.perf_counter() - tw
                        b = batch_len(batch)
                        sync = j == len(group) - 1
                        with contextlib.nullcontext() if sync else acc.no_sync(module):
                            out = module(batch, gen.generator)
                            loss = out["loss"]
                            acc.backward(loss * (b / group_items))
                        self._accumulate(state, out, b)
                    if cfg.max_grad_norm is not None:
                        acc.clip_grad_norm_(module.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    if not acc.optimizer_step_was_skipped:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    unwrapped.after_optimizer_step(state.global_step, total_steps)
                    if acc.device.type == "cuda":
                        torch.cuda.synchronize(acc.device)
                    compute_s += time.perf_counter() - t0
                    state.global_step += 1
                    state.groups_in_epoch += 1
                    state.samples += group_items * world
                    bar.update(1)
                    if state.global_step % cfg.log_every_steps == 0:
                        rec = self._flush_window(state, scheduler)
                        bar.set_postfix(loss=f"{rec['loss']:.4f}")
                        rec.update(samples_per_s=round((state.samples - samples_at_start) / max(1e-9, time.perf_counter() - t_run), 2))
                        self._log(acc, metrics_path, writer, rec)
                    reached = cfg.max_steps is not None and state.global_step >= cfg.max_steps
                    epoch_end = state.groups_in_epoch >= plan.steps  # that checkpoint follows validation
                    periodic = bool(cfg.checkpoint_every_steps) and state.global_step % cfg.checkpoint_every_steps == 0
                    if reached or self._stop_requested or (periodic and not epoch_end):
                        self._save_checkpoint(acc, scheduler, gen, state)
                    if reached or self._stop_requested:
                        stopped = True
                        break
                if stopped:
                    break
                # end of epoch: validation, history, checkpoint
                val = self._validate(acc, module, micro)
                epoch_rec = {"kind": "epoch", "epoch": state.epoch + 1, "step": state.global_step}
                sums = _floats(state.epoch_sums)
                if sums.get("count"):
                    c = sums["count"]
                    epoch_rec.update({f"train_{k}": v / c for k, v in sums.items() if k != "count"})
                epoch_rec.update(val)
                state.history.append(epoch_rec)
                self._log(acc, metrics_path, writer, epoch_rec)
                state.epoch += 1
                state.groups_in_epoch = 0
                state.epoch_sums = {}
                self._save_checkpoint(acc, scheduler, gen, state)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
            for sig, h in old_handlers.items():
                signal.signal(sig, h)

        final_dir = None
        # A run that stops by design (epochs done, --max-steps) exports a usable model; one stopped by a
        # signal leaves only its checkpoint (a rerun continues it).
        if (not stopped or (reached and not self._stop_requested)) and acc.is_main_process:
            final_dir = self._save_final(unwrapped, state)
        acc.wait_for_everyone()
        elapsed = time.perf_counter() - t_run
        return TrainResult(
            module=unwrapped, history=state.history, global_step=state.global_step, epochs_done=state.epoch,
            stopped_early=stopped, output_dir=self.output_dir, final_dir=final_dir, seed=cfg.seed,
            data_wait_s=wait_s, compute_s=compute_s,
            samples_per_s=(state.samples - samples_at_start) / elapsed if elapsed > 0 else 0.0,
            resumed_from=resume_from, start_step=start_step, autocast_dtype=autocast_dtype,
        )

    @staticmethod
    def _autocast_dtype(acc) -> str | None:
        """The dtype ``acc.autocast()`` (and the prepared model's forward) computes in, or None."""
        if acc.mixed_precision == "no" or not getattr(acc, "native_amp", False):
            return None
        with acc.autocast():
            dtype = torch.get_autocast_dtype(acc.device.type) if torch.is_autocast_enabled(acc.device.type) else None
        return str(dtype).removeprefix("torch.") if dtype is not None else None

    # ---- small pieces ---------------------------------------------------------------------------

    @staticmethod
    def _accumulate(state: _LoopState, out: Mapping[str, Any], b: int) -> None:
        """Running sums stay tensors on the device: no host sync per step (floats at log time)."""
        vals = {"loss": out["loss"].detach().float()}
        vals.update({k: torch.as_tensor(v).detach().float() for k, v in out.get("metrics", {}).items()})
        for sums in (state.window, state.epoch_sums):
            for k, v in vals.items():
                sums[k] = sums.get(k, 0.0) + v * b
            sums["count"] = sums.get("count", 0.0) + b

    @staticmethod
    def _flush_window(state: _LoopState, scheduler) -> dict[str, Any]:
        window = _floats(state.window)
        c = window.get("count", 0.0) or 1.0
        rec = {"kind": "train", "epoch": state.epoch + 1, "step": state.global_step,
               "lr": scheduler.get_last_lr()[0]}
        rec.update({k: v / c for k, v in window.items() if k != "count"})
        state.window = {}
        return rec

    def _save_final(self, module: TrainModule, state: _LoopState) -> Path:
        final = self.output_dir / FINAL_DIR
        tmp = self.output_dir / f".tmp-{FINAL_DIR}"
        if tmp.exists():
            shutil.rmtree(tmp)
        model = module.export()
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(tmp)
        else:
            tmp.mkdir(parents=True)
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        for name, extra in module.extra_exports().items():
            extra.save_pretrained(tmp / name)
        _write_json_durable(tmp / "training.json", {
            "task": self.task_name, "seed": self.config.seed, "global_step": state.global_step,
            "epochs": state.epoch, "history": state.history, "trainer": asdict(self.config),
            "run_config": self.run_config, "data_fingerprint": self.data_fingerprint,
        })
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        self._publish(final)
        return final

    def _publish(self, final: Path) -> None:
        """``final/``'s model files (and sub-folders: the manifold's student, grounding's UNet) also at
        the top of the run folder, as hard links where the file system allows, so the run folder
        itself loads as the model. Weights before config.json, so a reader never sees a new config
        with old weights."""
        own = {CHECKPOINT_DIR, FINAL_DIR, METRICS_FILE, "tensorboard", "run.json", "training.json"}
        for src in sorted(final.iterdir(), key=lambda p: (p.name == "config.json", p.name)):
            if src.name in own or src.name.startswith("."):
                continue
            dst, part = self.output_dir / src.name, self.output_dir / f".{src.name}.tmp"
            _remove(part)
            if src.is_dir():
                shutil.copytree(src, part, copy_function=_link_or_copy)
                _remove(dst)
            else:
                _link_or_copy(src, part)
            os.replace(part, dst)

    def _install_signals(self) -> dict[int, Any]:
        def request_stop(signum, frame):  # noqa: ARG001
            self._stop_requested = True

        old = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread
                old[sig] = signal.signal(sig, request_stop)
        return old


def train(
    module: TrainModule | Callable[[], TrainModule],
    train_data: torch.utils.data.Dataset | Mapping[str, Tensor],
    config: TrainerConfig,
    **kwargs: Any,
) -> TrainResult:
    """Shorthand: wrap a dict of tensors in a dataset, build a :class:`Trainer`, fit."""
    if isinstance(train_data, Mapping):
        train_data = TensorDictDataset(train_data)
    val = kwargs.pop("val_data", None)
    if isinstance(val, Mapping):
        val = TensorDictDataset(val)
    return Trainer(module, train_data, config, val_data=val, **kwargs).fit()


def with_overrides(config: TrainerConfig, **overrides: Any) -> TrainerConfig:
    """A copy of ``config`` with the non-None ``overrides`` applied."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


__all__ = [
    "OptimizerConfig",
    "SchedulerConfig",
    "TrainerConfig",
    "TensorDictDataset",
    "TrainModule",
    "Trainer",
    "TrainResult",
    "epoch_plan",
    "split_dataset",
    "train",
    "with_overrides",
]

