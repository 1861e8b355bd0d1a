"""CMSS manifold: variational behaviour, save/load, EMA, and learning CLIP→CLAP retrieval (synthetic)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from foleykit.api import train
from foleykit.errors import InputError
from foleykit.modules.manifold import CMSSManifold, ManifoldConfig
from foleykit.training.accelerate_tasks import ema_update, retrieval_top1, sigmoid_rampup

SMALL = ManifoldConfig(
    clip_dim=32,
    clap_dim=24,
    manifold_dim=16,
    projector_widths=(64, 64, 64),
    reconstructor_widths=(64, 64, 64),
    dropout=0.0,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is several times faster than two when the cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pairs(n: int, classes: int = 8, seed: int = 0):
    """Single-source pairs: class clusters in a latent space seen through two different hidden maps —
    a linear one into "CLIP" space and a tanh one into "CLAP" space — each with its own noise."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(classes, 16, generator=g)
    to_clip, to_clap = torch.randn(16, 32, generator=g), torch.randn(16, 24, generator=g)
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    z = centers[labels] + 0.3 * torch.randn(n, 16, generator=g)
    clip = F.normalize(z @ to_clip + 0.5 * torch.randn(n, 32, generator=g), dim=-1)
    clap = F.normalize(torch.tanh(z @ to_clap) + 0.2 * torch.randn(n, 24, generator=g), dim=-1)
    return clip, clap, labels


def train_manifold(tmp_path, clip, clap, epochs, *, batch_size, lr, seed=0, ema_decay=0.999, val_fraction=0.1,
                   run="run"):
    """The one training path (foleykit.train → the accelerate Trainer + ManifoldTask) on pairs in memory."""
    return train("manifold", {"clip": clip, "clap": clap}, tmp_path / run, model=dataclasses.asdict(SMALL),
                 options={"ema_decay": ema_decay},
                 trainer={"epochs": epochs, "batch_size": batch_size, "optimizer": {"lr": lr},
                          "val_fraction": val_fraction, "tensorboard": False, "log_every_steps": 1000},
                 seed=seed, device="cpu", progress=False)


def test_training_lifts_clip_to_clap_retrieval_far_above_chance(tmp_path):
    clip, clap, _ = _pairs(1000, seed=0)
    test_clip, test_clap, test_labels = _pairs(100, seed=1)
    torch.manual_seed(0)
    untrained = CMSSManifold(SMALL)
    class_chance, instance_chance = 1 / 8, 1 / 100
    assert retrieval_top1(untrained, test_clip, test_clap, test_labels) < 2 * class_chance
    result = train_manifold(tmp_path, clip, clap, 12, batch_size=100, lr=3e-3, ema_decay=0.95)
    teacher = result.model.eval()
    class_top1 = retrieval_top1(teacher, test_clip, test_clap, test_labels)
    instance_top1 = retrieval_top1(teacher, test_clip, test_clap)
    assert class_top1 >= 0.9, class_top1
    assert instance_top1 >= 5 * instance_chance, instance_top1
    history = result.history
    assert len(history) == 12 and history[-1]["train_contrastive"] < 0.5 * history[0]["train_contrastive"]
    assert all("val_top1_in_batch" in h for h in history)  # held-out pairs were scored every epoch
    # χ learned to reconstruct the audio embedding from the image side.
    recon = teacher.to_clap(teacher.fold_clips(test_clip))
    assert F.cosine_similarity(recon, test_clap).mean() > 0.8
    # The teacher (an EMA of the student) is what the run exports; the student is kept beside it.
    assert result.model is result.module.teacher and result.model is not result.module.student
    assert (result.final_dir / "student" / "config.json").is_file()


def test_training_is_reproducible_per_seed(tmp_path):
    clip, clap, _ = _pairs(120)
    kwargs = dict(batch_size=40, lr=1e-3, val_fraction=0.0, seed=7)
    a = train_manifold(tmp_path, clip, clap, 1, run="a", **kwargs)
    b = train_manifold(tmp_path, clip, clap, 1, run="b", **kwargs)
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_fold_and_reconstruct_shapes_and_sampling():
    torch.manual_seed(0)
    model = CMSSManifold(SMALL).eval()
    clip = torch.randn(2, 5, 32)  # any leading shape: [B, slots, D]
    assert torch.equal(model.fold_clips(clip), model.encode_clips(clip).mu)
    codes = model.fold_clips(clip)
    assert codes.shape == (2, 5, 16)
    clap = model.to_clap(codes)
    assert clap.shape == (2, 5, 24) and torch.allclose(clap.norm(dim=-1), torch.ones(2, 5))
    s1 = model.fold_claps(torch.randn(3, 24), num_samples=8, generator=torch.Generator().manual_seed(1))
    s2 = model.fold_claps(torch.randn(3, 24), num_samples=8, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(s1, s2)  # different inputs
    x = torch.randn(3, 24)
    assert torch.equal(
        model.fold_claps(x, 8, torch.Generator().manual_seed(1)),
        model.fold_claps(x, 8, torch.Generator().manual_seed(1)),
    )
    with pytest.raises(InputError, match="32 features"):
        model.fold_clips(torch.randn(2, 31))


def test_temperature_is_learned_and_clamped():
    model = CMSSManifold(SMALL)
    assert model.temperature_scale().item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.temperature_scale().item() == pytest.approx(100.0, rel=1e-5)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = CMSSManifold(SMALL).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    loaded = CMSSManifold.from_pretrained(tmp_path)
    assert loaded.config == SMALL and isinstance(loaded.config.projector_widths, tuple)
    x = torch.randn(4, 32)
    assert torch.equal(loaded.to_clap(loaded.fold_clips(x)), model.to_clap(model.fold_clips(x)))


def test_ema_update_and_rampup_math():
    teacher, student = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    t0, s0 = teacher.weight.detach().clone(), student.weight.detach().clone()
    ema_update(teacher, student, 0.9)
    assert torch.allclose(teacher.weight, 0.9 * t0 + 0.1 * s0)
    assert sigmoid_rampup(0, 10) == pytest.approx(torch.exp(torch.tensor(-5.0)).item())
    assert sigmoid_rampup(10, 10) == 1.0 and sigmoid_rampup(3, 0) == 1.0


def test_bad_training_input_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="clip_dim is 32 but the data's clip has 30"):
        train_manifold(tmp_path, torch.randn(10, 30), torch.randn(10, 24), 1, batch_size=5, lr=1e-3)
    with pytest.raises(InputError, match="projector_widths"):
        ManifoldConfig(projector_widths=())
