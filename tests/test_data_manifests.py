"""Manifests: the public formats, validation messages that name the bad rows, fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foleykit.data import (
    Manifest,
    ManifestItem,
    read_audiocaps_csv,
    read_generic_csv,
    read_manifest,
    read_manifest_jsonl,
    read_vggsound_csv,
    read_vggss_json,
)
from foleykit.data.manifests import clamp_box
from foleykit.errors import InputError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- VGGSound ------------------------------------------------------------------------------------


def test_vggsound_full_csv(tmp_path):
    csv = write(tmp_path / "vggsound.csv", (
        "---g-f_I2yQ,1,people marching,test\n"
        "--0PQM4-hqg,30,waterfall burbling,train\n"
        '-0BIyqJj9ZU,30,"dog barking, howling",train\n'
    ))
    m = read_vggsound_csv(csv, video_dir=tmp_path / "vids")
    assert len(m) == 3 and m.format == "vggsound"
    assert m.ids == ["---g-f_I2yQ_000001", "--0PQM4-hqg_000030", "-0BIyqJj9ZU_000030"]
    third = m[2]
    assert third.labels == ("dog barking, howling",) and third.split == "train"
    assert third.video == str(tmp_path / "vids" / "-0BIyqJj9ZU_000030.mp4")
    assert third.audio is None and third.start_s is None  # trimmed 10-s clips: whole file
    assert third.extra == {"youtube_id": "-0BIyqJj9ZU", "youtube_start_s": 30}
    assert read_vggsound_csv(csv, split="train").ids == m.ids[1:]

    untrimmed = read_vggsound_csv(csv, video_dir=tmp_path, video_pattern="{ytid}.mp4", trimmed=False)
    assert (untrimmed[1].start_s, untrimmed[1].end_s) == (30.0, 40.0)
    assert untrimmed[1].video.endswith("--0PQM4-hqg.mp4")


def test_vggsound_test_list_format(tmp_path):
    csv = write(tmp_path / "test.csv", "-0BIyqJj9ZU_000030.mp4,dog barking\nabc_DEF-123_000004.mp4,rain\n")
    m = read_vggsound_csv(csv)
    assert m.ids == ["-0BIyqJj9ZU_000030", "abc_DEF-123_000004"]  # ids with '_' split at the last one
    assert all(it.split == "test" for it in m) and m[1].extra["youtube_id"] == "abc_DEF-123"


def test_vggsound_errors_name_every_bad_line(tmp_path):
    csv = write(tmp_path / "bad.csv", (
        "aaaaaaaaaaa,1,dog,train\n"
        "bbbbbbbbbbb,x,dog,train\n"      # line 2: start not a number
        "ccccccccccc,3,,train\n"         # line 3: empty label
        "ddddddddddd,4,cat,validation\n"  # line 4: bad split
        "ee ee,5,cat,train\n"            # line 5: bad id
        "fff,6,cat\n"                    # line 6: 3 columns
    ))
    with pytest.raises(InputError) as err:
        read_vggsound_csv(csv)
    msg = str(err.value)
    assert "bad.csv: 5 bad rows" in msg
    for needle in ("line 2: start second 'x'", "line 3: label is empty", "line 4: split 'validation'",
                   "line 5: youtube id 'ee ee'", "line 6: expected 4 columns"):
        assert needle in msg
    assert "line 1" not in msg and "\n" not in msg


def test_vggsound_duplicate_clip_names_both_lines(tmp_path):
    csv = write(tmp_path / "dup.csv", "aaaaaaaaaaa,1,dog,train\nbbbbbbbbbbb,2,cat,train\naaaaaaaaaaa,1,dog,test\n")
    with pytest.raises(InputError, match=r"line 3: duplicate id 'aaaaaaaaaaa_000001' \(first at line 1\)"):
        read_vggsound_csv(csv)


# --- VGG-SS --------------------------------------------------------------------------------------


def test_clamp_box_rules():
    assert clamp_box([0.1, 0.2, 0.5, 0.6]) == ((0.1, 0.2, 0.5, 0.6), None)
    box, note = clamp_box([0.1, -2.88e16, 0.5, 0.6])  # the dataset's sentinel
    assert box == (0.1, 0.0, 0.5, 0.6) and note == "clamped to [0, 1]"
    assert clamp_box([0.2, 0.1, 1.3, 0.9])[0] == (0.2, 0.1, 1.0, 0.9)
    assert clamp_box([0.6, 0.1, 0.2, 0.9])[0] is None  # inverted: no area, as the official evaluator sees it
    assert clamp_box([0.2, 0.5, 0.4, -2.88e16])[0] is None  # ymax sentinel -> 0 < ymin
    assert clamp_box([0.3, 0.3, 0.3, 0.8])[0] is None  # degenerate


def test_vggss_json_clamps_broken_boxes(tmp_path):
    entries = [
        {"file": "aaaaaaaaaaa_000010", "class": "dog barking", "bbox": [[0.1, 0.2, 0.6, 0.9]]},
        {"file": "bbbbbbbbbbb_000020", "class": "rain", "bbox": [[0.0, -2.88e16, 0.5, 0.5], [0.7, 0.1, 0.2, 0.4]]},
        {"file": "ccccccccccc_000030", "class": "engine", "bbox": [[0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.9, 1.2]]},
    ]
    path = write(tmp_path / "vggss.json", json.dumps(entries))
    m = read_vggss_json(path, image_dir=tmp_path / "frames", video_dir=tmp_path / "vids")
    assert m.ids == ["aaaaaaaaaaa_000010", "bbbbbbbbbbb_000020", "ccccccccccc_000030"]
    assert m[0].boxes == ((0.1, 0.2, 0.6, 0.9),) and m[0].extra == {}
    assert m[1].boxes == ((0.0, 0.0, 0.5, 0.5),)
    assert m[1].extra == {"clamped_boxes": 1, "dropped_boxes": 1}
    assert m[2].boxes[1] == (0.3, 0.3, 0.9, 1.0)
    assert m.notes == ["2 boxes clamped to [0, 1], 1 inverted or empty boxes dropped"]
    assert m[0].image == str(tmp_path / "frames" / "aaaaaaaaaaa_000010.jpg") and m[0].labels == ("dog barking",)


def test_vggss_json_errors_name_entries(tmp_path):
    entries = [
        {"file": "ok_000001", "class": "dog", "bbox": [[0, 0, 1, 1]]},
        {"file": "nobox_000002", "class": "dog"},
        {"file": "badbox_000003", "class": "dog", "bbox": [[0, 0, 1]]},
        {"class": "dog", "bbox": []},
        {"file": "ok_000001", "class": "cat", "bbox": []},
    ]
    path = write(tmp_path / "vggss.json", json.dumps(entries))
    with pytest.raises(InputError) as err:
        read_vggss_json(path)
    msg = str(err.value)
    assert "entry 2 (nobox_000002): missing bbox" in msg
    assert "entry 3 (badbox_000003): box [0, 0, 1] is not [xmin, ymin, xmax, ymax]" in msg
    assert "entry 4: missing file" in msg
    write(tmp_path / "dup.json", json.dumps([entries[0], entries[4]]))
    with pytest.raises(InputError, match=r"entry 2: duplicate id 'ok_000001' \(first at entry 1\)"):
        read_vggss_json(tmp_path / "dup.json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_vggss_json(write(tmp_path / "broken.json", "[{"))


# --- AudioCaps ----------------------------------------------------------------------------------


AUDIOCAPS = (
    "audiocap_id,youtube_id,start_time,caption\n"
    "97151,vfY_TJq7n_U,130,Rustling occurs ducks quack and water splashes\n"
    "108945,tdWhHV3X25Q,60,A large crowd cheers and applauds\n"
    "97152,vfY_TJq7n_U,130,Ducks quack while water splashes\n"
)


def test_audiocaps_groups_captions(tmp_path):
    path = write(tmp_path / "val.csv", AUDIOCAPS)
    m = read_audiocaps_csv(path, audio_dir=tmp_path / "wav", split="val")
    assert m.ids == ["vfY_TJq7n_U_000130", "tdWhHV3X25Q_000060"]
    assert m[0].captions == ("Rustling occurs ducks quack and water splashes", "Ducks quack while water splashes")
    assert m[0].extra["audiocap_ids"] == [97151, 97152] and m[0].split == "val"
    assert m[0].audio == str(tmp_path / "wav" / "vfY_TJq7n_U_000130.wav")
    flat = read_audiocaps_csv(path, group_captions=False)
    assert len(flat) == 3 and flat.ids[0] == "vfY_TJq7n_U_000130_97151"
    assert read_manifest(path).format == "audiocaps"


def test_audiocaps_errors(tmp_path):
    bad = write(tmp_path / "bad.csv", AUDIOCAPS + "97151,xyzxyzxyzxy,3,dup id\n108950,zzzzzzzzzzz,-4,negative\n")
    with pytest.raises(InputError) as err:
        read_audiocaps_csv(bad)
    assert "line 5: duplicate audiocap_id 97151 (first at line 2)" in str(err.value)
    assert "line 6: start_time '-4' is negative" in str(err.value)
    with pytest.raises(InputError, match="header lacks caption"):
        read_audiocaps_csv(write(tmp_path / "h.csv", "audiocap_id,youtube_id,start_time\n1,a,2\n"))


# --- generic csv, jsonl, dispatch ---------------------------------------------------------------


def test_generic_csv_paths_lists_extra(tmp_path):
    (tmp_path / "media").mkdir()
    csv = write(tmp_path / "list.csv", (
        "id,image,audio,caption,labels,split,start_s,end_s,source\n"
        "a,media/a.png,media/a.wav,a dog,dog|animal,train,,,web\n"
        f"b,{tmp_path}/abs.png,,,,val,1.5,4,\n"
    ))
    m = read_generic_csv(csv)
    a, b = m
    assert a.image == str(tmp_path / "media" / "a.png") and a.audio == str(tmp_path / "media" / "a.wav")
    assert a.labels == ("dog", "animal") and a.captions == ("a dog",) and a.extra == {"source": "web"}
    assert b.image == f"{tmp_path}/abs.png" and (b.start_s, b.end_s) == (1.5, 4.0) and b.split == "val"
    assert b.audio is None and b.labels == ()
    no_id = read_generic_csv(write(tmp_path / "noid.csv", "video\nclips/x1.mp4\nclips/x2.mp4\n"), root="/data")
    assert no_id.ids == ["x1", "x2"] and no_id[0].video == "/data/clips/x1.mp4"


def test_generic_csv_errors_name_rows(tmp_path):
    csv = write(tmp_path / "bad.csv", (
        "id,image,audio,start_s,end_s\n"
        "a,a.png,,,\n"
        "b,,,,\n"              # line 3: no media
        "c,c.png,,2,1\n"       # line 4: end before start
        "a,d.png,,,\n"         # line 5: duplicate id
        "e,e.png,,abc,\n"      # line 6: bad number
        "f,f.png\n"            # line 7: short row
    ))
    with pytest.raises(InputError) as err:
        read_generic_csv(csv)
    msg = str(err.value)
    assert msg.startswith(f"{csv}: 5 bad rows: ")
    for needle in ("line 3: no media path", "line 4: end_s 1.0 is not after start_s 2.0",
                   "line 5: duplicate id 'a' (first at line 2)", "line 6: start_s 'abc' is not a number",
                   "line 7: expected 5 columns, got 2"):
        assert needle in msg
    with pytest.raises(InputError, match="header needs at least one of image, video, audio"):
        read_generic_csv(write(tmp_path / "h.csv", "id,caption\na,b\n"))
    many = "image\n" + "x0.png\n" * 13  # 12 duplicates: 8 spelled out, then a count
    with pytest.raises(InputError, match=r"12 bad rows: line 3: .*line 10: duplicate id 'x0' \(first at line 2\); \.\.\. and 4 more$"):
        read_generic_csv(write(tmp_path / "many.csv", many))


def test_missing_files_named(tmp_path):
    (tmp_path / "here.png").write_bytes(b"x")
    (tmp_path / "empty.png").write_bytes(b"")
    m = read_generic_csv(write(tmp_path / "m.csv", "image\nhere.png\ngone.png\nempty.png\n"))
    bad = m.missing_files()
    assert [(it.id, reason.split(":")[0]) for it, reason in bad] == [("gone", "image file not found"),
                                                                     ("empty", "image file is empty")]
    with pytest.raises(InputError, match=r"2 items with missing media: line 3: image file not found"):
        m.check_files()


def test_fingerprint_tracks_content_not_layout(tmp_path):
    csv = write(tmp_path / "a.csv", "id,image,label\nx,x.png,dog\ny,y.png,cat\n")
    m = read_generic_csv(csv)
    assert len(m.fingerprint) == 64 and m.fingerprint == read_generic_csv(csv).fingerprint
    # Same items written as jsonl (other rows, other file): same fingerprint.
    m.write_jsonl(tmp_path / "a.jsonl")
    again = read_manifest_jsonl(tmp_path / "a.jsonl")
    assert again.fingerprint == m.fingerprint and [it.row for it in again] == [1, 2]
    # Whitespace / quoting in the csv does not matter either.
    assert read_generic_csv(write(tmp_path / "b.csv", 'id,image,label\n"x","x.png", dog\ny,y.png,cat\n\n')).fingerprint == m.fingerprint
    changed = read_generic_csv(write(tmp_path / "c.csv", "id,image,label\nx,x.png,dog\ny,y.png,cow\n"))
    reordered = read_generic_csv(write(tmp_path / "d.csv", "id,image,label\ny,y.png,cat\nx,x.png,dog\n"))
    fewer = m.select(ids=["x"])
    assert len({m.fingerprint, changed.fingerprint, reordered.fingerprint, fewer.fingerprint}) == 4


def test_dispatch_and_jsonl_errors(tmp_path):
    assert read_manifest(write(tmp_path / "v.csv", "aaaaaaaaaaa,1,dog,train\n")).format == "vggsound"
    assert read_manifest(write(tmp_path / "g.csv", "image,label\na.png,dog\n")).format == "csv"
    assert read_manifest(write(tmp_path / "s.json", json.dumps([{"file": "f", "class": "c", "bbox": []}]))).format == "vggss"
    with pytest.raises(InputError, match="cannot tell which csv"):
        read_manifest(write(tmp_path / "u.csv", "foo,bar\n1,2\n"))
    with pytest.raises(InputError, match="unknown manifest format"):
        read_manifest(tmp_path / "g.csv", format="parquet")
    jl = write(tmp_path / "m.jsonl", '{"id": "a", "image": "a.png"}\nnot json\n{"id": "b"}\n{"id": "a", "audio": "x.wav"}\n')
    with pytest.raises(InputError) as err:
        read_manifest_jsonl(jl)
    assert "line 2:" in str(err.value) and "line 3: no image, video or audio path" in str(err.value)


def test_manifest_object_api():
    items = [ManifestItem(id="a", image="a.png", split="train", labels=("dog",)),
             ManifestItem(id="b", video="b.mp4", split="val")]
    m = Manifest(items, source="mem")
    assert m.index_of("b") == 1 and "a" in m and "z" not in m
    assert m.select(split="val").ids == ["b"] and m[0].label == "dog" and m[1].label is None
    with pytest.raises(InputError, match="no item with id 'z'"):
        m.index_of("z")
    with pytest.raises(InputError, match="duplicate id 'a'"):
        Manifest(items + [ManifestItem(id="a", image="c.png")], source="mem")
