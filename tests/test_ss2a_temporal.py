"""Temporal aggregation: positions, padding, save/load, and learning a time-dependent target."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from foleykit.api import train
from foleykit.errors import InputError
from foleykit.modules.temporal import (
    TemporalAggregator,
    TemporalConfig,
    evenly_spaced_frame_indices,
    sinusoidal_table,
)

SMALL = TemporalConfig(
    clap_dim=16, num_frames=8, num_layers=1, num_heads=4, dropout=0.0, position_resolution=32
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is several times faster than two when the cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model(**overrides) -> TemporalAggregator:
    torch.manual_seed(0)
    model = TemporalAggregator(TemporalConfig(**{**SMALL.__dict__, **overrides})).eval()
    with torch.no_grad():
        model.encoder.layers[0].feed_forward.linear2.weight.normal_(0, 0.3)
    return model


def test_position_table_is_sinusoidal_with_base_twice_the_resolution():
    table = sinusoidal_table(32, 16, 64.0)
    p, i = 5, 3  # feature pair i: sin at 2i, cos at 2i+1, frequency 64^(-2i/16)
    freq = 64.0 ** (-2 * i / 16)
    assert table[p, 2 * i].item() == pytest.approx(torch.sin(torch.tensor(p * freq)).item(), abs=1e-6)
    assert table[p, 2 * i + 1].item() == pytest.approx(torch.cos(torch.tensor(p * freq)).item(), abs=1e-6)
    assert torch.equal(_model().position_table, table)


def test_positions_matter_and_default_to_frame_indices():
    model = _model()
    frames = torch.randn(2, 8, 16)
    default = model(frames).mu
    assert torch.allclose(default, model(frames, positions=torch.arange(8)).mu)
    assert not torch.allclose(default, model(frames, positions=torch.arange(8) * 3).mu, atol=1e-4)


def test_padding_frames_leave_the_output_unchanged():
    model = _model()
    frames = torch.randn(2, 6, 16)
    padded = torch.cat([frames, 100 * torch.randn(2, 2, 16)], dim=1)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, 6:] = True
    assert torch.allclose(model(padded, padding_mask=mask).mu, model(frames).mu, atol=1e-5)


def test_aggregate_is_normalised_and_round_trips(tmp_path):
    model = _model()
    frames = torch.randn(3, 8, 16)
    out = model.aggregate(frames)
    assert out.shape == (3, 16) and torch.allclose(out.norm(dim=-1), torch.ones(3))
    model.save_pretrained(tmp_path)
    loaded = TemporalAggregator.from_pretrained(tmp_path)
    assert loaded.config == model.config and torch.equal(loaded.aggregate(frames), out)


def test_frame_indices_and_errors():
    assert evenly_spaced_frame_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert evenly_spaced_frame_indices(1, 3).tolist() == [0, 0, 0]
    with pytest.raises(InputError):
        _model()(torch.randn(1, 40, 16))  # 40 frames + 2 read-outs > 32 positions


def test_trainer_learns_a_target_that_depends_on_time(tmp_path):
    """Target = the mean of the *last two* frames: a plain frame average cannot match it, so the
    aggregator has to use the positional embedding."""
    g = torch.Generator().manual_seed(0)
    frames = F.normalize(torch.randn(700, 8, 16, generator=g), dim=-1)
    target = F.normalize(frames[:, 6:].mean(1), dim=-1)
    result = train("temporal", {"frame_claps": frames[:600], "target_clap": target[:600]}, tmp_path / "run",
                   model=dataclasses.asdict(SMALL),
                   trainer={"epochs": 15, "batch_size": 50, "optimizer": {"lr": 1e-2}, "val_fraction": 0.0,
                            "tensorboard": False},
                   seed=0, device="cpu", progress=False)
    average = F.cosine_similarity(F.normalize(frames[600:].mean(1), dim=-1), target[600:]).mean().item()
    with torch.no_grad():
        learned = F.cosine_similarity(result.model.eval().aggregate(frames[600:]), target[600:]).mean().item()
    assert learned > average + 0.15, (average, learned)
    history = result.history
    assert history[-1]["train_cosine_distance"] < history[0]["train_cosine_distance"]
    epochs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs if e["kind"] == "epoch"] == list(range(1, 16))  # one record per epoch


def _segment_centres(n: int, start: float, end: float) -> torch.Tensor:
    """The times ``io.video.read_frames`` samples: centres of n equal segments."""
    step = (end - start) / n
    return torch.tensor([start + (k + 0.5) * step for k in range(n)], dtype=torch.float64)


def test_frame_time_positions_follow_the_released_index_convention_for_full_windows():
    from foleykit.modules.temporal import FULL_WINDOW_S, frame_time_positions

    assert FULL_WINDOW_S == 10.0
    for n, start in ((8, 0.0), (64, 9.5), (4, 123.25)):
        full = frame_time_positions(_segment_centres(n, start, start + 10.0))
        assert torch.equal(full, torch.arange(n, dtype=torch.float32))  # exactly 0..T-1
    half = frame_time_positions(_segment_centres(8, 9.5, 14.5))  # a 5 s last window
    assert torch.allclose(half, torch.arange(8) * 0.5)
    batch = frame_time_positions(torch.stack([_segment_centres(8, 0, 10), _segment_centres(8, 0, 2.5)]))
    assert batch.shape == (2, 8) and torch.allclose(batch[1], torch.arange(8) * 0.25)
    with pytest.raises(InputError, match="increasing"):
        frame_time_positions(torch.tensor([1.0, 0.5]))


def test_time_positions_give_the_default_output_for_a_full_window_and_differ_for_a_short_one():
    from foleykit.modules.temporal import frame_time_positions

    model = _model()
    frames = torch.randn(2, 8, 16)
    default = model(frames).mu
    full = frame_time_positions(_segment_centres(8, 0.0, 10.0))
    assert torch.equal(model(frames, positions=full).mu, default)  # the table rows, bit for bit
    short = frame_time_positions(_segment_centres(8, 20.0, 23.0))  # 3 s: positions 0, 0.3, ...
    out = model(frames, positions=short).mu
    assert not torch.allclose(out, default, atol=1e-4)
    # Fractional positions evaluate the table's own sinusoid: continuous, and exact at the rows.
    nudged = model(frames, positions=torch.arange(8) + 1e-4).mu
    assert torch.allclose(nudged, default, atol=1e-3) and not torch.equal(nudged, default)
    table = model.position_table
    from foleykit.modules.temporal import sinusoidal_embedding

    assert torch.allclose(sinusoidal_embedding(torch.arange(32) * 1.0, 16, 64.0), table, atol=1e-6)
    with pytest.raises(InputError, match=r"lie in \[0, 30\)"):
        model(frames, positions=torch.arange(8) - 0.25)
