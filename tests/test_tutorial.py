"""docs/tutorial.md and README.md's usage blocks run as written on the tiny models, so the docs cannot
drift from the tool.

Every fenced ``bash`` / ``python`` block runs, in order, in one empty folder (holding a copy of
``examples/``), except a block preceded by a ``<!-- fragment ... -->`` line. ``foleykit`` command lines
run in this process (through the CLI's typer app: no interpreter start per command), ``export`` lines
set the environment, other shell lines run in bash, python blocks run with ``exec``.

README's commands generate 10 s clips with the default presets; on CI those would take minutes, so
the README test adds speed options after each ``generate`` / ``batch-generate`` / ``train`` command
(``--duration 1 --steps 2``; ``--epochs 1 --batch-size 2``): a later option wins, so every name,
option and path of the command as written is still exercised. The tutorial needs no such help.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from foleykit.cli import app

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"(?P<fragment><!-- fragment[^\n]*-->[ \t]*\n)?```(?P<lang>[\w-]*)\n(?P<code>.*?)```", re.S)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def doc_blocks(path: Path, section: str | None = None) -> list[tuple[str, str, bool]]:
    """(language, code, is_fragment) of each fenced block of ``path`` (only under ``## section`` if given)."""
    text = path.read_text(encoding="utf-8")
    if section is not None:
        start = text.index(f"\n## {section}\n")
        end = text.find("\n## ", start + 1)
        text = text[start:end if end > 0 else None]
    return [(m["lang"], m["code"], bool(m["fragment"])) for m in _BLOCK.finditer(text)]


def command_lines(code: str) -> list[str]:
    """Shell lines with backslash continuations joined; blank and comment-only lines dropped."""
    out: list[str] = []
    pending = ""
    for raw in code.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line and not line.startswith("#"):
            out.append(line)
    return out


def run_blocks(blocks, cwd: Path, monkeypatch, speed: dict[str, list[str]] | None = None) -> list[str]:
    """Run the blocks; returns the commands run (for the test to check its own coverage)."""
    monkeypatch.chdir(cwd)
    ran: list[str] = []
    for lang, code, fragment in blocks:
        if fragment or lang not in ("bash", "python"):
            continue
        if lang == "python":
            exec(compile(code, "<doc snippet>", "exec"), {"__name__": "__doc_snippet__"})  # noqa: S102
            ran.append("python")
            continue
        for line in command_lines(code):
            ran.append(line)
            if line.startswith("export "):
                key, _, value = shlex.split(line, comments=True)[1].partition("=")
                monkeypatch.setenv(key, value)
            elif line.startswith("foleykit "):
                args = shlex.split(line, comments=True)[1:]
                verb = args[0] if args[0] != "train" else "train"
                args += (speed or {}).get(verb, [])
                res = CliRunner().invoke(app, args)
                assert res.exit_code == 0, f"{line}\n{res.output}\n{res.exception!r}"
            else:
                done = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=cwd, env=os.environ.copy(),
                                      capture_output=True, text=True)
                assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
    return ran


@pytest.fixture()
def workdir(tmp_path, tiny_cache_env):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path


def test_tutorial_runs_as_written(workdir, monkeypatch):
    blocks = doc_blocks(ROOT / "docs" / "tutorial.md")
    ran = run_blocks(blocks, workdir, monkeypatch)
    for verb in ("extract", "curate", "build-data", "batch-generate", "evaluate"):
        assert any(line.startswith(f"foleykit {verb} ") for line in ran), verb
    for task in ("mapper", "manifold", "remixer", "temporal", "grounding"):
        assert any(line.startswith(f"foleykit train {task} ") for line in ran), task
    for out in ("out/scene.wav", "out/street.mp4", "out/objects.wav", "out/api.wav", "report/report.md"):
        assert (workdir / out).is_file(), out
    assert "measure nothing" in (workdir / "report" / "report.md").read_text()


def test_readme_usage_runs(workdir, monkeypatch):
    from foleykit.data.synthetic import make_synthetic_dataset, write_tone, write_video

    shutil.copy(workdir / "examples" / "scene.jpg", workdir / "scene.jpg")
    write_video(workdir / "clip.mp4", 1, seconds=2.0)
    write_tone(workdir / "dog.wav", 2, seconds=1.0)
    shutil.copy(make_synthetic_dataset(workdir / "toy", n_images=2, n_videos=0), workdir / "manifest.csv")
    shutil.copytree(workdir / "toy" / "media", workdir / "media")
    monkeypatch.setenv("FOLEYKIT_MODELS", "tiny")
    fast = ["--duration", "1", "--steps", "2"]
    speed = {"generate": fast, "batch-generate": fast, "train": ["--epochs", "1", "--batch-size", "2"]}
    blocks = doc_blocks(ROOT / "README.md", "Use")
    assert any(f for _, _, f in blocks) and any(not f for _, _, f in blocks)
    ran = run_blocks(blocks, workdir, monkeypatch, speed)
    assert "foleykit train mapper emb/ -o my-mapper/" in " ".join(ran)
    assert (workdir / "s.wav").is_file() and (workdir / "scene.mp4").is_file()


def test_ss2a_doc_boxes_fit_the_bundled_scene():
    from PIL import Image

    width, height = Image.open(ROOT / "examples" / "scene.jpg").size
    boxes = re.findall(r"--box (\d+),(\d+),(\d+),(\d+)", (ROOT / "docs" / "ss2a.md").read_text())
    assert boxes
    for box in boxes:
        x0, y0, x1, y1 = map(int, box)
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (box, (width, height))


def test_every_doc_snippet_is_run_or_marked_a_fragment():
    """A bash/python block in README.md or docs/*.md is run by a test above, or says it is a fragment."""
    run = {("docs/tutorial.md", None), ("README.md", "Use")}
    unmarked = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        rel = str(path.relative_to(ROOT))
        if (rel, None) in run:
            continue
        section = next((s for r, s in run if r == rel), None)
        tested = {code for _, code, _ in doc_blocks(path, section)} if section else set()
        for lang, code, fragment in doc_blocks(path):
            if lang in ("bash", "python", "sh") and not fragment and code not in tested:
                unmarked.append(f"{rel}: {code.splitlines()[0] if code else ''}")
    assert not unmarked, "snippets neither run by tests/test_tutorial.py nor marked <!-- fragment -->: " + "; ".join(unmarked)
