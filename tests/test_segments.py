"""qa.index with several segments: appends, tombstones, rewrites, merges, IVF-SQ8, resumed builds.

Small Layouts make the seed corpus (5 documents, 39 passages) span several
segments; every multi-segment index is checked against a fresh single-segment
build of the same files (the session's ``seed_index``).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SEEDS, seed_questions, snapshot

from qa.collection import Collection
from qa.index import Index, Layout, corpus_changes, update_index
from qa.lexical import tokenize
from qa.retrieval import Searcher

D0, D1, D2, D3, D4 = sorted(p.name for p in SEEDS.iterdir())  # 7, 8, 8, 7 and 9 passages
# merge_below=0: never "small", so every change is a segment of its own;
# segments above 20 passages get an IVF-SQ8 index; tiers of 3 merge.
LAYOUT = Layout(merge_below=0, ann_above=20, batch_passages=8, merge_factor=3)
QUESTIONS = [q["question"] for q in seed_questions()]
# The same text embedded in another batch may come out slightly different (~1e-3 at
# worst; ~1e-7 with torch on CPU), so cosines of two builds are compared within this.
DENSE_TOL = 2e-3
NEW_DOC = (
    "Harvest report\n\n"
    "The barley harvest in the northern valleys was the largest in a decade. "
    "Farmers said the late rains saved the crop.\n"
)


# -- helpers ----------------------------------------------------------------------


def build_in_steps(root: Path, steps: list[list[str]], embedder, layout: Layout = LAYOUT) -> tuple[Path, Path]:
    """A corpus at root/seeds filled with seed documents step by step, updating the index at root/index after each."""
    corpus, index_dir = root / "seeds", root / "index"
    corpus.mkdir(parents=True)
    for step in steps:
        for name in step:
            shutil.copy2(SEEDS / name, corpus / name)
        update_index(corpus, index_dir, embedder=embedder, layout=layout, show_progress=False)
    return corpus, index_dir


def copy_build(build: tuple[Path, Path], to: Path) -> tuple[Path, Path]:
    """A writable copy (sizes and mtimes kept, so still up to date) of a (corpus, index) pair."""
    corpus, index_dir = to / "seeds", to / "index"
    shutil.copytree(build[0], corpus)
    shutil.copytree(build[1], index_dir)
    return corpus, index_dir


def manifest_of(index_dir: Path) -> dict:
    return json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))


def segment_names(index_dir: Path) -> list[str]:
    return [s["name"] for s in manifest_of(index_dir)["segments"]]


def folders(index_dir: Path) -> list[str]:
    """Everything in segments/, temporary folders included."""
    return sorted(p.name for p in (index_dir / "segments").iterdir())


def key(index: Index, i: int) -> tuple[str, int, int]:
    p = index.passages[int(i)]
    return p.doc_id, p.start, p.end


def passage_set(index: Index) -> set[tuple]:
    return {(p.doc_id, p.start, p.end, p.sentences) for p in index.passages}


def ranked(index: Index, ids: np.ndarray, scores: np.ndarray) -> list[tuple[tuple, float]]:
    return [(key(index, i), float(s)) for i, s in zip(ids, scores)]


def assert_same_ranking(got: list[tuple[tuple, float]], want: list[tuple[tuple, float]], everything: dict, tol: float):
    """Same scores rank by rank; a passage may differ from the reference's only where their scores tie within ``tol``.

    ``everything`` is the reference's score of every passage.
    """
    assert len(got) == len(want)
    for (k, s), (wk, ws) in zip(got, want):
        assert s == pytest.approx(ws, abs=tol)
        if k != wk:
            assert everything[k] == pytest.approx(ws, abs=tol), (k, wk)


def assert_answers_like(index: Index, reference: Index, embedder, *, lexical: bool = True, search: bool = True):
    """``index`` holds the passages of ``reference`` and ranks them the same, dense, lexical and searched."""
    assert len(index) == len(reference)
    assert passage_set(index) == passage_set(reference)
    texts = lambda i: {d: doc.text for d, doc in i.documents.items()}  # noqa: E731
    assert texts(index) == texts(reference)
    everything = len(reference) + 3  # k larger than the index
    for q, qv in zip(QUESTIONS, embedder.embed(QUESTIONS)):
        want_all = dict(ranked(reference, *reference.dense_top(qv, everything)))
        got_all = dict(ranked(index, *index.dense_top(qv, everything)))
        assert got_all.keys() == want_all.keys()
        for k, v in got_all.items():
            assert v == pytest.approx(want_all[k], abs=DENSE_TOL), (q, k)
        assert_same_ranking(ranked(index, *index.dense_top(qv, 5)), ranked(reference, *reference.dense_top(qv, 5)),
                            want_all, DENSE_TOL)
        if lexical:
            tokens = tokenize(q)
            want_all = dict(ranked(reference, *reference.lexical_top(tokens, everything)))
            got_all = dict(ranked(index, *index.lexical_top(tokens, everything)))
            assert got_all.keys() == want_all.keys()
            for k, v in got_all.items():
                assert v == pytest.approx(want_all[k], rel=1e-5), (q, k)
            assert_same_ranking(ranked(index, *index.lexical_top(tokens, 5)),
                                ranked(reference, *reference.lexical_top(tokens, 5)), want_all, 1e-5)
    if search:
        assert answers(index, embedder) == answers(reference, embedder)


def answers(index: Index, embedder, doc_ids: list[str] | None = None, questions: list[str] = QUESTIONS
            ) -> list[list[tuple]]:
    """What Searcher.search quotes for each question (as tests/test_index.py ``results``)."""
    searcher = Searcher(index, embedder)
    out = []
    for q in questions:
        answer = searcher.search(q, k=5, doc_ids=doc_ids)
        out.append([(h.doc_id, h.start, h.end, h.quote, h.highlight and (h.highlight.start, h.highlight.end))
                    for h in answer.passages])
    return out


class TextSpy:
    """Records the passage texts the index asks the embedder for."""

    def __init__(self, embedder, monkeypatch):
        self.texts: list[str] = []
        real = embedder.embed_passages

        def embed_passages(texts, *args, **kwargs):
            self.texts.extend(texts)
            return real(texts, *args, **kwargs)

        monkeypatch.setattr(embedder, "embed_passages", embed_passages)


def texts_of(index: Index, doc_ids: set[str]) -> list[str]:
    return [index.quote(i) for i, p in enumerate(index.passages) if p.doc_id in doc_ids]


# -- fixtures (read only; tests that write work on copies) -----------------------------------


@pytest.fixture(scope="module")
def stepped(tmp_path_factory, embedder):
    """Three segments: [D0 D1 D2] (23 passages, IVF-SQ8), [D3] (7), [D4] (9)."""
    return build_in_steps(tmp_path_factory.mktemp("stepped"), [[D0, D1, D2], [D3], [D4]], embedder)


@pytest.fixture(scope="module")
def stepped_index(stepped):
    return Index.load(stepped[1])


@pytest.fixture(scope="module")
def two_segments(tmp_path_factory, embedder):
    """[D0 D1] (15 passages) and [D2 D3] (15): adding D4 (9) fills the tier of 9..26 passages."""
    layout = Layout(merge_below=0, ann_above=20, batch_passages=100, merge_factor=3)  # a step is one segment
    return build_in_steps(tmp_path_factory.mktemp("two"), [[D0, D1], [D2, D3]], embedder, layout)


@pytest.fixture(scope="module")
def fresh_without_d1(tmp_path_factory, embedder) -> Index:
    """A fresh single-segment build of the seed corpus without D1."""
    root = tmp_path_factory.mktemp("without_d1")
    shutil.copytree(SEEDS, root / "seeds", ignore=shutil.ignore_patterns(D1))
    index, _ = update_index(root / "seeds", root / "index", embedder=embedder, show_progress=False)
    return index


# -- 1. several segments answer like one ----------------------------------------------------


def test_stepped_build_is_three_segments_the_first_with_an_ann(stepped_index):
    infos = stepped_index.manifest["segments"]
    assert [(s["passages"], s["documents"], s["deleted"]) for s in infos] == [(23, 3, []), (7, 1, []), (9, 1, [])]
    assert [s["ann"] is not None for s in infos] == [True, False, False]


def test_a_multi_segment_index_answers_like_a_fresh_single_segment_build(stepped_index, seed_index, embedder):
    assert len(seed_index.segments) == 1
    assert_answers_like(stepped_index, seed_index, embedder)
    # documents were added in doc_id order, so the passages are even numbered alike
    assert stepped_index.doc_ranges == seed_index.doc_ranges
    np.testing.assert_allclose(stepped_index.sentence_vectors_of(0, len(stepped_index)),
                               seed_index.sentence_vectors_of(0, len(seed_index)), atol=DENSE_TOL)
    assert stepped_index.idf("soldier") == pytest.approx(seed_index.idf("soldier"))
    for q in QUESTIONS[:3]:
        np.testing.assert_allclose(stepped_index.bm25_scores(tokenize(q)), seed_index.bm25_scores(tokenize(q)),
                                   rtol=1e-5)


# -- 2. adding appends one segment -----------------------------------------------------------


def test_adding_a_document_writes_one_segment_and_leaves_the_others_byte_identical(
        tmp_path, stepped, embedder, monkeypatch):
    corpus, index_dir = copy_build(stepped, tmp_path)
    before, names = snapshot(index_dir), segment_names(index_dir)
    (corpus / "new.md").write_text(NEW_DOC, encoding="utf-8")
    spy = TextSpy(embedder, monkeypatch)
    index, report = update_index(corpus, index_dir, embedder=embedder, layout=LAYOUT, show_progress=False)
    assert report.added == ["new.md"] and report.segments == 4
    [new] = [n for n in segment_names(index_dir) if n not in names]
    assert segment_names(index_dir) == names + [new] and folders(index_dir) == names + [new]
    after = snapshot(index_dir)
    assert {f for f in after if f not in before} == {f for f in after if f.startswith(f"segments/{new}/")}
    assert {f for f in before if after.get(f) != before[f]} == {"manifest.json"}  # nothing else touched
    assert spy.texts == texts_of(index, {"new.md"}) and report.embedded == len(spy.texts) > 0
    assert sorted(index.documents) == [D0, D1, D2, D3, D4, "new.md"]
    assert index.passages[len(index) - 1].doc_id == "new.md" and Index.load(index_dir).passages == index.passages


# -- 3. deleting from a big segment is a tombstone ---------------------------------------------


def assert_never_returns(index: Index, doc_id: str, embedder, questions: list[str]) -> None:
    """No search path returns a passage of ``doc_id``, even asked for more passages than there are."""
    deep = len(index) + 10
    for q, qv in zip(questions, embedder.embed(questions)):
        ids, _ = index.dense_top(qv, deep)
        assert sorted(ids.tolist()) == list(range(len(index)))  # every live passage, once
        ids, _ = index.lexical_top(tokenize(q), deep)
        assert len(ids) and all(index.passages[i].doc_id != doc_id for i in ids)
        assert len(set(ids.tolist())) == len(ids) and max(ids) < len(index)
        hits = Searcher(index, embedder).search(q, k=deep).passages
        assert hits and all(h.doc_id != doc_id and doc_id not in {c.doc_id for c in h.also_in} for h in hits)


def test_deleting_from_a_big_segment_is_a_tombstone_and_re_adding_works(
        tmp_path, stepped, fresh_without_d1, seed_index, embedder, monkeypatch):
    corpus, index_dir = copy_build(stepped, tmp_path)
    layout = Layout(merge_below=0, ann_above=20, batch_passages=8, merge_factor=3, max_deleted=0.5)  # 8 of 23 kept
    col = Collection(corpus, index_dir, embedder=embedder, layout=layout, show_progress=False).open()
    before, names = snapshot(index_dir / "segments"), segment_names(index_dir)
    data = (corpus / D1).read_bytes()
    spy = TextSpy(embedder, monkeypatch)

    report = col.delete_document(D1)
    assert report.removed == [D1] and spy.texts == []
    assert snapshot(index_dir / "segments") == before  # no segment file changed
    assert [(s["name"], s["deleted"]) for s in manifest_of(index_dir)["segments"]] == \
        [(names[0], [D1]), (names[1], []), (names[2], [])]
    about_d1 = [q["question"] for q in seed_questions() if q["doc"] == D1]
    for index in (col.index, Index.load(index_dir)):
        assert len(index) == 39 - 8 == len(fresh_without_d1)
        assert D1 not in index.documents and D1 not in index.entries and D1 not in index.doc_ranges
        assert index.doc_ranges == fresh_without_d1.doc_ranges  # live passages numbered without a gap
        assert list(index.passages) == list(fresh_without_d1.passages)
        assert [index.quote(i) for i in range(len(index))] == \
            [fresh_without_d1.quote(i) for i in range(len(fresh_without_d1))]
        assert_never_returns(index, D1, embedder, about_d1 + QUESTIONS[:2])
        assert_answers_like(index, fresh_without_d1, embedder)
        with pytest.raises(ValueError, match="not in the index"):
            Searcher(index, embedder).search(about_d1[0], doc_ids=[D1])

    report = col.add_documents([(D1, data)])
    assert report.added == [D1] and spy.texts == texts_of(col.index, {D1})
    infos = manifest_of(index_dir)["segments"]
    assert [s["name"] for s in infos[:3]] == names and infos[0]["deleted"] == [D1]  # the old copy stays dead
    assert len(infos) == 4 and infos[3]["documents"] == 1
    assert_answers_like(Index.load(index_dir), seed_index, embedder)


def test_bm25_statistics_leave_out_deleted_passages(tmp_path, stepped, fresh_without_d1, seed_index, embedder):
    """Regression: BM25's passage count, document frequencies and average length took in the
    tombstoned passages, so deleting a document (and re-adding it: then it counted twice)
    changed the scores of the others and the answers to 7 (10) of the 26 seed questions.
    """
    corpus, index_dir = copy_build(stepped, tmp_path)
    layout = Layout(merge_below=0, ann_above=20, batch_passages=8, merge_factor=3, max_deleted=0.5)
    (corpus / D1).unlink()
    index, _ = update_index(corpus, index_dir, embedder=embedder, layout=layout, show_progress=False)
    assert manifest_of(index_dir)["segments"][0]["deleted"] == [D1]
    assert index.idf("soldier") == pytest.approx(fresh_without_d1.idf("soldier"))
    assert_answers_like(index, fresh_without_d1, embedder)
    shutil.copy2(SEEDS / D1, corpus / D1)
    index, _ = update_index(corpus, index_dir, embedder=embedder, layout=layout, show_progress=False)
    assert_answers_like(index, seed_index, embedder)


# -- 4. rewrites and merges --------------------------------------------------------------


def test_a_segment_past_max_deleted_is_rewritten_without_the_deleted_passages(
        tmp_path, stepped, fresh_without_d1, embedder, monkeypatch):
    corpus, index_dir = copy_build(stepped, tmp_path)
    names = segment_names(index_dir)
    untouched = {f: v for f, v in snapshot(index_dir / "segments").items() if not f.startswith(names[0])}
    (corpus / D1).unlink()  # 8 of the first segment's 23 passages: over max_deleted 0.25
    spy = TextSpy(embedder, monkeypatch)
    index, report = update_index(corpus, index_dir, embedder=embedder, layout=LAYOUT, show_progress=False)
    assert report.removed == [D1] and spy.texts == []
    infos = manifest_of(index_dir)["segments"]
    assert [s["name"] for s in infos][1:] == names[1:] and infos[0]["name"] not in names
    assert [(s["passages"], s["documents"], s["deleted"]) for s in infos] == [(15, 2, []), (7, 1, []), (9, 1, [])]
    assert infos[0]["ann"] is None and not (index_dir / "segments" / infos[0]["name"] / "ann.faiss").exists()
    assert folders(index_dir) == sorted(s["name"] for s in infos)  # the old one is gone
    after = snapshot(index_dir / "segments")
    assert {f: v for f, v in after.items() if f in untouched} == untouched
    assert_answers_like(index, fresh_without_d1, embedder)
    assert_answers_like(Index.load(index_dir), fresh_without_d1, embedder, search=False)


def test_a_full_size_tier_is_merged_into_one_segment(tmp_path, two_segments, seed_index, embedder, monkeypatch):
    corpus, index_dir = copy_build(two_segments, tmp_path)
    names = segment_names(index_dir)
    assert [s["passages"] for s in manifest_of(index_dir)["segments"]] == [15, 15]
    shutil.copy2(SEEDS / D4, corpus / D4)  # 9 passages: a third segment in the tier of 9..26
    spy = TextSpy(embedder, monkeypatch)
    index, report = update_index(corpus, index_dir, embedder=embedder, layout=LAYOUT, show_progress=False)
    assert report.added == [D4] and spy.texts == texts_of(index, {D4})  # merging embeds nothing
    [info] = manifest_of(index_dir)["segments"]
    assert info["name"] not in names and folders(index_dir) == [info["name"]]
    assert (info["passages"], info["documents"], info["deleted"]) == (39, 5, []) and info["ann"] is not None
    assert report.segments == 1
    assert_answers_like(index, seed_index, embedder)
    assert_answers_like(Index.load(index_dir), seed_index, embedder, search=False)


# -- 5. IVF-SQ8 above ann_above ----------------------------------------------------------


def brute_force(index: Index, qv: np.ndarray, k: int, allowed: np.ndarray | None = None
                ) -> tuple[list[int], np.ndarray]:
    """Reference: exact top-k over every (allowed) passage vector, ties by passage number."""
    scores = index.passage_vectors(0, len(index)) @ qv
    ids = np.arange(len(index)) if allowed is None else np.flatnonzero(allowed)
    order = ids[np.lexsort((ids, -scores[ids]))][:k]
    return order.tolist(), scores[order]


def test_a_segment_above_ann_above_has_an_ivf_sq8_recorded_in_manifest_and_segment_json(stepped, stepped_index):
    _, index_dir = stepped
    for info, seg in zip(stepped_index.manifest["segments"], stepped_index.segments):
        folder = index_dir / "segments" / info["name"]
        meta = json.loads((folder / "segment.json").read_text(encoding="utf-8"))
        assert meta["ann"] == info["ann"]
        if info["passages"] <= LAYOUT.ann_above:
            assert info["ann"] is None and seg.ann is None and not (folder / "ann.faiss").exists()
            continue
        ann = info["ann"]
        assert ann["type"] == "IVF-SQ8" and 1 <= ann["nprobe"] <= ann["nlist"] and ann["nlist"] >= 1
        assert (folder / "ann.faiss").is_file() and seg.ann.ntotal == info["passages"] == len(seg)
        assert seg.ann.nlist == ann["nlist"]
    assert sum(info["ann"] is not None for info in stepped_index.manifest["segments"]) == 1


def test_dense_top_through_the_ann_equals_brute_force(stepped_index, embedder):
    """Reference check: an IVF-SQ8 segment re-scored exactly gives the exact top-k over passage_vectors.

    The segment's single list is probed whole, but candidates are picked by their SQ8
    scores, so two passages whose cosines tie within the quantization error (1e-4
    apart for one seed question at k=5) may trade places at the cut.
    """
    index = stepped_index
    vectors = index.passage_vectors(0, len(index))
    for qv, k in itertools.product(embedder.embed(QUESTIONS), (1, 5, 12, 50)):
        ids, scores = index.dense_top(qv, k)
        exact = vectors @ qv
        np.testing.assert_allclose(scores, exact[ids], rtol=1e-5, atol=1e-6)  # re-scored exactly
        assert len(set(ids.tolist())) == len(ids) == min(k, len(index))
        want_ids, want_scores = brute_force(index, qv, k)
        assert_same_ranking(ranked(index, ids, scores), ranked(index, np.array(want_ids), want_scores),
                            {key(index, i): float(s) for i, s in enumerate(exact)}, 1e-3)


def test_a_probe_share_caps_the_lists_probed_and_keeps_the_exact_rescore(stepped_index, embedder, monkeypatch):
    """``probe_share`` (what a shard set asks of each shard) probes at most that share of the
    lists, never fewer than MIN_PROBES nor more than the segment's own setting."""
    from qa.index.ann import MIN_PROBES, probe_share

    assert probe_share(1_000_000) == 128 / 2048  # 1M passages: 2,048 lists, 128 probed
    assert probe_share(250_000) == 128 / 1024 > probe_share(1_000_000)
    seg = next(s for s in stepped_index.segments if s.ann is not None)
    probed = []

    class Recording:  # the real index, recording how many lists each search probes
        def __init__(self, ann):
            self.ann = ann

        def search(self, x, k, params=None):
            probed.append(params.nprobe)
            return self.ann.search(x, k, params=params)

    monkeypatch.setattr(seg, "ann", Recording(seg.ann))
    monkeypatch.setitem(seg.meta, "ann", {**seg.meta["ann"], "nlist": 4096, "nprobe": 256})
    qv = embedder.embed(QUESTIONS[:1])[0]
    want = seg.search(qv, 5, None)
    for share, nprobe in ((None, 256), (1 / 16, 256), (1 / 64, 64), (1 / 4096, MIN_PROBES)):
        rows, scores = seg.search(qv, 5, None, probe_share=share)
        assert probed[-1] == nprobe
        np.testing.assert_allclose(scores, np.asarray(seg.vectors[rows]) @ qv, rtol=1e-5, atol=1e-6)
        assert rows.tolist() == want[0].tolist()  # one list really: every share finds the same


