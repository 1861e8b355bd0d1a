"""Training-free routes of `sources` and `objects` on the tiny stand-ins with public weights only (no SS2A
bundle, no grounding module): route choice and records, per-source vectors against an independent
computation from the bridge's cached embeddings, the mix, the vocabulary package data, the on-disk
embedding cache, and bad input."""

from __future__ import annotations

import csv
import io
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from foleykit.errors import InputError

DUR, STEPS = 1.0, 2


@pytest.fixture(scope="module", autouse=True)
def setup(one_torch_thread, tiny_models_dir, tmp_path_factory):
    """A FOLEYKIT_CACHE of this module's own (an empty bridge cache) that also holds the tiny set."""
    from foleykit.model_sets import TINY_VERSION

    cache = tmp_path_factory.mktemp("fk-cache")
    (cache / f"tiny-v{TINY_VERSION}").symlink_to(tiny_models_dir, target_is_directory=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("FOLEYKIT_CACHE", str(cache))
    yield cache
    mp.undo()


@pytest.fixture(scope="module")
def public_set(tiny_models_dir, tmp_path_factory) -> Path:
    """The tiny set as a new user has it: public checkpoints only (no ss2a, no grounding role)."""
    from foleykit.model_sets import resolve_model_set

    ms = resolve_model_set(str(tiny_models_dir))
    assert "ss2a" in ms.extra and "grounding" not in ms.extra
    roles = {"clip": ms.clip, "clip_mapper": ms.clip_mapper, "clap": ms.clap, "audioldm": ms.audioldm,
             **{k: v for k, v in ms.extra.items() if k != "ss2a"}}
    d = tmp_path_factory.mktemp("public-set")
    (d / "model_set.json").write_text(json.dumps(roles))
    return d


@pytest.fixture(scope="module")
def sources(public_set):
    from foleykit.api import load_pipeline

    return load_pipeline("sources", str(public_set), None, "cpu", None, None, None)


@pytest.fixture(scope="module")
def objects(public_set):
    from foleykit.api import load_pipeline

    return load_pipeline("objects", str(public_set), None, "cpu", None, None, None)


def _scene(w: int = 240, h: int = 160) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2] = (150, 190, 235)
    arr[h // 2 :] = (110, 150, 80)
    arr[50:120, 40:110] = (200, 40, 40)
    yy, xx = np.mgrid[:h, :w]
    arr[(yy - 95) ** 2 + (xx - 170) ** 2 < 30**2] = (40, 200, 70)
    return Image.fromarray(arr)


def _bridge_by_hand(cache: Path, clip_embed: torch.Tensor, top_k: int = 3, temperature: float = 0.01) -> torch.Tensor:
    """The bridge's vector computed here, from the cached embedding files alone (the default vocabulary's)."""
    from safetensors import safe_open

    def cached(side: str) -> torch.Tensor:
        found = []
        for f in (cache / "bridge").glob(f"{side}-*.safetensors"):
            with safe_open(str(f), "pt") as fh:
                if fh.metadata()["count"] == "806":
                    found.append(fh.get_tensor("embeddings"))
        assert len(found) == 1
        return found[0]

    clip_text, clap_text = cached("clip"), cached("clap")
    sims = F.normalize(clip_embed.float(), dim=-1) @ clip_text.T
    top, idx = sims.topk(top_k)
    w = torch.exp((top - top.max()) / temperature)
    w = w / w.sum()
    return F.normalize((w[:, None] * clap_text[idx]).sum(0), dim=0)


# ---------------------------------------------------------------------- vocabulary (package data)


def test_vocabulary_ships_as_package_data_and_is_the_deduplicated_union():
    from foleykit import vocabulary
    from foleykit.encoders import detector

    data = resources.files("foleykit.vocabulary").joinpath("data")
    audioset = list(csv.DictReader(io.StringIO(data.joinpath("audioset_class_labels_indices.csv").read_text("utf-8"))))
    vgg = [r for r in csv.reader(io.StringIO(data.joinpath("vggsound_classes.csv").read_text("utf-8"))) if r]
    assert len(audioset) == 527 and len(vgg) == 309
    assert "CC BY 4.0" in data.joinpath("LICENSES.md").read_text("utf-8")
    names = [r["display_name"].lower() for r in audioset] + [r[0].lower() for r in vgg]
    unique = list(dict.fromkeys(" ".join(n.split()) for n in names))
    words = vocabulary.sound_vocabulary()
    assert list(words) == unique and len(words) == 806  # 30 VGGSound classes are AudioSet names too
    assert "dog barking" in words and "male speech, man speaking" in words
    # One source of truth, below both users: the detector's default is the vocabulary module's list.
    assert detector.SOUNDING_OBJECTS is vocabulary.SOUNDING_OBJECTS
    import ast

    tree = ast.parse(Path(detector.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert "vocabulary" in imported and not any("pipelines" in m for m in imported)


@pytest.mark.parametrize("content, message", [
    ("", "has no names"),
    ("# only a comment\n\n   \n", "has no names"),
    (b"\xff\xfe\xfa not utf-8", "is not UTF-8"),
])
def test_bad_vocabulary_files_are_one_line_naming_the_file(tmp_path, content, message):
    from foleykit.vocabulary import load_vocabulary

    f = tmp_path / "my-words.txt"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError, match=message) as e:
        load_vocabulary(str(f))
    assert "my-words.txt" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InputError, match="no such file"):
        load_vocabulary(str(tmp_path / "missing.txt"))
    f.write_text("Dog\n# skipped\n\n  dog \ncat\n")
    assert load_vocabulary(str(f))[0] == ("dog", "cat")


def test_bridge_settings_and_words_that_tokenise_to_nothing(sources, tmp_path):
    from foleykit.pipelines.zero_shot_bridge import BridgeSettings, ZeroShotBridge

    words = tmp_path / "two.txt"
    words.write_text("dog\ncat\n")
    with pytest.raises(InputError, match=r"top_k 3 is larger than the vocabulary .*two.txt \(2 names\)"):
        ZeroShotBridge(sources.clip, sources.clap, BridgeSettings(vocabulary=str(words)), cache_dir=tmp_path)
    for bad, message in ((dict(top_k=0), "top_k"), (dict(temperature=0.0), "temperature"),
                         (dict(clip_prompt="a photo"), "exactly once")):
        with pytest.raises(InputError, match=message):
            BridgeSettings(**bad).check()

    class DroppingTokenizer:  # a tokenizer that drops zero-width spaces (as text normalisers do)
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, texts, **kw):
            return self.inner([t.replace("\u200b", "") for t in texts], **kw)

    class Clip:
        tokenizer = DroppingTokenizer(sources.clip.tokenizer)
        loaded_from = None
        embed_texts = sources.clip.embed_texts

    words.write_text("dog\n\u200b\u200b\n")
    with pytest.raises(InputError, match=r"two.txt: the name '\\u200b\\u200b' tokenises to nothing for the CLIP"):
        ZeroShotBridge(Clip(), sources.clap, BridgeSettings(vocabulary=str(words), top_k=1), cache_dir=tmp_path)


