"""Single-source (VGGSS3-style) curation: decisions and reasons, detector calls, resume, reports."""

from __future__ import annotations

import json

import pytest

from foleykit.data import Manifest, ManifestItem, read_manifest, read_manifest_jsonl
from foleykit.data.synthetic import make_synthetic_dataset
from foleykit.errors import InputError
from foleykit.training.curation import CurationConfig, curate, decide, read_detections_jsonl


def item(i: str, label: str = "dog") -> ManifestItem:
    return ManifestItem(id=i, video=f"/nowhere/{i}.mp4", labels=(label,))


DOG, CAT, CAR = ("dog", 0.9), {"label": "cat", "score": 0.8}, ("car", 0.7)


def test_decide_reasons():
    cfg = CurationConfig(num_frames=4)
    kept = decide(item("a"), [[DOG], [DOG], [DOG, ("dog", 0.6)], [DOG]], cfg)
    assert kept.kept and kept.reason == "kept" and kept.source_class == "dog"
    assert kept.frames_with_source == [0, 1, 2, 3] and kept.classes == {"dog": 4}
    assert decide(item("b"), [[], [("dog", 0.3)], [], []], cfg).reason == "no_source"  # below min_score
    multi = decide(item("c"), [[DOG], [DOG, CAT], [DOG], [CAR]], cfg)
    assert multi.reason == "multiple_classes" and multi.detail == "dog (3/4 frames), car (1/4 frames), cat (1/4 frames)"
    unstable = decide(item("d"), [[DOG], [], [DOG], []], cfg)
    assert unstable.reason == "unstable" and unstable.frames_with_source == [0, 2]
    assert "dog seen in 2/4 frames, need 100%" in unstable.detail
    assert decide(item("d"), [[DOG], [], [DOG], []], CurationConfig(num_frames=4, min_frame_fraction=0.5)).kept
    crowd = decide(item("e"), [[DOG, DOG, DOG]] * 4, CurationConfig(num_frames=4, max_instances=2))
    assert crowd.reason == "too_many_instances"
    mapped = CurationConfig(num_frames=4, label_map={"dog": "dog barking", "cat": "cat meowing"})
    assert decide(item("f", "dog barking"), [[DOG]] * 4, mapped).kept
    mismatch = decide(item("g", "cat meowing"), [[DOG]] * 4, mapped)
    assert mismatch.reason == "label_mismatch" and "labelled cat meowing" in mismatch.detail
    ignoring = CurationConfig(num_frames=4, ignore_classes=("car",))
    assert decide(item("h"), [[DOG, CAR]] * 4, ignoring).kept
    assert decide(item("i"), [], cfg).reason == "unreadable"


def test_frames_sampled_per_config():
    cfg = CurationConfig(fps=4.0, max_frames=40)
    assert cfg.frames_for(10.0) == 40 and cfg.frames_for(3.0) == 12 and cfg.frames_for(0.1) == 1
    assert CurationConfig(num_frames=7).frames_for(10.0) == 7
    with pytest.raises(InputError):
        CurationConfig(fps=None)
    with pytest.raises(InputError):
        CurationConfig(min_frame_fraction=0)


def test_curate_with_a_detector_over_media(tmp_path):
    manifest = read_manifest(make_synthetic_dataset(tmp_path / "data", n_images=3, n_videos=2, broken=True))
    seen: dict[int, int] = {}

    def detector(frames):
        seen[len(frames)] = seen.get(len(frames), 0) + 1
        if len(frames) > 1:  # videos: a second class shows up in the last frame of one of them
            return [[DOG] for _ in frames[:-1]] + [[DOG, CAT] if frames[0].getpixel((0, 0))[0] > 100 else [DOG]]
        return [[DOG]]

    rep = curate(manifest, tmp_path / "cur", detector=detector, config=CurationConfig(fps=4.0), progress=False)
    assert seen.get(12, 0) == 3 and seen.get(1, 0) == 4  # 3 s videos at 4 fps (incl. the mute one); stills
    decisions = {d.id: d for d in rep.decisions}
    assert decisions["missing"].reason == "unreadable" and "not found" in decisions["missing"].detail
    assert decisions["corrupt"].reason == "unreadable"
    assert decisions["mute"].frames == 12  # no audio is fine for curation
    assert rep.total == 9 and rep.kept + sum(rep.dropped.values()) == 9
    report = json.loads((tmp_path / "cur" / "report.json").read_text())
    assert report["kept"] == rep.kept and report["dropped"]["unreadable"] == 2
    assert report["manifest"] == manifest.fingerprint
    curated = read_manifest_jsonl(tmp_path / "cur" / "curated.jsonl")
    assert curated.ids == [d.id for d in rep.decisions if d.kept]
    assert all(it.extra["source_class"] == "dog" for it in curated)
    assert rep.summary().startswith(f"kept {rep.kept} of 9 clips")


def test_curate_precomputed_resume_and_refusals(tmp_path):
    items = [item(f"c{i}") for i in range(6)]
    manifest = Manifest(items, source="mem")
    dets = {
        "c0": [[DOG]] * 3, "c1": [[DOG], [CAT], [DOG]], "c2": [[], [], []],
        "c3": [[CAT]] * 3, "c4": [[DOG], [], [DOG]], "c5": [[CAR]] * 3,
    }
    lines = "".join(json.dumps({"id": k, "frames": v}) + "\n" for k, v in dets.items())
    (tmp_path / "dets.jsonl").write_text(lines)
    loaded = read_detections_jsonl(tmp_path / "dets.jsonl")
    out = tmp_path / "cur"
    cfg = CurationConfig(num_frames=3, chunk_size=2)
    first = curate(manifest.select(ids=["c0", "c1"]), tmp_path / "other", detections=loaded, config=cfg, progress=False)
    assert first.kept == 1
    rep = curate(manifest, out, detections=loaded, config=cfg, progress=False)
    assert (rep.kept, rep.dropped["multiple_classes"], rep.dropped["no_source"], rep.dropped["unstable"]) == (3, 1, 1, 1)
    assert [d.id for d in rep.decisions if d.kept] == ["c0", "c3", "c5"]

    # A killed run: the decisions file ends in a torn line. Rerunning keeps every decision once.
    text = (out / "decisions.jsonl").read_text().splitlines()
    (out / "decisions.jsonl").write_text("\n".join(text[:3]) + "\n" + text[3][: len(text[3]) // 2])
    calls = []

    class Counting(dict):
        def __getitem__(self, key):
            calls.append(key)
            return super().__getitem__(key)

    again = curate(manifest, out, detections=Counting(loaded), config=cfg, progress=False)
    assert sorted(set(calls)) == ["c3", "c4", "c5"]  # only the undecided clips are looked at again
    assert [d.to_dict() for d in again.decisions] == [d.to_dict() for d in rep.decisions]
    assert len((out / "decisions.jsonl").read_text().splitlines()) == 6

    with pytest.raises(InputError, match="curation of another manifest"):
        curate(manifest.select(ids=["c0"]), out, detections=loaded, config=cfg, progress=False)
    with pytest.raises(InputError, match="made with other settings"):
        curate(manifest, out, detections=loaded, config=CurationConfig(num_frames=3, min_score=0.1), progress=False)
    with pytest.raises(InputError, match="exactly one of detector"):
        curate(manifest, out, config=cfg, progress=False)
    (tmp_path / "bad.jsonl").write_text('{"id": "x", "frames": [[{"label": "dog"}]]}\n{"id": "y"}\n')
    with pytest.raises(InputError, match="line 2"):
        read_detections_jsonl(tmp_path / "bad.jsonl")
