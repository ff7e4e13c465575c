"""qa.embedding: checked weights, offline loading, normalized vectors, word-piece counting, the default backend."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from qa.backends import BACKEND_ENV, default_embedder
from qa.embedding import (
    MAX_SEQ_LENGTH,
    MODEL_NAME,
    MODEL_SHA256,
    Embedder,
    ModelError,
    bundled_model_path,
    check_weights,
    file_sha256,
)
from conftest import SEEDS


def test_model_hash_mismatch_is_refused_with_a_clear_error(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not the published weights")
    with pytest.raises(ModelError) as err:
        check_weights(tmp_path)
    msg = str(err.value)
    assert "refusing to load" in msg and "model.safetensors" in msg
    assert MODEL_SHA256 in msg and file_sha256(tmp_path / "model.safetensors") in msg
    assert MODEL_NAME in msg


def test_missing_weights_are_named(tmp_path):
    with pytest.raises(ModelError, match=r"model weights not found: .*model\.safetensors"):
        check_weights(tmp_path)


def test_embedder_refuses_a_model_folder_with_other_weights(tmp_path):
    """The check runs before anything is loaded: a tampered copy never embeds."""
    fake = tmp_path / "model"
    shutil.copytree(bundled_model_path(), fake, ignore=shutil.ignore_patterns("model.safetensors", "*.bin", "onnx",
                                                                               "openvino"))
    (fake / "model.safetensors").write_bytes(b"\x00" * 1024)
    with pytest.raises(ModelError, match="does not match the published"):
        Embedder(fake)


def test_bundled_weights_match_the_published_hash(embedder):
    assert check_weights(bundled_model_path()) == MODEL_SHA256
    assert embedder.sha256 == MODEL_SHA256 and embedder.name == MODEL_NAME


def test_default_embedder_is_shared(embedder):
    assert default_embedder() is embedder


def test_vectors_are_unit_float32_rows_in_order(embedder):
    texts = ["Russian soldiers refused to fight.", "Wie spät ist es?", "😀 “quotes” — dashes"]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, embedder.dim) and vectors.dtype == np.float32
    assert vectors.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # a batch gives the rows one by one would, in the order given
    for text, row in zip(texts, vectors):
        np.testing.assert_allclose(embedder.embed([text])[0], row, atol=1e-5)


def test_similar_texts_are_closer_than_unrelated_ones(embedder):
    a, b, c = embedder.embed(["Soldiers refused to obey orders.", "The troops would not follow commands.",
                              "A recipe for chocolate cake."])
    assert a @ b > a @ c


def test_empty_input_gives_an_empty_matrix(embedder):
    assert embedder.embed([]).shape == (0, embedder.dim)
    assert embedder.count_wordpieces([]) == []


def test_count_wordpieces_excludes_special_tokens_and_never_truncates(embedder):
    assert embedder.count_wordpieces(["hello"]) == [1]
    assert embedder.count_wordpieces(["hello world", ""]) == [2, 0]
    long_text = " ".join(["soldier"] * 1000)
    assert embedder.count_wordpieces([long_text]) == [1000]


def test_model_uses_the_full_sequence_length(embedder, torch_embedder):
    """Every backend cuts at 256 word pieces ([CLS] and [SEP] included), not earlier."""
    assert torch_embedder.model.max_seq_length == MAX_SEQ_LENGTH == 256
    words = (SEEDS / "000_93644d6605fbd4ae.txt").read_text(encoding="utf-8").split()
    prefixes = [" ".join(words[:n]) for n in range(1, len(words) + 1)]
    pieces = embedder.count_wordpieces(prefixes)
    assert pieces[-1] > 300, "the seed document is long enough to be cut"

    def first(at_least: int) -> str:
        return next(p for p, n in zip(prefixes, pieces) if n >= at_least)

    cut, whole, shorter = embedder.embed([first(MAX_SEQ_LENGTH - 2), prefixes[-1], first(200)])
    assert cut @ whole > 0.99999  # past the cut nothing counts
    assert cut @ shorter < 0.999  # the pieces between 200 and 254 do


def test_default_embedder_is_a_fast_backend_that_matches_torch(monkeypatch, seed_index, torch_embedder):
    """QA_BACKEND unset means "auto": OpenVINO or ONNX Runtime, within cosine 0.999 of torch."""
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    embedder = default_embedder.__wrapped__()  # a fresh choice, not the session's cached one
    assert embedder.backend.startswith(("openvino", "onnx-fp32"))
    assert embedder.probe_cosine >= 0.999
    quotes = [seed_index.quote(i) for i in range(0, len(seed_index), max(1, len(seed_index) // 20))]
    assert len(quotes) >= 10
    cosines = np.sum(embedder.embed(quotes) * torch_embedder.embed(quotes), axis=1)
    assert cosines.min() >= 0.999


def test_qa_backend_chooses_the_embedder(monkeypatch):
    choose = default_embedder.__wrapped__  # the cached one stays the session's embedder
    monkeypatch.setenv(BACKEND_ENV, "torch")
    forced = choose()
    assert isinstance(forced, Embedder) and forced.backend == "torch"
    monkeypatch.setenv(BACKEND_ENV, "onnx")
    assert choose().backend == "onnx-fp32"
    monkeypatch.setenv(BACKEND_ENV, "tensorrt")
    with pytest.raises(ValueError, match="choose from"):
        choose()


def test_default_falls_back_to_torch_when_the_export_cache_is_unwritable(monkeypatch, tmp_path, caplog):
    """A cache folder that cannot be created (here its parent is a file) leaves torch, and says why."""
    from qa import backends

    (tmp_path / "not-a-folder").write_text("", encoding="utf-8")
    monkeypatch.setattr(backends, "default_cache_dir", lambda: tmp_path / "not-a-folder" / "models")
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    with caplog.at_level("INFO", logger="qa"):
        embedder = default_embedder.__wrapped__()
    assert embedder.backend == "torch"
    assert embedder.embed(["hello"]).shape == (1, embedder.dim)
    logged = caplog.text
    assert "embedder backend openvino is not available" in logged
    assert "embedder backend onnx is not available" in logged
    assert "embedding with torch, the fallback" in logged


def test_embed_spy_sees_both_ways_into_the_embedder(embedder, embed_spy):
    """The spy other tests rely on to prove that nothing was re-embedded does see embedding."""
    embedder.embed(["One question?"])
    embedder.embed([])
    embedder.embed_passages(["First passage. It has two sentences.", "Second."], [[(0, 14), (15, 36)], [(0, 7)]])
    assert embed_spy.calls == [["One question?"], ["First passage. It has two sentences.", "Second."]]
