"""One CLAP currency: every vector that reaches the generator (or is compared with its condition, or
is a training target) comes from the generator's own CLAP towers.

The tiny set models the real situation: its judge CLAP (``clap-htsat-unfused``, LAION-like) and the
generator's text tower are different random models, and the tiny "AudioLDM own CLAP"
(``audioldm-clap``) shares the generator's text tower. The references below are computed with
transformers directly from those folders (not through foleykit's encoders), and each test also
shows the judge tower would give a different answer, so using the wrong tower fails it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soxr
import torch
import torch.nn.functional as F
from PIL import Image

from foleykit.errors import InputError, ModelNotAvailableError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- independent references (transformers only) ---------------------------------------------------


def text_tower(folder, texts):
    """Unit text embeddings of a ClapTextModelWithProjection folder pair (generator layout) or a ClapModel."""
    from transformers import AutoTokenizer, ClapModel, ClapTextModelWithProjection

    if (folder / "text_encoder").is_dir():
        model = ClapTextModelWithProjection.from_pretrained(folder / "text_encoder").eval()
        tok = AutoTokenizer.from_pretrained(folder / "tokenizer")
        ids = tok(list(texts), padding=True, return_tensors="pt")
        with torch.no_grad():
            return F.normalize(model(**ids).text_embeds, dim=-1)
    model = ClapModel.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        return F.normalize(model.get_text_features(**ids).pooler_output, dim=-1)


def audio_tower(folder, wave, sr):
    """Unit audio embedding of a ClapModel folder for one clip of at most 10 s."""
    from transformers import ClapFeatureExtractor, ClapModel

    model = ClapModel.from_pretrained(folder).eval()
    fe = ClapFeatureExtractor.from_pretrained(folder)
    w48 = soxr.resample(np.asarray(wave, np.float32), sr, 48_000, quality="HQ").astype(np.float32)
    feats = fe([w48], sampling_rate=48_000, padding="repeatpad", truncation="rand_trunc", return_tensors="pt")
    with torch.no_grad():
        out = model.get_audio_features(input_features=feats["input_features"], is_longer=feats["is_longer"])
    return F.normalize(out.pooler_output, dim=-1)[0]


# -- fixtures -------------------------------------------------------------------------------------


def model_set_dir(root, tiny, **roles):
    """A model-set folder over the tiny set's folders (absolute paths), with roles replaced/removed."""
    base = json.loads((tiny / "model_set.json").read_text())
    refs = {k: str(tiny / v) for k, v in base.items()}
    for k, v in roles.items():
        if v is None:
            refs.pop(k, None)
        else:
            refs[k] = str(tiny / v)
    root.mkdir(parents=True, exist_ok=True)
    (root / "model_set.json").write_text(json.dumps(refs))
    return root


@pytest.fixture(scope="module")
def tiny(tiny_models_dir):
    return tiny_models_dir


@pytest.fixture(scope="module")
def bridge_set(tiny, tmp_path_factory):
    """The tiny set without a trained mapper: the zero-shot bridge runs."""
    return model_set_dir(tmp_path_factory.mktemp("bridge"), tiny, mapper=None)


@pytest.fixture()
def seen(monkeypatch):
    """Every condition batch the generator is called with, and its outputs."""
    from foleykit.generator.pipeline import AudioLDMGenerator

    calls = []
    real = AudioLDMGenerator.__call__

    def spy(self, clap_embeds, **kw):
        out = real(self, clap_embeds, **kw)
        calls.append((clap_embeds.detach().float().cpu().clone(), kw, out))
        return out

    monkeypatch.setattr(AudioLDMGenerator, "__call__", spy)
    return calls


def _image():
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))


