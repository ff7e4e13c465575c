"""Benchmark of the web app against the issue's targets (a rerunnable measurement, not a test).

    .venv/bin/python scripts/bench_ui.py [--corpus seeds] [--requests 200] [--clients 20]

1. Start-to-ready: ``python ui.py`` over a built index, from spawning the process to
   the first page served (ui.py only listens once the model and index are loaded and
   warm), and the first /ask after it. Target: within 10 s. The CPU time the process
   used until then is reported too: unlike the wall time, it does not grow when other
   work shares the machine's cores.
2. /ask latency through gradio_client, side by side with an empty endpoint on the
   same server (calls interleaved), p50 of each. Target: /ask p50 within 1.25x.
3. 20 concurrent clients, each its own gradio_client, asking at once. Target: no errors.

Everything runs on 127.0.0.1 against servers this script starts and stops; the
corpus and its index are copied into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "Who claims he never gave the order to retreat?",
    "When did Putin sign the law with harsher punishments for desertion?",
    "Why is the unit refusing more combat, according to WarTranslated?",
    "What tactic sends poorly trained fighters into the line of fire?",
    "How does the Free Buryatia Foundation describe itself?",
    "How would the soldiers leave if sent to the front?",
    "Which foreign minister was ridiculed by a crowd?",
    "Who painted the Mona Lisa?",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> float:
    """Seconds until ``url`` answers 200 (the process must stay alive)."""
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready within {timeout:.0f} s")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def summary(seconds: list[float]) -> dict:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }


# -- 1. start-to-ready ------------------------------------------------------------


def bench_start(corpus: Path, index: Path, runs: int) -> dict:
    from gradio_client import Client

    ready, cpu, first_ask = [], [], []
    for _ in range(runs):
        port = free_port()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "ui.py"), "--corpus", str(corpus), "--index", str(index), "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/", proc)
            ready.append(time.monotonic() - t0)
            cpu.append(cpu_seconds(proc.pid))
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            t1 = time.perf_counter()
            client.predict(QUESTIONS[0], 5, api_name="/ask")
            first_ask.append(time.perf_counter() - t1)
        finally:
            stop(proc)
    return {"ready_s": [round(r, 2) for r in ready], "ready_median_s": round(statistics.median(ready), 2),
            "cpu_s": [round(c, 2) for c in cpu], "first_ask_ms": [round(a * 1000, 1) for a in first_ask]}


# -- 2. and 3.: a server with an empty endpoint beside /ask ---------------------------


def serve_with_noop(corpus: str, index: str, port: int) -> None:
    """Run in a child process: the app of ui.py plus /noop, an endpoint that does nothing."""
    sys.path.insert(0, str(ROOT))
    import gradio as gr

    import ui
    from qa import Collection

    collection = Collection(corpus, index, show_progress=False).open()
    collection.ask("warm up the model")
    demo = ui.build_app(collection)
    with demo:
        def noop() -> dict:
            return {}

        gr.api(noop, api_name="noop")
    ui.launch(demo, port=port, quiet=True, mcp=False, prevent_thread_lock=True)
    signal.signal(signal.SIGTERM, ui._interrupt)
    demo.block_thread()


def bench_latency(url: str, requests: int) -> dict:
    from gradio_client import Client

    client = Client(url, verbose=False)
    for i in range(10):  # warm both paths
        client.predict(QUESTIONS[i % len(QUESTIONS)], 5, api_name="/ask")
        client.predict(api_name="/noop")
    ask, noop = [], []
    for i in range(requests):
        t = time.perf_counter()
        client.predict(QUESTIONS[i % len(QUESTIONS)], 5, api_name="/ask")
        ask.append(time.perf_counter() - t)
        t = time.perf_counter()
        client.predict(api_name="/noop")
        noop.append(time.perf_counter() - t)
    a, n = summary(ask), summary(noop)
    return {"ask": a, "noop": n, "p50_ratio": round(a["p50_ms"] / n["p50_ms"], 3)}


def bench_concurrent(url: str, clients: int, per_client: int) -> dict:
    from gradio_client import Client

    connected = [Client(url, verbose=False) for _ in range(clients)]
    start = threading.Barrier(clients)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        client = connected[n]
        start.wait()
        for i in range(per_client):
            question = QUESTIONS[(n + i) % len(QUESTIONS)]
            t = time.perf_counter()
            try:
                result = client.submit(question, 5, api_name="/ask").result(timeout=120)
                ok = result["question"] == question and result["passages"]
                err = None if ok else f"wrong result for {question!r}"
            except Exception as exc:  # counted and reported: the target is that there are none
                err = f"{type(exc).__name__}: {exc}"
            with lock:
                latencies.append(time.perf_counter() - t)
                if err:
                    errors.append(err)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "requests": clients * per_client, "errors": len(errors), "error_samples": errors[:3],
            "wall_s": round(wall, 2), "per_second": round(clients * per_client / wall, 1), **summary(latencies)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=str(ROOT / "seeds"), help="corpus to copy and index (default: seeds)")
    parser.add_argument("--starts", type=int, default=3, help="start-to-ready runs (default 3)")
    parser.add_argument("--requests", type=int, default=200, help="/ask and /noop calls each (default 200)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--per-client", type=int, default=10, help="questions per concurrent client (default 10)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--serve-noop", nargs=3, metavar=("CORPUS", "INDEX", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_noop:
        corpus, index, port = args.serve_noop
        serve_with_noop(corpus, index, int(port))
        return 0

    results: dict = {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="bench_ui-") as tmp:
        corpus, index = Path(tmp) / "corpus", Path(tmp) / "index"
        shutil.copytree(args.corpus, corpus)
        subprocess.run([sys.executable, "-m", "qa", "index", "--corpus", str(corpus), "--index", str(index), "-q"],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)

        print(f"1. start-to-ready of ui.py over a built index ({args.starts} runs) ...", flush=True)
        results["start"] = bench_start(corpus, index, args.starts)
        start = results["start"]
        print(f"   ready after {start['ready_s']} s (median {start['ready_median_s']} s; target 10 s), "
              f"using {start['cpu_s']} CPU-seconds; first /ask {start['first_ask_ms']} ms", flush=True)

        port = free_port()
        proc = subprocess.Popen([sys.executable, __file__, "--serve-noop", str(corpus), str(index), str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        url = f"http://127.0.0.1:{port}/"
        try:
            wait_ready(url, proc)
            print(f"2. /ask vs /noop, {args.requests} calls each, interleaved ...", flush=True)
            lat = results["latency"] = bench_latency(url, args.requests)
            for name in ("ask", "noop"):
                f = lat[name]
                print(f"   /{name:<4} p50 {f['p50_ms']} ms  p90 {f['p90_ms']} ms  mean {f['mean_ms']} ms")
            print(f"   p50 ratio {lat['p50_ratio']} (target <= 1.25)", flush=True)
            print(f"3. {args.clients} concurrent clients x {args.per_client} questions ...", flush=True)
            con = results["concurrent"] = bench_concurrent(url, args.clients, args.per_client)
            print(f"   {con['requests']} requests, {con['errors']} errors, {con['wall_s']} s "
                  f"({con['per_second']}/s), latency p50 {con['p50_ms']} ms p90 {con['p90_ms']} ms")
            for e in con["error_samples"]:
                print(f"   error: {e}")
        finally:
            stop(proc)
    results["load_after"] = os.getloadavg()[0]
    print(f"load average before {results['load_before']:.1f}, after {results['load_after']:.1f} "
          f"on {results['cpus']} CPUs")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    met = (results["start"]["ready_median_s"] <= 10 and results["latency"]["p50_ratio"] <= 1.25
           and results["concurrent"]["errors"] == 0)
    print("targets met" if met else "targets NOT met")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
