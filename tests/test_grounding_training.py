"""Grounding training through the one training path (the accelerate Trainer + its grounding tasks):
synthetic grounding far above chance, the diffusion loss through a tiny UNet fine-tuned or frozen."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from foleykit.modules.grounding import GroundingConfig, GroundingModule
from foleykit.modules.mask_substitution import rescale_to_attention
from foleykit.training.accelerate_config import find_config, read_config_file
from foleykit.training.accelerate_tasks import GroundingContrastiveTask, GroundingTask
from foleykit.training.losses import GroundingBatch, attention_nll_loss, diffusion_loss
from foleykit.training.synthetic_scenes import attention_mass, make_synthetic_scenes
from foleykit.training.trainer import TensorDictDataset, Trainer, TrainerConfig

#: The paper's AdamW (Sec. 4.1) with the learning rate each test sets.
PAPER_ADAMW = {"betas": (0.95, 0.999), "eps": 1e-6, "weight_decay": 1e-3}


def _trainer_config(out, *, lr: float, epochs: int, batch_size: int, log_every_steps: int = 1000) -> TrainerConfig:
    return TrainerConfig(output_dir=str(out), epochs=epochs, batch_size=batch_size, val_fraction=0.0,
                         tensorboard=False, log_every_steps=log_every_steps, optimizer={"lr": lr, **PAPER_ADAMW})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------- synthetic grounding


@pytest.fixture(scope="module")
def trained_on_scenes(tmp_path_factory):
    scenes = make_synthetic_scenes(2560, seed=0)
    train, held_out = scenes.subset(slice(0, 2048)), scenes.subset(slice(2048, None))
    cfg = GroundingConfig(
        text_dim=32, patch_dim=32, grid_h=8, grid_w=8, attn_dim=32, mlp_hidden_dim=64, out_dim=32
    )
    out = tmp_path_factory.mktemp("scenes")
    config = _trainer_config(out, lr=5e-3, epochs=7, batch_size=64, log_every_steps=16)  # 7 x 32 steps
    result = Trainer(lambda: GroundingContrastiveTask(cfg, train.audio_bank, temperature=0.1),
                     TensorDictDataset(train.training_data()), config, progress=False).fit()
    windows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [w["loss"] for w in windows if w["kind"] == "train"]
    return result.model.eval(), held_out, result, losses


def test_synthetic_grounding_attends_to_named_source(trained_on_scenes) -> None:
    model, scenes, result, losses = trained_on_scenes
    assert result.seed == 0 and result.global_step == 224
    assert sum(losses[-2:]) / 2 < 0.5 * sum(losses[:2]) / 2, losses  # 16-step windows: the last vs the first
    with torch.no_grad():
        _, weights = model(scenes.text_emb, scenes.patch_emb)
    mass = attention_mass(weights, scenes.target_region)
    chance = scenes.chance_mass  # what a uniform attention would put there (~0.06)
    assert float(mass.mean()) > 0.4
    assert float(mass.mean()) > 5 * float(chance.mean())
    top1_hit = scenes.target_region.gather(1, weights.argmax(-1, keepdim=True)).float().mean()
    assert float(top1_hit) > 0.6


def test_mask_substitution_selects_the_masked_source(trained_on_scenes) -> None:
    """The paper's claim on toy data: a rescaled ground-truth mask can stand in for the attention."""
    model, scenes, _, _ = trained_on_scenes

    def accuracy(cond: torch.Tensor) -> float:
        return float(((cond @ scenes.audio_bank.T).argmax(-1) == scenes.target_ids).float().mean())

    with torch.no_grad():
        cond, weights = model(scenes.text_emb, scenes.patch_emb)
        override = rescale_to_attention(scenes.target_region.float(), weights)
        cond_mask, _ = model(None, scenes.patch_emb, attention_override=override)
        uniform, _ = model(None, scenes.patch_emb, attention_override=torch.full((64,), 1 / 64))
    assert accuracy(cond) > 0.75  # 8 sources: chance is 0.125
    assert accuracy(cond_mask) > 0.6
    assert accuracy(cond_mask) > accuracy(uniform) + 0.3


def test_attention_nll_loss_is_cross_entropy_to_target_distribution() -> None:
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    region = torch.tensor([[False, True, True, False]])
    expected = -0.5 * (logits.log_softmax(-1)[0, 1] + logits.log_softmax(-1)[0, 2])
    torch.testing.assert_close(attention_nll_loss(logits, region), expected)


# ---------------------------------------------------------------------- diffusion loss through a tiny UNet

GCFG = GroundingConfig(
    text_dim=32, patch_dim=32, grid_h=4, grid_w=4, attn_dim=32, mlp_hidden_dim=64, out_dim=512
)


