"""Faster embedder backends for the bundled model: OpenVINO and ONNX Runtime, checked against torch.

The bundled weights are exported once to ONNX, offline, into a cache folder
(default ``.cache/models/`` at the repository root)::

    .cache/models/all-MiniLM-L6-v2-<weights sha256[:12]>/
        manifest.json    weights hash, exporter versions, sha256 of every file below
        model.onnx       BertModel, fp32; inputs input_ids, attention_mask,
                         token_type_ids (dynamic batch and sequence), output
                         last_hidden_state
        model-int8.onnx  dynamically quantized copy, made only when asked for
        probes.npy       torch's vectors of ``PROBES``: the fidelity reference

A backend is used only if its vectors of the probe texts keep cosine >= ``MIN_COSINE``
to torch's; a cache file that is missing or whose hash differs is rebuilt. When a
backend cannot load or fails the check, ``load_embedder`` falls back to torch.
``default_embedder`` uses ``load_embedder("auto")`` unless QA_BACKEND says otherwise.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from qa.embedding import (
    MAX_SEQ_LENGTH,
    MODEL_NAME,
    Embedder,
    WordPieces,
    ModelError,
    bundled_model_path,
    check_model_files,
    file_sha256,
    open_tokenizer,
)

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
MIN_COSINE = 0.999
ONNX_OPSET = 17
# Tried in this order by backend="auto" (the default): fastest first, as measured by qa.bench
# on a 2-core AVX512-BF16 CPU (OpenVINO bf16 4.6x torch, ONNX Runtime fp32 2.3x; SciFact
# hybrid nDCG@10 0.7253 with OpenVINO vs torch's 0.7254, dense nDCG@10 equal). A backend
# belongs here only if its vectors keep cosine >= MIN_COSINE to torch's and its nDCG@10
# stays within 0.003 of torch's; onnx-int8 (cosine 0.986) does not.
# Without bf16, OpenVINO runs fp32 and is still first.
AUTO_ORDER = ("openvino", "onnx")
BACKENDS = ("auto", "torch", "openvino", "onnx", "onnx-int8")

# Fixed texts whose vectors every backend must reproduce. Mixed lengths (one word
# to past the 256 word-piece cut) so that padding, masking and truncation are checked.
PROBES: tuple[str, ...] = (
    "Hello.",
    "What causes the seasons on Earth?",
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Müller said “it’s done” — then left; 12.5% of 3,000 voters (±2) disagreed.",
    "def add(a, b):\n    return a + b  # adds two numbers",
    "Mitochondria generate most of the chemical energy needed to power the cell's "
    "biochemical reactions, stored in adenosine triphosphate (ATP).",
    "Alterations of the architecture of cerebral white matter in the developing human brain "
    "can affect cortical development and result in functional disabilities. A line scan "
    "diffusion-weighted magnetic resonance imaging sequence with diffusion tensor analysis "
    "was applied to measure the apparent diffusion coefficient and relative anisotropy.",
    "The general said he had never given the order to retreat, and the colonel insisted "
    "that the order came in writing, signed, at dawn. " * 12,
    "東京は日本の首都です。",
    "a",
    "Interest rates rose by a quarter point; markets fell sharply before recovering by the close.",
    "Neural networks with residual connections train faster and generalize better on image tasks.",
)


class BackendError(RuntimeError):
    """A backend that cannot be used here: not installed, cannot load, or not faithful to torch."""


def default_cache_dir() -> Path:
    """``.cache/models`` at the repository root (gitignored)."""
    return Path(__file__).resolve().parent.parent / ".cache" / "models"


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _probe_hash() -> str:
    return hashlib.sha256("\x00".join(PROBES).encode("utf-8")).hexdigest()


# -- the torch reference ----------------------------------------------------------


class TorchEmbedder(Embedder):
    """The sentence-transformers embedder of ``qa.embedding``, labelled as the torch backend."""

    backend = "torch"
    probe_cosine = 1.0


# -- ONNX-shaped backends -----------------------------------------------------------


class _GraphEmbedder(WordPieces):
    """Tokenization, length-sorted batching and mean pooling shared by the ONNX-graph backends.

    Batches go to ``workers`` single-threaded inference streams at once (one per
    core): on a 2-core machine two independent streams beat one two-threaded one,
    by a wide margin when other processes compete for the cores. Subclasses set
    ``backend`` and implement ``_run`` (batches in, last hidden states out).
    """

    backend = ""

    def __init__(self, model_dir: Path, sha256: str, *, batch_size: int = 16, workers: int | None = None):
        self.model_dir = model_dir
        self.sha256 = sha256
        self.batch_size = batch_size
        self.workers = workers or _threads()
        self.probe_cosine: float | None = None
        self._lock = threading.Lock()
        self._open_counter(model_dir)
        # The same cut as sentence-transformers' max_seq_length: [CLS] and [SEP] included.
        self._tokenizer = open_tokenizer(model_dir)
        self._tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
        self._tokenizer.no_padding()

    def embed(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in the order given."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)

        def take(rows, hidden, mask, encodings):
            out[rows] = _mean_pool(hidden, mask)

        self._each_batch(texts, take, show_progress=show_progress)
        return out

    def embed_passages(
        self, texts: Sequence[str], sentence_spans: Sequence[Sequence[tuple[int, int]]], *,
        show_progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Passage vectors and a vector per sentence from the same pass; see ``Embedder.embed_passages``."""
        if len(texts) != len(sentence_spans):
            raise ValueError("one list of sentence spans is needed per text")
        first = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in sentence_spans], out=first[1:])
        passages = np.zeros((len(texts), self.dim), dtype=np.float32)
        sentences = np.zeros((int(first[-1]), self.dim), dtype=np.float32)

        def take(rows, hidden, mask, encodings):
            passages[rows] = _mean_pool(hidden, mask)
            for r, i in enumerate(rows):
                if not len(sentence_spans[i]):
                    continue
                n = int(mask[r].sum())
                offsets = np.asarray(encodings[i].offsets[:n], dtype=np.int64).reshape(-1, 2)
                spans = np.asarray(sentence_spans[i], dtype=np.int64).reshape(-1, 2)
                # (sentences x tokens): the real tokens inside each sentence; their mean in one product
                inside = ((offsets[None, :, 0] >= spans[:, :1]) & (offsets[None, :, 1] <= spans[:, 1:])
                          & (offsets[None, :, 1] > offsets[None, :, 0])).astype(np.float32)
                counts = inside.sum(axis=1, keepdims=True)
                pooled = (inside @ hidden[r, :n].astype(np.float32)) / np.maximum(counts, 1.0)
                norms = np.linalg.norm(pooled, axis=1, keepdims=True)
                # a sentence with no token of its own (cut off at 256 word pieces) keeps a zero row
                sentences[first[i] : first[i] + len(spans)] = np.where(counts > 0, pooled / np.maximum(norms, 1e-12),
                                                                       0.0)

        self._each_batch(texts, take, show_progress=show_progress)
        return passages, sentences

    def _each_batch(self, texts: Sequence[str], take, *, show_progress: bool) -> None:
        """Run the model over texts; ``take(rows, hidden, mask, encodings)`` gets each batch."""
        if not texts:
            return
        encodings = self._tokenizer.encode_batch(list(texts))
        # Similar lengths share a batch, so little compute goes to padding.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        rows = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        bar = None
        if show_progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), desc="Embedding passages", unit="passage")
        # A bounded window of batches in flight: the arrays are not all built at once.
        # The lock is taken per window, so a question's embedding can slip in
        # between windows of a long indexing run instead of waiting for all of it.
        window = 2 * self.workers
        windows = [rows[start : start + window] for start in range(0, len(rows), window)]

        def run(group_rows):
            group = [_batch(encodings, r) for r in group_rows]
            with self._lock:
                return group, self._run(group)

        try:
            if len(windows) == 1:
                results = iter([run(windows[0])])
            else:
                # The next window runs in the model while this thread pools the last one.
                results = _ahead(run, windows)
            for group_rows, (group, hidden) in zip(windows, results):
                for (_, mask), h, r in zip(group, hidden, group_rows):
                    take(r, h, mask, encodings)
                    if bar is not None:
                        bar.update(len(r))
        finally:
            if bar is not None:
                bar.close()

    def _run(self, batches: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        raise NotImplementedError


def _ahead(fn, items: list):
    """``fn(item)`` of each item in order, the next one computed in a thread while the caller
    uses the one before (one ahead at most: memory for two results)."""
    with ThreadPoolExecutor(1, thread_name_prefix="qa-embed") as pool:
        pending = pool.submit(fn, items[0])
        for k in range(len(items)):
            result = pending.result()
            if k + 1 < len(items):
                pending = pool.submit(fn, items[k + 1])
            yield result


def _batch(encodings, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Word-piece ids and attention mask of some encodings, right-padded to the longest."""
    width = max(len(encodings[i].ids) for i in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, i in enumerate(rows):
        n = len(encodings[i].ids)
        ids[r, :n] = encodings[i].ids
        mask[r, :n] = 1
    return ids, mask


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token vectors under the mask, then L2-normalized (sentence-transformers' pooling)."""
    m = mask[:, :, None].astype(np.float32)
    summed = (hidden.astype(np.float32) * m).sum(axis=1)
    pooled = summed / np.clip(m.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return pooled / np.clip(norms, 1e-12, None)


class OnnxEmbedder(_GraphEmbedder):
    """ONNX Runtime on the CPU: one single-threaded run per core at a time.

    Args:
        onnx_path: the exported graph (``model.onnx`` or ``model-int8.onnx``).
        backend: the label, "onnx-fp32" or "onnx-int8".
    """

    def __init__(self, onnx_path: Path, model_dir: Path, sha256: str, *, backend: str = "onnx-fp32",
                 batch_size: int = 16, workers: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError("the onnx backend needs ONNX Runtime: pip install onnxruntime") from exc
        super().__init__(model_dir, sha256, batch_size=batch_size, workers=workers)
        self.backend = backend
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own unrelated exception types
            raise BackendError(f"ONNX Runtime cannot load {onnx_path}: {exc}") from exc
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="onnx") if self.workers > 1 else None

    def _forward(self, batch: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        ids, mask = batch
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return self._session.run(["last_hidden_state"], feeds)[0]

    def _run(self, batches):
        if self._pool is None or len(batches) == 1:
            return [self._forward(b) for b in batches]
        return list(self._pool.map(self._forward, batches))  # ORT runs release the GIL


def compile_openvino(onnx_path: Path, *, workers: int, precision: str = "bf16"):
    """An ONNX graph compiled for the CPU with one inference stream per worker.

    Returns:
        (the compiled model, its backend label: "openvino-bf16", or "openvino-fp32"
        when asked or when the CPU has no bf16).

    Raises:
        BackendError: OpenVINO is not installed or cannot compile the graph.
    """
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendError("the openvino backend needs the OpenVINO runtime: pip install openvino") from exc
    core = ov.Core()
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        logger.info("this CPU has no bf16 support: OpenVINO runs in fp32")
        precision = "fp32"
    config = {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "PERFORMANCE_HINT": "THROUGHPUT",
        "NUM_STREAMS": workers,
        "INFERENCE_NUM_THREADS": workers,
    }
    try:
        compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
    except RuntimeError as exc:
        raise BackendError(f"OpenVINO cannot compile {onnx_path}: {exc}") from exc
    return compiled, f"openvino-{precision}"


class OpenVINOEmbedder(_GraphEmbedder):
    """OpenVINO on the CPU: bf16 inference where the CPU has it (AVX512-BF16, AMX), else fp32.

    Args:
        onnx_path: the exported graph; OpenVINO reads ONNX directly.
        precision: "bf16" (falls back to fp32 on a CPU without bf16) or "fp32".
    """

    def __init__(self, onnx_path: Path, model_dir: Path, sha256: str, *, precision: str = "bf16",
                 batch_size: int = 16, workers: int | None = None):
        if precision not in ("bf16", "fp32"):
            raise ValueError(f"unknown OpenVINO precision {precision!r}; choose from 'bf16', 'fp32'")
        super().__init__(model_dir, sha256, batch_size=batch_size, workers=workers)
        compiled, self.backend = compile_openvino(onnx_path, workers=self.workers, precision=precision)
        import openvino as ov

        self._queue = ov.AsyncInferQueue(compiled, self.workers)
        self._single = compiled.create_infer_request()

    def _run(self, batches):
        if len(batches) == 1:
            ids, mask = batches[0]
            return [self._single.infer(_ov_feeds(ids, mask))[0].copy()]
        results: list[np.ndarray | None] = [None] * len(batches)

        def done(request, i):
            results[i] = request.get_output_tensor(0).data.copy()

        self._queue.set_callback(done)
        for i, (ids, mask) in enumerate(batches):
            self._queue.start_async(_ov_feeds(ids, mask), i)
        self._queue.wait_all()
        return results


def _ov_feeds(ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


# -- the cache of exported models ---------------------------------------------------


def model_cache_dir(sha256: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder of one set of weights."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return root / f"{MODEL_NAME.rsplit('/', 1)[-1]}-{sha256[:12]}"


@contextmanager
def _cache_lock(folder: Path):
    """One process at a time builds a cache folder; others wait, then find it built."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(f".{folder.name}.lock"), "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _read_manifest(folder: Path, sha256: str) -> dict | None:
    """The cache manifest, or None when it is missing or belongs to other weights."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("format") != CACHE_FORMAT or manifest.get("weights_sha256") != sha256:
        return None
    return manifest


def _verified(folder: Path, manifest: dict | None, name: str) -> bool:
    """``name`` exists in the cache and its content hash is the one recorded."""
    path = folder / name
    expected = (manifest or {}).get("files", {}).get(name)
    return bool(expected) and path.is_file() and file_sha256(path) == expected


def _write_manifest(folder: Path, manifest: dict) -> None:
    tmp = folder / f".manifest.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / "manifest.json")


def _publish(folder: Path, manifest: dict, name: str, tmp_file: Path, **extra) -> dict:
    """Move a finished file into the cache and record its hash (file first, then manifest)."""
    os.replace(tmp_file, folder / name)
    manifest.setdefault("files", {})[name] = file_sha256(folder / name)
    manifest.update(extra)
    _write_manifest(folder, manifest)
    return manifest


def export_onnx(model_dir: Path, dest: Path) -> None:
    """Export the bundled BertModel to ONNX (fp32, dynamic batch and sequence), offline."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager")
    model.eval()

    class _Bert(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            # Keyword arguments: BertModel's positional order is not part of its API.
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.int64)
    axes = {0: "batch", 1: "sequence"}
    # The tracer warns about shapes and indices in general terms; whether this graph is right
    # is checked on the fidelity probes, so the warnings would only alarm a first-time user.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Bert(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(dest),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                          "last_hidden_state": axes},
            opset_version=ONNX_OPSET, do_constant_folding=True, dynamo=False,
        )


INT8_RECIPE = "onnxruntime quantize_dynamic, QInt8 weights, per channel"


def quantize_int8(src: Path, dest: Path) -> None:
    """Dynamic int8 quantization of the matrix products (ONNX Runtime's tool).

    Per-channel weight scales: per-tensor ones give probe cosines near 0.93 to torch,
    per-channel ones about 0.99 (still below ``MIN_COSINE``).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dest), weight_type=QuantType.QInt8, per_channel=True)


def ensure_cache(
    model_dir: Path, sha256: str, cache_dir: str | os.PathLike | None = None, *,
    int8: bool = False, rebuild: bool = False,
) -> Path:
    """Make sure the exported model (and the probe reference) are in the cache and intact.

    A file that is missing or whose sha256 differs from the manifest's is built again.

    Args:
        model_dir: the checked weights.
        sha256: their hash, which names the cache folder.
        int8: also produce ``model-int8.onnx``.
        rebuild: throw the cached files away first.

    Returns:
        the cache folder of these weights.
    """
    folder = model_cache_dir(sha256, cache_dir)
    with _cache_lock(folder):
        if rebuild and folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".build-*"):  # left by a build that was killed; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        manifest = _read_manifest(folder, sha256)
        if manifest is None:
            manifest = {"format": CACHE_FORMAT, "model": MODEL_NAME, "weights_sha256": sha256, "files": {}}
        if not _verified(folder, manifest, "model.onnx"):
            import torch

            logger.info("exporting %s to ONNX in %s", MODEL_NAME, folder)
            t0 = time.perf_counter()
            with _scratch(folder) as tmp:
                export_onnx(model_dir, tmp / "model.onnx")
                manifest.get("files", {}).pop("model-int8.onnx", None)  # made from the old export
                manifest = _publish(folder, manifest, "model.onnx", tmp / "model.onnx",
                                    torch_version=torch.__version__, onnx_opset=ONNX_OPSET,
                                    max_seq_length=MAX_SEQ_LENGTH)
            logger.info("exported in %.1f s", time.perf_counter() - t0)
        if int8 and (manifest.get("int8_recipe") != INT8_RECIPE or not _verified(folder, manifest, "model-int8.onnx")):
            with _scratch(folder) as tmp:
                quantize_int8(folder / "model.onnx", tmp / "model-int8.onnx")
                manifest = _publish(folder, manifest, "model-int8.onnx", tmp / "model-int8.onnx",
                                    int8_recipe=INT8_RECIPE)
        if manifest.get("probes_sha256") != _probe_hash() or not _verified(folder, manifest, "probes.npy"):
            logger.info("computing torch's reference vectors of the fidelity probes")
            reference = TorchEmbedder(model_dir).embed(list(PROBES))
            with _scratch(folder) as tmp:
                np.save(tmp / "probes.npy", reference, allow_pickle=False)
                manifest = _publish(folder, manifest, "probes.npy", tmp / "probes.npy",
                                    probes_sha256=_probe_hash())
    return folder


@contextmanager
def _scratch(folder: Path):
    """A private temporary folder inside the cache, removed afterwards with whatever a tool left in it."""
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def reference_vectors(folder: Path) -> np.ndarray:
    return np.load(folder / "probes.npy", allow_pickle=False)


def fidelity(embedder, reference: np.ndarray) -> float:
    """Smallest cosine between the embedder's vectors of ``PROBES`` and torch's."""
    vectors = embedder.embed(list(PROBES))
    return float(np.min(np.sum(vectors * reference, axis=1)))


# -- choosing a backend -------------------------------------------------------------


def _open_backend(backend: str, folder: Path, model_dir: Path, sha256: str, batch_size: int):
    if backend == "openvino":
        return OpenVINOEmbedder(folder / "model.onnx", model_dir, sha256, batch_size=batch_size)
    if backend == "onnx":
        return OnnxEmbedder(folder / "model.onnx", model_dir, sha256, backend="onnx-fp32", batch_size=batch_size)
    if backend == "onnx-int8":
        return OnnxEmbedder(folder / "model-int8.onnx", model_dir, sha256, backend="onnx-int8",
                            batch_size=batch_size)
    raise ValueError(f"unknown embedder backend {backend!r}; choose from {', '.join(map(repr, BACKENDS))}")


def open_backend(
    backend: str, *, model_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
    batch_size: int = 16, min_cosine: float | None = MIN_COSINE,
):
    """One non-torch backend, with no fallback: for measuring, and for ``load_embedder``.

    Args:
        backend: "openvino", "onnx" or "onnx-int8".
        min_cosine: refuse the backend below this probe cosine to torch; None skips the check.

    Returns:
        an embedder with the interface of ``qa.embedding.Embedder`` plus ``backend``
        and ``probe_cosine`` (the smallest probe cosine to torch, or None if unchecked).

    Raises:
        ValueError: an unknown backend name.
        BackendError: it is not installed, cannot load even from a fresh export, or is
            not faithful to torch.
    """
    if backend not in BACKENDS or backend in ("auto", "torch"):
        raise ValueError(f"unknown graph backend {backend!r}; choose from 'openvino', 'onnx', 'onnx-int8'")
    model_dir = Path(model_dir) if model_dir else bundled_model_path()
    sha256 = check_model_files(model_dir)
    int8 = backend == "onnx-int8"
    folder = ensure_cache(model_dir, sha256, cache_dir, int8=int8)
    try:
        embedder = _open_backend(backend, folder, model_dir, sha256, batch_size)
    except BackendError as exc:
        if "needs" in str(exc):  # not installed: a fresh export will not help
            raise
        logger.warning("%s; exporting the model again", exc)
        folder = ensure_cache(model_dir, sha256, cache_dir, int8=int8, rebuild=True)
        embedder = _open_backend(backend, folder, model_dir, sha256, batch_size)
    embedder.probe_cosine = None
    if min_cosine is not None:
        embedder.probe_cosine = fidelity(embedder, reference_vectors(folder))
        if embedder.probe_cosine < min_cosine:
            raise BackendError(
                f"{embedder.backend} is not faithful to torch here: probe cosine "
                f"{embedder.probe_cosine:.5f} < {min_cosine}"
            )
    return embedder


def load_embedder(
    backend: str = "auto", *, cache_dir: str | os.PathLike | None = None,
    model_dir: str | os.PathLike | None = None, batch_size: int = 16,
):
    """The embedder to index and search with.

    Args:
        backend: "auto" (the fastest of ``AUTO_ORDER`` that loads and passes the
            fidelity check, else torch), "torch", "openvino", "onnx", or "onnx-int8"
            (faster but changes results; never chosen by "auto").
        cache_dir: where exported models are kept; default ``.cache/models``.
        model_dir: the weights; default the bundled ones.

    Returns:
        an embedder with ``name``, ``sha256``, ``dim``, ``backend``, ``embed`` and
        ``count_wordpieces``; torch's when the one asked for cannot be used (logged).

    Raises:
        ValueError: an unknown backend name, naming the valid ones.
        ModelError: a model file is missing or altered (see ``qa.embedding.check_model_files``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown embedder backend {backend!r}; choose from {', '.join(map(repr, BACKENDS))}")
    if backend == "torch":
        logger.info("embedding with torch, as asked")
        return TorchEmbedder(model_dir)
    candidates = AUTO_ORDER if backend == "auto" else (backend,)
    passed_over: list[str] = []
    for name in candidates:
        try:
            embedder = open_backend(name, model_dir=model_dir, cache_dir=cache_dir, batch_size=batch_size)
        except ModelError:
            raise  # altered model files: no backend may load them, torch included
        except (BackendError, ImportError, OSError, RuntimeError) as exc:
            logger.warning("embedder backend %s is not available (%s)", name, exc)
            passed_over.append(f"{name}: {exc}")
            continue
        logger.info("embedding with %s (asked for %r; probe cosine to torch %.5f)%s", embedder.backend, backend,
                    embedder.probe_cosine, f"; passed over {'; '.join(passed_over)}" if passed_over else "")
        return embedder
    logger.warning("embedding with torch, the fallback: no backend of %s could be used", ", ".join(candidates))
    return TorchEmbedder(model_dir)


BACKEND_ENV = "QA_BACKEND"


@lru_cache(maxsize=1)
def default_embedder() -> WordPieces:
    """One embedder per process: the model is loaded once.

    The environment variable QA_BACKEND picks the backend; unset, it is "auto": the
    fastest backend of this module (OpenVINO, then ONNX Runtime) whose vectors of
    fixed probe texts keep cosine >= 0.999 to torch's, exported offline from the
    bundled weights on first use into a checked cache. Torch (sentence-transformers)
    is the fallback when none of them can load, and QA_BACKEND=torch forces it. The
    choice, and why a faster backend was passed over, is logged.

    Returns:
        an embedder with the interface of ``Embedder`` and a ``backend`` label.

    Raises:
        ValueError: QA_BACKEND names no backend, naming the valid ones.
    """
    choice = os.environ.get(BACKEND_ENV, "").strip()
    if not choice:
        logger.info("%s is not set: choosing the embedder backend automatically", BACKEND_ENV)
    return load_embedder(choice or "auto")
