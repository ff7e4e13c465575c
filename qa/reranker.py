"""The relevance model: a cross-encoder that reads the question with each candidate passage.

One forward pass over "[CLS] question [SEP] passage [SEP]" gives two things:

- a relevance logit for the passage (mean of the last layer's token states, then a
  linear head), turned into a probability with the calibration stored beside the
  weights (see ``Calibration``);
- a score for every token (a second linear head); a sentence's score is the mean of
  its tokens' scores, and the best one is the passage's answering sentence.

The network is the bundled all-MiniLM-L6-v2 BertModel, fine-tuned by
``qa.train_reranker``. The shipped file (``models/reranker.safetensors``) holds only
what training changed: the transformer layers, the embeddings' LayerNorm and
token-type rows, and the two heads, in fp16. The word and position embeddings come
from the bundled, hash-checked base weights. The file's sha256 is checked at load.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from qa.embedding import ModelError, bundled_model_path, check_model_files, file_sha256, open_tokenizer

logger = logging.getLogger(__name__)

RERANKER_FILE = Path(__file__).resolve().parent.parent / "models" / "reranker.safetensors"
# The sha256 of the shipped weights: a file that differs is refused.
RERANKER_SHA256 = "d13e68de0b0c845f08b83d30b7d59d9ed34c8300f9c1853dc91d097e0079cd21"
MAX_PAIR_WORDPIECES = 256
MAX_QUESTION_WORDPIECES = 64
HIDDEN = 384


class RerankerError(ModelError):
    """The relevance model's weights are missing, altered or unreadable."""


@dataclass
class Calibration:
    """How the model's outputs become the probability that a passage answers.

    ``relevance = sigmoid(rerank * w_rerank + first_stage * w_first + bias)``, where
    ``first_stage`` is the passage's fused first-stage score (hybrid BM25 + dense),
    fitted by logistic regression on held-out articles (``qa.train_reranker``).
    ``threshold`` is the probability the best passage must reach for the question
    to count as answered, chosen on the same held-out articles at
    ``false_abstention`` (the share of answerable questions it refuses there).
    """

    w_rerank: float = 1.0
    w_first: float = 0.0
    bias: float = 0.0
    threshold: float = 0.5
    false_abstention: float | None = None

    def probability(self, rerank: np.ndarray, first_stage: np.ndarray) -> np.ndarray:
        z = self.w_rerank * np.asarray(rerank, dtype=np.float64) + self.w_first * np.asarray(first_stage) + self.bias
        return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class RerankerConfig:
    """What shapes the network; stored in the weights file's metadata."""

    layers: int = 6
    base_sha256: str = ""
    version: int = 1
    training: dict = field(default_factory=dict)


# -- the network (torch) ---------------------------------------------------------


def build_network(layers: int, model_dir: Path | None = None, *, dropout: float | None = None):
    """The cross-encoder, initialised from the bundled base weights (first ``layers`` layers).

    Args:
        dropout: the hidden and attention dropout while training (None: the base model's 0.1).
    """
    import torch
    from transformers import AutoModel

    model_dir = model_dir or bundled_model_path()
    check_model_files(model_dir)  # AutoModel reads config.json as well as the weights

    class CrossEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            rates = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
            bert = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager",
                                             **rates)
            bert.encoder.layer = bert.encoder.layer[:layers]
            bert.config.num_hidden_layers = layers
            bert.pooler = None
            self.bert = bert
            self.relevance = torch.nn.Linear(HIDDEN, 1)
            self.token = torch.nn.Linear(HIDDEN, 1)
            for head in (self.relevance, self.token):
                torch.nn.init.normal_(head.weight, std=0.02)
                torch.nn.init.zeros_(head.bias)

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            return self.relevance(pooled).squeeze(-1), self.token(hidden).squeeze(-1)

    return CrossEncoder()


def trained_parameters(net) -> list[str]:
    """Names of the parameters that training changes (and the shipped file holds)."""
    return [n for n, _ in net.named_parameters()
            if not (n.startswith("bert.embeddings.word_embeddings") or n.startswith("bert.embeddings.position_embeddings"))]


def save_weights(net, path: str | Path, config: RerankerConfig, calibration: Calibration) -> str:
    """Write the trained parameters in fp16 with config and calibration; return the file's sha256."""
    from safetensors.torch import save_file

    state = net.state_dict()
    tensors = {n: state[n].detach().to("cpu").half().contiguous() for n in trained_parameters(net)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"config": json.dumps(asdict(config)),
                                            "calibration": json.dumps(asdict(calibration))})
    os.replace(tmp, path)
    return file_sha256(path)


