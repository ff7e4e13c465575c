"""The relevance model on OpenVINO or ONNX Runtime, checked against torch, with torch as the fallback.

As for the embedder (``qa.backends``), the trained network is exported once to ONNX,
offline, into the cache folder of its weights' hash::

    .cache/models/reranker-<weights sha256[:12]>/
        manifest.json   weights hash, exporter versions, sha256 of every file below
        model.onnx      inputs input_ids, attention_mask, token_type_ids; outputs
                        relevance (batch) and token_scores (batch, sequence)
        probes.npz      torch's outputs on ``PROBES``: the fidelity reference

A backend is used only if its relevance logits on the probe pairs stay within
``MAX_LOGIT_ERROR`` of torch's and its sentence choice is the same; otherwise the
next one is tried, then torch.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from functools import lru_cache
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from qa.backends import (
    CACHE_FORMAT, ONNX_OPSET, BackendError, _cache_lock, _publish, _read_manifest, _scratch, _threads, _verified,
    compile_openvino, default_cache_dir,
)
from qa.chunking import split_sentences
from qa.reranker import (
    RERANKER_FILE, RERANKER_SHA256, PairEncoder, Reranker, TorchCrossEncoder, load_network,
)

logger = logging.getLogger(__name__)

AUTO_ORDER = ("openvino", "onnx")
BACKENDS = ("auto", "torch", "openvino", "onnx")
# bf16 keeps about three significant digits: logits of magnitude ~10 move by a few hundredths.
MAX_LOGIT_ERROR = 0.25

# Fixed (question, passage) pairs whose outputs every backend must reproduce: short and
# long, matching and not, non-Latin text, and one past the word-piece limit.
PROBES: tuple[tuple[str, str], ...] = (
    ("Who claims he never gave the order to retreat?",
     "Russian draftees said their commander ordered them to retreat. The commander, however, claimed he never "
     "gave the order."),
    ("When was the tower completed?",
     "The Eiffel Tower was completed in 1889 for the World's Fair. It is 330 metres tall."),
    ("How many tanks did Germany send?",
     "Interest rates rose by a quarter point; markets fell sharply before recovering by the close."),
    ("Quelle est la capitale?", "東京は日本の首都です。 Müller said “it’s done” — then left."),
    ("What generates the cell's energy?",
     "Mitochondria generate most of the chemical energy needed to power the cell's biochemical reactions. "
     "The energy is stored in ATP. " * 12),
)


def _pair_cost(rows: int, width: int) -> float:
    """Relative work of a batch: its linear layers grow with rows x width, attention with width
    squared (about a tenth of the whole at 256 word pieces for MiniLM's 384 dimensions)."""
    return rows * width * (1.0 + width / 2300.0)


def balanced_parts(lengths: np.ndarray, parts: int) -> list[np.ndarray]:
    """Rows of a batch, longest first, cut into at most ``parts`` runs of near-equal padded work.

    Each run is padded only to its own longest row, so long and short pairs are not
    batched together; the cut minimises the largest run's work (``_pair_cost``).

    Returns:
        index arrays into ``lengths``, each non-empty, longest rows first.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    sorted_lengths = [int(x) for x in np.asarray(lengths)[order]]
    n, k = len(order), max(1, min(parts, len(order)))
    if n == 0:
        return []
    # best[j][i]: the least largest-run work over rows i.. cut into j runs; cut[j][i]: where the first run ends
    best = [[0.0] * (n + 1) for _ in range(k + 1)]
    cut = [[n] * (n + 1) for _ in range(k + 1)]
    for i in range(n):
        best[1][i] = _pair_cost(n - i, sorted_lengths[i])
    for j in range(2, k + 1):
        for i in range(n - j + 1):
            best[j][i] = float("inf")
            for e in range(i + 1, n - j + 2):
                work = max(_pair_cost(e - i, sorted_lengths[i]), best[j - 1][e])
                if work < best[j][i]:
                    best[j][i], cut[j][i] = work, e
    runs, i = [], 0
    for j in range(k, 1, -1):
        runs.append(order[i : cut[j][i]])
        i = cut[j][i]
    runs.append(order[i:])
    return runs


class _GraphCrossEncoder:
    """Batches split across ``workers`` single-threaded inference streams (one per core), each
    part padded only to its own longest pair (``balanced_parts``)."""

    backend = ""

    def __init__(self, workers: int | None = None):
        self.workers = workers or _threads()

    def run(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lengths = mask.sum(axis=1)
        parts = balanced_parts(lengths, self.workers)
        widths = [max(1, int(lengths[p].max())) for p in parts]
        results = self._run([(ids[p, :w], mask[p, :w], types[p, :w]) for p, w in zip(parts, widths)])
        logits = np.zeros(len(ids), dtype=np.float32)
        tokens = np.zeros(ids.shape, dtype=np.float32)  # padding scores 0: no sentence covers it
        for p, (part_logits, part_tokens) in zip(parts, results):
            logits[p] = part_logits
            tokens[p, : part_tokens.shape[1]] = part_tokens
        return logits, tokens

    def _run(self, batches):
        raise NotImplementedError


class OnnxCrossEncoder(_GraphCrossEncoder):
    backend = "onnx-fp32"

    def __init__(self, onnx_path: Path, workers: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError("the onnx backend needs ONNX Runtime: pip install onnxruntime") from exc
        super().__init__(workers)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own unrelated exception types
            raise BackendError(f"ONNX Runtime cannot load {onnx_path}: {exc}") from exc
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="onnx-rerank")

    def _forward(self, batch):
        ids, mask, types = batch
        out = self._session.run(["relevance", "token_scores"],
                                {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        return out[0], out[1]

    def _run(self, batches):
        return list(self._pool.map(self._forward, batches))


class OpenVINOCrossEncoder(_GraphCrossEncoder):
    def __init__(self, onnx_path: Path, workers: int | None = None, precision: str = "bf16"):
        super().__init__(workers)
        compiled, self.backend = compile_openvino(onnx_path, workers=self.workers, precision=precision)
        import openvino as ov

        self._queue = ov.AsyncInferQueue(compiled, self.workers)
        self._single = compiled.create_infer_request()
        self._lock = threading.Lock()

    def _run(self, batches):
        feeds = [{"input_ids": i, "attention_mask": m, "token_type_ids": t} for i, m, t in batches]
        with self._lock:
            if len(feeds) == 1:
                out = self._single.infer(feeds[0])
                return [(out[0].copy(), out[1].copy())]
            results: list = [None] * len(feeds)

            def done(request, n):
                results[n] = (request.get_output_tensor(0).data.copy(), request.get_output_tensor(1).data.copy())

            self._queue.set_callback(done)
            for n, f in enumerate(feeds):
                self._queue.start_async(f, n)
            self._queue.wait_all()
            return results


def export_onnx(net, dest: Path) -> None:
    """Export the cross-encoder (fp32, dynamic batch and sequence), offline."""
    import torch

    ids = torch.ones((2, 16), dtype=torch.int64)
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(dest),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["relevance", "token_scores"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                          "relevance": {0: "batch"}, "token_scores": axes},
            opset_version=ONNX_OPSET, do_constant_folding=True, dynamo=False,
        )


def probe_outputs(reranker: Reranker) -> tuple[np.ndarray, list[np.ndarray]]:
    """Relevance logits and sentence scores of ``PROBES``."""
    logits, sentences = [], []
    for question, passage in PROBES:
        (s,) = reranker.score(question, [passage], [split_sentences(passage)])
        logits.append(s.logit)
        sentences.append(s.sentences)
    return np.array(logits), sentences


def _fidelity(reranker: Reranker, reference: dict) -> float:
    """Largest error on the probes: of a relevance logit, or of the chosen sentence (how far
    below torch's best sentence, in torch's scores, the backend's choice lies)."""
    logits, sentences = probe_outputs(reranker)
    errors = list(np.abs(logits - reference["logits"]))
    for n, s in enumerate(sentences):
        ref = reference[f"sentences_{n}"]
        errors.append(float(ref.max() - ref[int(np.argmax(s))]))
    return float(max(errors))


def ensure_cache(net, sha256: str, reference: Reranker, cache_dir: str | os.PathLike | None = None, *,
                 rebuild: bool = False) -> Path:
    """The exported graph and torch's probe outputs for these weights, built if missing or altered."""
    import shutil

    import torch

    folder = Path(cache_dir or default_cache_dir()) / f"reranker-{sha256[:12]}"
    with _cache_lock(folder):
        if rebuild and folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        manifest = _read_manifest(folder, sha256) or {"format": CACHE_FORMAT, "model": "reranker",
                                                      "weights_sha256": sha256, "files": {}}
        if not _verified(folder, manifest, "model.onnx"):
            t0 = time.perf_counter()
            with _scratch(folder) as tmp:
                export_onnx(net, tmp / "model.onnx")
                manifest = _publish(folder, manifest, "model.onnx", tmp / "model.onnx",
                                    torch_version=torch.__version__, onnx_opset=ONNX_OPSET)
            logger.info("exported the relevance model to ONNX in %.1f s", time.perf_counter() - t0)
        if not _verified(folder, manifest, "probes.npz"):
            logits, sentences = probe_outputs(reference)
            with _scratch(folder) as tmp:
                with open(tmp / "probes.npz", "wb") as f:
                    np.savez(f, logits=logits, **{f"sentences_{n}": s for n, s in enumerate(sentences)})
                manifest = _publish(folder, manifest, "probes.npz", tmp / "probes.npz")
    return folder


def _open(backend: str, folder: Path):
    if backend == "openvino":
        return OpenVINOCrossEncoder(folder / "model.onnx")
    if backend == "onnx":
        return OnnxCrossEncoder(folder / "model.onnx")
    raise ValueError(f"unknown reranker backend {backend!r}; choose from {', '.join(map(repr, BACKENDS))}")


def load_reranker(backend: str = "auto", *, path: str | os.PathLike = RERANKER_FILE,
                  expected_sha256: str | None = RERANKER_SHA256, cache_dir: str | os.PathLike | None = None) -> Reranker:
    """The relevance model to answer with.

    Args:
        backend: "auto" (the first of ``AUTO_ORDER`` that loads and matches torch on
            the probes, else torch), "torch", "openvino" or "onnx".
        path: the weights file; default the shipped ``models/reranker.safetensors``.
        expected_sha256: the hash it must have (None: do not check, for a file just trained).

    Raises:
        ValueError: an unknown backend name.
        RerankerError: the weights are missing, altered, or not a relevance model.
    """
    from qa.embedding import file_sha256

    if backend not in BACKENDS:
        raise ValueError(f"unknown reranker backend {backend!r}; choose from {', '.join(map(repr, BACKENDS))}")
    net, config, calibration = load_network(path, expected_sha256)
    encoder = PairEncoder()
    torch_reranker = Reranker(TorchCrossEncoder(net), config, calibration, encoder)
    if backend == "torch":
        return torch_reranker
    sha256 = expected_sha256 or file_sha256(Path(path))
    passed_over = []
    for name in AUTO_ORDER if backend == "auto" else (backend,):
        try:
            folder = ensure_cache(net, sha256, torch_reranker, cache_dir)
            reference = dict(np.load(folder / "probes.npz", allow_pickle=False))
            reranker = Reranker(_open(name, folder), config, calibration, encoder)
            error = _fidelity(reranker, reference)
            if error > MAX_LOGIT_ERROR:
                raise BackendError(f"{reranker.backend} is not faithful to torch here: probe logit error {error:.3f}")
        except (BackendError, ImportError, OSError, RuntimeError) as exc:
            logger.warning("reranker backend %s is not available (%s)", name, exc)
            passed_over.append(f"{name}: {exc}")
            continue
        logger.info("reranking with %s (probe logit error %.4f)", reranker.backend, error)
        return reranker
    logger.warning("reranking with torch, the fallback: %s", "; ".join(passed_over))
    return torch_reranker


@lru_cache(maxsize=1)
def default_reranker() -> Reranker:
    """One relevance model per process, on the backend QA_BACKEND names (torch,
    openvino, onnx), else the fastest faithful one ("auto")."""
    choice = os.environ.get("QA_BACKEND", "").strip()
    return load_reranker(choice if choice in BACKENDS else "auto")
