"""The index built on Ray and shards served by Ray actors: the same index, the same answers, offline.

One local Ray (2 CPUs, no dashboard) serves the whole module. A build is compared with
the local build of the same corpus: the same documents and passages, vectors within
cosine 0.9999, the same BM25 statistics.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from test_shards import QUESTIONS, assert_same_answers
from qa.index import Index, Layout
from qa.retrieval import Searcher
from qa.shards import ShardedSearcher, ShardError, open_shards, split_index

if importlib.util.find_spec("ray") is None:  # found, not imported: qa.ray_engine sets Ray's environment first
    pytest.skip("Ray is not installed", allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def ray_session():
    from qa.ray_engine import start_ray

    started = start_ray(num_cpus=2)
    yield started
    started.shutdown()


def assert_same_index(built: Path, expected: Path) -> None:
    a, b = Index.load(built), Index.load(expected)
    assert list(a.documents) == list(b.documents)
    for d in b.documents:
        assert (a.documents[d].text, a.documents[d].title, a.documents[d].source) == \
            (b.documents[d].text, b.documents[d].title, b.documents[d].source), d
        ea, eb = dict(a.entries[d]), dict(b.entries[d])
        assert ea == eb, d
    assert list(a.passages) == list(b.passages)
    cos = (a.passage_vectors(0, len(a)) * b.passage_vectors(0, len(b))).sum(axis=1)
    assert cos.min() >= 0.9999, cos.min()
    sa = np.concatenate([a.sentence_vectors_of(i) for i in range(len(a))])
    sb = np.concatenate([b.sentence_vectors_of(i) for i in range(len(b))])
    assert ((sa * sb).sum(axis=1) / np.maximum(np.linalg.norm(sa, axis=1) * np.linalg.norm(sb, axis=1), 1e-9)
            ).min() >= 0.999
    assert a.bm25.avg_length == b.bm25.avg_length and a.bm25.live == b.bm25.live
    for pa, pb in zip([s.postings for s in a.segments], [s.postings for s in b.segments]):
        assert pa.terms == pb.terms
        assert np.array_equal(pa.indptr, pb.indptr) and np.array_equal(np.asarray(pa.rows), np.asarray(pb.rows))
        assert np.array_equal(np.asarray(pa.tf), np.asarray(pb.tf)) and np.array_equal(pa.lengths, pb.lengths)
    assert a.manifest["counts"] == b.manifest["counts"] and a.manifest["skipped"] == b.manifest["skipped"]


@pytest.fixture(scope="session")
def ray_corpus(small_build):
    """The session's small corpus (seeds and 40 SciFact abstracts) and its local index."""
    return small_build


def test_the_ray_build_equals_the_local_build(tmp_path, ray_session, ray_corpus):
    from qa.distributed import ray_update_index

    corpus, local = ray_corpus
    index, report = ray_update_index(corpus, tmp_path / "index", workers=2, show_progress=False)
    assert report.embedded == len(index) == len(Index.load(local))
    assert_same_index(tmp_path / "index", local)
    again, report = ray_update_index(corpus, tmp_path / "index", workers=2, show_progress=False)
    assert report.unchanged and report.embedded == 0


def _embedder_actors() -> list[int]:
    """PIDs of this machine's Ray embedder actors (their process title names the class)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "MapBatches(_Embed)" in title and "MapWorker" in title:
                found.append(int(proc.name))
    return found


def test_a_killed_embedder_actor_still_gives_the_same_index(tmp_path, ray_session, ray_corpus):
    """Ray restarts the actor and runs its batch again: nothing lost, nothing twice."""
    from qa.distributed import ray_update_index

    corpus, local = ray_corpus
    killed: list[int] = []
    done = threading.Event()

    def kill_one():
        while not done.is_set() and not killed:
            pids = _embedder_actors()
            if pids:
                time.sleep(0.2)  # mid-build: it has batches in hand
                try:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                except ProcessLookupError:
                    pass  # that actor was already done; look again
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    try:
        index, report = ray_update_index(corpus, tmp_path / "index", workers=2, show_progress=False,
                                         layout=Layout(batch_passages=40))
    finally:
        done.set()
        killer.join(timeout=5)
    assert killed, "no embedder actor was seen to kill"
    assert report.embedded == len(index)
    assert_same_index(tmp_path / "index", local)


_DRIVER = r"""
import json, sys
args = json.loads(sys.argv[1])
from qa.distributed import ray_update_index
from qa.index import Layout
ray_update_index(args["corpus"], args["index"], address=args["address"], workers=1, show_progress=False,
                 layout=Layout(batch_passages=args["batch"]))
