"""Shared fixtures: one embedder and one index of the seed corpus per test session.

Anything that writes works on copies under pytest's tmp dirs; ``seeds/`` and
``index/`` of the repository are never touched.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

from qa.backends import TorchEmbedder
from qa.backends import default_embedder
from qa.index import Index, update_index
from qa.retrieval import Searcher

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SEED_QUESTIONS = ROOT.parent / "shared" / "eval" / "seed_questions.jsonl"
SCIFACT = ROOT.parent / "shared" / "bench" / "scifact" / "corpus.jsonl"

# A few seed questions kept here so that retrieval is tested even where
# ../shared/eval is absent (a clean clone in CI).
KNOWN_QUESTIONS = [
    ("Who claims he never gave the order to retreat?", "000_93644d6605fbd4ae.txt",
     "The commander, however, claimed he never gave the order"),
    ("What do the lower-ranked officers want to do to the soldiers?", "001_b0c2a5a791f52d3c.txt",
     "intimidate us via brutal repression"),
    ("What did the women say about the men's food and water?", "002_0239b8b82e17a921.txt",
     "Our men have been without food or water for a few days"),
    ("How does the Free Buryatia Foundation describe itself?", "003_5b9c610a72473fdf.txt",
     "an anti-war movement against the Russian Federation’s criminal war in Ukraine"),
    ("How would the soldiers leave if sent to the front?", "004_6faa4890d470160d.txt",
     "would even walk or leave by a taxi if sent there"),
]


def seed_questions() -> list[dict]:
    """The shared seed questions, or the built-in few when the file is absent."""
    if SEED_QUESTIONS.is_file():
        return [json.loads(line) for line in SEED_QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"question": q, "doc": d, "evidence": [e]} for q, d, e in KNOWN_QUESTIONS]


class EmbedSpy:
    """Records every batch of texts the embedder is asked to embed."""

    def __init__(self):
        self.calls: list[list[str]] = []

    @property
    def texts(self) -> list[str]:
        return [t for call in self.calls for t in call]

    def reset(self) -> None:
        self.calls.clear()


def snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """(size, mtime_ns, bytes) of every file under ``folder``, by relative path."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[path.relative_to(folder).as_posix()] = (st.st_size, st.st_mtime_ns, path.read_bytes())
    return out


def leftovers(index_dir: Path) -> list[str]:
    """Temporary or set-aside folders an index write may leave beside ``index_dir``."""
    return sorted(p.name for p in index_dir.parent.glob(f".{index_dir.name}.*") if p.is_dir())


# -- nothing leaves the machine, the tests included --------------------------------------

OUTBOUND: list[str] = []  # every attempt of this process to reach beyond loopback


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded(real, describe):
    def call(*args, **kwargs):
        where = describe(*args, **kwargs)
        if where is not None:
            OUTBOUND.append(where)
            raise OSError(f"outbound connection attempted by a test: {where}")
        return real(*args, **kwargs)

    return call


def _inet_target(sock, address, *rest):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(str(address[0])):
        return f"connect {address[0]}:{address[1]}"
    return None


def _lookup_target(host, *args, **kwargs):
    host = host.decode() if isinstance(host, bytes) else host
    return None if host is None or is_loopback(str(host)) else f"name lookup {host}"


socket.socket.connect = _guarded(socket.socket.connect, _inet_target)
socket.socket.connect_ex = _guarded(socket.socket.connect_ex, _inet_target)
socket.getaddrinfo = _guarded(socket.getaddrinfo, _lookup_target)


@pytest.fixture(autouse=True)
def no_outbound_traffic():
    """Fails the test during which this process tried to reach anything but loopback."""
    before = len(OUTBOUND)
    yield
    assert OUTBOUND[before:] == [], f"outbound traffic: {OUTBOUND[before:]}"


@pytest.fixture(scope="session")
def embedder():
    """The default embedder: the fastest backend that matches torch, unless QA_BACKEND says otherwise."""
    return default_embedder()


@pytest.fixture(scope="session")
def torch_embedder(embedder):
    """The torch (sentence-transformers) embedder, the reference every backend is checked against."""
    return embedder if embedder.backend == "torch" else TorchEmbedder()


@pytest.fixture(scope="session")
def seed_build(tmp_path_factory, embedder):
    """(corpus dir, index dir) of a copy of seeds/ indexed once per session. Read only."""
    root = tmp_path_factory.mktemp("seed_build")
    corpus = root / "seeds"
    shutil.copytree(SEEDS, corpus)
    update_index(corpus, root / "index", embedder=embedder, show_progress=False)
    return corpus, root / "index"


@pytest.fixture(scope="session")
def seed_index(seed_build):
    return Index.load(seed_build[1])


@pytest.fixture(scope="session")
def searcher(seed_index, embedder):
    return Searcher(seed_index, embedder)


@pytest.fixture
def embed_spy(embedder, monkeypatch):
    """Spy on both ways into the session embedder, whichever backend it is.

    ``embed`` (queries, sentences) and ``embed_passages`` (indexing) are the only calls
    that run the model, in every backend, and neither calls the other, so each text is
    recorded once each time it is embedded. Calls with no texts run nothing and are not
    recorded.
    """
    spy = EmbedSpy()

    def spying(real):
        def call(texts, *args, **kwargs):
            if len(texts):
                spy.calls.append(list(texts))
            return real(texts, *args, **kwargs)

        return call

    for name in ("embed", "embed_passages"):
        monkeypatch.setattr(embedder, name, spying(getattr(embedder, name)))
    yield spy


@pytest.fixture
def corpus_copy(tmp_path):
    """A writable copy of seeds/ at tmp_path/seeds."""
    corpus = tmp_path / "seeds"
    shutil.copytree(SEEDS, corpus)
    return corpus


@pytest.fixture
def built(tmp_path, seed_build):
    """A writable copy of the session's corpus and index: (tmp_path/seeds, tmp_path/index).

    copytree keeps sizes and mtimes, so the copied index is up to date with the copied corpus.
    """
    corpus, index = tmp_path / "seeds", tmp_path / "index"
    shutil.copytree(seed_build[0], corpus)
    shutil.copytree(seed_build[1], index)
    return corpus, index


@pytest.fixture(scope="session")
def reranker():
    """The shipped relevance model on the default backend (the fastest that matches torch)."""
    from qa.reranker_backends import default_reranker

    return default_reranker()


@pytest.fixture(scope="session")
def reranking_searcher(seed_index, embedder, reranker):
    return Searcher(seed_index, embedder, reranker=reranker)


def write_small_corpus(folder: Path, abstracts: int = 40) -> Path:
    """The seed reports and, where ../shared is beside the repository, the first SciFact abstracts."""
    shutil.copytree(SEEDS, folder)
    if SCIFACT.is_file():
        with open(SCIFACT, encoding="utf-8") as f:
            for n, line in zip(range(abstracts), f):
                record = json.loads(line)
                text = f"{record.get('title', '').strip()}\n\n{record['text']}\n"
                (folder / f"scifact_{n:03d}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def small_build(tmp_path_factory, embedder):
    """(corpus, index) of the seeds plus 40 SciFact abstracts, built locally once. Read only."""
    root = tmp_path_factory.mktemp("small_build")
    corpus = write_small_corpus(root / "corpus")
    update_index(corpus, root / "index", embedder=embedder, show_progress=False)
    return corpus, root / "index"


@pytest.fixture(scope="session")
def small_index(small_build):
    return Index.load(small_build[1])
