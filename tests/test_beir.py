"""qa bench-quality: BEIR loading, metrics, and a run on a tiny BEIR folder."""

from __future__ import annotations

import json
import math

import pytest

from qa.bench.beir import load_beir, mrr_at, ndcg_at, recall_at, run_benchmark
from qa.cli import main


def test_metrics_on_hand_made_rankings():
    rels = {"a": 1, "b": 1}
    assert ndcg_at(["a", "b", "c"], rels) == pytest.approx(1.0)
    assert ndcg_at(["c", "a"], rels) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert ndcg_at(["x"], {}) == 0.0
    assert recall_at(["a", "c"], rels, 100) == 0.5
    assert recall_at(["c"] * 100 + ["a"], rels, 100) == 0.0
    assert mrr_at(["c", "d", "b"], rels) == pytest.approx(1 / 3)
    assert mrr_at(["c"] * 10 + ["a"], rels) == 0.0


@pytest.fixture
def tiny_beir(tmp_path):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    records = [
        {"_id": "d1", "title": "Glaciers", "text": "The glacier retreated forty metres in one year."},
        {"_id": "d/2", "title": "Bread", "text": "Bakeries raised the price of bread again this week."},
        {"_id": "d3", "title": "", "text": "A football club won its third match in a row."},
    ]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    queries = [{"_id": "q1", "text": "How far did the glacier retreat?"},
               {"_id": "q2", "text": "What happened to bread prices?"},
               {"_id": "q9", "text": "not judged, so not a test query"}]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n", encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_bytes(b"query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq2\td/2\t1\r\n")
    return folder


def test_load_beir_reads_the_test_split_only(tiny_beir):
    bench = load_beir(tiny_beir)
    assert len(bench.records) == 3
    assert bench.queries == {"q1": "How far did the glacier retreat?", "q2": "What happened to bread prices?"}
    assert bench.qrels == {"q1": {"d1": 1}, "q2": {"d/2": 1}}


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus.jsonl is missing"):
        load_beir(tmp_path)


def test_every_mode_finds_the_judged_document(tiny_beir, tmp_path, embedder):
    result = run_benchmark(tiny_beir, embedder=embedder, index_dir=tmp_path / "idx", show_progress=False)
    assert result["index"]["documents"] == 3 and result["queries"] == 2
    assert [m.mode for m in result["modes"]] == ["hybrid", "dense", "bm25"]
    for m in result["modes"]:
        assert m.ndcg10 == pytest.approx(1.0) and m.mrr10 == pytest.approx(1.0) and m.recall100 == 1.0


def test_cli_refuses_to_write_into_the_apps_index(tiny_beir, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["bench-quality", str(tiny_beir), "--index", "index", "-q"]) == 2
    assert "never writes into index/" in capsys.readouterr().err
    assert not (tmp_path / "index").exists()