def test_dense_search_restricted_to_documents_equals_brute_force(stepped_index, seed_index, embedder):
    index, searcher = stepped_index, Searcher(stepped_index, embedder)
    for doc_ids in ([D1], [D0, D4], [D2, D3]):
        allowed = np.zeros(len(index), dtype=bool)
        for d in doc_ids:
            first, count = index.doc_ranges[d]
            allowed[first : first + count] = True
        for q, qv in zip(QUESTIONS[::3], embedder.embed(QUESTIONS[::3])):
            ids, scores = index.dense_top(qv, 6, allowed)
            want_ids, want_scores = brute_force(index, qv, 6, allowed)
            assert ids.tolist() == want_ids
            np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
            ranked_ids, _ = searcher.rank(q, mode="dense", doc_ids=doc_ids)
            assert ranked_ids == brute_force(index, qv, len(index), allowed)[0]
            hits = searcher.search(q, k=3, doc_ids=doc_ids).passages
            assert hits and {h.doc_id for h in hits} <= set(doc_ids)
        some = QUESTIONS[::3]
        assert answers(index, embedder, doc_ids, some) == answers(seed_index, embedder, doc_ids, some)


# -- 6. a killed build resumes --------------------------------------------------------------

SLOW_BUILD = """
import json, sys, time
from pathlib import Path
from qa.backends import default_embedder
from qa.index import Layout, update_index

corpus, index_dir = sys.argv[1], Path(sys.argv[2])
embedder = default_embedder()
real = embedder.embed_passages

def slow(*args, **kwargs):
    # once a batch is committed, leave the test time to kill before the next commit
    manifest = index_dir / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text())["segments"]:
        time.sleep(2.0)
    return real(*args, **kwargs)

embedder.embed_passages = slow
update_index(corpus, index_dir, embedder=embedder, show_progress=False, layout=Layout(batch_passages=8, merge_below=0))
"""


