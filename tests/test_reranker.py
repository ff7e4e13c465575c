"""The relevance model: checked weights, backends faithful to torch, reranked answers, training pieces."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import KNOWN_QUESTIONS
from qa.chunking import split_sentences
from qa.reranker import (
    RERANKER_FILE, RERANKER_SHA256, Calibration, PairEncoder, RerankerError, read_weights, sentence_scores,
    sentence_token_masks,
)
from qa.reranker_backends import MAX_LOGIT_ERROR, PROBES, load_reranker, probe_outputs
from qa.train_reranker import choose_threshold, fit_logistic


# -- the shipped file ----------------------------------------------------------------


def test_the_shipped_weights_are_one_small_checked_file():
    assert RERANKER_FILE.is_file()
    assert RERANKER_FILE.stat().st_size <= 25 * 1024 * 1024
    tensors, config, calibration = read_weights(RERANKER_FILE, RERANKER_SHA256)
    # Only what training changed: never the word or position embeddings of the base model.
    assert not any("word_embeddings" in n or "position_embeddings" in n for n in tensors)
    assert config.layers >= 1 and 0.0 < calibration.threshold < 1.0


def test_an_altered_weights_file_is_refused(tmp_path):
    altered = tmp_path / "reranker.safetensors"
    shutil.copy(RERANKER_FILE, altered)
    data = bytearray(altered.read_bytes())
    data[-100] ^= 0xFF
    altered.write_bytes(bytes(data))
    with pytest.raises(RerankerError, match="sha256"):
        load_reranker("torch", path=altered, expected_sha256=RERANKER_SHA256)


def test_a_missing_weights_file_says_how_to_rebuild_it(tmp_path):
    with pytest.raises(RerankerError, match="train-reranker"):
        load_reranker("torch", path=tmp_path / "absent.safetensors")


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(RerankerError):
        load_reranker("torch", path=junk, expected_sha256=None)


def test_the_default_backend_matches_torch_on_the_probes(reranker):
    torch_reranker = load_reranker("torch")
    logits, sentences = probe_outputs(reranker)
    ref_logits, ref_sentences = probe_outputs(torch_reranker)
    assert np.max(np.abs(logits - ref_logits)) <= MAX_LOGIT_ERROR
    for got, ref in zip(sentences, ref_sentences):
        assert ref[int(np.argmax(got))] >= ref.max() - MAX_LOGIT_ERROR


@pytest.mark.parametrize("lengths, parts", [
    ([256, 256, 250, 120, 100, 90, 64, 30], 2), ([124] * 8, 2), ([200, 10], 2), ([50], 2), ([7, 7, 300], 3),
    ([90, 140, 30, 256, 128, 64, 100, 20, 10, 250], 4)])
def test_batch_parts_cover_every_row_once_longest_first(lengths, parts):
    from qa.reranker_backends import _pair_cost, balanced_parts

    runs = balanced_parts(np.array(lengths), parts)
    rows = np.concatenate(runs)
    assert sorted(rows.tolist()) == list(range(len(lengths))) and all(len(r) for r in runs)
    assert len(runs) == min(parts, len(lengths))
    assert [lengths[i] for i in rows] == sorted(lengths, reverse=True)
    # no worse than cutting the batch in order into equal row counts, each padded to the longest
    even = [p for p in np.array_split(np.arange(len(lengths)), len(runs))]
    assert max(_pair_cost(len(r), max(lengths[i] for i in r)) for r in runs) <= \
        max(_pair_cost(len(p), max(lengths)) for p in even) + 1e-9


def test_a_batch_of_long_and_short_pairs_scores_as_each_pair_alone(reranker):
    """Each part of a batch is padded only to its own longest pair; scores land on their own rows."""
    texts = [PROBES[4][1], "Mitochondria generate energy.", PROBES[1][1], "It is stored in ATP. " * 30, "ATP."]
    spans = [split_sentences(t) for t in texts]
    together = reranker.score("What generates the cell's energy?", texts, spans)
    for text, span, s in zip(texts, spans, together):
        (alone,) = reranker.score("What generates the cell's energy?", [text], [span])
        assert abs(alone.logit - s.logit) <= MAX_LOGIT_ERROR  # bf16 kernels may differ with the shape
        assert alone.sentences[int(np.argmax(s.sentences))] >= alone.sentences.max() - MAX_LOGIT_ERROR
        assert len(s.sentences) == len(span)


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="'openvino'"):
        load_reranker("tpu")


# -- inputs --------------------------------------------------------------------------


def test_sentence_masks_cover_exactly_each_sentences_tokens():
    encoder = PairEncoder()
    passage = PROBES[0][1]
    spans = split_sentences(passage)
    ids, mask, types, (enc,) = encoder.encode(PROBES[0][0], [passage])
    masks = sentence_token_masks(enc, spans, ids.shape[1])
    assert masks.shape == (len(spans), ids.shape[1])
    assert not (masks[0] & masks[1]).any()
    # Every passage token (not [SEP]) falls in one sentence; no question token does.
    passage_tokens = (types[0] == 1) & (ids[0] != 102)
    assert (masks.any(0) == passage_tokens).all()
    scores = sentence_scores(np.arange(ids.shape[1], dtype=np.float32), masks)
    assert scores[0] < scores[1]


def test_a_long_question_and_passage_are_cut_to_the_model_limit():
    encoder = PairEncoder()
    ids, mask, types, encodings = encoder.encode("why " * 500, ["word " * 1000, "short"])
    assert ids.shape[1] <= 256 and mask[1].sum() < mask[0].sum()
    spans = [(0, 4), (4990, 4994)]
    masks = sentence_token_masks(encodings[0], spans, ids.shape[1])
    assert masks[0].any() and not masks[1].any()  # the second sentence was cut off
    assert sentence_scores(np.zeros(ids.shape[1]), masks)[1] == -np.inf


# -- calibration ----------------------------------------------------------------------


def test_logistic_regression_recovers_known_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 2))
    p = 1 / (1 + np.exp(-(2.0 * x[:, 0] - 1.0 * x[:, 1] + 0.5)))
    y = (rng.random(20000) < p).astype(float)
    w = fit_logistic(x, y)
    assert w == pytest.approx([2.0, -1.0, 0.5], abs=0.1)


def test_the_threshold_refuses_the_asked_share_of_answerable_questions():
    best = np.linspace(0.0, 1.0, 1001)
    t = choose_threshold(best, 0.05)
    assert np.mean(best < t) == pytest.approx(0.05, abs=0.002)


def test_probability_rises_with_both_scores():
    c = Calibration(w_rerank=1.5, w_first=3.0, bias=-2.0)
    p = c.probability(np.array([-1.0, 0.0, 1.0, 1.0]), np.array([0.2, 0.2, 0.2, 0.6]))
    assert np.all(np.diff(p) > 0) and np.all((0 < p) & (p < 1))


# -- answers ---------------------------------------------------------------------------


def test_reranked_answers_quote_exactly_and_find_the_evidence(reranking_searcher, seed_index):
    """The seed targets: the evidence in the top 5 every time, first nearly always."""
    ranks = []
    for question, doc_id, evidence in KNOWN_QUESTIONS:
        answer = reranking_searcher.search(question, k=5)
        assert answer.answered, question
        relevance = [h.relevance for h in answer.passages]
        assert all(0.0 <= r <= 1.0 for r in relevance)
        assert relevance == sorted(relevance, reverse=True)
        for h in answer.passages:
            assert seed_index.documents[h.doc_id].text[h.start : h.end] == h.quote
            assert h.start <= h.highlight.start < h.highlight.end <= h.end
        found = [h.rank for h in answer.passages if h.doc_id == doc_id and evidence in " ".join(h.quote.split())]
        assert found, f"{question!r}: the evidence is not in the top 5"
        ranks.append(found[0])
    assert ranks.count(1) >= len(KNOWN_QUESTIONS) - 1, ranks


def test_a_filter_that_leaves_the_answer_out_is_not_answered(reranking_searcher, seed_index):
    question, doc_id, _ = KNOWN_QUESTIONS[0]
    others = [d for d in seed_index.documents if d != doc_id]
    answer = reranking_searcher.search(question, doc_ids=others)
    assert not answer.answered
    assert "relevance" in answer.reason


@pytest.mark.parametrize("question", [
    pytest.param("How many tanks did Germany send to Ukraine?", marks=pytest.mark.xfail(
        strict=True, reason="known miss: on the subject, not in the reports, yet its best passage (Ukraine "
                            "readying Western tanks, the German Leopard 2 among them) gets relevance 0.08, "
                            "above the 0.05 threshold")),
    "Who painted the Mona Lisa?",
])
def test_questions_the_reports_do_not_answer_are_refused(reranking_searcher, question):
    answer = reranking_searcher.search(question)
    assert not answer.answered
    assert answer.passages  # the closest passages are still shown


def test_relevance_is_in_the_result_contract(reranking_searcher):
    d = reranking_searcher.search(KNOWN_QUESTIONS[1][0], k=2).to_dict()
    assert set(d["passages"][0]) >= {"relevance", "score", "highlight", "quote"}
    assert "cosine" not in d["passages"][0]


@pytest.mark.parametrize("query, question", [
    ("Who painted the Mona Lisa?", True),
    ("how many tanks did Germany send to Ukraine", True),
    ("Did the commander order the retreat", True),
    ("Quelle est la capitale ?", True),
    ("Seventeen soldiers were imprisoned for refusing orders.", False),
    ("0-dimensional biomaterials show inductive properties.", False),
    ("desertion law Putin", False),
    ("", False),
])
def test_a_query_reads_as_a_question_by_its_mark_or_its_first_word(query, question):
    from qa.citations import reads_as_question

    assert reads_as_question(query) is question


def test_a_statement_keeps_the_first_stage_order_and_is_still_judged(reranking_searcher, seed_index, embedder):
    from qa.retrieval import SearchParams, Searcher

    statement = "Seventeen soldiers were imprisoned for refusing to fight"
    first_stage = Searcher(seed_index, embedder, SearchParams(rerank_depth=0)).search(statement, k=5)
    answer = reranking_searcher.search(statement, k=5)
    assert [(h.doc_id, h.start, h.end) for h in answer.passages] == \
        [(h.doc_id, h.start, h.end) for h in first_stage.passages]
    assert all(0.0 <= h.relevance <= 1.0 for h in answer.passages)
    assert answer.answered  # the model still decides whether anything answers
    question = reranking_searcher.search("Why were seventeen soldiers imprisoned?", k=5)
    relevance = [h.relevance for h in question.passages]
    assert relevance == sorted(relevance, reverse=True)


def test_a_follow_up_statement_keeps_the_first_stage_order_after_a_question(reranking_searcher, seed_index,
                                                                             embedder):
    """The user's own words decide: a follow-up's query starts with the question before it."""
    from qa.retrieval import SearchParams, Searcher

    history = ["Why were 17 soldiers imprisoned?"]
    statement = "They were held in a basement"
    first_stage = Searcher(seed_index, embedder, SearchParams(rerank_depth=0)).search(statement, k=5,
                                                                                        history=history)
    answer = reranking_searcher.search(statement, k=5, history=history)
    assert [(h.doc_id, h.start, h.end) for h in answer.passages] == \
        [(h.doc_id, h.start, h.end) for h in first_stage.passages]
