"""Benchmark protocols: manifest builders on small synthetic annotation files, front-end settings,
the runner under a benchmark, and the provenance of the published numbers."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from foleykit.errors import InputError
from foleykit.evaluation import METRICS, Protocol, evaluate
from foleykit.evaluation.annotations import read_captions
from foleykit.evaluation.audio_frontend import frontend_spec
from foleykit.evaluation.embedders import VGGishEmbedder
from foleykit.evaluation.protocols import (
    BENCHMARKS,
    build_manifest,
    resolve_protocol,
    write_captions_csv,
)
from foleykit.evaluation.published import PUBLISHED, Published, published_for
from foleykit.evaluation.report import render_markdown

SHARED = Path(__file__).resolve().parents[2] / "shared"


# ------------------------------------------------------------------------------------------------
# synthetic sources
# ------------------------------------------------------------------------------------------------


def _vggsound_csv(path: Path) -> Path:
    path.write_text(
        "aaaaaaaaaaa,30,dog barking,test\n"
        "bbbbbbbbbbb,0,playing piano,train\n"
        "ccccccccccc,10,rain,test\n"
        "ddddddddddd,120,cat meowing,test\n"
        "eeeeeeeeeee,5,car engine,train\n"
    )
    return path


def _vggss_json(path: Path) -> Path:
    box = [0.1, 0.1, 0.5, 0.5]
    entries = [
        {"file": "aaaaaaaaaaa_000030", "class": "dog barking", "bbox": [box]},
        {"file": "ccccccccccc_000010", "class": "rain", "bbox": [box, [0.5, 0.5, 0.9, 0.9]]},
        {"file": "fffffffffff_000001", "class": "people", "bbox": [box, box, [0.0, 0.2, 0.3, 0.9]]},
        # a sentinel coordinate makes the second box empty after clamping: multi -> single
        {"file": "ggggggggggg_000002", "class": "bird", "bbox": [box, [0.2, 0.2, -2.88e16, 0.4]]},
        # only an inverted box: in neither split
        {"file": "hhhhhhhhhhh_000003", "class": "cow", "bbox": [[0.8, 0.8, 0.2, 0.2]]},
        {"file": "iiiiiiiiiii_000004", "class": "horse", "bbox": [box]},
    ]
    path.write_text(json.dumps(entries))
    return path


def _audiocaps_csv(path: Path, *, bad: bool = False) -> Path:
    rows = ["audiocap_id,youtube_id,start_time,caption"]
    n = 1
    for ytid, start in (("xxxxxxxxxxx", 30), ("yyyyyyyyyyy", 0)):
        for k in range(5):
            rows.append(f"{n},{ytid},{start},caption {k} of {ytid}")
            n += 1
    rows.append(f"{n},zzzzzzzzzzz,10,only one caption")
    if bad:
        rows.append(f"{n + 1},zzzzzzzzzzz,10,")  # line 13: empty caption
    path.write_text("\n".join(rows) + "\n")
    return path


# ------------------------------------------------------------------------------------------------
# VGGSound
# ------------------------------------------------------------------------------------------------


def test_vggsound_test_keeps_the_test_split_only(tmp_path):
    m = build_manifest("vggsound-test", _vggsound_csv(tmp_path / "vggsound.csv"), audio_dir=tmp_path / "wav")
    assert m.ids == ["aaaaaaaaaaa_000030", "ccccccccccc_000010", "ddddddddddd_000120"]
    assert m[0].labels == ("dog barking",) and m[0].audio == str(tmp_path / "wav" / "aaaaaaaaaaa_000030.wav")
    assert any("the published vggsound-test set has 15446" in n for n in m.notes)
    # test.csv form gives the same ids
    (tmp_path / "test.csv").write_text("aaaaaaaaaaa_000030.mp4,dog barking\nccccccccccc_000010.mp4,rain\n")
    assert build_manifest("vggsound-test", tmp_path / "test.csv").ids == ["aaaaaaaaaaa_000030", "ccccccccccc_000010"]


def test_vggsound_bad_rows_are_named(tmp_path):
    p = _vggsound_csv(tmp_path / "vggsound.csv")
    p.write_text(p.read_text() + "fffffffffff,abc,dog,test\nggggggggggg,3,dog,valid\n")
    with pytest.raises(InputError) as err:
        build_manifest("vggsound-test", p)
    msg = str(err.value)
    assert "2 bad rows" in msg and "line 6: start second 'abc' is not a number" in msg and "line 7" in msg


def test_vggsound_i2a_removes_vggss_clips(tmp_path):
    csv_path, vggss = _vggsound_csv(tmp_path / "vggsound.csv"), _vggss_json(tmp_path / "vggss.json")
    m = build_manifest("vggsound-i2a", csv_path, exclude=vggss)
    assert m.ids == ["ddddddddddd_000120"]  # aaaa and cccc are VGG-SS clips
    assert any("2 VGG-SS clips removed (4 VGG-SS ids are not in this test split)" in n for n in m.notes)
    with pytest.raises(InputError, match="pass the VGG-SS json"):
        build_manifest("vggsound-i2a", csv_path)


# ------------------------------------------------------------------------------------------------
# VGG-SS
# ------------------------------------------------------------------------------------------------


def test_vggss_single_and_multi_split_by_usable_boxes(tmp_path):
    src = _vggss_json(tmp_path / "vggss.json")
    single = build_manifest("vggss-single", src)
    multi = build_manifest("vggss-multi", src)
    assert single.ids == ["aaaaaaaaaaa_000030", "ggggggggggg_000002", "iiiiiiiiiii_000004"]
    assert multi.ids == ["ccccccccccc_000010", "fffffffffff_000001"]
    assert [it.extra["sources"] for it in multi] == [2, 3]
    assert all(it.extra["sources"] == 1 and len(it.boxes) == 1 for it in single)
    assert not set(single.ids) & set(multi.ids)
    notes = " | ".join(single.notes)
    assert "1 entries have no usable box and are in neither split: hhhhhhhhhhh_000003" in notes
    assert "single-source only after dropping broken boxes: ggggggggggg_000002" in notes
    assert "the published vggss-single set has 455" in notes
    held_out = build_manifest("vggss-multi", src, ids=["fffffffffff_000001", "aaaaaaaaaaa_000030"])
    assert held_out.ids == ["fffffffffff_000001"]


def test_vggss_bad_entries_are_named(tmp_path):
    src = _vggss_json(tmp_path / "vggss.json")
    entries = json.loads(src.read_text()) + [{"file": "jjjjjjjjjjj_000005", "bbox": [[0, 0, 1, 1]]}]
    src.write_text(json.dumps(entries))
    with pytest.raises(InputError, match=r"entry 7 \(jjjjjjjjjjj_000005\): missing class"):
        build_manifest("vggss-single", src)
    src.write_text(json.dumps([{"file": "aaaaaaaaaaa_000030", "class": "dog", "bbox": [[0, 0, 0.5, 0.5]]}]))
    with pytest.raises(InputError, match="no multi-source entries"):
        build_manifest("vggss-multi", src)


# ------------------------------------------------------------------------------------------------
# ImageHear, AudioCaps
# ------------------------------------------------------------------------------------------------


def _images(folder: Path, names: list[str]) -> Path:
    folder.mkdir()
    for name in names:
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / name)
    return folder


def test_imagehear_classes_from_file_names(tmp_path):
    folder = _images(tmp_path / "ImageHear", ["dog1.jpg", "dog3.jpg", "cat2.png", "guitar8.jpg"])
    (folder / "README.txt").write_text("not an image")
    m = build_manifest("imagehear", folder)
    assert m.ids == ["cat2", "dog1", "dog3", "guitar8"]
    assert [it.labels for it in m] == [("cat",), ("dog",), ("dog",), ("guitar",)]
    assert m[1].image == str(folder / "dog1.jpg") and m[1].extra == {"index": 1}
    notes = " | ".join(m.notes)
    assert "4 items; the published imagehear set has 101" in notes
    assert "3 classes; ImageHear has 30" in notes and "1 non-image files ignored: README.txt" in notes
    assert BENCHMARKS["imagehear"].metrics == ("clip_score",) and not BENCHMARKS["imagehear"].reference_audio


def test_imagehear_bad_names_are_listed_together(tmp_path):
    folder = _images(tmp_path / "ih", ["dog1.jpg", "dog1.png", "1234.jpg", "cat1.jpg"])
    with pytest.raises(InputError) as err:
        build_manifest("imagehear", folder)
    msg = str(err.value)
    assert "2 bad image names" in msg
    assert "1234.jpg: name is not <class><index>" in msg and "dog1.png: same name as dog1.jpg" in msg
    with pytest.raises(InputError, match="ImageHear folder not found"):
        build_manifest("imagehear", tmp_path / "missing")


def test_audiocaps_test_groups_captions_and_writes_them(tmp_path):
    m = build_manifest("audiocaps-test", _audiocaps_csv(tmp_path / "test.csv"))
    assert m.ids == ["xxxxxxxxxxx_000030", "yyyyyyyyyyy_000000", "zzzzzzzzzzz_000010"]
    assert [len(it.captions) for it in m] == [5, 5, 1] and {it.split for it in m} == {"test"}
    assert any("1 clips do not have 5 captions: zzzzzzzzzzz_000010" in n for n in m.notes)
    out = write_captions_csv(m, tmp_path / "captions.csv")
    caps = read_captions(out)
    assert len(caps["xxxxxxxxxxx_000030"]) == 5 and caps["zzzzzzzzzzz_000010"] == ["only one caption"]
    with pytest.raises(InputError, match="line 13: caption is empty"):
        build_manifest("audiocaps-test", _audiocaps_csv(tmp_path / "bad.csv", bad=True))


# ------------------------------------------------------------------------------------------------
# front ends and metrics
# ------------------------------------------------------------------------------------------------


def test_each_protocol_carries_its_front_end_and_metrics():
    lengths = {name: b.frontend_settings()["seconds"] for name, b in BENCHMARKS.items()}
    assert lengths == {
        "vggsound-test": 10.0,
        "vggsound-test-mmaudio": 8.0,
        "vggsound-i2a": 10.24,
        "vggss-single": 10.24,
        "vggss-multi": 10.24,
        "imagehear": 10.24,
        "audiocaps-test": 10.0,
    }
    for bench in BENCHMARKS.values():
        settings = bench.frontend_settings()
        assert (settings["mono"], settings["dc_removal"], settings["resampler"]) == ("mean", True, "soxr-hq")
        assert set(bench.metrics) <= set(METRICS), bench.name
    single = BENCHMARKS["vggss-single"]
    assert frontend_spec(single.frontend, 16_000, "zero").num_samples == 163_840
    assert frontend_spec(BENCHMARKS["vggsound-test-mmaudio"].frontend, 16_000, "zero").pad == "none"
    assert resolve_protocol("vggss-multi") == (BENCHMARKS["vggss-multi"].frontend, BENCHMARKS["vggss-multi"])
    assert resolve_protocol("ssv2a")[1] is None
    with pytest.raises(InputError, match="choose a benchmark"):
        resolve_protocol("vggss")
    with pytest.raises(InputError, match="implements only"):
        Protocol("first-channel", 10.0, True, "x", mono="first")


def test_runner_under_a_benchmark_uses_its_metrics_and_numbers(tmp_path):
    rng = np.random.default_rng(1)
    for d in ("gen", "ref"):
        (tmp_path / d).mkdir()
        for name in ("a", "b", "c"):
            sf.write(tmp_path / d / f"{name}.wav", (0.1 * rng.standard_normal(32_000)).astype(np.float32), 16_000)
    short = replace(BENCHMARKS["vggss-single"], frontend=Protocol("test-2s", 2.0, True, "2 s, for tests"))
    report = evaluate(
        tmp_path / "gen", tmp_path / "ref", out_dir=tmp_path / "out", protocol=short,
        embedders={"vggish": VGGishEmbedder.tiny()}, device="cpu", plots=False,
    )
    assert list(report["metrics"]) == ["fad"]  # the protocol's metrics are the default
    assert set(report["skipped"]) == {"c_fad", "clip_score", "ssms"}
    assert report["benchmark"]["name"] == "vggss-single" and report["benchmark"]["frontend"]["seconds"] == 2.0
    assert {p["dataset"] for p in report["published"]} == {"vggss-single"}
    assert {p["value"] for p in report["published"]} == {2.815, 1.666}
    md = (tmp_path / "out" / "report.md").read_text()
    assert "SS2A (SS2A paper, Tab. 2, vggss-single)" in md and "2.815" in md and "0.841" not in md
    again = evaluate(
        tmp_path / "gen", tmp_path / "ref", out_dir=tmp_path / "out", protocol=short, metrics=["fad", "fd"],
        embedders={"vggish": VGGishEmbedder.tiny()}, device="cpu", plots=False,
    )
    assert again["skipped"]["fd"].startswith("not part of the vggss-single protocol")


# ------------------------------------------------------------------------------------------------
# provenance of the published numbers
# ------------------------------------------------------------------------------------------------

#: How each method is named in the table it was read from.
_ALIASES = {
    "V2A-Mapper": ("V2A-Mapper", "Ours"),
    "Sounding-that-Object": ("Ours",),
    "Reference (ground-truth audio)": ("Reference",),
    "SS2A": ("SS2A",),
    "MMAudio-S-16k": ("S-16k",),
    "MMAudio-L-44k": ("L-44k",),
}


def _found(p: Published, text: str) -> bool:
    values = {f"{p.value:.3f}", f"{p.value:.2f}"}
    names = _ALIASES.get(p.method, (p.method,))
    return any(
        any(re.search(rf"(?<![\d.]){re.escape(v)}(?!\d)", line) for v in values) and any(n in line for n in names)
        for line in text.splitlines()
    )


def test_published_entries_are_well_formed():
    for p in PUBLISHED:
        assert p.metric in METRICS and p.dataset in BENCHMARKS, p
        assert p.checked_in, p
        if p.provenance == "paper":
            assert p.checked_in.startswith("shared/papers/"), p
        if p.provenance == "unverified":
            assert p.note, p  # says what is not confirmed


@pytest.mark.skipif(not (SHARED / "papers").is_dir(), reason="shared/papers is not beside the repository")
def test_published_numbers_are_in_their_sources():
    """Each 'paper' number is on a line of the paper's text with its method; each other one in our reference."""
    reference = (SHARED / "reference" / "metrics-and-data.md").read_text()
    for p in PUBLISHED:
        if p.provenance == "paper":
            text = (SHARED / p.checked_in.split(",")[0].removeprefix("shared/")).read_text()
            assert _found(p, text), f"{p.method} {p.metric} {p.value} not found in {p.checked_in}"
        else:
            assert _found(p, reference), f"{p.method} {p.metric} {p.value} not in metrics-and-data.md"