def kill_mid_build(corpus: Path, index_dir: Path, log: Path) -> None:
    """Run a build in another process and SIGKILL it once it has committed a segment, before it ends."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", SLOW_BUILD, str(corpus), str(index_dir)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if manifest_of(index_dir)["segments"]:
                    break
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.02)
        assert proc.poll() is None, f"the build ended before it could be killed:\n{log.read_text(errors='replace')}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_a_build_killed_mid_way_resumes_without_redoing_committed_documents(
        tmp_path, corpus_copy, seed_index, embedder, monkeypatch):
    index_dir = tmp_path / "index"
    kill_mid_build(corpus_copy, index_dir, tmp_path / "build.log")

    partial = Index.load(index_dir)  # what the kill left is a valid index
    done = set(partial.documents)
    assert 0 < len(done) < 5 and len(partial) == sum(seed_index.doc_ranges[d][1] for d in done)
    assert passage_set(partial) == {p for p in passage_set(seed_index) if p[0] in done}
    for i in range(len(partial)):
        p = partial.passages[i]
        assert partial.quote(i) == (corpus_copy / p.doc_id).read_text(encoding="utf-8")[p.start : p.end]

    spy = TextSpy(embedder, monkeypatch)
    progress = []
    layout = Layout(batch_passages=8, merge_below=0)
    index, report = update_index(corpus_copy, index_dir, embedder=embedder, layout=layout, show_progress=False,
                                 on_progress=lambda done_bytes, total: progress.append((done_bytes, total)))
    missing = sorted(set(seed_index.documents) - done)
    assert report.added == missing and report.changed == report.removed == []
    assert spy.texts == texts_of(index, set(missing)) and report.embedded == len(spy.texts)
    keys = [key(index, i) for i in range(len(index))]
    assert len(keys) == len(set(keys))  # no passage twice
    assert_answers_like(index, seed_index, embedder)
    assert folders(index_dir) == segment_names(index_dir)  # no temporary folder of the killed writer is left
    assert not list(index_dir.glob(".manifest.json.tmp-*"))

    # 7. progress: bytes of text indexed, never going back, ending at the total
    total = sum((corpus_copy / d).stat().st_size for d in missing)
    assert len(progress) >= 1 and all(t == total for _, t in progress)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress) and progress[-1] == (total, total)


# -- 7. only= and progress -----------------------------------------------------------------


def test_only_touches_the_named_documents(tmp_path, stepped, embedder, monkeypatch):
    corpus, index_dir = copy_build(stepped, tmp_path)
    before, names = snapshot(index_dir / "segments"), segment_names(index_dir)
    (corpus / "new.md").write_text(NEW_DOC, encoding="utf-8")
    (corpus / "not-named.md").write_text(NEW_DOC.replace("barley", "wheat"), encoding="utf-8")
    (corpus / D3).write_text((corpus / D3).read_text(encoding="utf-8") + "\nAn added line.\n", encoding="utf-8")
    spy = TextSpy(embedder, monkeypatch)
    progress = []
    index, report = update_index(corpus, index_dir, embedder=embedder, layout=LAYOUT, only=["new.md"],
                                 show_progress=False, on_progress=lambda d, t: progress.append((d, t)))
    assert (report.added, report.changed, report.removed) == (["new.md"], [], [])
    assert "not-named.md" not in index.documents and "An added line" not in index.documents[D3].text
    assert spy.texts == texts_of(index, {"new.md"})
    size = (corpus / "new.md").stat().st_size
    assert progress == [(size, size)]
    assert snapshot(index_dir / "segments").items() >= before.items() and segment_names(index_dir)[:3] == names
    assert sorted(corpus_changes(Index.load(index_dir), corpus)) == ["added not-named.md", f"changed {D3}"]


def test_progress_ends_at_the_total_when_a_file_is_skipped(tmp_path, embedder):
    """Regression: an unreadable file's bytes were in the total but never done, so progress stopped short."""
    corpus = tmp_path / "seeds"
    corpus.mkdir()
    shutil.copy2(SEEDS / D0, corpus / D0)
    (corpus / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me br\xfbl\xe9e.".encode("latin-1"))  # not UTF-8: skipped
    progress = []
    _, report = update_index(corpus, tmp_path / "index", embedder=embedder, layout=LAYOUT, show_progress=False,
                             on_progress=lambda d, t: progress.append((d, t)))
    assert list(report.skipped) == ["latin1.txt"]
    total = sum(p.stat().st_size for p in corpus.iterdir())
    assert progress and progress[-1] == (total, total)


# -- 8. a reader outlives the segments it loaded ------------------------------------------------


def test_an_index_loaded_before_a_merge_keeps_answering_after_its_segments_are_deleted(
        tmp_path, two_segments, embedder):
    corpus, index_dir = copy_build(two_segments, tmp_path)
    shutil.copytree(index_dir, tmp_path / "reference")
    reader = Index.load(index_dir)  # nothing searched yet: vectors and postings are only mapped
    old = segment_names(index_dir)
    shutil.copy2(SEEDS / D4, corpus / D4)
    update_index(corpus, index_dir, embedder=embedder, layout=LAYOUT, show_progress=False)  # merges the three
    assert not any((index_dir / "segments" / name).exists() for name in old)

    reference = Index.load(tmp_path / "reference")
    assert list(reader.passages) == list(reference.passages)
    assert [reader.quote(i) for i in range(len(reader))] == [reference.quote(i) for i in range(len(reference))]
    np.testing.assert_array_equal(reader.passage_vectors(0, len(reader)), reference.passage_vectors(0, len(reference)))
    np.testing.assert_array_equal(reader.sentence_vectors_of(0, len(reader)),
                                  reference.sentence_vectors_of(0, len(reference)))
    for q, qv in zip(QUESTIONS, embedder.embed(QUESTIONS)):
        for got, want in ((reader.dense_top(qv, 10), reference.dense_top(qv, 10)),
                          (reader.lexical_top(tokenize(q), 10), reference.lexical_top(tokenize(q), 10))):
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    assert answers(reader, embedder) == answers(reference, embedder)
