"""Training the relevance model: candidate groups, holes, and a run that resumes where it stopped."""

from __future__ import annotations

import pytest

from qa.index import update_index
from qa.retrieval import Searcher
from qa.squad import Article, Paragraph, write_corpus
from qa.train_reranker import TrainSettings, build_groups, train_network

_FACTS = [
    ("The river Alder rises in the northern hills near the village of Stenby.", "Where does the river Alder rise?",
     "the northern hills"),
    ("Its water was used by twelve mills until the railway arrived in 1871.", "How many mills used its water?",
     "twelve"),
    ("A stone bridge built by the monks of Varrow crosses it at Holm.", "Who built the stone bridge at Holm?",
     "the monks of Varrow"),
    ("The salmon run each autumn draws anglers from the whole county.", "What draws anglers each autumn?",
     "The salmon run"),
    ("Floods in 1953 destroyed the lower town and its harbour walls.", "What did the floods of 1953 destroy?",
     "the lower town"),
]


def _article(n: int) -> Article:
    paragraphs = []
    for p, (fact, question, answer) in enumerate(_FACTS):
        context = f"{fact.replace('Alder', f'Alder{n}')} " + " ".join(
            f"Filler sentence {k} about topic {n}-{p} has no answer in it." for k in range(6))
        question = question.replace("Alder", f"Alder{n}").replace("?", f" (river {n})?")
        paragraphs.append(Paragraph(context, ((question, answer,
                                               context.index(answer)),)))
    return Article(f"River_Alder{n}", tuple(paragraphs))


@pytest.fixture(scope="module")
def small(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("train")
    questions = write_corpus([_article(n) for n in range(3)], root / "corpus")
    index, _ = update_index(root / "corpus", root / "index", embedder=embedder, show_progress=False)
    return Searcher(index, embedder), questions


def _text(index, p):
    return index.documents[p["doc_id"]].text[p["start"] : p["end"]]


def test_groups_hold_one_positive_with_the_answer_and_negatives_without_it(small):
    searcher, questions = small
    settings = TrainSettings(groups=len(questions), group_size=4, hole_share=0.0)
    groups = build_groups(searcher, questions, settings, show_progress=False)
    assert len(groups) >= len(questions) - 1
    by_question = {q.question: q for q in questions}
    for g in groups:
        q = by_question[g["question"]]
        positives = [p for p in g["passages"] if p["label"]]
        assert len(positives) == 1 and len(g["passages"]) <= 4
        pos = positives[0]
        assert pos["start"] <= q.answer[0] and q.answer[1] <= pos["end"] and pos["doc_id"] == q.doc_id
        a, b = pos["sentences"][pos["answer_sentence"]]
        assert q.answer_text in _text(searcher.index, pos)[a:b]
        for p in g["passages"]:
            if not p["label"]:
                assert q.answer_text not in _text(searcher.index, p)


def test_holes_leave_the_answering_paragraph_out(small):
    searcher, questions = small
    settings = TrainSettings(groups=len(questions), group_size=4, hole_share=1.0)
    groups = build_groups(searcher, questions, settings, show_progress=False)
    by_question = {q.question: q for q in questions}
    assert groups
    for g in groups:
        q = by_question[g["question"]]
        for p in g["passages"]:
            assert not p["label"]
            assert p["doc_id"] != q.doc_id or p["end"] <= q.paragraph[0] or p["start"] >= q.paragraph[1]


@pytest.mark.slow
def test_a_stopped_run_resumes_from_its_checkpoint_and_ends_the_same(small, tmp_path):
    searcher, questions = small
    settings = TrainSettings(layers=1, groups=8, group_size=3, batch_groups=2, checkpoint_every=1, seed=3)
    groups = build_groups(searcher, questions, settings, show_progress=False)

    def texts_of(p):
        return _text(searcher.index, p)

    import torch

    whole = train_network(groups, texts_of, settings, tmp_path / "whole", show_progress=False)
    # The same run stopped after two steps (its checkpoint is all a kill leaves), then started again.
    train_network(groups, texts_of, settings, tmp_path / "stopped", show_progress=False, stop_after=2)
    assert torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=False)["step"] == 2
    resumed = train_network(groups, texts_of, settings, tmp_path / "stopped", show_progress=False)
    steps = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)["step"]
    assert steps > 2
    assert torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=False)["step"] == steps
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.allclose(a[n], b[n], atol=1e-6) for n in a)