def read_weights(path: str | Path, expected_sha256: str | None) -> tuple[dict, RerankerConfig, Calibration]:
    """The tensors, config and calibration of a weights file, after checking its hash.

    Args:
        expected_sha256: the hash the file must have; None skips the check (a file
            just trained, before it is shipped).

    Raises:
        RerankerError: the file is missing, its hash differs, or it is not a weights file.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise RerankerError(f"relevance model not found: {path} (rebuild it with `python -m qa train-reranker`)")
    if expected_sha256 is not None:
        actual = file_sha256(path)
        if actual != expected_sha256:
            raise RerankerError(f"refusing to load {path}: sha256 {actual} is not the shipped {expected_sha256}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k).float() for k in f.keys()}
        config = RerankerConfig(**json.loads(meta["config"]))
        calibration = Calibration(**json.loads(meta["calibration"]))
    except (KeyError, ValueError, TypeError, OSError, SafetensorError) as exc:
        raise RerankerError(f"{path} is not a relevance model file: {exc}") from None
    return tensors, config, calibration


def load_network(path: str | Path = RERANKER_FILE, expected_sha256: str | None = RERANKER_SHA256):
    """The trained cross-encoder in torch (fp32, eval mode), its config and calibration."""
    tensors, config, calibration = read_weights(path, expected_sha256 or None)
    base = bundled_model_path()
    if config.base_sha256 and check_model_files(base) != config.base_sha256:
        raise RerankerError(f"{path} was trained from other base weights ({config.base_sha256[:12]})")
    net = build_network(config.layers, base)
    missing = set(trained_parameters(net)) - set(tensors)
    if missing:
        raise RerankerError(f"{path} lacks {len(missing)} tensors, e.g. {sorted(missing)[0]}")
    net.load_state_dict(tensors, strict=False)
    net.eval()
    return net, config, calibration


# -- inputs and outputs ----------------------------------------------------------


class PairEncoder:
    """Word pieces of (question, passage) pairs, and which tokens fall in which sentence."""

    def __init__(self, model_dir: Path | None = None):
        self._tokenizer = open_tokenizer(model_dir or bundled_model_path())
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=MAX_PAIR_WORDPIECES, strategy="only_second")
        self._questions = open_tokenizer(model_dir or bundled_model_path())
        self._questions.no_padding()
        self._questions.enable_truncation(max_length=MAX_QUESTION_WORDPIECES)

    def encode(self, question: str, passages: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
        """(input_ids, attention_mask, token_type_ids, encodings), right-padded to the longest pair.

        The question is cut to MAX_QUESTION_WORDPIECES and each pair to MAX_PAIR_WORDPIECES.
        """
        q = self._questions.encode(question, add_special_tokens=False)
        q_text = question[: q.offsets[-1][1]] if q.offsets else question
        encodings = self._tokenizer.encode_batch([(q_text, p) for p in passages])
        width = max((len(e.ids) for e in encodings), default=0)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for r, e in enumerate(encodings):
            n = len(e.ids)
            ids[r, :n], mask[r, :n], types[r, :n] = e.ids, 1, e.type_ids
        return ids, mask, types, encodings


def sentence_token_masks(encoding, spans: Sequence[tuple[int, int]], width: int) -> np.ndarray:
    """For each sentence span (offsets into the passage), which of the pair's tokens lie inside it."""
    seq = np.array([s if s is not None else -1 for s in encoding.sequence_ids], dtype=np.int64)
    offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
    real = (seq == 1) & (offsets[:, 1] > offsets[:, 0])
    out = np.zeros((len(spans), width), dtype=bool)
    for j, (a, b) in enumerate(spans):
        inside = real & (offsets[:, 0] < b) & (offsets[:, 1] > a)
        out[j, : len(inside)] = inside
    return out


def sentence_scores(token_scores: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mean token score over each sentence's tokens (-inf for a sentence cut off by truncation)."""
    counts = masks.sum(axis=1)
    sums = (masks * token_scores[None, : masks.shape[1]]).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)


# -- scoring -----------------------------------------------------------------------


class TorchCrossEncoder:
    """Runs the network in torch (fp32): the reference every faster backend is checked against."""

    backend = "torch"

    def __init__(self, net):
        self.net = net

    def run(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        was_training = self.net.training
        self.net.eval()
        try:
            with torch.inference_mode():
                logits, tokens = self.net(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types))
        finally:
            self.net.train(was_training)
        return logits.float().numpy(), tokens.float().numpy()


@dataclass
class Scores:
    """The model's outputs for one passage: its relevance logit and a score per sentence."""

    logit: float
    sentences: np.ndarray


class Reranker:
    """Scores (question, passage) pairs with a cross-encoder engine (torch, ONNX Runtime or OpenVINO).

    Args:
        engine: has ``backend`` and ``run(ids, mask, types) -> (logits, token scores)``.
        config: the network's config (from its weights file).
        calibration: how logits and first-stage scores become probabilities.
    """

    def __init__(self, engine, config: RerankerConfig, calibration: Calibration | None = None,
                 encoder: PairEncoder | None = None):
        self.engine = engine
        self.config = config
        self.calibration = calibration or Calibration()
        self.encoder = encoder or PairEncoder()

    @property
    def backend(self) -> str:
        return self.engine.backend

    def score(self, question: str, texts: Sequence[str],
              sentences: Sequence[Sequence[tuple[int, int]]]) -> list[Scores]:
        """Relevance logits and sentence scores of passages.

        Args:
            question: the question (or the contextual query of a follow-up).
            texts: the passages' texts.
            sentences: for each passage, its sentences as offsets into its text.

        Returns:
            one Scores per passage, in the order given; a sentence cut off by the
            word-piece limit scores -inf.
        """
        if not texts:
            return []
        ids, mask, types, encodings = self.encoder.encode(question, texts)
        logits, tokens = self.engine.run(ids, mask, types)
        return [Scores(float(logits[r]), sentence_scores(tokens[r], sentence_token_masks(e, spans, ids.shape[1])))
                for r, (e, spans) in enumerate(zip(encodings, sentences))]

    def relevance(self, logits: Sequence[float], first_stage: Sequence[float]) -> np.ndarray:
        """The calibrated probability that each passage answers the question."""
        return self.calibration.probability(np.asarray(logits), np.asarray(first_stage))