def test_vocabulary_embeddings_are_cached_on_disk_and_reused(sources, tmp_path):
    """A second bridge (as in a new process) runs no text-encoder forward: it reads the cache files."""
    from foleykit.pipelines import zero_shot_bridge as zsb
    from foleykit.pipelines.training_free import TrainingFree
    from foleykit.pipelines.zero_shot_bridge import BridgeSettings

    zsb._memory.clear()
    calls = {"clip": 0, "clap": 0}
    # The text towers' forward passes: CLIP's text features, the generator CLAP's text encoder.
    towers = (("clip", sources.clip.model, "get_text_features"), ("clap", sources.clap.text_encoder, "forward"))
    originals = {}
    for side, module, name in towers:
        originals[side] = getattr(module, name)

        def counting(*a, _side=side, **kw):
            calls[_side] += 1
            return originals[_side](*a, **kw)

        setattr(module, name, counting)
    try:
        settings = BridgeSettings(vocabulary="objects")
        first = TrainingFree(sources.clip, sources.clap, cache_dir=tmp_path).bridge(settings)
        assert calls["clip"] > 0 and calls["clap"] > 0 and first.cache == {"clip": "computed", "clap": "computed"}
        assert len(list(tmp_path.glob("*.safetensors"))) == 2
        zsb._memory.clear()  # forget the in-process copy: a new process
        before = dict(calls)
        second = TrainingFree(sources.clip, sources.clap, cache_dir=tmp_path).bridge(settings)
        assert calls == before and second.cache == {"clip": "disk", "clap": "disk"}
        assert torch.equal(first.clip_text, second.clip_text) and torch.equal(first.clap_text, second.clap_text)
        # Keyed by the prompt too: another caption is embedded afresh (CLAP side only).
        TrainingFree(sources.clip, sources.clap, cache_dir=tmp_path).bridge(
            BridgeSettings(vocabulary="objects", clap_prompt="{} noise"))
        assert calls["clip"] == before["clip"] and calls["clap"] > before["clap"]
    finally:
        for side, module, name in towers:
            delattr(module, name) if name == "forward" else setattr(module, name, originals[side])


