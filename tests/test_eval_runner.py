"""The evaluate runner end to end on tiny random embedders and a handful of synthetic wavs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from foleykit.errors import InputError
from foleykit.evaluation import DEFAULT_METRICS, Protocol, evaluate
from foleykit.evaluation.embedders import PannsEmbedder, VGGishEmbedder

SHORT = Protocol("test-2s", 2.0, True, "2 s clips, for tests")
NAMES = ["bird", "car", "dog", "rain"]


def _tone(freq: float, sr: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture()
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    gen, ref, img = tmp_path / "gen", tmp_path / "ref", tmp_path / "images"
    for d in (gen, ref, img):
        d.mkdir()
    for i, name in enumerate(NAMES):
        sf.write(gen / f"{name}.wav", _tone(300 + 100 * i, 16_000, 2.0, rng), 16_000)
        stereo = np.stack([_tone(320 + 90 * i, 22_050, 2.0, rng)] * 2, axis=1)
        sf.write(ref / f"{name}.flac", stereo, 22_050)
        Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(img / f"{name}.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img / "dog_1.png")  # a second source crop of dog
    (tmp_path / "captions.csv").write_text(
        "name,caption\n" + "".join(f"{n}.wav,the sound of a {n}\n" for n in NAMES)
    )
    (tmp_path / "labels.csv").write_text(
        "name,labels\n" + "".join(f'{n},"{i}; {i + 10}"\n' for i, n in enumerate(NAMES))
    )
    return tmp_path


def test_end_to_end_on_tiny_embedders(dataset, tiny_models_dir):
    out = dataset / "out"
    report = evaluate(
        dataset / "gen",
        dataset / "ref",
        out_dir=out,
        images_dir=dataset / "images",
        captions_csv=dataset / "captions.csv",
        labels_csv=dataset / "labels.csv",
        embedders="tiny",
        model_set=tiny_models_dir,
        protocol=SHORT,
        device="cpu",
        cache_dir=dataset / "cache",
        is_splits=2,
    )
    assert report["skipped"] == {}
    assert list(report["metrics"]) == list(DEFAULT_METRICS)
    for res in report["metrics"].values():
        assert np.isfinite(res["value"])
    fad = report["metrics"]["fad"]
    assert (fad["n_a"], fad["n_b"], fad["dim"]) == (
        8,
        8,
        16,
    )  # 4 clips x two 0.96 s frames, pooled as samples
    assert report["metrics"]["fd"]["n_a"] == 4
    cs = report["metrics"]["clip_score"]
    assert cs["value"] == pytest.approx(100 * cs["raw"]) and "reference_value" in cs
    assert report["files"]["mixed_sample_rates"]  # 16 kHz generated vs 22.05 kHz reference is flagged
    # one forward pass per file and embedder: panns serves fd and the tagger metrics
    assert report["embedders"]["tagger"]["id"] == report["embedders"]["panns"]["id"]
    n_files, audio_embedders = 8, 4  # panns, vggish, clap, wav2clip
    # + file checks + 5 images + one embedding per distinct caption (4 clips, 4 captions)
    assert report["cache"]["misses"] == n_files * (1 + audio_embedders) + 5 + len(NAMES)

    saved = json.loads((out / "report.json").read_text())
    assert saved["metrics"]["fd"]["value"] == pytest.approx(report["metrics"]["fd"]["value"])
    assert saved["published"] and saved["seed"] == 2020
    md = (out / "report.md").read_text()
    assert "| FD (PANNs CNN14, 2048-d) ↓ |" in md and "V2A-Mapper (V2A-Mapper paper, vggsound-test)" in md and "24.168" in md
    assert (out / "plots" / "metrics.png").is_file() and (out / "plots" / "pca_panns.png").is_file()

    again = evaluate(
        dataset / "gen",
        dataset / "ref",
        out_dir=out,
        metrics=["fd", "kl_softmax"],
        embedders="tiny",
        model_set=tiny_models_dir,
        protocol=SHORT,
        device="cpu",
        cache_dir=dataset / "cache",
        plots=False,
    )
    assert again["cache"]["misses"] == 0  # a later run reuses every embedding
    assert again["metrics"]["fd"]["value"] == pytest.approx(report["metrics"]["fd"]["value"])

    # Captions are cached on disk too: a CLAP-score rerun embeds no text and matches the first run.
    texts = evaluate(
        dataset / "gen", dataset / "ref", out_dir=dataset / "captions-again", metrics=["clap_score"],
        captions_csv=dataset / "captions.csv", embedders="tiny", model_set=tiny_models_dir, protocol=SHORT,
        device="cpu", cache_dir=dataset / "cache", plots=False,
    )
    assert texts["cache"]["misses"] == 0 and texts["cache"]["hits"] >= len(NAMES)
    assert texts["metrics"]["clap_score"]["value"] == pytest.approx(report["metrics"]["clap_score"]["value"])


def test_missing_embedders_and_inputs_are_skipped_with_reasons(dataset):
    report = evaluate(
        dataset / "gen",
        dataset / "ref",
        out_dir=dataset / "out",
        metrics=["fd", "fad", "is", "clip_score"],
        embedders={"panns": PannsEmbedder.tiny()},
        protocol=SHORT,
        device="cpu",
        seed=None,
        plots=False,
    )
    assert set(report["metrics"]) == {"fd"}
    assert "no vggish checkpoint given" in report["skipped"]["fad"]
    assert report["skipped"]["clip_score"] == "needs images_dir"
    assert "needs at least 10 clips" in report["skipped"]["is"]  # 4 clips, 10 splits
    assert isinstance(report["seed"], int)
    assert "## Skipped" in (dataset / "out" / "report.md").read_text()


def test_unmatched_file_names_are_listed(dataset):
    sf.write(dataset / "gen" / "only_generated.wav", np.zeros(16_000, np.float32), 16_000)
    sf.write(dataset / "ref" / "only_reference.wav", np.zeros(16_000, np.float32), 16_000)
    with pytest.raises(InputError) as err:
        evaluate(
            dataset / "gen",
            dataset / "ref",
            out_dir=dataset / "out",
            metrics=["fd"],
            embedders={"panns": PannsEmbedder.tiny()},
            protocol=SHORT,
            device="cpu",
        )
    assert "only_generated" in str(err.value) and "only_reference" in str(err.value)


def test_bad_and_silent_files_are_reported_per_file(dataset):
    sf.write(dataset / "gen" / "car.wav", np.zeros(32_000, np.float32), 16_000)
    bad = np.full(32_000, 0.1, np.float32)
    bad[5] = np.nan
    sf.write(dataset / "gen" / "dog.wav", bad, 16_000, subtype="FLOAT")
    kwargs = {
        "out_dir": dataset / "out",
        "metrics": ["fad"],
        "embedders": {"vggish": VGGishEmbedder.tiny()},
        "protocol": SHORT,
        "device": "cpu",
        "plots": False,
    }
    with pytest.raises(InputError, match=r"1 audio files cannot be evaluated: .*dog\.wav contains NaN"):
        evaluate(dataset / "gen", dataset / "ref", **kwargs)
    sf.write(dataset / "gen" / "dog.wav", np.full(32_000, 0.1, np.float32), 16_000)
    report = evaluate(dataset / "gen", dataset / "ref", **kwargs)
    assert report["files"]["silent"] == ["generated/car.wav"]


def test_without_reference_only_unpaired_metrics_run(dataset):
    report = evaluate(
        dataset / "gen",
        None,
        out_dir=dataset / "out",
        metrics=["fd", "acc"],
        labels_csv=dataset / "labels.csv",
        embedders={"panns": PannsEmbedder.tiny()},
        protocol=SHORT,
        device="cpu",
        plots=False,
    )
    assert report["skipped"] == {"fd": "needs a reference directory"}
    assert report["metrics"]["acc"]["n"] == 4 and "reference_value" not in report["metrics"]["acc"]