def test_report_marks_numbers_not_read_in_the_paper():
    published = published_for(["fd", "is"], dataset="vggsound-test-mmaudio")
    report = {
        "generated_dir": "/g", "reference_dir": "/r", "clips": 3, "seed": 2020,
        "protocol": {"name": "mmaudio", "note": "8 s"},
        "benchmark": BENCHMARKS["vggsound-test-mmaudio"].to_dict(),
        "metrics": {
            "fd": {"label": "FD", "value": 1.0, "lower_is_better": True},
            "is": {"label": "IS", "value": 2.0, "lower_is_better": False},
        },
        "published": [p.to_dict() for p in published],
        "skipped": {}, "files": {}, "embedders": {},
    }
    md = render_markdown(report)
    fd_row = next(line for line in md.splitlines() if line.startswith("| FD ↓"))
    is_row = next(line for line in md.splitlines() if line.startswith("| IS ↑"))
    assert "5.220 †" in fd_row and "(unverified)" not in fd_row
    assert "14.440 (unverified)" in is_row
    assert "unverified: MMAudio-S-16k is = 14.440" in md and "† from third-party copies" in md
    assert "the published set has 15221" in md
    clean = render_markdown(report | {"published": [p.to_dict() for p in published_for(["fd"], dataset="vggsound-test")]})
    assert "†" not in clean and "unverified" not in clean and "24.168" in clean