# ---------------------------------------------------------------------- routes


def test_route_choice(tmp_path):
    from foleykit.pipelines.training_free import choose_route

    released = tmp_path / "ssv2a.pth"
    released.write_bytes(b"x")
    bundle = tmp_path / "bundle"
    (bundle / "manifold").mkdir(parents=True)
    assert choose_route("sources", "auto", None, None)[:2] == ("training-free", None)
    assert choose_route("sources", "auto", None, str(bundle))[:2] == ("trained", str(bundle))
    assert choose_route("sources", "auto", str(released), None)[:2] == ("released", str(released))
    assert choose_route("sources", "released", str(released), None)[0] == "released"
    assert choose_route("objects", "auto", str(bundle), None)[0] == "trained"
    assert choose_route("objects", "training-free", None, "role")[0] == "training-free"
    for method, route, given, role, message in (
        ("sources", "released", None, str(bundle), "--route released needs --ss2a"),
        ("sources", "released", str(bundle), None, "is not the released ssv2a.pth"),
        ("sources", "trained", None, None, "--route trained needs SS2A weights"),
        ("sources", "trained", str(released), None, "use --route released"),
        ("objects", "trained", None, None, "needs a grounding module"),
        ("objects", "released", None, None, "no released grounding weights"),
        ("sources", "training-free", str(bundle), None, "--ss2a is not used"),
        ("objects", "magic", None, None, "route must be one of"),
    ):
        with pytest.raises(InputError, match=message):
            choose_route(method, route, given, role)


def test_with_the_trained_module_present_the_trained_route_runs(tiny_models_dir):
    from foleykit.api import load_pipeline

    trained = load_pipeline("sources", str(tiny_models_dir), None, "cpu", None, None, None)
    assert trained.route == "trained" and trained.free is None and trained.ss2a.trained
    r = trained(_scene(), detect=False, duration_s=DUR, num_inference_steps=STEPS, seed=2, progress=False,
                cycle_rounds=1, cycle_samples=2)
    assert r.record["route"] == {"name": "trained", "why": "SS2A weights in the model set"}
    assert r.record["ss2a"]["trained"] is True and "bridge_words" not in r.record["sources"][0]


# ---------------------------------------------------------------------- sources


