"""`foleykit models download`: which files each role gets, and resuming after an interruption, with no
network: the hub listing and the file downloader are fakes."""

from __future__ import annotations

import pytest

from foleykit.errors import InputError, ModelNotAvailableError
from foleykit.model_download import (
    AUDIOLDM_CLAP_NOTE,
    PlannedFile,
    download_plan,
    plan_downloads,
    select_files,
)
from foleykit.model_sets import DEFAULT_EXTRA_MODELS, DEFAULT_MODELS, ModelSet, resolve_model_set

SHA = "0123456789abcdef0123456789abcdef01234567"
TRANSFORMERS_ROOT = [
    "config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json",
    "merges.txt", "special_tokens_map.json", "model.safetensors",
]
DUPLICATES = ["pytorch_model.bin", "flax_model.msgpack", "tf_model.h5", "onnx/model.onnx", "README.md",
              ".gitattributes"]
AUDIOLDM_NEEDED = [
    "scheduler/scheduler_config.json",
    "text_encoder/config.json", "text_encoder/model.safetensors",
    "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer.json",
    "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
    "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
    "vocoder/config.json", "vocoder/model.safetensors",
]
AUDIOLDM_OTHERS = ["model_index.json", "README.md", "unet/diffusion_pytorch_model.bin",
                   "unet/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.bin",
                   "feature_extractor/preprocessor_config.json", "audioldm-s-full-v2.ckpt"]
