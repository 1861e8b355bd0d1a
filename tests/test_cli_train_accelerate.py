"""The shipped `foleykit train <task>` commands are the accelerate trainer: checkpoints, exact resume,
validation, metrics.jsonl + TensorBoard, mixed precision, accumulation, refusals (through foleykit.cli.app)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from foleykit.cli import app
from foleykit.errors import InputError, OutputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(res):
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


def metric_lines(run):
    return [{k: v for k, v in json.loads(line).items() if k != "samples_per_s"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture()
def pairs(tmp_path):
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(30, 768, generator=g)
    clap = torch.nn.functional.normalize(clip[:, :512] + 0.1 * torch.randn(30, 512, generator=g), dim=-1)
    path = tmp_path / "pairs.safetensors"
    save_file({"clip": clip, "clap": clap}, str(path))
    return path


def manifold_args(pairs, run, *extra):
    return ["train", "manifold", pairs, "-o", run, "--manifold-dim", 8, "--widths", "16", "--epochs", 2,
            "--batch-size", 8, "--seed", 4, "--device", "cpu", "--set", "trainer.log_every_steps=1", "-q", *extra]


def test_train_manifold_checkpoints_logs_and_resumes_exactly(tmp_path, pairs):
    from foleykit.modules.manifold import CMSSManifold

    run, full = tmp_path / "run", tmp_path / "full"
    out = ok(invoke(*manifold_args(pairs, run, "--max-steps", 3)))
    assert f"stopped at step 3 (--max-steps); wrote {run / 'final'}" in out and "without --max-steps" in out
    assert (run / "checkpoints" / "step-00000003" / "trainer_state.json").is_file()
    CMSSManifold.from_pretrained(run)  # a run stopped by design exports a usable model
    assert [ln["step"] for ln in metric_lines(run)] == [1, 2, 3]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))

    out = ok(invoke(*manifold_args(pairs, run)))  # the same command, without the stop: resumes
    assert f"resumed from {run / 'checkpoints' / 'step-00000003'} (step 3)" in out
    assert f"wrote {run / 'final'}" in out
    ok(invoke(*manifold_args(pairs, full)))  # uninterrupted
    assert metric_lines(run) == metric_lines(full)  # same numbers, no duplicated or lost lines
    epochs = [ln for ln in metric_lines(run) if ln["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2] and all("val_loss" in e and "val_top1_in_batch" in e for e in epochs)
    a = CMSSManifold.from_pretrained(run)  # the run folder loads as the model (the teacher) ...
    b = CMSSManifold.from_pretrained(full / "final")
    for k, v in b.state_dict().items():
        torch.testing.assert_close(a.state_dict()[k], v, rtol=0, atol=1e-6)
    assert (run / "final" / "student" / "config.json").is_file()
    info = json.loads((run / "run.json").read_text())
    assert info["task"] == "manifold" and info["run_config"]["model"]["manifold_dim"] == 8
    assert info["trainer"]["cpu"] is True and info["trainer"]["seed"] == 4

    weights = (run / "model.safetensors").read_bytes()
    out = ok(invoke(*manifold_args(pairs, run)))  # finished: nothing to do
    assert "already trained: 2 epochs" in out and (run / "model.safetensors").read_bytes() == weights

    res = invoke(*manifold_args(pairs, run, "--lr", 3e-4))  # another run into the same folder
    assert isinstance(res.exception, InputError)
    msg = str(res.exception)
    assert "belongs to a different run (--lr (trainer.optimizer.lr) 0.0001 → 0.0003)" in msg, msg
    assert "--overwrite" in msg and "\n" not in msg
    assert (run / "model.safetensors").read_bytes() == weights

    out = ok(invoke(*manifold_args(pairs, run, "--lr", 3e-4, "--overwrite")))
    assert "resumed" not in out
    assert json.loads((run / "run.json").read_text())["trainer"]["optimizer"]["lr"] == pytest.approx(3e-4)
    assert (run / "model.safetensors").read_bytes() != weights
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000004", "step-00000008"]


def test_train_mapper_accumulation_bf16_and_validation_data(tmp_path):
    g = torch.Generator().manual_seed(1)
    for name, n in (("train", 24), ("val", 6)):
        clip = torch.randn(n, 32, generator=g)
        save_file({"clip": clip, "clap": torch.nn.functional.normalize(clip[:, :16], dim=-1)},
                  str(tmp_path / f"{name}.safetensors"))
    run = tmp_path / "mapper"
    out = ok(invoke("train", "mapper", "--data", tmp_path / "train.safetensors", "--val-data",
                    tmp_path / "val.safetensors", "-o", run, "--kind", "regression_mlp", "--width", 16,
                    "--epochs", 2, "--batch-size", 8, "--grad-accum", 2, "--mixed-precision", "bf16",
                    "--no-tensorboard", "--device", "cpu", "-q"))
    assert f"wrote {run / 'final'}" in out and "seed: 0" in out
    info = json.loads((run / "run.json").read_text())
    assert info["micro_batch"] == 4 and info["trainer"]["grad_accum_steps"] == 2
    assert info["autocast_dtype"] == "bfloat16" and info["val_items"] == 6 and info["train_items"] == 24
    assert not (run / "tensorboard").exists()
    epochs = [ln for ln in metric_lines(run) if ln["kind"] == "epoch"]
    assert len(epochs) == 2 and all("val_cosine" in e for e in epochs)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["kind"] == "regression_mlp" and cfg["clip_dim"] == 32 and cfg["clap_dim"] == 16


def test_train_refuses_clearly(tmp_path, pairs):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "model.safetensors").write_bytes(b"someone else's model")
    res = invoke(*manifold_args(pairs, foreign))
    assert isinstance(res.exception, OutputError) and "already holds a trained model; pass --overwrite" in str(res.exception)
    assert sorted(p.name for p in foreign.iterdir()) == ["model.safetensors"]
    res = invoke("train", "manifold", pairs, "--data", tmp_path / "other.safetensors", "-o", tmp_path / "x")
    assert isinstance(res.exception, InputError) and "training data given twice" in str(res.exception)
    res = invoke("train", "temporal", pairs, "-o", tmp_path / "t")
    assert "missing tensor 'frame_claps'" in str(res.exception) and not (tmp_path / "t").exists()
    bad = tmp_path / "bad.safetensors"
    save_file({"clip": torch.randn(4, 2, 768), "clap": torch.randn(4, 512)}, str(bad))
    res = invoke("train", "manifold", bad, "-o", tmp_path / "m")
    assert "'clip' must have shape [N, D] for manifold, got [N, 2, 768]" in str(res.exception)
    res = invoke("train", "mapper", pairs, "-o", tmp_path / "d", "--device", "tpu")
    assert "--device must be auto, cpu, cuda or mps" in str(res.exception)
    assert not any((tmp_path / d).exists() for d in ("x", "m", "d"))