def _wave(sr=16_000, seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


# -- the tiny set models two spaces ------------------------------------------------------------------


def test_tiny_judge_and_generator_text_tower_are_different_spaces(tiny):
    from foleykit.encoders.generator_clap import PROBE_CAPTIONS

    gen = text_tower(tiny / "audioldm-s-full-v2", PROBE_CAPTIONS)
    own = text_tower(tiny / "audioldm-clap", PROBE_CAPTIONS)
    judge = text_tower(tiny / "clap-htsat-unfused", PROBE_CAPTIONS)
    torch.testing.assert_close(own, gen, atol=1e-5, rtol=1e-4)  # AudioLDM's CLAP holds the generator's tower
    assert (judge * gen).sum(-1).abs().max() < 0.5  # the judge is another space


# -- what reaches the generator ---------------------------------------------------------------------


def test_zero_shot_bridge_uses_the_generator_text_tower(bridge_set, tiny, seen):
    from foleykit.pipelines.mapper import MapperPipeline
    from foleykit.pipelines.zero_shot_bridge import ZeroShotBridge

    pipe = MapperPipeline.from_models(str(bridge_set), device="cpu")
    assert isinstance(pipe.mapper, ZeroShotBridge)
    img = _image()
    pipe(img, duration_s=0.5, num_inference_steps=1, seed=1, progress=False)
    cond = seen[0][0][0]
    labels = pipe.mapper.labels(pipe.clip.embed_images([img]))[0]
    words, weights = [w for w, _ in labels], torch.tensor([x for _, x in labels])
    from foleykit.pipelines.zero_shot_bridge import BridgeSettings

    captions = [BridgeSettings().clap_prompt.format(w) for w in words]
    expected = F.normalize((weights[:, None] * text_tower(tiny / "audioldm-s-full-v2", captions)).sum(0), dim=0)
    wrong = F.normalize((weights[:, None] * text_tower(tiny / "clap-htsat-unfused", captions)).sum(0), dim=0)
    torch.testing.assert_close(F.normalize(cond, dim=0), expected, atol=1e-5, rtol=1e-4)
    assert float(expected @ wrong) < 0.9  # the judge's tower would have failed the line above


def test_reranking_scores_with_audioldms_own_audio_tower(bridge_set, tiny, seen):
    from foleykit.pipelines.mapper import MapperPipeline

    pipe = MapperPipeline.from_models(str(bridge_set), device="cpu")
    pipe(_image(), duration_s=0.5, num_inference_steps=1, num_candidates=2, seed=2, progress=False)
    cond, _, out = seen[0]
    emb = audio_tower(tiny / "audioldm-clap", out.waveforms[0], out.sample_rate)
    assert out.scores[0] == pytest.approx(float(emb @ F.normalize(cond[0], dim=0)), abs=1e-4)
    judge = audio_tower(tiny / "clap-htsat-unfused", out.waveforms[0], out.sample_rate)
    assert abs(float(judge @ emb)) < 0.9


def test_audio_source_is_embedded_by_audioldms_own_audio_tower(tiny, tmp_path):
    import soundfile as sf

    from foleykit.pipelines.sources import SourcesPipeline

    pipe = SourcesPipeline.from_models(str(tiny), device="cpu")
    assert pipe.clap.text_encoder is pipe.generator.text_encoder
    path = tmp_path / "tone.wav"
    sf.write(path, _wave(), 16_000)
    res = pipe(audios=[str(path)], duration_s=0.5, num_inference_steps=1, seed=0, progress=False)
    src = [s for s in res.sources if s.kind == "audio"][0]
    expected = audio_tower(tiny / "audioldm-clap", _wave(), 16_000)
    torch.testing.assert_close(F.normalize(src.clap.float(), dim=0), expected, atol=1e-4, rtol=1e-3)
    judge = audio_tower(tiny / "clap-htsat-unfused", _wave(), 16_000)
    assert abs(float(judge @ expected)) < 0.9
    assert res.record["models"]["clap"]["same_space"] is True


def test_audioldm_clap_keeps_no_second_text_tower(tiny):
    """The converted CLAP's text tower is the generator's text_encoder again: it is used once, for the
    space check at load, then freed; audio embeddings and the check's verdict stay."""
    from transformers import ClapModel

    from foleykit.encoders.generator_clap import GeneratorClap

    folder = tiny / "audioldm-clap"
    full = ClapModel.from_pretrained(str(folder))
    assert sum(p.numel() for n, p in full.named_parameters() if n.startswith("text_")) > 0  # on disk: both towers
    clap = GeneratorClap.from_pretrained(str(tiny / "audioldm-s-full-v2"), str(folder))
    assert not clap.audio_loaded  # loaded on first use
    held = clap.audio.model
    assert held.text_model is None and held.text_projection is None
    assert not any(n.startswith("text_") for n, _ in held.named_parameters())
    assert clap.space.same_space and clap.space.agreement > 0.999  # computed before the tower went
    torch.testing.assert_close(clap.embed_audio([_wave()], 16_000)[0], audio_tower(folder, _wave(), 16_000),
                               atol=1e-4, rtol=1e-3)
    with pytest.raises(RuntimeError, match="released"):
        clap.audio.embed_texts(["a dog barking"])


def test_a_run_without_audio_never_loads_the_audio_tower(bridge_set):
    """Image → sound embeds no audio: AudioLDM's audio CLAP stays on disk (cold start, memory), and the
    sidecar says so; the first audio use (re-ranking) loads and checks it."""
    from foleykit import api
    from foleykit.pipelines.mapper import MapperPipeline

    api.clear_pipelines()  # a fresh shared generator CLAP, whatever earlier tests used
    pipe = MapperPipeline.from_models(str(bridge_set), device="cpu")
    sound = pipe(_image(), duration_s=0.5, num_inference_steps=1, seed=0, progress=False)
    assert not pipe.clap.audio_loaded
    assert sound.record["models"]["clap"]["audio_used"] is False
    assert "same_space" not in sound.record["models"]["clap"]
    sound = pipe(_image(), duration_s=0.5, num_inference_steps=1, num_candidates=2, seed=0, progress=False)
    assert pipe.clap.audio_loaded and sound.record["models"]["clap"]["same_space"] is True


def test_text_source_reaches_the_generator_without_any_clap_text_tower(tiny, monkeypatch):
    """SS2A text sources go text → CLIP (image space) → manifold; no CLAP text tower is involved, so
    no judge tower can leak in. The pipeline holds the generator's tower and nothing else."""
    from foleykit.encoders.clap import ClapEncoder
    from foleykit.encoders.generator_clap import PROBE_CAPTIONS
    from foleykit.pipelines.sources import SourcesPipeline

    pipe = SourcesPipeline.from_models(str(tiny), device="cpu")

    def guard(real):
        def embed(self, texts, **kw):  # only the space check's probe captions may be embedded
            if tuple(texts) != PROBE_CAPTIONS:
                raise AssertionError("a CLAP text tower was used for a text source")
            return real(self, texts, **kw)
        return embed

    monkeypatch.setattr(ClapEncoder, "embed_texts", guard(ClapEncoder.embed_texts))
    monkeypatch.setattr(type(pipe.clap), "embed_texts", guard(type(pipe.clap).embed_texts))
    res = pipe(texts=["rain on a tin roof"], text_mode="clip", duration_s=0.5, num_inference_steps=1, seed=0,
               progress=False)
    assert res.mix.waveform.size > 0


def test_objects_text_query_uses_the_generator_text_tower(tiny, tmp_path):
    from foleykit.encoders.clip import ClipEncoder
    from foleykit.modules.grounding import GroundingConfig, GroundingModule
    from foleykit.pipelines.objects import ObjectsPipeline

    clip = ClipEncoder.from_pretrained(str(tiny / "clip-vit-large-patch14"))
    torch.manual_seed(0)  # a grounding module folder, so the grounding route (text query → attention) runs
    GroundingModule(GroundingConfig(text_dim=512, patch_dim=clip.dim, grid_h=clip.patch_grid,
                                    grid_w=clip.patch_grid)).save_pretrained(tmp_path / "grounding")
    pipe = ObjectsPipeline.from_models(str(tiny), grounding=str(tmp_path / "grounding"), device="cpu")
    seen_queries = []
    real = pipe.grounding

    class Spy:
        config = real.config

        def __call__(self, query, patches, **kw):
            if query is not None:
                seen_queries.append(query.detach().clone())
            return real(query, patches, **kw)

        def __getattr__(self, name):
            return getattr(real, name)

    pipe.grounding = Spy()
    pipe.plan(_image(), texts=["a red box"])
    expected = text_tower(tiny / "audioldm-s-full-v2", ["a red box"])[0]
    torch.testing.assert_close(seen_queries[0][0].float(), expected, atol=1e-5, rtol=1e-4)
    wrong = text_tower(tiny / "clap-htsat-unfused", ["a red box"])[0]
    assert abs(float(wrong @ expected)) < 0.9


def test_extraction_targets_come_from_audioldms_own_audio_tower(tiny, tmp_path):
    import soundfile as sf

    from foleykit.data.manifests import Manifest, ManifestItem
    from foleykit.training.extraction import ExtractionConfig, extract_embeddings, EmbeddingStore

    path = tmp_path / "a.wav"
    sf.write(path, _wave(seconds=2.0), 16_000)
    manifest = Manifest([ManifestItem(id="a", audio=str(path))], source=None)
    out = tmp_path / "emb"
    extract_embeddings(manifest, out, ExtractionConfig(features=("clap",)), models=str(tiny), device="cpu",
                       progress=False)
    store = EmbeddingStore(out)
    got = store.load(["clap"])["clap"][0]
    expected = audio_tower(tiny / "audioldm-clap", _wave(seconds=2.0), 16_000)
    torch.testing.assert_close(F.normalize(got, dim=0), expected, atol=1e-4, rtol=1e-3)
    space = store.index["models"]["clap"]["space"]
    assert space["same_space"] is True and space["probe_agreement"] > 0.99 and space["fingerprint"]


# -- the space check: wrong or missing audio tower stops audio-conditioned paths ----------------------


def test_judge_as_clap_role_stops_audio_paths_but_not_text_paths(tiny, tmp_path):
    from foleykit.pipelines.mapper import MapperPipeline

    wrong = model_set_dir(tmp_path / "wrong", tiny, clap="clap-htsat-unfused", mapper=None)
    pipe = MapperPipeline.from_models(str(wrong), device="cpu")
    assert pipe.clap.space.agreement < 0.5 and not pipe.clap.space.same_space
    pipe(_image(), duration_s=0.5, num_inference_steps=1, seed=0, progress=False)  # text path: fine
    with pytest.raises(InputError) as err:
        pipe(_image(), duration_s=0.5, num_inference_steps=1, num_candidates=2, seed=0, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "import-audioldm-clap" in msg and "clap-htsat-unfused" in msg


def test_missing_audio_tower_names_the_converter(tiny, tmp_path):
    import soundfile as sf

    from foleykit.pipelines.sources import SourcesPipeline

    none = model_set_dir(tmp_path / "none", tiny, clap=None)
    pipe = SourcesPipeline.from_models(str(none), device="cpu")
    assert pipe.clap.space is None
    path = tmp_path / "tone.wav"
    sf.write(path, _wave(), 16_000)
    with pytest.raises(ModelNotAvailableError) as err:
        pipe(audios=[str(path)], duration_s=0.5, num_inference_steps=1, seed=0, progress=False)
    assert "\n" not in str(err.value) and "import-audioldm-clap" in str(err.value)


def test_extraction_with_another_clap_fails_and_writes_nothing(tiny, tmp_path):
    import soundfile as sf

    from foleykit.data.manifests import Manifest, ManifestItem
    from foleykit.training.extraction import ExtractionConfig, extract_embeddings

    path = tmp_path / "a.wav"
    sf.write(path, _wave(), 16_000)
    manifest = Manifest([ManifestItem(id="a", audio=str(path))], source=None)
    wrong = model_set_dir(tmp_path / "wrong", tiny, clap="clap-htsat-unfused")
    out = tmp_path / "emb"
    with pytest.raises(InputError, match="import-audioldm-clap"):
        extract_embeddings(manifest, out, ExtractionConfig(features=("clap",)), models=str(wrong), device="cpu",
                           progress=False)
    assert not out.exists()


# -- trainers refuse targets of another CLAP space -------------------------------------------------------


@pytest.fixture(scope="module")
def clap_manifest(tmp_path_factory):
    import soundfile as sf

    from foleykit.data.manifests import Manifest, ManifestItem

    root = tmp_path_factory.mktemp("prov")
    items = []
    for i in range(3):
        sf.write(root / f"a{i}.wav", _wave(seed=i), 16_000)
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(root / f"i{i}.png")
        items.append(ManifestItem(id=f"x{i}", image=str(root / f"i{i}.png"), audio=str(root / f"a{i}.wav")))
    return Manifest(items, source=None)


def _extract(manifest, out, tiny, clap_override=None):
    from foleykit.training.extraction import ExtractionConfig, ShardExtractor, extract_embeddings

    cfg = ExtractionConfig(features=("clip", "clap"), clip_role="clip_mapper")
    ex = ShardExtractor.from_models(cfg, str(tiny), device="cpu")
    if clap_override is not None:
        ex = ShardExtractor(cfg, ex.clip, clap_override)
    extract_embeddings(manifest, out, extractor=ex, progress=False)
    return out


def _run(data, out, models=None):
    from foleykit.training.accelerate_config import run_training

    cfg = {"task": "mapper", "model": {"kind": "regression_mlp"}, "data": {"train": str(data)},
           "trainer": {"epochs": 1, "batch_size": 2, "output_dir": str(out), "cpu": True}, "models": models}
    return run_training(cfg, progress=False)


def test_trainer_accepts_targets_of_the_generators_own_clap(clap_manifest, tiny, tmp_path):
    data = _extract(clap_manifest, tmp_path / "emb", tiny)
    res = _run(data, tmp_path / "run", models=str(tiny))
    assert res.global_step >= 1


def test_trainer_refuses_targets_of_another_clap(clap_manifest, tiny, tmp_path):
    from foleykit.encoders.clap import ClapEncoder

    judge = ClapEncoder.from_pretrained(str(tiny / "clap-htsat-unfused"))
    data = _extract(clap_manifest, tmp_path / "emb", tiny, clap_override=judge)
    with pytest.raises(InputError) as err:
        _run(data, tmp_path / "run")
    msg = str(err.value)
    assert "\n" not in msg and "clap-htsat-unfused" in msg and "generator's own CLAP" in msg
    assert not (tmp_path / "run").exists()


def test_trainer_refuses_targets_of_another_generators_space(tiny):
    from foleykit.training.provenance import check_clap_provenance

    rec = {"ref": "/x/audioldm-clap", "space": {"clap": "/x/audioldm-clap", "generator": "/x/gen-a",
                                                "probe_agreement": 1.0, "same_space": True, "fingerprint": "aaaa"}}
    check_clap_provenance(rec, "emb", generator="/x/gen-a")  # the same generator
    check_clap_provenance(rec, "emb", generator="/y/gen-a-copy", generator_fingerprint=lambda: "aaaa")  # same space
    with pytest.raises(InputError) as err:
        check_clap_provenance(rec, "emb", generator="/y/gen-b", generator_fingerprint=lambda: "bbbb")
    assert "/x/gen-a" in str(err.value) and "/y/gen-b" in str(err.value)