def _tiny_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=(16, 8),
        in_channels=8,
        out_channels=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        cross_attention_dim=64,
        attention_head_dim=8,
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=512,
        class_embeddings_concat=True,
    )


def _scheduler() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195, beta_schedule="linear")


def _batch(seed: int = 0) -> GroundingBatch:
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(4, 8, 16, 8, generator=g)  # (B, AudioLDM's 8 latent channels, T', F')
    return GroundingBatch(latents, torch.randn(4, 32, generator=g), torch.randn(4, 16, 32, generator=g))


def _fixed_loss(grounding, unet, scheduler, batch) -> float:
    """Loss at fixed noise and timesteps, so values before and after training are comparable."""
    noise = torch.randn(batch.latents.shape, generator=torch.Generator().manual_seed(123))
    keep = torch.zeros(4, dtype=torch.bool)
    with torch.no_grad():
        loss = diffusion_loss(grounding, unet, scheduler, batch, noise=noise,
                              timesteps=torch.tensor([50, 300, 600, 900]), drop_mask=keep)
    return float(loss)


def test_paper_training_defaults() -> None:
    run = read_config_file(find_config("grounding_sto"))
    opt, options = run["trainer"]["optimizer"], run["options"]
    got = (opt["lr"], tuple(opt["betas"]), opt["eps"], opt["weight_decay"], options["cond_dropout"],
           options["finetune_unet"], run["trainer"]["batch_size"])
    assert got == (1e-4, (0.95, 0.999), 1e-6, 1e-3, 0.1, True, 64)


def test_gradients_reach_every_grounding_parameter() -> None:
    torch.manual_seed(0)
    grounding, unet = GroundingModule(GCFG), _tiny_unet()
    loss = diffusion_loss(grounding, unet, _scheduler(), _batch(), cond_dropout=0.0,
                          generator=torch.Generator().manual_seed(0))
    loss.backward()
    for name, p in grounding.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_dropped_condition_uses_null_vector_and_cuts_gradient() -> None:
    torch.manual_seed(0)
    grounding, unet = GroundingModule(GCFG), _tiny_unet()
    loss = diffusion_loss(grounding, unet, _scheduler(), _batch(), drop_mask=torch.ones(4, dtype=torch.bool),
                          generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in grounding.parameters())


def _as_data(*batches: GroundingBatch) -> dict[str, torch.Tensor]:
    return {k: torch.cat([getattr(b, k) for b in batches]) for k in GroundingBatch._fields}


def test_finetuning_decreases_loss(tmp_path) -> None:
    unet, scheduler, batch = _tiny_unet(), _scheduler(), _batch()
    torch.manual_seed(0)
    task = GroundingTask(GCFG, unet, scheduler, cond_dropout=0.1, null_cond=torch.randn(512))  # CLAP("") stand-in
    before = _fixed_loss(task.model, unet, scheduler, batch)
    config = _trainer_config(tmp_path, lr=1e-3, epochs=15, batch_size=4)  # the one batch, 15 steps
    result = Trainer(task, TensorDictDataset(_as_data(batch)), config, progress=False).fit()
    after = _fixed_loss(task.model, unet, scheduler, batch)
    assert result.global_step == 15 and len(result.history) == 15
    assert after < 0.8 * before, (before, after)
    assert (result.final_dir / "unet" / "config.json").is_file()  # the fine-tuned UNet is saved beside it


def test_frozen_unet_is_unchanged_but_grounding_learns(tmp_path) -> None:
    unet = _tiny_unet()
    scheduler = DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195, beta_schedule="linear"
    )
    unet_before = {k: v.clone() for k, v in unet.state_dict().items()}
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="null_cond is all zeros"):
        task = GroundingTask(GCFG, unet, scheduler, cond_dropout=0.1, finetune_unet=False)
    grounding = task.model
    grounding_before = {k: v.clone() for k, v in grounding.state_dict().items()}
    config = _trainer_config(tmp_path, lr=1e-3, epochs=1, batch_size=4)
    result = Trainer(task, TensorDictDataset(_as_data(*(_batch(i) for i in range(3)))), config, progress=False).fit()
    assert result.global_step == 3
    assert not (result.final_dir / "unet").exists()  # a frozen UNet is not exported
    assert all(torch.equal(unet_before[k], v) for k, v in unet.state_dict().items())
    assert not any(p.requires_grad for p in unet.parameters())
    changed = [k for k, v in grounding.state_dict().items() if not torch.equal(grounding_before[k], v)]
    assert "q_proj.weight" in changed and "pos_k" in changed and "mlp.3.weight" in changed