KARLO_NEEDED = ["prior/config.json", "prior/diffusion_pytorch_model.safetensors",
                "prior_scheduler/scheduler_config.json", "text_encoder/config.json", "text_encoder/model.safetensors",
                "tokenizer/merges.txt", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json"]
KARLO_OTHERS = ["model_index.json", "decoder/config.json", "decoder/diffusion_pytorch_model.safetensors",
                "super_res_first/diffusion_pytorch_model.safetensors", "text_proj/config.json",
                "image_encoder/model.safetensors"]
BIN_ONLY = ["config.json", "preprocessor_config.json", "pytorch_model.bin", "tf_model.h5"]

REPOS = {
    DEFAULT_MODELS["clip"]: TRANSFORMERS_ROOT + DUPLICATES,
    DEFAULT_MODELS["clip_mapper"]: TRANSFORMERS_ROOT + DUPLICATES,
    DEFAULT_MODELS["audioldm"]: AUDIOLDM_NEEDED + AUDIOLDM_OTHERS,
    DEFAULT_EXTRA_MODELS["sam"]: BIN_ONLY,
    DEFAULT_EXTRA_MODELS["detector"]: TRANSFORMERS_ROOT + DUPLICATES,
    DEFAULT_EXTRA_MODELS["prior"]: KARLO_NEEDED + KARLO_OTHERS,
}


def _size(path: str) -> int:
    return 1000 + 37 * len(path)  # distinct, deterministic sizes


def fake_lister(repo: str, revision: str | None):
    """Any other repo lists like a transformers model; ``org/missing*`` does not exist."""
    if repo.startswith("org/missing"):
        raise FileNotFoundError(f"404 {repo}")
    return SHA, [PlannedFile(p, _size(p)) for p in REPOS.get(repo, TRANSFORMERS_ROOT + DUPLICATES)]


@pytest.fixture(autouse=True)
def empty_foleykit_cache(tmp_path_factory, monkeypatch):
    """No converted AudioLDM CLAP lying around from the machine's own cache."""
    monkeypatch.setenv("FOLEYKIT_CACHE", str(tmp_path_factory.mktemp("fk-cache")))


def _default_set() -> ModelSet:
    return resolve_model_set("default")


def _files(plan, role: str) -> list[str]:
    (r,) = [r for r in plan.roles if r.role == role]
    return [f.path for f in r.files]


def test_each_role_gets_exactly_the_folders_and_files_it_loads():
    plan = plan_downloads(_default_set(), lister=fake_lister)
    assert _files(plan, "audioldm") == sorted(AUDIOLDM_NEEDED)  # six sub-folders, no .bin/fp16 copies
    assert _files(plan, "prior") == sorted(KARLO_NEEDED)  # not the decoder / super-resolution weights
    for role in ("clip", "clip_mapper", "detector"):
        assert _files(plan, role) == sorted(TRANSFORMERS_ROOT)  # config + weights + processor/tokenizer
    assert _files(plan, "sam") == ["config.json", "preprocessor_config.json", "pytorch_model.bin"]  # no safetensors
    assert dict(plan.skipped)["mapper"].startswith("no published V2A-Mapper weights")
    expected_bytes = sum(_size(p) for p in AUDIOLDM_NEEDED)
    (audioldm,) = [r for r in plan.roles if r.role == "audioldm"]
    assert audioldm.size == expected_bytes and audioldm.commit == SHA
    assert plan.size == sum(r.size for r in plan.roles)
    assert any("audioldm" in line and "unet, vae, vocoder" in line for line in plan.lines())
    # AudioLDM's own CLAP audio tower is not on the hub: the plan says how to make it.
    assert AUDIOLDM_CLAP_NOTE in plan.notes + [why for _, why in plan.skipped]


def test_select_files_rules_by_hand():
    listing = [PlannedFile(p, 1) for p in
               ["a/config.json", "a/model.safetensors", "a/model.bin", "a/model.fp16.safetensors", "a/b/deep.json",
                "c/config.json", "c/pytorch_model.bin", "root.json"]]
    assert [f.path for f in select_files(listing, ("a", "c"))] == [
        "a/config.json", "a/model.safetensors", "c/config.json", "c/pytorch_model.bin"]
    assert [f.path for f in select_files(listing, ())] == ["root.json"]


@pytest.mark.parametrize("clap", [None, "audioldm-clap"])  # not converted yet / a name that is no hub id
def test_a_role_whose_converted_clap_is_not_on_the_hub_is_skipped_with_the_way_to_make_it(tmp_path, clap):
    local_clip = tmp_path / "clip"
    local_clip.mkdir()
    ms = ModelSet(name="mine", clip=str(local_clip), clip_mapper=DEFAULT_MODELS["clip_mapper"],
                  clap=clap, audioldm=DEFAULT_MODELS["audioldm"])
    plan = plan_downloads(ms, roles=["clip", "clip_mapper", "clap", "audioldm"], lister=fake_lister)
    skipped = dict(plan.skipped)
    assert skipped["clip"] == f"local folder {local_clip}"
    assert skipped["clap"] == AUDIOLDM_CLAP_NOTE and "import-audioldm-clap" in AUDIOLDM_CLAP_NOTE
    assert [r.role for r in plan.roles] == ["clip_mapper", "audioldm"]
    assert plan.notes == []  # said once, as the skip reason


def test_tiny_set_is_all_local_and_needs_no_hub(tiny_cache_env, monkeypatch):
    from foleykit import model_download

    monkeypatch.setattr(model_download, "_require_hub", lambda: pytest.fail("the hub was asked for"))
    plan = plan_downloads("tiny")
    assert plan.roles == [] and plan.notes == []
    assert all(why.startswith("local folder") or role == "mapper" for role, why in plan.skipped)


def test_bad_roles_and_unlistable_repos_are_one_line_errors():
    with pytest.raises(InputError, match="has no role 'vocoder'"):
        plan_downloads(_default_set(), roles=["vocoder"], lister=fake_lister)
    ms = ModelSet(name="x", clip="org/missing", clip_mapper="org/missing", clap="org/missing", audioldm="org/missing")
    with pytest.raises(ModelNotAvailableError, match="could not list the files of org/missing for the clip role"):
        plan_downloads(ms, roles=["clip"], lister=fake_lister)
    REPOS["org/no-unet"] = [p for p in AUDIOLDM_NEEDED if not p.startswith("unet/")]
    try:
        ms = ModelSet(name="x", clip="org/no-unet", clip_mapper="org/no-unet", clap="org/no-unet",
                      audioldm="org/no-unet")
        with pytest.raises(ModelNotAvailableError, match="lacks the folder.*unet"):
            plan_downloads(ms, roles=["audioldm"], lister=fake_lister)
    finally:
        del REPOS["org/no-unet"]


class FakeHub:
    """A downloader with huggingface_hub's cache semantics: a file is written to a temporary name and
    moved into place when complete; on failure the partial file is deleted. ``fail_at`` makes the n-th
    download (1-based, counted over all runs) die half-way through its file."""

    def __init__(self, root, fail_at: set[int] | None = None) -> None:
        self.root = root
        self.fail_at = fail_at or set()
        self.calls: list[str] = []
        self.count = 0  # downloads started, over all runs

    def path(self, repo: str, path: str):
        return self.root / repo / path

    def download(self, repo: str, path: str, revision: str | None) -> str:
        self.calls.append(path)
        self.count += 1
        target = self.path(repo, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".incomplete")
        size = _size(path)
        try:
            with tmp.open("wb") as f:
                f.write(b"x" * (size // 2))
                if self.count in self.fail_at:
                    raise ConnectionError("connection reset by peer")
                f.write(b"x" * (size - size // 2))
            tmp.rename(target)
        finally:
            tmp.unlink(missing_ok=True)
        return str(target)

    def is_cached(self, repo: str, path: str, commit: str | None, size: int | None) -> bool:
        p = self.path(repo, path)
        return p.is_file() and (size is None or p.stat().st_size == size)


def test_an_interrupted_download_continues_without_fetching_finished_files_again(tmp_path):
    plan = plan_downloads(_default_set(), roles=["audioldm", "clip"], lister=fake_lister)
    planned = [(r.repo, f.path) for r in plan.roles for f in r.files]
    hub = FakeHub(tmp_path, fail_at={5})
    lines: list[str] = []
    with pytest.raises(ModelNotAvailableError, match=r"could not download .*after 1 attempts.*run the command again"):
        download_plan(plan, downloader=hub.download, is_cached=hub.is_cached, report=lines.append, attempts=1)
    done_first = hub.calls[:4]
    assert len(hub.calls) == 5 and all(hub.path(r, p).is_file() for r, p in planned[:4])
    assert not hub.path(*planned[4]).exists()  # the file cut off half-way left nothing behind
    first_repo, first_path = planned[0]
    assert lines[0] == f"[1/{len(planned)}] audioldm: {first_repo}/{first_path} ({_size(first_path) / 1e3:.2f} kB)"

    hub.calls.clear()
    rerun = download_plan(plan, downloader=hub.download, is_cached=hub.is_cached, attempts=1)
    assert not set(done_first) & set(hub.calls)  # finished files are not fetched again
    assert hub.calls == [p for _, p in planned[4:]]
    assert len(rerun.present) == 4 and len(rerun.fetched) == len(planned) - 4
    assert rerun.bytes_fetched == sum(_size(p) for _, p in planned[4:])
    # Final layout: exactly the planned files, complete, and no partial files.
    on_disk = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert on_disk == sorted(f"{r}/{p}" for r, p in planned)
    assert all(hub.path(r, p).stat().st_size == _size(p) for r, p in planned)
    # A third run has nothing to do.
    hub.calls.clear()
    assert not download_plan(plan, downloader=hub.download, is_cached=hub.is_cached).fetched and not hub.calls


def test_a_transient_failure_is_retried_within_the_run(tmp_path):
    plan = plan_downloads(_default_set(), roles=["clip"], lister=fake_lister)
    hub = FakeHub(tmp_path, fail_at={2})
    out = download_plan(plan, downloader=hub.download, is_cached=hub.is_cached, attempts=3, retry_wait_s=0.0)
    assert len(out.fetched) == len(TRANSFORMERS_ROOT) and hub.calls[1] == hub.calls[2]


def test_downloaded_files_resolve_offline_from_the_hf_cache(tmp_path, monkeypatch):
    """Files placed where hf_hub_download puts them (snapshots/<commit>/..., refs/main) are found by the
    default cache check and by the offline model lookup the loaders use (HF_HUB_OFFLINE=1 in tests)."""
    from huggingface_hub import constants

    from foleykit.hub import resolve_pretrained

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    def hf_like_download(repo: str, path: str, revision: str | None) -> str:
        assert revision == "main"
        folder = tmp_path / f"models--{repo.replace('/', '--')}"
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / "main").write_text(SHA)
        target = folder / "snapshots" / SHA / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x" * _size(path))
        return str(target)

    plan = plan_downloads(_default_set(), roles=["audioldm", "clip"], lister=fake_lister)
    out = download_plan(plan, downloader=hf_like_download)
    assert len(out.fetched) == plan.num_files
    again = download_plan(plan, downloader=lambda *a: pytest.fail("fetched twice"))
    assert len(again.present) == plan.num_files and not again.fetched
    local, revision = resolve_pretrained(DEFAULT_MODELS["clip"])
    assert revision == SHA and (local / "model.safetensors").is_file()
    for sub in ("unet", "vae", "vocoder", "scheduler", "text_encoder", "tokenizer"):
        local, _ = resolve_pretrained(DEFAULT_MODELS["audioldm"], subfolder=sub)
        assert (local / sub).is_dir()


def test_cli_prints_the_plan_and_downloads_with_progress(tmp_path, monkeypatch, capsys):
    from foleykit import model_download
    from foleykit.cli import main

    hub = FakeHub(tmp_path)
    monkeypatch.setattr(model_download, "_require_hub", lambda: None)
    monkeypatch.setattr(model_download, "hub_listing", fake_lister)
    monkeypatch.setattr(model_download, "_hub_download", hub.download)
    monkeypatch.setattr(model_download, "_in_hub_cache", hub.is_cached)
    main(["models", "download", "default", "--role", "audioldm", "--dry-run"])
    out = capsys.readouterr().out
    assert "audioldm" in out and "[unet, vae, vocoder, scheduler, text_encoder, tokenizer]" in out
    assert f"{len(AUDIOLDM_NEEDED)} files" in out and not hub.calls
    main(["models", "download", "default", "--dry-run"])
    assert "import-audioldm-clap" in capsys.readouterr().out
    main(["models", "download", "default", "--role", "audioldm", "--role", "clip"])
    out = capsys.readouterr().out
    assert f"[{len(AUDIOLDM_NEEDED) + len(TRANSFORMERS_ROOT)}/" in out
    assert len(hub.calls) == len(AUDIOLDM_NEEDED) + len(TRANSFORMERS_ROOT) and "done:" in out
    main(["models", "download", "default", "--role", "clip"])  # again: nothing to fetch
    assert "already in the cache" in capsys.readouterr().out
    assert len(hub.calls) == len(AUDIOLDM_NEEDED) + len(TRANSFORMERS_ROOT)
    with pytest.raises(SystemExit) as exc:
        main(["models", "download", "default", "--role", "nope"])
    assert exc.value.code != 0 and "has no role 'nope'" in capsys.readouterr().err
