"""The accelerate trainer: exact resume, data plans, tasks, logs, checkpoints, paper run files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from foleykit.errors import InputError, OutputError
from foleykit.training.accelerate_config import (
    apply_overrides,
    find_config,
    load_training_data,
    read_config_file,
    run_training,
)
from foleykit.training.accelerate_tasks import build_task
from foleykit.training.trainer import TensorDictDataset, Trainer, TrainerConfig, epoch_plan

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL_MAPPER = dict(kind="diffusion_transformer", width=32, depth=2, heads=2, head_dim=16, dropout=0.1,
                    default_inference_steps=4)
SMALL_MANIFOLD = dict(manifold_dim=8, projector_widths=(16, 16), reconstructor_widths=(16,), dropout=0.1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pairs() -> TensorDictDataset:
    g = torch.Generator().manual_seed(0)
    clip = F.normalize(torch.randn(40, 16, generator=g), dim=-1)
    clap = F.normalize(clip @ torch.randn(16, 12, generator=g) + 0.1 * torch.randn(40, 12, generator=g), dim=-1)
    return TensorDictDataset({"clip": clip, "clap": clap})


def fit(task, model, data, out, **kw):
    kw.setdefault("epochs", 3)
    cfg = TrainerConfig(output_dir=str(out), batch_size=8, grad_accum_steps=2, seed=3, log_every_steps=2,
                        tensorboard=False, **kw)
    shapes = {k: tuple(v.shape[1:]) for k, v in data.tensors.items()}
    return Trainer(build_task(task, model, {}, data_shapes=shapes), data, cfg, task_name=task, progress=False).fit()


def metric_lines(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "samples_per_s"}
            for line in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("task", "model", "stop"), [
    ("mapper", SMALL_MAPPER, 3),      # mid-epoch, inside the second epoch's data order
    ("mapper", SMALL_MAPPER, 5),      # the last step of epoch 1, before its validation
    ("manifold", SMALL_MANIFOLD, 7),  # mean teacher: EMA, ramp-up, two losses
])
def test_stopped_and_resumed_run_matches_uninterrupted(tmp_path, pairs, task, model, stop):
    full = fit(task, model, pairs, tmp_path / "full")
    part = fit(task, model, pairs, tmp_path / "split", max_steps=stop)
    assert part.stopped_early and part.global_step == stop
    # stopping by design (--max-steps) exports a usable model of the weights at that step
    exported = type(part.model).from_pretrained(part.final_dir)
    for k, v in part.model.state_dict().items():
        torch.testing.assert_close(exported.state_dict()[k], v, rtol=0, atol=0)
    again = fit(task, model, pairs, tmp_path / "split", max_steps=stop)  # the same stop again: no extra step
    assert again.global_step == stop and not again.stopped_early
    torch.manual_seed(12345)  # disturb every global RNG: the checkpoint must restore them
    import random

    random.seed(7)
    resumed = fit(task, model, pairs, tmp_path / "split")
    assert not resumed.stopped_early and resumed.global_step == full.global_step == 15
    a, b = full.module.state_dict(), resumed.module.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=f"{k} differs after resume")
    assert metric_lines(tmp_path / "split") == metric_lines(tmp_path / "full")
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    if task == "manifold":  # the teacher (exported) is an EMA lagging behind the student
        assert int(a["step"]) == 15
        assert any(not torch.equal(a[k], a["student." + k[len("teacher."):]]) for k in a if k.startswith("teacher."))
        assert resumed.model is resumed.module.teacher


def test_training_learns_and_writes_final(tmp_path, pairs):
    from foleykit.modules.mapper import V2AMapper

    res = fit("mapper", dict(kind="regression_mlp", width=16), pairs, tmp_path / "run", epochs=12,
              optimizer={"lr": 3e-3})
    losses = [h["train_loss"] for h in res.history]
    assert losses[-1] < 0.5 * losses[0]
    assert res.history[-1]["val_cosine"] > res.history[0]["val_cosine"]
    model = V2AMapper.from_pretrained(res.final_dir)
    torch.testing.assert_close(model.state_dict()["mlp.net.0.weight"], res.model.state_dict()["mlp.net.0.weight"])
    info = json.loads((res.final_dir / "training.json").read_text())
    assert info["global_step"] == 60 and info["seed"] == 3
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["step-00000055", "step-00000060"]  # keep_checkpoints=2, one per epoch end
    lines = metric_lines(tmp_path / "run")
    assert {ln["kind"] for ln in lines} == {"train", "epoch"} and lines[-1]["step"] == 60


def test_refusals(tmp_path, pairs):
    fit("mapper", SMALL_MAPPER, pairs, tmp_path / "run", max_steps=2)
    cfg = TrainerConfig(output_dir=str(tmp_path / "run"), batch_size=16, seed=3, tensorboard=False)
    with pytest.raises(InputError, match="belongs to a different run"):
        Trainer(build_task("mapper", SMALL_MAPPER, {}, data_shapes={"clip": (16,), "clap": (12,)}), pairs, cfg,
                task_name="mapper", progress=False).fit()
    with pytest.raises(OutputError, match="already holds checkpoints"):
        Trainer(build_task("mapper", SMALL_MAPPER, {}, data_shapes={"clip": (16,), "clap": (12,)}), pairs, cfg,
                task_name="mapper", resume=None, progress=False).fit()
    bad = TrainerConfig(output_dir=str(tmp_path / "x"), batch_size=10, grad_accum_steps=3, tensorboard=False)
    with pytest.raises(InputError, match="not divisible"):
        Trainer(build_task("mapper", SMALL_MAPPER, {}, data_shapes={"clip": (16,), "clap": (12,)}), pairs, bad,
                progress=False).fit()
    with pytest.raises(InputError, match="needs batch key"):
        Trainer(build_task("temporal", dict(clap_dim=16, num_heads=2)), pairs,
                TrainerConfig(output_dir=str(tmp_path / "y"), tensorboard=False), progress=False).fit()
    with pytest.raises(InputError, match="mixed_precision"):
        TrainerConfig(mixed_precision="fp8")


def test_epoch_plan_shards_and_orders():
    world = 3
    plans = [epoch_plan(20, epoch=1, seed=5, micro_batch=2, accum=2, rank=r, world=world) for r in range(world)]
    seen = [i for p in plans for g in p.groups for b in g for i in b]
    assert len(seen) == 21 and set(seen) == set(range(20))  # padded to 21, one item twice
    assert all(p.steps == 2 for p in plans) and [len(g) for g in plans[0].groups] == [2, 2]
    again = epoch_plan(20, epoch=1, seed=5, micro_batch=2, accum=2, rank=0, world=world)
    other = epoch_plan(20, epoch=2, seed=5, micro_batch=2, accum=2, rank=0, world=world)
    assert again.groups == plans[0].groups and other.groups != plans[0].groups
    dropped = epoch_plan(20, epoch=0, seed=5, micro_batch=4, accum=1, rank=0, world=1, drop_last=True)
    assert [len(b) for g in dropped.groups for b in g] == [4] * 5


def test_other_tasks_bf16_and_tensorboard(tmp_path):
    g = torch.Generator().manual_seed(1)
    n = 16
    remix = TensorDictDataset({"codes": torch.randn(n, 4, 8, generator=g), "clips": torch.randn(n, 4, 16, generator=g),
                               "target_clap": torch.randn(n, 12, generator=g),
                               "padding_mask": torch.rand(n, 4, generator=g) < 0.3})
    cfg = TrainerConfig(output_dir=str(tmp_path / "remix"), epochs=2, batch_size=8, mixed_precision="bf16",
                        max_grad_norm=1.0, log_every_steps=1, val_fraction=0.25)
    res = Trainer(build_task("remixer", dict(manifold_dim=8, clip_dim=16, clap_dim=12, embed_dim=16, num_layers=1,
                                             num_heads=2)), remix, cfg, task_name="remixer", progress=False).fit()
    assert res.global_step == 4 and "val_cosine" in res.history[-1]
    assert list((tmp_path / "remix" / "tensorboard").glob("events.out.tfevents.*"))
    temporal = TensorDictDataset({"frame_claps": torch.randn(n, 6, 16, generator=g),
                                  "target_clap": torch.randn(n, 16, generator=g)})
    res = Trainer(build_task("temporal", dict(clap_dim=16, num_frames=6, num_heads=2)), temporal,
                  TrainerConfig(output_dir=str(tmp_path / "ta"), epochs=1, batch_size=4, tensorboard=False),
                  task_name="temporal", progress=False).fit()
    assert res.global_step == 4 and (res.final_dir / "config.json").is_file()


def test_grounding_through_the_tiny_unet(tmp_path, tiny_models_dir):
    g = torch.Generator().manual_seed(2)
    n = 8
    data = TensorDictDataset({"latents": torch.randn(n, 8, 16, 16, generator=g), "text_emb": torch.randn(n, 512, generator=g),
                              "patch_emb": torch.randn(n, 16, 32, generator=g)})
    model = dict(text_dim=512, patch_dim=32, grid_h=4, grid_w=4, attn_dim=16, mlp_hidden_dim=32, out_dim=512)
    cfg = TrainerConfig(output_dir=str(tmp_path / "g"), epochs=1, batch_size=4, val_fraction=0.0, tensorboard=False,
                        optimizer={"lr": 1e-4, "betas": (0.95, 0.999), "eps": 1e-6, "weight_decay": 1e-3})
    unet_before = None
    factory = build_task("grounding", model, {"cond_dropout": 0.1}, models=str(tiny_models_dir))

    def capture():
        nonlocal unet_before
        module = factory()
        unet_before = {k: v.clone() for k, v in module.unet.state_dict().items()}
        return module

    res = Trainer(capture, data, cfg, task_name="grounding", progress=False).fit()
    assert res.global_step == 2 and (res.final_dir / "unet" / "config.json").is_file()
    after = res.module.unet.state_dict()
    assert any(not torch.equal(after[k], unet_before[k]) for k in after)  # fine-tuned jointly
    # Dropped conditions train the branch inference uses: the null condition is the generator's CLAP("").
    from foleykit.generator.pipeline import AudioLDMGenerator

    from foleykit.model_sets import resolve_model_set

    generator = AudioLDMGenerator.from_pretrained(resolve_model_set(str(tiny_models_dir)).audioldm, device="cpu")
    torch.testing.assert_close(res.module.model.null_cond, generator.unconditional_embedding(), rtol=0, atol=1e-6)


def test_paper_run_files():
    mapper = read_config_file(find_config("mapper_v2a"))
    assert mapper["task"] == "mapper" and mapper["trainer"]["batch_size"] == 448
    assert mapper["trainer"]["epochs"] == 100 and mapper["trainer"]["optimizer"]["lr"] == pytest.approx(1.1e-4)
    ground = read_config_file(CONFIGS / "grounding_sto.yaml")
    opt = TrainerConfig.from_dict(ground["trainer"]).optimizer
    assert (opt.lr, opt.betas, opt.eps, opt.weight_decay) == (1e-4, (0.95, 0.999), 1e-6, 1e-3)
    assert ground["trainer"]["batch_size"] == 64 and ground["trainer"]["epochs"] == 300
    temporal = read_config_file(CONFIGS / "temporal_ss2a.yaml")
    assert temporal["trainer"]["epochs"] == 64 and temporal["model"]["num_layers"] == 1
    for name in ("manifold_ss2a", "remixer_ss2a"):
        cfg = read_config_file(find_config(name))
        TrainerConfig.from_dict(cfg["trainer"])  # every run file's trainer section is valid
        build_task(cfg["task"], cfg["model"], cfg.get("options"))()
    assert apply_overrides(mapper, ["trainer.epochs=2", "data.keys.clip=clip"])["trainer"]["epochs"] == 2
    with pytest.raises(InputError, match="not key.path=value"):
        apply_overrides(mapper, ["epochs"])


def test_run_from_file_on_a_tensors_file(tmp_path, pairs):
    from safetensors.torch import save_file

    save_file({"clip_mean": pairs.tensors["clip"], "clap": pairs.tensors["clap"]}, str(tmp_path / "pairs.safetensors"))
    ds, fp, shapes = load_training_data(tmp_path / "pairs.safetensors", {"clip": "clip_mean", "clap": "clap"})
    assert len(ds) == 40 and shapes == {"clip": (16,), "clap": (12,)} and len(fp) == 64
    cfg = apply_overrides(read_config_file(find_config("mapper_v2a")), [
        f"data.train={tmp_path / 'pairs.safetensors'}", f"trainer.output_dir={tmp_path / 'out'}",
        "trainer.epochs=1", "trainer.batch_size=8", "trainer.tensorboard=false",
        "model.depth=1", "model.heads=2", "model.head_dim=8", "model.width=16", "options.val_sample_steps=2",
    ])
    res = run_training(cfg, progress=False)
    assert res.final_dir is not None and res.global_step == 5
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["task"] == "mapper" and run["run_config"]["model"]["depth"] == 1
    with pytest.raises(InputError, match="missing tensor 'clip'"):
        load_training_data(tmp_path / "pairs.safetensors", {"clip": "clip"})


def _regression_mapper_run(tmp_path, name, data, *, batch_size, accum, epochs=3, **kw):
    """A deterministic task: a regression MLP mapper (no dropout, no noise in its loss)."""
    cfg = TrainerConfig(output_dir=str(tmp_path / name), epochs=epochs, batch_size=batch_size, grad_accum_steps=accum,
                        seed=11, val_fraction=0.0, tensorboard=False, log_every_steps=1,
                        optimizer={"lr": 1e-2}, **kw)
    shapes = {k: tuple(v.shape[1:]) for k, v in data.tensors.items()}
    task = build_task("mapper", dict(kind="regression_mlp", width=16, dropout=0.0), {}, data_shapes=shapes)
    return Trainer(task, data, cfg, task_name="mapper", progress=False).fit()


def test_grad_accumulation_equals_the_bigger_batch(tmp_path, pairs):
    """Accumulating 2 micro-batches of B equals one batch of 2B: same data order, same seed, same
    weights and losses. 22 items make the last step 4 + 2 items, which only a per-item weighting of
    the micro-batch losses (not a mean of their means) gets right."""
    data = TensorDictDataset({k: v[:22] for k, v in pairs.tensors.items()})
    big = _regression_mapper_run(tmp_path, "big", data, batch_size=8, accum=1)      # micro-batch 2B = 8
    acc = _regression_mapper_run(tmp_path, "accum", data, batch_size=8, accum=2)    # 2 micro-batches of B = 4
    assert big.global_step == acc.global_step == 9
    run = json.loads((tmp_path / "accum" / "run.json").read_text())
    assert run["micro_batch"] == 4 and json.loads((tmp_path / "big" / "run.json").read_text())["micro_batch"] == 8
    a, b = big.module.state_dict(), acc.module.state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=2e-6, msg=f"{k}: accumulation differs from the big batch")
    losses_big = [ln["loss"] for ln in metric_lines(tmp_path / "big") if ln["kind"] == "train"]
    losses_acc = [ln["loss"] for ln in metric_lines(tmp_path / "accum") if ln["kind"] == "train"]
    assert len(losses_big) == 9 and losses_acc == pytest.approx(losses_big, abs=1e-6)
    # ... and the comparison has teeth: a plain batch of B (twice the steps) trains to other weights.
    small = _regression_mapper_run(tmp_path, "small", data, batch_size=4, accum=1)
    assert small.global_step == 18
    assert max((small.module.state_dict()[k] - a[k]).abs().max().item() for k in a) > 1e-3


@pytest.mark.parametrize(("precision", "want"), [("bf16", torch.bfloat16), ("no", torch.float32)])
def test_mixed_precision_is_active_on_cpu(tmp_path, pairs, precision, want):
    """bf16 autocast really runs the training forward in bfloat16 on CPU (seen by a forward hook),
    and the trainer records the dtype it ran in."""
    seen: list[torch.dtype] = []
    factory = build_task("mapper", dict(kind="regression_mlp", width=16), {}, data_shapes={"clip": (16,), "clap": (12,)})

    def hooked():
        module = factory()
        linear = next(m for m in module.modules() if isinstance(m, torch.nn.Linear))
        linear.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype) if mod.training else None)
        return module

    cfg = TrainerConfig(output_dir=str(tmp_path / precision), epochs=1, batch_size=8, mixed_precision=precision,
                        cpu=True, tensorboard=False, seed=0)
    res = Trainer(hooked, pairs, cfg, task_name="mapper", progress=False).fit()
    assert res.global_step == 5 and len(seen) == 5 and set(seen) == {want}
    recorded = json.loads((tmp_path / precision / "run.json").read_text())["autocast_dtype"]
    assert recorded == res.autocast_dtype == (None if precision == "no" else "bfloat16")
    assert all(p.dtype == torch.float32 for p in res.model.parameters())  # master weights stay fp32
