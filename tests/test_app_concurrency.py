"""Two users at once: the launched app (tiny models, 127.0.0.1) takes two generate requests concurrently
through gradio's queue, runs them one after the other, gives each user its own valid result, and keeps
serving (a third user's bad request gets a message; a later request still works)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio", reason="gradio is not installed (pip install 'foleykit[app]')")
gradio_client = pytest.importorskip("gradio_client")

DUR = 1.0
HOLD_S = 1.0  # each generation is held this long, so the second request surely arrives while the first runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _path(value) -> str:
    """An output file's local path (the client gives a ``gr.update`` as a dict with ``value``)."""
    while isinstance(value, dict):
        value = value.get("value")
    return value


def _scene(path: Path) -> Path:
    h, w = 160, 240
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2] = (150, 190, 235)
    arr[h // 2 :] = (110, 150, 80)
    arr[50:120, 40:110] = (200, 40, 40)
    Image.fromarray(arr).save(path)
    return path


def test_two_users_generating_at_once_both_get_their_sound_and_the_server_keeps_serving(
    tiny_models_dir, tmp_path, monkeypatch
):
    import soundfile as sf
    from gradio_client import Client, handle_file

    from foleykit.app import AppConfig, launch_app
    from foleykit.pipelines.objects import ObjectsPipeline

    # Record when each generation runs (and hold it a moment) to see how the queue schedules them.
    spans: list[tuple[float, float, str]] = []
    original = ObjectsPipeline.__call__

    def timed(self, *args, **kwargs):
        start = time.monotonic()
        try:
            time.sleep(HOLD_S)
            return original(self, *args, **kwargs)
        finally:
            spans.append((start, time.monotonic(), threading.current_thread().name))

    monkeypatch.setattr(ObjectsPipeline, "__call__", timed)

    port = _free_port()
    demo = launch_app(config=AppConfig(models=str(tiny_models_dir), device="cpu", workdir=tmp_path / "work",
                                       default_duration_s=DUR, default_steps=2),
                      port=port, block=False, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        img = _scene(tmp_path / "scene.png")
        users = [Client(url, verbose=False, download_files=str(tmp_path / f"user{i}")) for i in (1, 2)]
        for u in users:  # each user (its own session) uploads the picture
            *_, status, _ = u.predict(handle_file(str(img)), api_name="/on_upload")
            assert "Image loaded (240x160)" in status

        texts = ["a red box", "wind"]
        jobs = [u.submit("objects", t, [], DUR, 2, 10 + i, 2.0, 0.0, None, api_name="/on_generate")
                for i, (u, t) in enumerate(zip(users, texts))]
        submitted = time.monotonic()
        results = [j.result(timeout=120) for j in jobs]

        waves = []
        for i, (audio, *rest) in enumerate(results):
            downloads, status, stems = rest[:3], rest[3], rest[4:]
            assert status.startswith("Done") and f"seed {10 + i}" in status, status
            wave, sr = sf.read(_path(audio), dtype="float32")
            assert sr == 16000 and len(wave) == int(DUR * sr) and np.isfinite(wave).all() and np.abs(wave).max() > 0
            assert sorted(Path(_path(d)).name for d in downloads) == ["blend.wav", "stems.zip", "with-sound.mp4"]
            assert _path(stems[0]) and not any(_path(s) for s in stems[1:])  # one object: one stem player
            waves.append(wave)
        assert not np.allclose(waves[0], waves[1])  # each user got their own request's sound

        # Both were in the queue at once, and the queue ran them one at a time.
        assert len(spans) == 2
        (s1, e1, _), (s2, e2, _) = sorted(spans)
        assert submitted < e1, "the second request did not arrive while the first was generating"
        assert s2 >= e1 - 1e-3, f"the two generations overlapped: {spans}"

        # A third user generating without a picture gets a message, not a crash ...
        third = Client(url, verbose=False, download_files=str(tmp_path / "user3"))
        out = third.predict("objects", "rain", [], DUR, 2, 1, 2.0, 0.0, None, api_name="/on_generate")
        assert "Failed" in out[4] and "upload an image" in out[4] and not _path(out[0])
        # ... and the server keeps serving: the page loads and the first user generates again.
        with urllib.request.urlopen(url, timeout=20) as r:
            assert r.status == 200
        out = users[0].predict("objects", "rain", [], DUR, 2, 7, 2.0, 0.0, None, api_name="/on_generate")
        assert out[4].startswith("Done") and sf.info(_path(out[0])).samplerate == 16000
        for u in (*users, third):
            u.close()
    finally:
        demo.close()
