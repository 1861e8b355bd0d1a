"""Two CPU processes (torchrun, gloo on loopback): the same run file, stopped and resumed, matches an
uninterrupted run. Slow (four launches of two processes): FOLEYKIT_SLOW=1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file, save_file


@pytest.mark.slow
def test_two_process_run_resumes_exactly(tmp_path):
    import torch

    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    if not Path(torchrun).exists():
        pytest.skip("torchrun not found")
    g = torch.Generator().manual_seed(0)
    save_file({"clip": torch.randn(64, 16, generator=g), "clap": torch.randn(64, 12, generator=g)},
              str(tmp_path / "pairs.safetensors"))
    run = {"task": "manifold",
           "model": {"manifold_dim": 8, "projector_widths": [16, 16], "reconstructor_widths": [16], "dropout": 0.1},
           "data": {"train": str(tmp_path / "pairs.safetensors")},
           "trainer": {"epochs": 2, "batch_size": 8, "grad_accum_steps": 2, "seed": 1, "log_every_steps": 2,
                       "tensorboard": False, "cpu": True}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def launch(out, *extra, port):
        cmd = [torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
               "-m", "foleykit.cli", "train", "run", str(tmp_path / "run.yaml"), "--quiet",
               "--set", f"trainer.output_dir={out}", *extra]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    launch(tmp_path / "full", port=29561)
    launch(tmp_path / "split", "--set", "trainer.max_steps=3", port=29562)
    launch(tmp_path / "split", port=29563)
    assert json.loads((tmp_path / "full" / "run.json").read_text())["processes"] == 2
    ckpt = sorted((tmp_path / "split" / "checkpoints").iterdir())[-1]
    assert {p.name for p in ckpt.glob("generator_*.pt")} == {"generator_0.pt", "generator_1.pt"}
    a = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "split" / "final" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)

    def lines(p):
        return [{k: v for k, v in json.loads(x).items() if k != "samples_per_s"}
                for x in (p / "metrics.jsonl").read_text().splitlines()]

    assert lines(tmp_path / "split") == lines(tmp_path / "full")
