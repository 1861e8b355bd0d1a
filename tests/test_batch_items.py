"""Protocol manifests feed batch-generate (--media-dir), per-item prompts, relative jsonl paths, every bad
row in one pass, a --detector module from the current folder."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from foleykit.cli import app
from foleykit.data.manifests import Manifest, ManifestItem, read_manifest_jsonl
from foleykit.data.synthetic import write_image
from foleykit.distributed.batch import BatchGenerateConfig, item_prompts
from foleykit.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_jsonl_paths_are_relative_to_the_manifest(tmp_path, monkeypatch):
    (tmp_path / "media").mkdir()
    (tmp_path / "lists").mkdir()
    img = write_image(tmp_path / "media" / "a.png", 0)
    Manifest([ManifestItem("a", image=str(img))]).write_jsonl(tmp_path / "lists" / "m.jsonl")
    line = json.loads((tmp_path / "lists" / "m.jsonl").read_text())
    assert line["image"] == os.path.join("..", "media", "a.png")
    monkeypatch.chdir("/")  # read from anywhere: the path is the same file
    assert os.path.samefile(read_manifest_jsonl(tmp_path / "lists" / "m.jsonl")[0].image, img)


def test_every_bad_row_and_duplicate_in_one_pass(tmp_path):
    rows = [{"id": "a", "image": "x.png"}, {"id": "b"}, {"id": "a", "image": "y.png"}, "nope"]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError) as e:
        read_manifest_jsonl(tmp_path / "m.jsonl")
    msg = str(e.value)
    assert "3 bad rows" in msg and "line 2: no image, video or audio path" in msg
    assert "line 4: not an object" in msg and "line 3: duplicate id 'a' (first at line 1)" in msg


def test_protocol_manifest_feeds_batch_generate_with_media_dir(tmp_path, tiny_cache_env):
    box = [0.1, 0.1, 0.5, 0.5]
    (tmp_path / "vggss.json").write_text(json.dumps([
        {"file": "aaaaaaaaaaa_000030", "class": "dog barking", "bbox": [box]},
        {"file": "bbbbbbbbbbb_000010", "class": "rain", "bbox": [box]}]))
    res = invoke("protocol", "vggss-single", tmp_path / "vggss.json", "-o", tmp_path / "p.jsonl")
    assert res.exit_code == 0, res.output
    media = tmp_path / "frames"
    media.mkdir()
    write_image(media / "aaaaaaaaaaa_000030.jpg", 1)
    write_image(media / "bbbbbbbbbbb_000010.png", 2)
    res = invoke("batch-generate", tmp_path / "p.jsonl", "-o", tmp_path / "gen")
    assert isinstance(res.exception, InputError) and "--media-dir" in str(res.exception)
    res = invoke("batch-generate", tmp_path / "p.jsonl", "--media-dir", media, "-o", tmp_path / "gen",
                 "--models", "tiny", "--steps", 2, "--duration", 0.5, "--device", "cpu", "-q")
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert (tmp_path / "gen" / "aaaaaaaaaaa_000030.wav").is_file() and (tmp_path / "gen" / "bbbbbbbbbbb_000010.wav").is_file()
    side = json.loads((tmp_path / "gen" / "bbbbbbbbbbb_000010.wav.json").read_text())
    assert side["inputs"]["source"].endswith("bbbbbbbbbbb_000010.png")


def test_item_prompts_and_generate_defaults():
    item = ManifestItem("a", image="a.png", extra={"clicks": "10,12;30,40", "texts": "rain|dog barking"})
    assert item_prompts(item, "objects") == {"clicks": ["10,12", "30,40"], "texts": ["rain", "dog barking"]}
    assert item_prompts(item, "mapper") == {}
    with pytest.raises(InputError, match="item a: clicks need method 'objects'"):
        item_prompts(item, "sources")
    listed = ManifestItem("b", image="b.png", extra={"boxes": [[0, 0, 20, 20], "5,5,9,9@0.5"]})
    assert item_prompts(listed, "sources") == {"boxes": ["0,0,20,20", "5,5,9,9@0.5"]}
    assert BatchGenerateConfig(method="sources").frames == 64 == BatchGenerateConfig(method="sources", frames=None).frames
    assert BatchGenerateConfig().frames == 16


def test_batch_objects_takes_clicks_from_the_manifest(tmp_path, tiny_cache_env):
    write_image(tmp_path / "a.png", 0)
    write_image(tmp_path / "b.png", 1)
    (tmp_path / "m.csv").write_text("id,image,clicks\na,a.png,20;30\nb,b.png,\n".replace("20;30", '"20,30"'))
    res = invoke("batch-generate", tmp_path / "m.csv", "--method", "objects", "-o", tmp_path / "gen",
                 "--models", "tiny", "--steps", 2, "--duration", 0.5, "--device", "cpu", "-q")
    assert res.exit_code == 1  # b has no prompt: it fails, the run says so
    assert "1 of 2 items failed" in res.output and "needs at least one --click" in res.output
    side = json.loads((tmp_path / "gen" / "a.wav.json").read_text())
    assert side["parameters"]["clicks"] == [[20, 30]]


def test_curate_detector_from_the_current_folder(tmp_path, monkeypatch):
    write_image(tmp_path / "a.png", 0)
    (tmp_path / "m.csv").write_text("id,image,label\na,a.png,dog\n")
    (tmp_path / "mydets.py").write_text(
        "def make():\n    return lambda frames: [[{'label': 'dog', 'score': 0.9}] for _ in frames]\n")
    monkeypatch.chdir(tmp_path)
    res = invoke("curate", "m.csv", "--detector", "mydets:make", "-o", "cur", "-q")
    assert res.exit_code == 0, res.output + repr(res.exception)
    kept = read_manifest_jsonl(tmp_path / "cur" / "curated.jsonl")
    assert [it.id for it in kept] == ["a"] and os.path.samefile(kept[0].image, tmp_path / "a.png")