def test_a_work_folder_is_not_resumed_with_other_training_settings(tmp_path):
    import json
    from dataclasses import asdict, replace

    from qa.train_reranker import check_resumable

    settings = TrainSettings()
    (tmp_path / "settings.json").write_text(json.dumps(asdict(settings)), encoding="utf-8")
    check_resumable(tmp_path, replace(settings, hole_share=0.3))  # nothing made yet: nothing to mix
    (tmp_path / "groups-0-8000-8.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"hole_share 0.15 there, 0.3 asked"):
        check_resumable(tmp_path, replace(settings, hole_share=0.3))  # candidates of another recipe
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    check_resumable(tmp_path, settings)
    check_resumable(tmp_path, replace(settings, false_abstention=0.05))  # calibration is redone each run
    with pytest.raises(ValueError, match=r"hole_share 0.15 there, 0.3 asked"):
        check_resumable(tmp_path, replace(settings, hole_share=0.3))


def test_train_reranker_refuses_a_hole_share_outside_0_to_1(tmp_path, capsys):
    from qa.cli import main

    assert main(["train-reranker", "--data", str(tmp_path), "--out", str(tmp_path / "x.safetensors"),
                 "--hole-share", "1.5"]) != 0
    assert "--hole-share must lie in [0, 1)" in capsys.readouterr().err


def test_a_work_folder_from_before_the_dropout_setting_resumes_only_with_the_old_dropout(tmp_path):
    import json
    from dataclasses import asdict, replace

    from qa.train_reranker import check_resumable

    recorded = asdict(TrainSettings(dropout=0.1))
    del recorded["dropout"]  # runs before the setting existed trained with BERT's 0.1
    (tmp_path / "settings.json").write_text(json.dumps(recorded), encoding="utf-8")
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    check_resumable(tmp_path, TrainSettings(dropout=0.1))
    with pytest.raises(ValueError, match=r"dropout 0.1 there, 0.0 asked"):
        check_resumable(tmp_path, replace(TrainSettings(), dropout=0.0))


def test_dropout_zero_makes_training_passes_repeatable_and_the_default_does_not():
    import torch

    from qa.reranker import build_network

    ids = torch.tensor([[101, 2129, 2116, 102, 1996, 2314, 102]])
    mask, types = torch.ones_like(ids), torch.tensor([[0, 0, 0, 0, 1, 1, 1]])
    for dropout, repeatable in ((0.0, True), (None, False)):
        torch.manual_seed(0)
        net = build_network(1, dropout=dropout).train()
        with torch.no_grad():
            a, b = net(ids, mask, types)[1], net(ids, mask, types)[1]
        assert torch.equal(a, b) is repeatable


def test_train_reranker_refuses_a_dropout_outside_0_to_1(tmp_path, capsys):
    from qa.cli import main

    assert main(["train-reranker", "--data", str(tmp_path), "--out", str(tmp_path / "x.safetensors"),
                 "--dropout", "1"]) != 0
    assert "--dropout must lie in [0, 1)" in capsys.readouterr().err


def _squad_folder(folder, articles: int):
    """A SQuAD-format train file of ``articles`` small articles (enough for every split)."""
    import json

    data = [{"title": a.title, "paragraphs": [
        {"context": p.context, "qas": [{"question": q, "answers": [{"text": t, "answer_start": s}]}
                                       for q, t, s in p.questions]} for p in a.paragraphs]}
        for a in map(_article, range(articles))]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train-v1.1.json").write_text(json.dumps({"data": data}), encoding="utf-8")
    return folder


@pytest.mark.slow
def test_recalibrating_keeps_the_tensors_and_records_the_new_calibration(tmp_path):
    import shutil

    from safetensors import safe_open

    from qa.reranker import RERANKER_FILE, read_weights
    from qa.train_reranker import CALIBRATION_FIELDS, recalibrate_reranker

    data = _squad_folder(tmp_path / "squad", 45)
    weights = tmp_path / "trained.safetensors"
    shutil.copy(RERANKER_FILE, weights)
    before = weights.read_bytes()
    report = recalibrate_reranker(data, weights, tmp_path / "out.safetensors", work=tmp_path / "work",
                                  false_abstention=0.1, show_progress=False)
    assert weights.read_bytes() == before
    with safe_open(str(weights), "pt") as a, safe_open(str(tmp_path / "out.safetensors"), "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        assert all(a.get_tensor(k).equal(b.get_tensor(k)) for k in a.keys())  # bit for bit
    _, old_config, _ = read_weights(weights, None)
    _, config, calibration = read_weights(tmp_path / "out.safetensors", report["sha256"])
    assert calibration.false_abstention == 0.1 and 0.0 < calibration.threshold < 1.0
    assert config.training["false_abstention"] == 0.1
    assert {k: v for k, v in config.training.items() if k not in CALIBRATION_FIELDS} == \
        {k: v for k, v in old_config.training.items() if k not in CALIBRATION_FIELDS}
    # 20 validation articles of 5 one-question paragraphs, 3 of each cut out: 2 answerable, 3 holes
    assert (report["validation_questions"], report["validation_holes"]) == (40, 60)


def test_a_failed_recalibration_leaves_the_weights_file_as_it_was(tmp_path, monkeypatch):
    import shutil

    import qa.reranker_backends
    from qa.reranker import RERANKER_FILE
    from qa.train_reranker import recalibrate_reranker

    data = _squad_folder(tmp_path / "squad", 45)
    weights = tmp_path / "reranker.safetensors"
    shutil.copy(RERANKER_FILE, weights)
    before = weights.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("killed while calibrating")

    monkeypatch.setattr(qa.reranker_backends, "load_reranker", broken)
    with pytest.raises(RuntimeError, match="killed while calibrating"):
        recalibrate_reranker(data, weights, weights, work=tmp_path / "work", show_progress=False)
    assert weights.read_bytes() == before  # written in place only once calibrated


@pytest.mark.parametrize("rate", ["0", "0.5", "-0.1"])
def test_calibrate_reranker_refuses_a_false_abstention_rate_outside_0_to_half(tmp_path, capsys, rate):
    from qa.cli import main

    assert main(["calibrate-reranker", "--data", str(tmp_path), "--out", str(tmp_path / "x.safetensors"),
                 "--false-abstention", rate]) != 0
    assert "false-abstention rate must lie in (0, 0.5)" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_calibrate_reranker_names_a_missing_weights_file(tmp_path, capsys):
    from qa.cli import main

    assert main(["calibrate-reranker", "--data", str(tmp_path), "--weights", str(tmp_path / "none.safetensors"),
                 "--out", str(tmp_path / "x.safetensors")]) != 0
    assert "none.safetensors" in capsys.readouterr().err


def test_auto_precision_is_bf16_only_where_the_cpu_computes_in_it(monkeypatch):
    import qa.train_reranker as tr

    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(tr, "native_bf16", lambda native=native: native)
        assert tr.training_precision("auto") == expected
        assert tr.training_precision("fp32") == "fp32" and tr.training_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="choose from 'auto', 'bf16', 'fp32'"):
        tr.training_precision("fp16")


@pytest.mark.parametrize("precision, autocast", [("bf16", True), ("fp32", False)])
def test_a_training_step_autocasts_to_bf16_only_in_bf16(small, monkeypatch, precision, autocast):
    import torch

    from qa.reranker import PairEncoder, build_network
    from qa.train_reranker import _batch_tensors, _loss

    searcher, questions = small
    groups = build_groups(searcher, questions, TrainSettings(groups=2, group_size=3), show_progress=False)
    batch = _batch_tensors(PairEncoder(), groups[:1], lambda p: _text(searcher.index, p))
    seen, real = [], torch.autocast

    def recording(*args, **kwargs):
        seen.append(kwargs.get("enabled", True))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", recording)
    loss = _loss(build_network(1, dropout=0.0), batch, precision)
    assert seen == [autocast] and torch.isfinite(loss)


def test_a_work_folder_from_before_the_precision_setting_resumes_only_in_bf16(tmp_path):
    import json
    from dataclasses import asdict, replace

    from qa.train_reranker import check_resumable

    recorded = asdict(TrainSettings())
    del recorded["precision"]  # runs before the setting existed trained with bf16 autocast
    (tmp_path / "settings.json").write_text(json.dumps(recorded), encoding="utf-8")
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    check_resumable(tmp_path, replace(TrainSettings(), precision="bf16"))
    with pytest.raises(ValueError, match=r"precision 'bf16' there, 'fp32' asked"):
        check_resumable(tmp_path, replace(TrainSettings(), precision="fp32"))


def test_train_reranker_refuses_an_unknown_precision(tmp_path, capsys):
    from qa.cli import main

    with pytest.raises(SystemExit):
        main(["train-reranker", "--data", str(tmp_path), "--out", str(tmp_path / "x.safetensors"),
              "--precision", "fp16"])
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
