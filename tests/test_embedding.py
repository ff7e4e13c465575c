"""qa.embedding: checked weights, offline loading, normalized vectors, word-piece counting."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from qa.embedding import (
    MAX_SEQ_LENGTH,
    MODEL_NAME,
    MODEL_SHA256,
    Embedder,
    ModelError,
    bundled_model_path,
    check_weights,
    default_embedder,
    file_sha256,
)


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


def test_model_uses_the_full_sequence_length(embedder):
    assert embedder.model.max_seq_length == MAX_SEQ_LENGTH == 256


def test_qa_backend_chooses_the_embedder(monkeypatch):
    from qa.embedding import BACKEND_ENV, Embedder, default_embedder

    choose = default_embedder.__wrapped__  # the cached one stays the session's torch embedder
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert type(choose()) is Embedder
    monkeypatch.delenv(BACKEND_ENV)
    assert type(choose()) is Embedder
    monkeypatch.setenv(BACKEND_ENV, "tensorrt")
    with pytest.raises(ValueError, match="choose from"):
        choose()
