"""evaluate: reference audio from videos, a stand-in banner, asked-for embedders that cannot load are errors,
and a run where no metric could be computed fails (nothing written)."""

from __future__ import annotations

import json

import pytest

from foleykit.data.synthetic import write_tone, write_video
from foleykit.errors import InputError
from foleykit.evaluation.audio_frontend import Protocol
from foleykit.evaluation.runner import evaluate

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SHORT = Protocol("test-2s", 2.0, True, "2 s clips, for tests")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalchk")
    (root / "gen").mkdir()
    (root / "ref").mkdir()
    for i in range(3):
        write_tone(root / "gen" / f"c{i}.wav", i, seconds=2.0)
        write_video(root / "ref" / f"c{i}.mp4", i + 5, seconds=2.0)  # the reference is the video's soundtrack
    return root


def test_video_references_and_the_stand_in_banner(dirs, tiny_models_dir):
    out = dirs / "out"
    report = evaluate(dirs / "gen", dirs / "ref", out_dir=out, metrics=["fd"], embedders="tiny",
                      model_set=tiny_models_dir, protocol=SHORT, device="cpu", plots=False)
    assert report["clips"] == 3 and "fd" in report["metrics"]
    assert report["stand_in_embedders"] == ["panns"]
    assert "random weights (panns)" in json.loads((out / "report.json").read_text())["banner"]
    assert "measure nothing" in (out / "report.md").read_text().split("- generated")[0]


def test_an_asked_for_embedder_that_cannot_load_is_an_error(dirs, tmp_path):
    with pytest.raises(InputError, match=r"embedder panns \(.*missing\.pth\)"):
        evaluate(dirs / "gen", dirs / "ref", out_dir=tmp_path / "o", metrics=["fd"],
                 embedders={"panns": str(tmp_path / "missing.pth")}, protocol=SHORT, device="cpu", plots=False)
    assert not (tmp_path / "o").exists()


def test_no_metric_computed_is_an_error(dirs, tmp_path):
    with pytest.raises(InputError, match="no metric could be computed .*fd: no panns embedder"):
        evaluate(dirs / "gen", dirs / "ref", out_dir=tmp_path / "o", metrics=["fd"], embedders="default",
                 protocol=SHORT, device="cpu", plots=False)
    assert not (tmp_path / "o" / "report.json").exists()
