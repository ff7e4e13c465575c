"""The sharded-search benchmark: one index and its shards measured in one process, side by side."""

from __future__ import annotations

import pytest

from conftest import SCIFACT
from qa.bench.distributed import bench_queries, paired_rows


def test_each_row_is_set_against_the_one_index_and_ray_against_in_process():
    setups = [{"name": "one index", "shards": None, "engine": "local"},
              {"name": "4 shards, local", "shards": 4, "engine": "local"},
              {"name": "4 shards, ray", "shards": 4, "engine": "ray"}]
    measured = [{"p50_ms": 20.0}, {"p50_ms": 23.0}, {"p50_ms": 31.0}]
    one, local, ray = paired_rows(setups, measured, reranked=True)
    assert [r["name"] for r in (one, local, ray)] == ["one index, reranked", "4 shards, local, reranked",
                                                       "4 shards, ray, reranked"]
    assert one["vs_one_index"] == 1.0 and local["vs_one_index"] == pytest.approx(1.15)
    assert ray["vs_one_index"] == pytest.approx(1.55) and ray["vs_local_ms"] == pytest.approx(8.0)
    assert "vs_local_ms" not in local and "vs_one_index" not in measured[1]  # the inputs are left alone


@pytest.mark.skipif(not SCIFACT.is_file(), reason="needs ../shared/bench/scifact")
def test_one_process_a_number_of_shards_asks_every_claim_of_each(tmp_path):
    rows = bench_queries(SCIFACT.parent, passages=1500, work=tmp_path, queries=4, max_docs=40, engines=("local",))
    assert [r["name"] for r in rows] == ["one index", "1 shard, local", "one index", "2 shards, local",
                                         "one index", "4 shards, local"]
    for one, shards in zip(rows[::2], rows[1::2]):
        assert one["queries"] == shards["queries"] == 4
        assert one["vs_one_index"] == 1.0
        assert shards["vs_one_index"] == pytest.approx(shards["p50_ms"] / one["p50_ms"])
        assert one["process_rss_mb"] == shards["process_rss_mb"] > 0  # both were held by the one process
        assert one["cached_s"] == shards["cached_s"] >= 0  # every file was read once before either was opened
    assert (tmp_path / "shards-4" / "shards.json").is_file()