def test_sources_cli_takes_the_training_free_route_and_records_the_words(public_set, tmp_path, capsys):
    import soundfile as sf

    from foleykit.cli import main

    img = tmp_path / "scene.png"
    _scene().save(img)
    out, stems = tmp_path / "mix.wav", tmp_path / "stems"
    main(["generate", str(img), "--method", "sources", "--models", str(public_set), "--text", "rain@2",
          "--box", "40,50,110,120", "-o", str(out), "--stems", str(stems), "--duration", str(DUR),
          "--steps", str(STEPS), "--seed", "4", "--device", "cpu", "-q"])
    printed = capsys.readouterr().out
    assert "route: training-free (no SS2A weights given (--ss2a) and none in the model set)" in printed
    side = json.loads((tmp_path / "mix.wav.json").read_text())
    assert side["route"]["name"] == "training-free" and side["ss2a"] is None
    bridge = side["route"]["bridge"]
    assert bridge["vocabulary"] == "sounds" and bridge["vocabulary_size"] == 806 and bridge["top_k"] == 3
    kinds = [s["kind"] for s in side["sources"]]
    assert kinds == ["image", "box", "text"]  # a box turns detection off
    for src in side["sources"][:2]:  # the words that made each visual source's sound, and their weights
        words = src["bridge_words"]
        assert len(words) == 3 and sum(w for _, w in words) == pytest.approx(1.0, abs=1e-3)
        assert all(isinstance(w, str) and w for w, _ in words)
    assert side["sources"][2]["text_mode"] == "clap" and "bridge_words" not in side["sources"][2]
    assert len(side["cycle_mix"]["mixing_weights"]) == 3
    assert sorted(p.name for p in stems.glob("*.wav")) == ["00-image.wav", "01-box-40-50-110-120.wav",
                                                            "02-text-rain.wav"]
    assert sf.read(out)[0].shape == (int(DUR * 16000),)


def test_a_stem_is_generated_from_the_bridges_vector_for_its_crop(sources, setup):
    from foleykit.generator.long_audio import generate_long
    from foleykit.io.image import crop_box

    img, box = _scene(), (40.0, 50.0, 110.0, 120.0)
    r = sources(img, boxes=[box], detect=False, stems=True, duration_s=DUR, num_inference_steps=STEPS, seed=6,
                progress=False)
    assert [s.kind for s in r.sources] == ["image", "box"]
    crop_clip = sources.clip.embed_images([crop_box(img, box)], normalize=True)[0].cpu()
    expected = _bridge_by_hand(setup, crop_clip)
    assert torch.allclose(r.sources[1].vector, expected, atol=1e-5)
    # ... and the stem is AudioLDM conditioned on exactly that vector, with the run's seed.
    direct = generate_long(sources.generator, expected[None], DUR, seed=6, preset="fast", num_inference_steps=STEPS,
                           guidance_scale=None, progress=False)
    assert np.allclose(r.stems[1][1].waveform, direct.waveforms[0], atol=1e-5)
    # Two regions, two different sounds.
    assert not torch.allclose(r.sources[0].vector, r.sources[1].vector, atol=1e-4)


def test_the_mix_is_the_weighted_sum_and_a_text_source_pulls_it_toward_its_vector(sources):
    img = _scene()
    kw = dict(detect=False, duration_s=DUR, num_inference_steps=1, seed=3, progress=False)
    rain = F.normalize(sources.clap.embed_texts(["rain"]).float(), dim=-1)[0].cpu()
    plain = dict(cycle_rounds=1, cycle_samples=1)
    without = sources(img, **kw, **plain)
    with_text = sources(img, texts=[("rain", 2.0)], **kw, **plain)
    # Closed form: normalise(sum_i w_i v_i), the text's vector being its CLAP text embedding.
    assert torch.allclose(with_text.sources[1].vector, rain, atol=1e-5)
    v = torch.stack([s.vector for s in with_text.sources])
    assert torch.allclose(with_text.condition, F.normalize(torch.tensor([1.0, 2.0]) @ v, dim=0), atol=1e-5)
    assert torch.allclose(without.condition, without.sources[0].vector, atol=1e-6)
    assert float(with_text.condition @ rain) > float(without.condition @ rain) + 1e-4
    # Refined like Cycle Mix (4 rounds x 16 candidates): still pulled toward the text, and evenly related to
    # both sources (the spread of its similarities no larger than the plain mix's).
    refined = sources(img, texts=[("rain", 2.0)], **kw)
    assert float(refined.condition @ rain) > float(without.condition @ rain) + 1e-4
    sim = [s["track_similarity"] for s in refined.record["sources"]]
    plain_sim = [s["track_similarity"] for s in with_text.record["sources"]]
    assert abs(sim[0] - sim[1]) <= abs(plain_sim[0] - plain_sim[1]) + 1e-4


