"""The web app under concurrent clients of mixed methods: completions, queue waits, page responsiveness.

Launch ``foleykit app`` (tiny models, 127.0.0.1) in this process, then N clients at once
(gradio_client, each its own session) upload a picture and generate, cycling through the methods
(objects, mapper, sources). While they run, a probe fetches the page every 0.25 s: the server stays
responsive if those answers stay fast. Records per-client wall time (queue wait included), how many
completed, and the probe's latencies.

The memory of the three methods at real sizes (shared components vs own copies) is
``bench_app_memory.py``.

    python benchmarks/bench_app_concurrency.py [--clients 8] [--steps 2] [--duration 1]
    python benchmarks/bench_app_concurrency.py --smoke      # 2 clients, 1 step: seconds, what the tests run

Prints one JSON object (and writes it with ``--out``). Figures depend on the machine's load: record it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

METHODS_CYCLE = ("objects", "mapper", "sources")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scene(path: Path) -> Path:
    from PIL import Image

    arr = np.zeros((160, 240, 3), np.uint8)
    arr[:80] = (150, 190, 235)
    arr[80:] = (110, 150, 80)
    arr[50:120, 40:110] = (200, 40, 40)
    Image.fromarray(arr).save(path)
    return path


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ru_maxrss would carry a parent's peak across exec)."""
    try:
        with open("/proc/self/status") as f:
            return round(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024, 1)
    except (OSError, StopIteration):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _cpu_flags() -> str:
    try:
        import torch

        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001
        return "unknown"


def run_load(models: str, clients: int, steps: int, duration: float, work: Path) -> dict:
    """Part 1: N concurrent clients against a launched app; returns the figures."""
    import urllib.request

    from gradio_client import Client, handle_file

    from foleykit.app import AppConfig, launch_app

    port = _free_port()
    demo = launch_app(config=AppConfig(models=models, device="cpu", workdir=work / "app", default_steps=steps,
                                       default_duration_s=duration), port=port, block=False, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    img = _scene(work / "scene.png")
    results: list[dict] = [{} for _ in range(clients)]
    probes: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(url, timeout=30) as r:
                    r.read()
                probes.append(time.perf_counter() - t)
            except OSError:
                probes.append(float("inf"))
            stop.wait(0.25)

    def client(i: int) -> None:
        method = METHODS_CYCLE[i % len(METHODS_CYCLE)]
        rec = results[i]
        rec["method"] = method
        t0 = time.perf_counter()
        try:
            c = Client(url, verbose=False, download_files=str(work / f"client{i}"))
            *_, status, _ = c.predict(handle_file(str(img)), api_name="/on_upload")
            rec["upload_s"] = round(time.perf_counter() - t0, 3)
            text = "a red box" if method != "mapper" else ""
            out = c.predict(method, text, [], duration, steps, 100 + i, 2.0, 0.0, None, api_name="/on_generate")
            rec["status"] = out[4].split("\n")[0]
            rec["ok"] = out[4].startswith("Done")
            c.close()
        except Exception as exc:  # noqa: BLE001 - recorded, the figures say how many failed
            rec["ok"] = False
            rec["error"] = f"{type(exc).__name__}: {exc}"[:300]
        rec["total_s"] = round(time.perf_counter() - t0, 3)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=1800)
    wall = time.perf_counter() - t0
    stop.set()
    prober.join(timeout=30)
    # After the load: the server still answers and still generates.
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        after_status = r.status
    after_s = time.perf_counter() - t
    demo.close()
    finite = [p for p in probes if p != float("inf")]
    totals = sorted(r["total_s"] for r in results if "total_s" in r)
    return {
        "clients": clients,
        "completed": sum(bool(r.get("ok")) for r in results),
        "by_method": {m: sum(1 for r in results if r.get("method") == m and r.get("ok")) for m in METHODS_CYCLE},
        "wall_s": round(wall, 2),
        "client_total_s": {"min": totals[0], "median": round(statistics.median(totals), 2), "max": totals[-1]}
        if totals else None,
        "page_probe_s": {"n": len(probes), "failed": len(probes) - len(finite),
                         "median": round(statistics.median(finite), 4) if finite else None,
                         "max": round(max(finite), 4) if finite else None},
        "page_after_load": {"status": after_status, "s": round(after_s, 4)},
        "peak_rss_mb": _peak_rss_mb(),
        "clients_detail": results,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--models", default=None, help="model set (default: the tiny set, built offline)")
    ap.add_argument("--smoke", action="store_true", help="2 clients, 1 step, 0.5 s: a quick check that it runs")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.smoke:
        args.clients, args.steps, args.duration = 2, 1, 0.5
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        work = Path(tmp)
        models = args.models
        if models is None:
            from foleykit.model_sets import build_tiny_model_set

            models = str(build_tiny_model_set(work / "tiny"))
        result = {
            "benchmark": "app_concurrency",
            "machine": {"cpu": platform.processor() or platform.machine(), "cpu_capability": _cpu_flags(),
                        "cores": os.cpu_count(), "loadavg_before": [round(x, 2) for x in os.getloadavg()]},
            "settings": {"clients": args.clients, "steps": args.steps, "duration_s": args.duration,
                         "models": "tiny" if args.models is None else args.models, "smoke": args.smoke},
            "load": run_load(models, args.clients, args.steps, args.duration, work),
        }
        result["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
