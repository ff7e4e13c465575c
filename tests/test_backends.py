"""Embedder backends: fidelity to torch, the export cache, and the fallback to torch."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from qa import backends
from qa.backends import BackendError, load_embedder, open_backend

# openvino, onnxruntime and onnx are in requirements.txt: these tests never skip.
pytestmark = pytest.mark.slow  # an ONNX export, a quantization and a torch reference: a minute or so

TEXTS = [
    "The commander claimed he never gave the order to retreat.",
    "a",
    "Müller said “it’s done” — then left.",
    "Soldiers' wives asked for food and water for the men at the front. " * 30,  # past 256 word pieces
    "Short one.",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, torch_embedder):
    """One export for the module (it takes seconds), in a private cache folder."""
    folder = tmp_path_factory.mktemp("model-cache")
    backends.ensure_cache(torch_embedder.model_dir, torch_embedder.sha256, folder)
    return folder


@pytest.fixture(scope="module")
def torch_vectors(torch_embedder):
    return torch_embedder.embed(TEXTS)


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="'openvino'"):
        load_embedder("tensorrt")


def test_onnx_matches_torch_in_the_given_order(cache_dir, torch_vectors, torch_embedder):
    embedder = open_backend("onnx", cache_dir=cache_dir, batch_size=2)
    vectors = embedder.embed(TEXTS)
    assert embedder.backend == "onnx-fp32"
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(vectors * torch_vectors, axis=1)) >= 0.9999
    assert embedder.count_wordpieces(TEXTS) == torch_embedder.count_wordpieces(TEXTS)
    assert embedder.embed([]).shape == (0, 384)


@pytest.mark.parametrize("name", ["onnx", "openvino"])
def test_passage_and_sentence_vectors_match_torch(cache_dir, torch_embedder, name):
    """embed_passages pools each sentence from the same pass, as the torch Embedder does."""
    texts = ["Seventeen servicemen were imprisoned. They asked why. He was locked up.", "One sentence only."]
    parts = [["Seventeen servicemen were imprisoned.", "They asked why.", "He was locked up."], ["One sentence only."]]
    spans = [[(t.index(p), t.index(p) + len(p)) for p in ps] for t, ps in zip(texts, parts)]
    embedder = open_backend(name, cache_dir=cache_dir, batch_size=1)
    passages, sentences = embedder.embed_passages(texts, spans)
    ref_passages, ref_sentences = torch_embedder.embed_passages(texts, spans)
    assert passages.shape == (2, 384) and sentences.shape == (4, 384)
    assert np.min(np.sum(passages * ref_passages, axis=1)) >= backends.MIN_COSINE
    assert np.min(np.sum(sentences * ref_sentences, axis=1)) >= 0.999
    np.testing.assert_allclose(passages, embedder.embed(texts), atol=1e-5)
    with pytest.raises(ValueError, match="one list of sentence spans"):
        embedder.embed_passages(texts, spans[:1])


def test_openvino_matches_torch(cache_dir, torch_vectors):
    embedder = open_backend("openvino", cache_dir=cache_dir)
    assert embedder.backend in ("openvino-bf16", "openvino-fp32")
    assert np.min(np.sum(embedder.embed(TEXTS) * torch_vectors, axis=1)) >= backends.MIN_COSINE


def test_a_corrupt_export_is_rebuilt(cache_dir, tmp_path, torch_embedder):
    cache = tmp_path / "cache"
    shutil.copytree(cache_dir, cache)
    folder = backends.model_cache_dir(torch_embedder.sha256, cache)
    model = folder / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    model.write_bytes(bytes(data))
    embedder = open_backend("onnx", cache_dir=cache)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert backends.file_sha256(model) == manifest["files"]["model.onnx"]
    assert embedder.probe_cosine >= backends.MIN_COSINE


def test_falls_back_to_torch_when_a_backend_cannot_load(cache_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise BackendError("simulated: cannot load")

    monkeypatch.setattr(backends, "OnnxEmbedder", broken)
    embedder = load_embedder("onnx", cache_dir=cache_dir)
    assert embedder.backend == "torch"
    assert embedder.embed(["hello"]).shape == (1, 384)


def test_an_unfaithful_backend_is_refused(cache_dir):
    """A backend whose vectors drift from torch's (here, int8-quantized ones) is not used."""
    with pytest.raises(BackendError, match="not faithful"):
        open_backend("onnx-int8", cache_dir=cache_dir, min_cosine=0.999)
    assert load_embedder("onnx-int8", cache_dir=cache_dir).backend == "torch"


def test_auto_on_a_clean_checkout_exports_once_then_reuses_the_export(tmp_path, caplog):
    """No cache yet (a fresh clone): the first use exports and checks; the next one only checks."""
    cache = tmp_path / "cache"
    with caplog.at_level("INFO", logger="qa.backends"):
        embedder = load_embedder("auto", cache_dir=cache)
    assert embedder.backend.startswith("openvino") and embedder.probe_cosine >= backends.MIN_COSINE
    assert "exporting" in caplog.text
    folder = backends.model_cache_dir(embedder.sha256, cache)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["weights_sha256"] == embedder.sha256
    for name in ("model.onnx", "probes.npy"):
        assert backends.file_sha256(folder / name) == manifest["files"][name]
    exported = (folder / "model.onnx").stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level("INFO", logger="qa.backends"):
        assert load_embedder("auto", cache_dir=cache).backend == embedder.backend
    assert "exporting" not in caplog.text and (folder / "model.onnx").stat().st_mtime_ns == exported


def test_a_missing_export_is_rebuilt(cache_dir, tmp_path, torch_embedder):
    cache = tmp_path / "cache"
    shutil.copytree(cache_dir, cache)
    model = backends.model_cache_dir(torch_embedder.sha256, cache) / "model.onnx"
    model.unlink()
    embedder = open_backend("onnx", cache_dir=cache)
    assert model.is_file() and embedder.probe_cosine >= backends.MIN_COSINE


def test_auto_falls_back_to_torch_when_nothing_can_be_exported(tmp_path, monkeypatch, caplog):
    """Every fast backend needs the export; when it fails, auto says why and embeds with torch."""
    def no_exporter(model_dir, dest):
        raise ImportError("simulated: onnx is not installed")

    monkeypatch.setattr(backends, "export_onnx", no_exporter)
    with caplog.at_level("INFO", logger="qa.backends"):
        embedder = load_embedder("auto", cache_dir=tmp_path / "cache")
    assert embedder.backend == "torch"
    assert embedder.embed(["hello"]).shape == (1, 384)
    for name in backends.AUTO_ORDER:
        assert f"embedder backend {name} is not available (simulated: onnx is not installed)" in caplog.text
    assert "embedding with torch, the fallback" in caplog.text