def test_cut_out_puts_the_object_on_grey_and_letterboxes_it():
    from foleykit.io.image import cut_out
    from foleykit.pipelines.training_free import NEUTRAL_GREY

    arr = np.full((40, 60, 3), 200, np.uint8)
    arr[10:20, 5:45] = (10, 20, 30)
    mask = np.zeros((40, 60), bool)
    mask[10:20, 5:45] = True
    mask[10, 5] = False  # a corner outside the object, inside its box
    crop, box = cut_out(Image.fromarray(arr), mask, NEUTRAL_GREY)
    assert box == (5.0, 10.0, 45.0, 20.0) and crop.size == (40, 40)
    c = np.asarray(crop)
    top = (40 - 10) // 2  # the 40x10 cut-out is centred on a 40x40 square
    assert (c[top + 1, 1] == (10, 20, 30)).all() and (c[top, 0] == 128).all()
    assert (c[0, 0] == c[-1, -1]).all() and not (c[0, 0] == 200).all()  # padding: the cut-out's mean colour


def test_mix_vectors_closed_forms():
    from foleykit.pipelines.training_free import mix_vectors

    g = torch.Generator().manual_seed(0)
    v = F.normalize(torch.randn(3, 8, generator=g), dim=-1)
    plain = mix_vectors(v, [1.0, 2.0, 1.0])
    assert torch.allclose(plain.clap, F.normalize(torch.tensor([0.25, 0.5, 0.25]) @ v, dim=0), atol=1e-6)
    spread = mix_vectors(v, [1.0, 1.0, 1.0], rounds=4, samples=32, generator=torch.Generator().manual_seed(1))
    s0 = (plain.clap @ v.T)
    assert spread.similarity.std(unbiased=False) <= s0.std(unbiased=False) + 1e-6
    assert torch.allclose(spread.clap, F.normalize(spread.weights @ v, dim=0), atol=1e-6)
    one = mix_vectors(v[:1], [3.0], rounds=2, samples=4, generator=g)
    assert one.criterion_used == "relevance" and torch.allclose(one.clap, v[0], atol=1e-6)
    with pytest.raises(InputError, match="weights"):
        mix_vectors(v, [1.0, 0.0, 1.0])


# ---------------------------------------------------------------------- objects


def test_clicked_objects_take_the_training_free_route(objects, setup, tmp_path):
    img = _scene()
    assert objects.route == "training-free" and objects.grounding is None
    r = objects(img, clicks=[(75, 85), (170, 95)], texts=["wind"], context=0.25, duration_s=DUR,
                num_inference_steps=STEPS, seed=3, progress=False, save_maps_dir=tmp_path / "maps")
    assert r.record["route"]["name"] == "training-free" and r.record["grounding"] is None
    a, b, t = (o.object for o in r.objects)
    # Two different clicked objects: different cut-outs, vectors and stems.
    assert not np.array_equal(a.mask, b.mask)
    assert (a.cond - b.cond).norm() > 1e-4
    assert not np.allclose(r.objects[0].waveform, r.objects[1].waveform)
    # Each click's vector is the bridge's vector for its cut-out (object on grey, letterboxed).
    from foleykit.io.image import cut_out
    from foleykit.pipelines.training_free import NEUTRAL_GREY

    for o in (a, b):
        crop, _ = cut_out(img, o.mask, NEUTRAL_GREY)
        assert np.array_equal(np.asarray(crop), np.asarray(o.crop))
        expected = _bridge_by_hand(setup, objects.clip.embed_images([crop], normalize=True)[0].cpu())
        assert torch.allclose(o.cond, expected, atol=1e-5)
    # A text object is the CLAP text tower's vector; the blend mixes in the whole image's vector.
    assert torch.allclose(t.cond, F.normalize(objects.clap.embed_texts(["wind"]).float(), dim=-1)[0].cpu(), atol=1e-5)
    image_vec = _bridge_by_hand(setup, objects.clip.embed_images([img], normalize=True)[0].cpu())
    mean = F.normalize(torch.stack([a.cond, b.cond, t.cond]).mean(0), dim=0)
    assert torch.allclose(r.plan.blend_cond, F.normalize(0.75 * mean + 0.25 * image_vec, dim=0), atol=1e-5)
    rec = r.record["objects"]
    assert rec[0]["bridge_words"] and "weights" not in rec[0] and rec[2]["vector"] == "CLAP text tower"
    maps = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert "object-01-click-75x85-crop.png" in maps and "blend-mask.png" in maps
    assert not any(m.endswith("weights.png") for m in maps)


