"""Object-aware generation on the tiny models: SAM caching, click → conditioning, blends, reproducibility, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from foleykit.errors import InputError

DUR = 1.0
STEPS = 2


def _scene(w: int = 240, h: int = 160) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2] = (150, 190, 235)
    arr[h // 2 :] = (110, 150, 80)
    arr[50:120, 40:110] = (200, 40, 40)
    yy, xx = np.mgrid[:h, :w]
    arr[(yy - 95) ** 2 + (xx - 170) ** 2 < 30**2] = (40, 200, 70)
    return Image.fromarray(arr)


@pytest.fixture(scope="module")
def untrained_grounding(tiny_models_dir, tmp_path_factory):
    """A grounding module folder with fresh (seed 0) weights: the grounding route's code paths, offline.
    (Without one the objects method takes the training-free route: tests/test_training_free.py.)"""
    from foleykit.encoders.clap import ClapEncoder
    from foleykit.encoders.clip import ClipEncoder
    from foleykit.model_sets import resolve_model_set
    from foleykit.modules.grounding import GroundingConfig, GroundingModule

    ms = resolve_model_set(str(tiny_models_dir))
    clip, clap = ClipEncoder.from_pretrained(ms.clip), ClapEncoder.from_pretrained(ms.clap)
    torch.manual_seed(0)
    g = GroundingModule(GroundingConfig(text_dim=clap.dim, patch_dim=clip.dim, grid_h=clip.patch_grid,
                                        grid_w=clip.patch_grid))
    folder = tmp_path_factory.mktemp("grounding-untrained")
    g.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pipe(tiny_models_dir, untrained_grounding):
    from foleykit.pipelines.objects import ObjectsPipeline

    return ObjectsPipeline.from_models(str(tiny_models_dir), grounding=str(untrained_grounding), device="cpu")


@pytest.fixture(scope="module")
def sam(tiny_models_dir):
    from foleykit.encoders.segmenter import Segmenter
    from foleykit.model_sets import resolve_model_set

    return Segmenter.from_pretrained(resolve_model_set(str(tiny_models_dir)).extra["sam"])


# ---------------------------------------------------------------------- segmenter


def test_tiny_sam_is_in_the_tiny_set_and_deterministic(tiny_models_dir, tmp_path):
    from foleykit.encoders.segmenter import write_tiny_sam
    from foleykit.model_sets import resolve_model_set

    ms = resolve_model_set(str(tiny_models_dir))
    assert "sam" in ms.extra
    a = write_tiny_sam(tmp_path / "a", seed=3)
    b = write_tiny_sam(tmp_path / "b", seed=3)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "processor_config.json").is_file() or (a / "preprocessor_config.json").is_file()


def test_image_embedding_is_computed_once_per_image(sam):
    calls = []
    original = sam.model.get_image_embeddings

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    sam.model.get_image_embeddings = counting
    try:
        img = _scene()
        sam.set_image(img)
        for p in [(75, 85), (170, 95), (10, 10), (200, 20)]:
            sam.masks(points=[p])
        sam.masks(boxes=[(30, 40, 120, 130)])
        sam.set_image(img.copy())  # same pixels → same key → cached
        sam.masks(points=[(75, 85), (170, 95)])
        assert len(calls) == 1
        other = _scene(200, 200)
        sam.set_image(other)
        sam.masks(points=[(50, 50)])
        assert len(calls) == 2
        sam.set_image(img)  # back to the first image: still cached
        sam.masks(points=[(75, 85)])
        assert len(calls) == 2
    finally:
        sam.model.get_image_embeddings = original


def test_clicks_run_only_the_decoder(sam):
    img = _scene()
    sam.set_image(img)

    def boom(*a, **k):
        raise AssertionError("the image encoder ran for a click")

    encoder_forward = sam.model.vision_encoder.forward
    sam.model.vision_encoder.forward = boom
    try:
        masks = sam.masks(points=[(75, 85), [(170, 95), (160, 90)]], labels=[1, [1, 0]], boxes=[(30, 40, 120, 130)])
    finally:
        sam.model.vision_encoder.forward = encoder_forward
    assert len(masks) == 3
    for m in masks:
        assert m.dtype == bool and m.shape == (160, 240)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(points=[(240, 10)]), "outside"),
        (dict(points=[(-1, 10)]), "outside"),
        (dict(points=[(5, 160)]), "outside"),
        (dict(boxes=[(10, 10, 10, 50)]), "zero area"),
        (dict(boxes=[(10, 20, 50, 20)]), "zero area"),
        (dict(boxes=[(10, 10, 300, 50)]), "outside"),
        (dict(points=[(1, 2, 3)]), "x,y"),
    ],
)
def test_bad_prompts_are_input_errors(sam, kwargs, match):
    sam.set_image(_scene())
    with pytest.raises(InputError, match=match):
        sam.masks(**kwargs)


# ---------------------------------------------------------------------- conditioning


def test_different_clicks_give_different_conditioning(pipe):
    img = _scene()
    a = pipe.plan(img, clicks=[(75, 85)]).objects[0]
    a2 = pipe.plan(img, clicks=[(75, 85)]).objects[0]
    b = pipe.plan(img, clicks=[(170, 95)]).objects[0]
    assert torch.equal(a.cond, a2.cond) and torch.equal(a.weights, a2.weights)
    assert not np.array_equal(a.mask, b.mask)
    assert (a.weights - b.weights).abs().max() > 1e-3
    assert (a.cond - b.cond).norm() > 1e-4
    # Weights: the normalised mask of an untrained module (mean 1/P, sums to 1, zero off the object).
    p = a.weights.numel()
    assert a.weights.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert a.weights.mean().item() == pytest.approx(1.0 / p, rel=1e-5)
    assert torch.all(a.weights[a.selection == 0] == 0)


def test_trained_statistics_rescale_masks_to_mean_and_variance(pipe):
    g = pipe.grounding
    old_var, old_count = g.ref_attn_var.clone(), g.ref_attn_count.clone()
    try:
        g.ref_attn_var.fill_(2.5e-5)
        g.ref_attn_count.fill_(10)
        plan = pipe.plan(_scene(), clicks=[(75, 85)])
        w = plan.objects[0].weights
        assert plan.rescale == "training_reference"
        assert w.mean().item() == pytest.approx(1.0 / w.numel(), rel=1e-4)
        assert w.var(unbiased=False).item() == pytest.approx(2.5e-5, rel=1e-3)
    finally:
        g.ref_attn_var.copy_(old_var)
        g.ref_attn_count.copy_(old_count)


def test_text_query_uses_the_learned_attention(pipe):
    img = _scene()
    plan = pipe.plan(img, texts=["a red box"])
    obj = plan.objects[0]
    emb = pipe.clap.embed_texts(["a red box"])
    expected = pipe.grounding.attention_weights(emb, pipe.patches(img))[0]
    assert torch.allclose(obj.weights, expected, atol=1e-6)
    assert torch.allclose(plan.blend_cond, obj.cond)  # one object: the blend is that object
    # An untrained module attends everywhere: that is reported, not hidden.
    assert plan.notes and "matched no region" in plan.notes[0]
    with pytest.raises(InputError, match="empty"):
        pipe.plan(img, texts=["  "])


def test_blend_is_the_union_of_the_objects_plus_optional_context(pipe):
    img = _scene()
    plan = pipe.plan(img, clicks=[(75, 85), (170, 95)])
    union = torch.maximum(plan.objects[0].selection, plan.objects[1].selection)
    assert torch.allclose(plan.blend_weights, union / union.sum(), atol=1e-7)
    expected = pipe.grounding(None, pipe.patches(img), attention_override=plan.blend_weights)[0][0]
    assert torch.allclose(plan.blend_cond, expected, atol=1e-6)
    ctx = pipe.plan(img, clicks=[(75, 85), (170, 95)], context=0.25)
    p = union.numel()
    assert torch.allclose(ctx.blend_weights, 0.75 * union / union.sum() + 0.25 / p, atol=1e-7)
    assert ctx.blend_weights.sum().item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(InputError, match="context"):
        pipe.plan(img, clicks=[(75, 85)], context=1.5)
    with pytest.raises(InputError, match="at least one"):
        pipe.plan(img)


# ---------------------------------------------------------------------- generation


def test_same_click_and_seed_reproduce_the_output(pipe, tmp_path):
    img = _scene()
    kw = dict(duration_s=DUR, num_inference_steps=STEPS, progress=False)
    r1 = pipe(img, clicks=[(75, 85)], seed=7, **kw)
    r2 = pipe(img, clicks=[(75, 85)], seed=7, **kw)
    r3 = pipe(img, clicks=[(75, 85)], seed=8, **kw)
    assert r1.seed == 7 and r1.sample_rate == 16000
    assert r1.waveform.shape == (int(DUR * 16000),)
    assert np.array_equal(r1.waveform, r2.waveform)
    assert not np.allclose(r1.waveform, r3.waveform)
    assert r1.record["grounding"]["trained"] is False and "never trained" in r1.record["grounding"]["note"]
    assert r1.record["route"]["name"] == "trained"  # a grounding module was given
    assert r1.record["generator"]["guidance_scale"] == 2.0  # the paper's default

    # Adding an object keeps the first object's stem (same seed → same noise) and adds a blend.
    events = []
    r4 = pipe(img, clicks=[(75, 85), (170, 95)], seed=7, save_maps_dir=tmp_path / "maps",
              progress=lambda f, m: events.append((f, m)), duration_s=DUR, num_inference_steps=STEPS)
    assert len(r4.objects) == 2
    assert np.array_equal(r4.objects[0].waveform, r1.waveform)
    assert not np.allclose(r4.objects[1].waveform, r1.waveform)
    assert not np.allclose(r4.waveform, r4.objects[0].waveform)
    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    maps = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert "blend-weights.png" in maps and "blend-mask.png" in maps
    assert "object-01-click-75x85-mask.png" in maps and "object-02-click-170x95-weights.png" in maps


# ---------------------------------------------------------------------- CLI


def test_cli_writes_blend_and_stems(tiny_models_dir, tmp_path, capsys):
    import soundfile as sf

    from foleykit.cli import main

    img = tmp_path / "scene.png"
    _scene().save(img)
    out = tmp_path / "out.wav"
    stems = tmp_path / "stems"
    args = ["generate", str(img), "--click", "75,85", "--click", "170,95", "--text", "wind", "-o", str(out),
            "--stems", str(stems), "--models", str(tiny_models_dir), "--duration", str(DUR), "--steps", str(STEPS),
            "--seed", "5", "--device", "cpu", "-q"]
    try:
        main(args)
    except SystemExit as e:  # main exits only on errors
        pytest.fail(f"foleykit exited with {e.code}")
    wave, sr = sf.read(out)
    assert sr == 16000 and len(wave) == int(DUR * sr)
    names = sorted(p.name for p in stems.iterdir())
    assert names == [
        "object-01-click-75x85.wav", "object-01-click-75x85.wav.json",
        "object-02-click-170x95.wav", "object-02-click-170x95.wav.json",
        "object-03-text-wind.wav", "object-03-text-wind.wav.json",
    ]
    side = json.loads((tmp_path / "out.wav.json").read_text())
    assert side["seed"] == 5 and side["method"] == "objects"
    assert side["parameters"]["clicks"] == [[75.0, 85.0], [170.0, 95.0]]
    assert [o["kind"] for o in side["objects"]] == ["click", "click", "text"]
    stem_side = json.loads((stems / "object-02-click-170x95.wav.json").read_text())
    assert stem_side["object"]["prompt"] == [170.0, 95.0]
    assert not [p for p in tmp_path.rglob(".foleykit-*")], "staging folders were left behind"
    printed = capsys.readouterr().out
    assert "seed: 5" in printed and "object-03-text-wind.wav" in printed


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--click", "500,10"], "outside the 240x160 image"),
        (["--box", "10,10,10,80"], "zero area"),
        (["--click", "12"], "expected 2 numbers"),
    ],
)
def test_cli_bad_objects_fail_with_one_line_and_write_nothing(tiny_models_dir, tmp_path, capsys, extra, message):
    from foleykit.cli import main

    img = tmp_path / "scene.png"
    _scene().save(img)
    out = tmp_path / "out.wav"
    with pytest.raises(SystemExit) as e:
        main(["generate", str(img), *extra, "-o", str(out), "--stems", str(tmp_path / "stems"),
              "--models", str(tiny_models_dir), "--duration", str(DUR), "--steps", str(STEPS), "--device", "cpu", "-q"])
    assert e.value.code == 1  # a user error (usage errors are 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("foleykit: error:") and message in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.png"]


def test_cli_not_an_image(tiny_models_dir, tmp_path, capsys):
    from foleykit.cli import main

    bogus = tmp_path / "x.png"
    bogus.write_text("not a picture")
    with pytest.raises(SystemExit) as e:
        main(["generate", str(bogus), "--click", "1,1", "-o", str(tmp_path / "o.wav"), "--models", str(tiny_models_dir),
              "--device", "cpu", "-q"])
    assert e.value.code == 1
    assert "not a recognised image format" in capsys.readouterr().err
    assert not (tmp_path / "o.wav").exists()


# ---------------------------------------------------------------------- fine-tuned UNet from the grounding folder


@pytest.fixture(scope="module")
def trained_grounding(tiny_models_dir, pipe, tmp_path_factory):
    """A tiny grounding run trained with the UNet unfrozen (the paper's default) by the real trainer."""
    import shutil

    from foleykit.training.accelerate_tasks import build_task
    from foleykit.training.trainer import TensorDictDataset, Trainer, TrainerConfig

    g = torch.Generator().manual_seed(4)
    n, p = 8, pipe.clip.patch_grid**2
    data = TensorDictDataset({"latents": torch.randn(n, 8, 16, 16, generator=g),
                              "text_emb": torch.randn(n, pipe.clap.dim, generator=g),
                              "patch_emb": torch.randn(n, p, pipe.clip.dim, generator=g)})
    model = dict(text_dim=pipe.clap.dim, patch_dim=pipe.clip.dim, grid_h=pipe.clip.patch_grid,
                 grid_w=pipe.clip.patch_grid, attn_dim=16, mlp_hidden_dim=32, out_dim=512)
    root = tmp_path_factory.mktemp("grounding-run")
    cfg = TrainerConfig(output_dir=str(root / "run"), epochs=1, batch_size=4, val_fraction=0.0, tensorboard=False,
                        optimizer={"lr": 1e-3, "betas": (0.95, 0.999), "eps": 1e-6, "weight_decay": 1e-3})
    task = build_task("grounding", model, {"cond_dropout": 0.1, "finetune_unet": True}, models=str(tiny_models_dir))
    res = Trainer(task, data, cfg, task_name="grounding", progress=False,
                  run_config={"task": "grounding", "options": {"finetune_unet": True}}).fit()
    final = res.final_dir
    assert (final / "config.json").is_file() and (final / "unet" / "config.json").is_file()
    without = root / "without-unet"
    shutil.copytree(final, without, ignore=shutil.ignore_patterns("unet"))
    return final, without


def test_grounding_folder_with_a_finetuned_unet_replaces_the_model_sets_unet(tiny_models_dir, trained_grounding,
                                                                             tmp_path):
    import soundfile as sf
    from diffusers import UNet2DConditionModel

    from foleykit.cli import main
    from foleykit.pipelines.objects import ObjectsPipeline

    final, without = trained_grounding
    # The pipeline's UNet is the fine-tuned one, bit for bit; without unet/ it is the model set's.
    ft = ObjectsPipeline.from_models(str(tiny_models_dir), grounding=str(final), device="cpu")
    base = ObjectsPipeline.from_models(str(tiny_models_dir), grounding=str(without), device="cpu")
    saved = UNet2DConditionModel.from_pretrained(str(final / "unet")).state_dict()
    ft_sd, base_sd = ft.generator.unet.state_dict(), base.generator.unet.state_dict()
    assert all(torch.equal(ft_sd[k].contiguous(), v) for k, v in saved.items())
    assert any(not torch.equal(base_sd[k].contiguous(), v) for k, v in saved.items())
    assert ft.grounding_record["unet"]["ref"] == str((final / "unet").resolve())
    assert base.grounding_record["unet"] is None and "no unet/" in base.grounding_record["unet_note"]
    del ft, base

    img = tmp_path / "scene.png"
    _scene().save(img)
    waves, sides = {}, {}
    for name, folder in (("ft", final), ("base", without)):
        out = tmp_path / f"{name}.wav"
        try:
            main(["generate", str(img), "--click", "75,85", "-o", str(out), "--grounding", str(folder),
                  "--models", str(tiny_models_dir), "--duration", str(DUR), "--steps", str(STEPS), "--seed", "3",
                  "--device", "cpu", "-q"])
        except SystemExit as e:
            pytest.fail(f"foleykit exited with {e.code}")
        waves[name], sr = sf.read(out, dtype="float32")
        assert sr == 16000 and len(waves[name]) == int(DUR * sr)
        sides[name] = json.loads((tmp_path / f"{name}.wav.json").read_text())
    # Same grounding weights, same click and seed: only the UNet differs, and so does the sound.
    assert not np.allclose(waves["ft"], waves["base"], atol=1e-4)
    ft_side, base_side = sides["ft"], sides["base"]
    assert ft_side["grounding"]["trained"] is True
    # A trained module present: the trained route is taken, and the record says so.
    assert ft_side["route"] == {"name": "trained", "why": "a grounding module given"}
    assert ft_side["grounding"]["unet"]["ref"] == str((final / "unet").resolve())
    assert ft_side["grounding"]["unet"]["fine_tuned"] is True
    assert ft_side["models"]["audioldm_unet"] == {"ref": str((final / "unet").resolve()), "revision": "local"}
    assert base_side["grounding"]["unet"] is None and "audioldm_unet" not in base_side["models"]
    assert ft_side["models"]["audioldm"] == base_side["models"]["audioldm"]  # VAE, vocoder: the model set's


def test_an_incompatible_finetuned_unet_is_refused(tiny_models_dir, trained_grounding, tmp_path):
    import shutil

    from foleykit.pipelines.objects import ObjectsPipeline

    final, _ = trained_grounding
    bad = tmp_path / "bad"
    shutil.copytree(final, bad)
    cfg = json.loads((bad / "unet" / "config.json").read_text())
    cfg["class_embed_type"] = None  # loads (its class projection unused) but cannot take the condition
    (bad / "unet" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="fine-tuned UNet has class_embed_type=None"):
        ObjectsPipeline.from_models(str(tiny_models_dir), grounding=str(bad), device="cpu")