"""


def test_a_killed_driver_then_a_rerun_resumes_and_gives_the_same_index(tmp_path, ray_session, ray_corpus):
    from qa.distributed import ray_update_index

    corpus, local = ray_corpus
    total = len(Index.load(local))
    address = ray_session.get_runtime_context().gcs_address
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = json.dumps({"corpus": str(corpus), "index": str(tmp_path / "index"), "address": address, "batch": 30})
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER, args], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = tmp_path / "index" / "manifest.json"
    committed = 0
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and driver.poll() is None:
            try:
                committed = json.loads(manifest.read_text())["counts"]["passages"]
            except (OSError, ValueError, KeyError):
                committed = 0
            if committed:
                break
            time.sleep(0.05)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    committed = json.loads(manifest.read_text())["counts"]["passages"] if manifest.is_file() else 0
    assert 0 < committed < total, (committed, total, driver.stderr.read().decode()[-2000:])
    index, report = ray_update_index(corpus, tmp_path / "index", workers=2, show_progress=False,
                                     layout=Layout(batch_passages=30))
    # resumed: the committed passages were not embedded again
    assert report.embedded == total - committed and report.rebuilt is None
    assert_same_index(tmp_path / "index", local)
    assert not [p for p in (tmp_path / "index" / "segments").iterdir() if p.name.startswith(".tmp-")]


def test_sharded_answers_through_ray_actors_equal_one_index(tmp_path, ray_session, ray_corpus, embedder, reranker):
    corpus, local = ray_corpus
    split_index(local, tmp_path / "shards", 3)
    sharded = open_shards(tmp_path / "shards", engine="ray")
    one = Searcher(Index.load(local), embedder, reranker=reranker)
    assert_same_answers(one, ShardedSearcher(sharded, embedder, reranker=reranker))
    # each actor holds its shard only
    assert [s.call("statistics").result()["passages"] for s in sharded.shards] == \
        [len(Index.load(tmp_path / "shards" / f"shard-{n:03d}")) for n in range(3)]


def test_a_shard_actor_that_does_not_answer_is_a_clear_error(tmp_path, ray_session, ray_corpus, embedder):
    corpus, local = ray_corpus
    split_index(local, tmp_path / "shards", 2)
    sharded = open_shards(tmp_path / "shards", engine="ray")
    searcher = ShardedSearcher(sharded, embedder)
    assert searcher.search(QUESTIONS[0]).passages
    ray_session.kill(sharded.shards[1].actor, no_restart=True)
    with pytest.raises(ShardError, match="shard shard-001 .* does not answer: its Ray actor is gone"):
        searcher.search(QUESTIONS[1])


_OFFLINE = r"""
import json, sys
args = json.loads(sys.argv[1])
import qa
from qa.distributed import ray_update_index
from qa.shards import ShardedSearcher, open_shards, split_index
from qa.backends import default_embedder
ray_update_index(args["corpus"], args["index"], workers=1, show_progress=False)
split_index(args["index"], args["shards"], 2)
searcher = ShardedSearcher(open_shards(args["shards"], engine="ray"), default_embedder())
print(json.dumps(searcher.search("Why were 17 soldiers imprisoned?", k=2).to_dict()["answered"]))
"""


def test_nothing_leaves_the_machine_from_a_ray_build_and_ray_shards(tmp_path, seed_build):
    """Every connect() of a local Ray (driver, raylet, GCS, dashboard, workers, actors) is loopback,
    in an environment that asks for usage statistics (RAY_USAGE_STATS_ENABLED=1)."""
    from test_hardening import _strace_works, connects, hostile_env, strace

    if not _strace_works():
        pytest.skip("strace is not installed or may not trace here")
    (tmp_path / "home").mkdir()
    env = {**hostile_env(tmp_path / "home"), "RAY_USAGE_STATS_ENABLED": "1", "PYTHONPATH": str(ROOT)}
    trace = tmp_path / "ray.trace"
    args = json.dumps({"corpus": str(seed_build[0]), "index": str(tmp_path / "index"),
                       "shards": str(tmp_path / "shards")})
    done = subprocess.run([*strace(trace)[:2], "--seccomp-bpf", *strace(trace)[2:], sys.executable, "-c", _OFFLINE,
                           args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    inside, outside = connects(trace)
    assert inside, "strace recorded no connection at all: the trace is not being read"
    # gRPC dials loopback as an IPv4-mapped IPv6 address too (::ffff:127.0.0.1): still loopback
    outside = [a for a in outside if not _mapped_loopback(a)]
    assert outside == [], f"Ray connected outside loopback: {sorted(set(outside))}"


def _mapped_loopback(address: str) -> bool:
    import ipaddress

    try:
        mapped = ipaddress.ip_address(address).ipv4_mapped
    except ValueError:
        return False
    return mapped is not None and mapped.is_loopback


def test_a_joining_node_uses_the_token_the_head_will_ask_for(tmp_path):
    # `ray start --head` turns token authentication on when ~/.ray/auth_token exists; a
    # joining `ray start --address` does not, and the head then refuses it.
    from qa.ray_engine import ray_environment

    home = tmp_path / "home"
    base = {"HOME": str(home), "PATH": os.environ.get("PATH", "")}
    assert "RAY_AUTH_MODE" not in ray_environment(local=False, base=base)
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("x" * 64)
    assert ray_environment(local=False, base=base)["RAY_AUTH_MODE"] == "token"
    assert ray_environment(local=False, base={**base, "RAY_AUTH_MODE": "disabled"})["RAY_AUTH_MODE"] == "disabled"
    assert ray_environment(local=False, base={"HOME": str(tmp_path), "RAY_AUTH_TOKEN": "t"})["RAY_AUTH_MODE"] == "token"
    assert "RAY_AUTH_MODE" not in ray_environment(local=True, base=base)