def test_objects_cli_routes_and_bad_input_are_one_line(public_set, tmp_path, capsys):
    from foleykit.cli import main

    img = tmp_path / "scene.png"
    _scene().save(img)
    empty = tmp_path / "empty-words.txt"
    empty.write_text("\n")
    base = ["generate", str(img), "-o", str(tmp_path / "o.wav"), "--models", str(public_set), "--duration",
            str(DUR), "--steps", str(STEPS), "--device", "cpu", "-q"]
    for extra, message in (
        (["--method", "sources", "--route", "released"], "--route released needs --ss2a"),
        (["--click", "75,85", "--route", "trained"], "--route trained needs a grounding module"),
        (["--click", "75,85", "--vocabulary", str(empty)], "empty-words.txt has no names"),
        (["--method", "sources", "--bridge-top-k", "900"], "top_k 900 is larger than the vocabulary sounds (806"),
        (["--click", "75,85", "--route", "released"], "no released grounding weights"),
    ):
        with pytest.raises(SystemExit) as e:
            main(base + extra)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 1 and len(err) == 1 and message in err[0], (extra, err)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-words.txt", "scene.png"]
    main(base + ["--click", "75,85", "--vocabulary", "objects", "--bridge-top-k", "2", "--seed", "1"])
    assert "route: training-free (no grounding module given (--grounding) and none in the model set)" \
        in capsys.readouterr().out
    side = json.loads((tmp_path / "o.wav.json").read_text())
    assert side["route"]["bridge"]["vocabulary"] == "objects" and side["route"]["bridge"]["top_k"] == 2
    assert len(side["objects"][0]["bridge_words"]) == 2


def test_a_video_takes_the_training_free_route_frame_by_frame(sources, tmp_path):
    import av

    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as out:
        vs = out.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            frame = np.full((48, 64, 3), (i * 25) % 255, dtype=np.uint8)
            for pkt in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
    r = sources(video, texts=["rain"], detect=False, frames=3, num_inference_steps=1, seed=1, progress=False)
    assert r.record["route"]["name"] == "training-free" and r.record["ss2a"] is None
    assert r.record["video"]["aggregation"].startswith("mean of per-frame training-free mixes")
    assert r.mix.waveform.shape == (16000,) and np.isfinite(r.mix.waveform).all()


def test_the_mapper_without_weights_bridges_with_the_same_vocabulary(public_set):
    from foleykit.api import load_pipeline

    mapper = load_pipeline("mapper", str(public_set), None, "cpu", None)
    r = mapper(_scene(), duration_s=DUR, num_inference_steps=1, seed=1, progress=False)
    rec = r.record["mapper"]
    assert rec["kind"] == "zero_shot_bridge" and rec["vocabulary"] == "sounds" and rec["vocabulary_size"] == 806
    assert rec["clip_prompt"] == "a photo of {}" and rec["clap_prompt"] == "the sound of {}"
