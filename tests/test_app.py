"""The web app's handlers (no browser) and its server's file serving, on the tiny models."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio", reason="gradio is not installed (pip install 'foleykit[app]')")

DUR = 1.0


def _scene(path: Path) -> Path:
    h, w = 160, 240
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2] = (150, 190, 235)
    arr[h // 2 :] = (110, 150, 80)
    arr[50:120, 40:110] = (200, 40, 40)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture(scope="module")
def app(tiny_models_dir, tmp_path_factory):
    from foleykit.app.main import AppConfig, _App, _prepare_env

    work = tmp_path_factory.mktemp("app-handlers")
    config = AppConfig(models=str(tiny_models_dir), device="cpu", workdir=work, default_duration_s=DUR, default_steps=2)
    _prepare_env(work)
    return _App(config)


def _progress(events):
    return lambda frac, desc=None: events.append((frac, desc))


def test_upload_click_toggle_and_generate(app, tmp_path):
    img = _scene(tmp_path / "scene.png")
    canvas, _, _, md, state, status, _ = app.on_upload(str(img), None)
    assert canvas.shape == (160, 240, 3) and "Image loaded (240x160)" in status
    assert Path(state["dir"]).is_relative_to(app.workdir)
    overlay, md, state = app.on_click(state, SimpleNamespace(index=[75, 85]))
    assert len(state["objects"]) == 1 and "click at (75, 85)" in md
    assert (np.abs(overlay.astype(int) - canvas.astype(int)).sum(-1) > 30).mean() > 0.01
    # A click on a selected object removes it; a click elsewhere adds another.
    inside = np.argwhere(state["objects"][0]["mask"])[0]
    _, md, state = app.on_click(state, SimpleNamespace(index=[int(inside[1]), int(inside[0])]))
    assert state["objects"] == [] and "No objects selected" in md
    _, _, state = app.on_click(state, SimpleNamespace(index=[75, 85]))

    events = []
    audio, downloads, status, stems = app.on_generate(state, "objects", "", None, DUR, 2, 3, 2.0, 0.0,
                                                      _progress(events))
    wav = Path(audio)
    assert wav.is_file() and wav.is_relative_to(app.workdir)
    names = sorted(Path(d).name for d in downloads)
    assert names == ["blend.wav", "stems.zip", "with-sound.mp4"]
    # No grounding module in the tiny set: the click takes the training-free route, and says so.
    assert "seed 3" in status and "Route: training-free" in status and "not meaningful" not in status
    assert len(stems) == 1 and Path(stems[0][1]).is_file()  # one object, one stem with its own player
    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] >= 0.97
    assert any("generating" in (d or "") for _, d in events)  # the diffusion steps report progress

    # The mapper method works on the same picture, says that it does not use the selection, and its
    # progress advances through the diffusion steps (not one jump from 5 % to 97 %).
    events = []
    audio, downloads, status, stems = app.on_generate(state, "mapper", "", None, DUR, 2, 4, 2.0, 0.0,
                                                      _progress(events))
    assert "Done" in status and any(d.endswith("with-sound.mp4") for d in downloads) and stems == []
    assert "selections and texts were not used" in status
    assert sum("diffusion step" in (d or "") for _, d in events) == 2

    # So does SS2A (sources), with the clicked region and a text as sources, each stem with its own player.
    from foleykit.app.main import available_methods

    if "sources" in available_methods():
        events = []
        audio, downloads, status, stems = app.on_generate(state, "sources", "rain", None, DUR, 2, 5, 2.0, 0.0,
                                                          _progress(events))
        assert "Done" in status and "seed 5" in status, status
        assert len(stems) >= 2 and all(Path(p).is_file() for _, p in stems)  # the clicked region and "rain"
        assert sorted(Path(d).name for d in downloads) == ["sound.wav", "stems.zip", "with-sound.mp4"]
        assert len(events) > 3


def test_errors_are_messages(app, tmp_path):
    with pytest.raises(gr.Error, match="upload an image"):
        app.on_click(None, SimpleNamespace(index=[1, 1]))
    _, _, _, _, state, _, _ = app.on_upload(str(_scene(tmp_path / "s.png")), None)
    with pytest.raises(gr.Error, match="outside"):
        app.on_click(state, SimpleNamespace(index=[500, 10]))
    # A failed run returns no result (the page clears the previous one) and says why in the status.
    audio, downloads, status, stems = app.on_generate(state, "objects", "", None, DUR, 2, 1, 2.0, 0.0, _progress([]))
    assert (audio, downloads, stems) == (None, [], []) and status.startswith("**Failed:**")
    assert "select at least one object" in status
    *_, status, _ = app.on_generate(state, "objects", "wind", None, 999, 2, 1, 2.0, 0.0, _progress([]))
    assert "Failed" in status and "duration" in status
    bogus = tmp_path / "fake.png"
    bogus.write_bytes(b"not an image at all")
    *_, state2, status, upload = app.on_upload(str(bogus), None)
    assert state2 is None and "Upload refused" in status and "not a recognised image format" in status
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (app.config.max_upload_mb * 2**20 + 1))
    *_, status, _ = app.on_upload(str(big), None)
    assert "MB limit" in status
    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    *_, status, _ = app.on_upload(str(odd), None)
    assert "unsupported type" in status


def test_video_upload_uses_a_chosen_frame(app, tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as dst:
        st = dst.add_stream("libx264", rate=10)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            arr = np.full((48, 64, 3), (i * 12) % 255, np.uint8)
            for pkt in st.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                dst.mux(pkt)
        for pkt in st.encode():
            dst.mux(pkt)
    canvas, frame_upd, dur_upd, _, state, status, _ = app.on_upload(str(path), None)
    assert state["video"] and frame_upd["visible"] is True and "Video loaded" in status
    assert abs(state["frame_s"] - 1.0) < 0.11
    first = canvas.mean()
    canvas2, _, state, _ = app.on_frame(0.05, state)
    assert state["frame_s"] == pytest.approx(0.05) and canvas2.mean() < first


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_serves_nothing_outside_its_work_folder(tiny_models_dir, tmp_path):
    from foleykit.app import AppConfig, launch_app

    work = tmp_path / "work"
    port = _free_port()
    demo = launch_app(config=AppConfig(models=str(tiny_models_dir), device="cpu", workdir=work, preload=False),
                      port=port, block=False, quiet=True)
    try:
        inside = work / "sessions" / "x.txt"
        inside.parent.mkdir(parents=True, exist_ok=True)
        inside.write_text("ok")
        outside = tmp_path / "secret.txt"
        outside.write_text("secret")
        repo = Path(__file__).resolve().parents[1] / "pyproject.toml"

        def status(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/file={path}", timeout=20) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        assert status(inside) == 200
        for p in (outside, repo, "/etc/passwd", Path.cwd() / "pyproject.toml"):
            assert status(p) in (403, 404), p
        assert demo.analytics_enabled is False
        # One queue; generation one job at a time (a second user waits), interactive events in their own pool.
        fns = {f.name: f for f in demo.fns.values()}
        assert fns["on_generate"].concurrency_limit == 1 and fns["on_generate"].queue
        assert fns["on_select"].concurrency_id != fns["on_generate"].concurrency_id
        assert demo._queue.default_concurrency_limit == 1
    finally:
        demo.close()
