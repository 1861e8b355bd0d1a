"""The app under hostile or careless use (issue 12): uploaded HTML/SVG never runs as script, a total
size limit per upload request, a disk quota for the work folder, a per-request source budget, error
messages free of server paths (one log line for user errors, a traceback for faults), the truncated
video's usable duration, selections kept across frames, auth and the bind warning, SIGTERM clean-up."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio", reason="gradio is not installed (pip install 'foleykit[app]')")
httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DUR = 1.0
EVIL_HTML = b"<!doctype html><html><body><script>fetch('/config').then(r=>r.text()).then(alert)</script></body></html>"
EVIL_SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.domain)">'
            b"<script>fetch('/config')</script></svg>")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scene(path: Path) -> Path:
    arr = np.zeros((160, 240, 3), np.uint8)
    arr[:80] = (150, 190, 235)
    arr[80:] = (110, 150, 80)
    arr[50:120, 40:110] = (200, 40, 40)
    Image.fromarray(arr).save(path)
    return path


def _video(path: Path, *, seconds: float = 4.0, faststart: bool = True) -> Path:
    av = pytest.importorskip("av")
    with av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {}) as dst:
        st = dst.add_stream("libx264", rate=10)
        st.width, st.height, st.pix_fmt = 96, 64, "yuv420p"
        st.codec_context.gop_size = 5
        for i in range(int(seconds * 10)):
            arr = np.full((64, 96, 3), (40, 120, 60), np.uint8)
            arr[20:44, 10 + i : 40 + i] = (220, 30, 30)  # a red box moving right
            arr[0:4, : (i * 2) % 96] = 255
            for pkt in st.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                dst.mux(pkt)
        for pkt in st.encode():
            dst.mux(pkt)
    return path


@pytest.fixture(scope="module")
def app(tiny_models_dir, tmp_path_factory):
    from foleykit.app.main import AppConfig, _App, _prepare_env

    work = tmp_path_factory.mktemp("app-security")
    config = AppConfig(models=str(tiny_models_dir), device="cpu", workdir=work, default_duration_s=DUR,
                       default_steps=2, max_sources=3, max_text_chars=50)
    _prepare_env(work)
    return _App(config)


@pytest.fixture()
def server(tiny_models_dir, tmp_path):
    from foleykit.app import AppConfig, launch_app

    port = _free_port()
    demo = launch_app(config=AppConfig(models=str(tiny_models_dir), device="cpu", workdir=tmp_path / "work",
                                       preload=False, max_upload_mb=2, max_request_mb=3),
                      port=port, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}", tmp_path / "work"
    finally:
        demo.close()


def _upload(base: str, files: list[tuple[str, bytes]]) -> httpx.Response:
    return httpx.post(f"{base}/gradio_api/upload", files=[("files", (n, b)) for n, b in files], timeout=60)


def test_uploaded_html_and_svg_are_served_as_downloads_that_cannot_run_script(server):
    base, work = server
    r = _upload(base, [("evil.html", EVIL_HTML), ("evil.svg", EVIL_SVG), ("evil-svg.png", EVIL_SVG)])
    assert r.status_code == 200, r.text
    paths = r.json()
    assert len(paths) == 3
    for path in paths:
        got = httpx.get(f"{base}/gradio_api/file={path}", timeout=30)
        if got.status_code != 200:  # refused outright is fine too
            assert got.status_code in (403, 404)
            continue
        ctype = got.headers["content-type"].split(";")[0].strip()
        assert ctype == "application/octet-stream", (path, ctype)
        assert got.headers["content-disposition"].startswith("attachment"), path
        assert got.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in got.headers["content-security-policy"]

    # Our own results are still served inline by their media type (players work), with nosniff too.
    sessions = work / "sessions"
    (sessions / "s1").mkdir(parents=True)
    import soundfile as sf

    sf.write(str(sessions / "s1" / "sound.wav"), np.zeros(1600, np.float32), 16000)
    got = httpx.get(f"{base}/gradio_api/file={sessions / 's1' / 'sound.wav'}", timeout=30)
    assert got.status_code == 200 and got.headers["content-type"].startswith("audio/")
    assert not got.headers.get("content-disposition", "").startswith("attachment")
    # Even an HTML file inside the results folder would go out as an attachment.
    (sessions / "s1" / "page.html").write_bytes(EVIL_HTML)
    got = httpx.get(f"{base}/gradio_api/file={sessions / 's1' / 'page.html'}", timeout=30)
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"].startswith("attachment")


def test_the_upload_handler_refuses_html_and_svg_by_content_and_deletes_them(app, tmp_path):
    for i, (name, data, reason) in enumerate((("evil.html", EVIL_HTML, "unsupported type .html"),
                                              ("evil.svg", EVIL_SVG, "unsupported type .svg"),
                                              ("holiday.png", EVIL_SVG, "not a recognised image format"),
                                              ("clip.mp4", EVIL_HTML, "not a recognised video format"))):
        up = app.workdir / "gradio-cache" / f"upload{i}" / name  # gradio keeps each upload in its own folder
        up.parent.mkdir(parents=True, exist_ok=True)
        up.write_bytes(data)
        *_, state, status, _ = app.on_upload(str(up), None)
        assert state is None and "Upload refused" in status and reason in status, status
        assert name in status and str(app.workdir) not in status
        assert not up.exists()  # never kept, let alone served


def test_one_upload_request_over_the_total_limit_is_refused(server):
    base, work = server
    mb = 2**20
    r = _upload(base, [(f"part{i}.png", b"\x89PNG\r\n\x1a\n" + b"\0" * int(1.5 * mb)) for i in range(3)])
    assert r.status_code == 413 and "for all files together" in r.text
    assert not any(p.is_file() and p.stat().st_size > mb for p in (work / "gradio-cache").rglob("*"))
    r = _upload(base, [("one.png", b"\x89PNG\r\n\x1a\n" + b"\0" * int(1.5 * mb))])
    assert r.status_code == 200  # under both limits: accepted


def test_the_work_folder_quota_prunes_the_oldest_sessions_first(tiny_models_dir, tmp_path):
    from foleykit.app.main import AppConfig, _App, _prepare_env

    work = tmp_path / "work"
    _prepare_env(work)
    app = _App(AppConfig(models=str(tiny_models_dir), device="cpu", workdir=work, quota_mb=1, preload=False))
    now = time.time()
    for i, name in enumerate(("oldest", "older", "newest")):
        d = app.sessions / name
        d.mkdir()
        (d / "input.mp4").write_bytes(b"\0" * 400_000)
        os.utime(d, (now - 3000 + 1000 * i, now - 3000 + 1000 * i))
    _, _, _, _, state, status, _ = app.on_upload(str(_scene(tmp_path / "scene.png")), None)
    assert state is not None, status
    left = sorted(d.name for d in app.sessions.iterdir())
    assert "oldest" not in left and "newest" in left and Path(state["dir"]).name in left


def test_the_request_budget_refuses_too_many_sources_and_long_texts_without_echoing_them(app, tmp_path):
    _, _, _, _, state, _, _ = app.on_upload(str(_scene(tmp_path / "s.png")), None)
    audio, _, status, _ = app.on_generate(state, "objects", "a\nb\nc\nd", None, DUR, 2, 1, 2.0, 0.0,
                                          lambda *a, **k: None)
    assert audio is None and "too many sources: 4" in status and "at most 3" in status
    secret = "x" * 49 + "TAIL-OF-A-LONG-TEXT" * 10
    _, _, status, _ = app.on_generate(state, "objects", secret, None, DUR, 2, 1, 2.0, 0.0, lambda *a, **k: None)
    assert "characters long; at most 50" in status and "TAIL-OF-A-LONG-TEXT" not in status
    huge = "y" * 200_000
    _, _, status, _ = app.on_generate(state, "objects", huge, None, DUR, 2, 1, 2.0, 0.0, lambda *a, **k: None)
    assert "200000 characters" in status and "yyyy" not in status and len(status) < 300
    assert "at most 3 sources per request" in app._objects_md(state)  # the page states the budget


def test_errors_name_the_upload_and_never_a_server_path_and_log_one_line(app, tmp_path, caplog, monkeypatch):
    up = app.workdir / "gradio-cache" / "f00d" / "holiday.mp4"
    up.parent.mkdir(parents=True, exist_ok=True)
    up.write_bytes(b"\0\0\0\x18ftypisom" + os.urandom(4000))  # looks like an mp4, does not decode
    with caplog.at_level(logging.INFO, logger="foleykit.app.main"):
        *_, status, _ = app.on_upload(str(up), None)
    assert "holiday.mp4" in status and "Upload refused" in status
    assert str(app.workdir) not in status and "gradio-cache" not in status and "/tmp" not in status
    user_logs = [r for r in caplog.records if "holiday.mp4" in r.getMessage()]
    assert user_logs and all(r.exc_info is None and "\n" not in r.getMessage() for r in user_logs)

    # A real fault: logged with its traceback; the page gets one line without paths.
    _, _, _, _, state, _, _ = app.on_upload(str(_scene(tmp_path / "s.png")), None)

    def broken(*a, **k):
        raise RuntimeError(f"disk failed at {app.workdir}/sessions/x/blend.wav")

    monkeypatch.setattr(type(app.pipeline("mapper")), "__call__", broken)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="foleykit.app.main"):
        audio, downloads, status, _ = app.on_generate(state, "mapper", "", None, DUR, 2, 1, 2.0, 0.0,
                                                      lambda *a, **k: None)
    assert audio is None and downloads == [] and "internal error" in status and "blend.wav" in status
    assert str(app.workdir) not in status
    assert any(r.exc_info is not None for r in caplog.records)


def test_a_truncated_video_offers_and_uses_only_what_decodes(app, tmp_path):
    import av

    from foleykit.io.video import probe_video

    full = _video(tmp_path / "full.mp4")
    data = full.read_bytes()
    cut = app.workdir / "gradio-cache" / "cafe" / "half.mp4"
    cut.parent.mkdir(parents=True, exist_ok=True)
    cut.write_bytes(data[: len(data) // 2])
    decoded = 0  # reference: frames that decode, counted directly
    with av.open(str(cut)) as c:
        try:
            for _ in c.decode(c.streams.video[0]):
                decoded += 1
        except av.error.FFmpegError:
            pass
    usable = decoded / 10
    _, frame_upd, dur_upd, _, state, status, _ = app.on_upload(str(cut), None)
    assert state is not None, status
    assert state["video_s"] == pytest.approx(usable, abs=0.11) and state["video_s"] < 3.5
    assert frame_upd["maximum"] <= state["video_s"] and dur_upd["value"] <= state["video_s"] + 1e-6
    assert "claims 4.00 s" in status and "half.mp4" in status and str(app.workdir) not in status

    audio, downloads, status, _ = app.on_generate(state, "mapper", "", None, state["video_s"], 2, 1, 2.0, 0.0,
                                                  lambda *a, **k: None)
    mp4 = next(Path(d) for d in downloads if d.endswith(".mp4"))
    with av.open(str(mp4)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert float(v.duration * v.time_base) == pytest.approx(usable, abs=0.21)
        assert float(a.duration * a.time_base) == pytest.approx(usable, abs=0.05)
    assert probe_video(mp4).claimed_duration_s is None


def test_changing_the_frame_keeps_the_selection(app, tmp_path):
    src = app.workdir / "gradio-cache" / "beef" / "moving.mp4"
    src.parent.mkdir(parents=True, exist_ok=True)
    _video(src)
    _, _, _, _, state, _, _ = app.on_upload(str(src), None)
    _, md, state = app.on_click(state, SimpleNamespace(index=[30, 30]))
    assert len(state["objects"]) == 1
    first_mask = state["objects"][0]["mask"].copy()
    _, md, state, status = app.on_frame(0.5, state)
    assert len(state["objects"]) == 1 and "kept" in status and "click at (30, 30)" in md
    assert state["objects"][0]["mask"].shape == first_mask.shape


def test_auth_parsing_and_the_bind_warning():
    from foleykit.app.main import bind_warning, parse_auth
    from foleykit.errors import InputError

    assert parse_auth("ann:s3:cret") == ("ann", "s3:cret") and parse_auth(None) is None
    for bad in ("ann", ":pw", "ann:"):
        with pytest.raises(InputError, match="USER:PASSWORD"):
            parse_auth(bad)
    assert bind_warning("127.0.0.1", None) is None and bind_warning("::1", None) is None
    assert "no password" in bind_warning("0.0.0.0", None)
    assert "no password" not in bind_warning("0.0.0.0", ("a", "b")) and "0.0.0.0" in bind_warning("0.0.0.0", ("a", "b"))


def test_auth_protects_the_app(tiny_models_dir, tmp_path):
    from foleykit.app import AppConfig, launch_app

    port = _free_port()
    demo = launch_app(config=AppConfig(models=str(tiny_models_dir), device="cpu", workdir=tmp_path / "w",
                                       preload=False, auth=("ann", "pw")), port=port, block=False, quiet=True)
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/config", timeout=30).status_code in (401, 403)
        with httpx.Client(base_url=base, timeout=30) as c:
            assert c.post("/login", data={"username": "ann", "password": "wrong"}).status_code in (400, 401)
            assert c.post("/login", data={"username": "ann", "password": "pw"}).status_code == 200
            assert c.get("/config").status_code == 200
    finally:
        demo.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_stop_the_server_and_remove_the_users_files(tiny_models_dir, tmp_path, signum):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = _free_port()
    code = ("import logging; logging.basicConfig(level=logging.INFO)\n"
            "from foleykit.app import AppConfig, launch_app\n"
            f"launch_app(config=AppConfig(models={str(tiny_models_dir)!r}, device='cpu', preload=False), "
            f"port={port}, quiet=True)\n")
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the app did not start"
            time.sleep(0.5)
        work = [d for d in tmp.iterdir() if d.name.startswith("foleykit-app-")]
        assert len(work) == 1
        r = _upload(f"http://127.0.0.1:{port}", [("scene.png", _scene(tmp_path / "scene.png").read_bytes())])
        assert r.status_code == 200
        assert any(p.is_file() for p in work[0].rglob("*.png"))  # a user's file in the work folder
        proc.send_signal(signum)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not work[0].exists(), list(work[0].rglob("*"))
