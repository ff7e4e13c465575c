"""Train the relevance model from SQuAD and the bundled weights: ``python -m qa train-reranker``.

Stages, each resumable (its output is kept in the work folder and reused):

1. **Candidates.** The training articles are indexed with this project's own chunker
   and embedder, and every sampled question is searched with the first-stage search
   the app uses, so the model learns to reorder exactly what it will be shown. A
   group is one question with ``group_size`` passages: the passage holding the
   answer and the best-ranked passages that do not (other paragraphs of the article,
   look-alikes from other articles). A share of groups are "holes": the answering
   paragraph is left out, every passage is a negative, and the model learns that
   nothing answers. Passages that contain the answer text elsewhere are left out
   of negatives (they may answer too).
2. **Training.** Binary cross-entropy on every passage, a softmax over each group's
   passages (the positive first), and a softmax over the positive passage's
   sentences (the one holding the answer). AdamW, linear warm-up and decay, bf16
   autocast where the CPU computes in bf16 (fp32 elsewhere: ``training_precision``), a
   fixed seed; a checkpoint every ``checkpoint_every`` steps.
3. **Calibration.** On held-out validation articles (with holes cut out of them),
   a logistic regression of "this passage holds the answer" on the model's logit
   and the first-stage score gives the relevance probability; the abstention
   threshold is set so that ``false_abstention`` of the answerable validation
   questions are refused. ``python -m qa calibrate-reranker`` redoes this stage alone
   on a trained file (``recalibrate_reranker``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from qa.squad import SquadQuestion, holds_answer, load_squad, split_articles, write_corpus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """Everything that shapes the trained model; recorded in its file."""

    layers: int = 6
    groups: int = 16000
    group_size: int = 8
    hole_share: float = 0.15
    # Off: drawing and applying dropout masks was most of a CPU training step (41% drawing
    # alone); without them a step costs 0.84 s instead of 2.1 s, which buys twice the questions.
    dropout: float = 0.0
    # "auto": bf16 autocast where the CPU has it (AVX512-BF16, AMX), else fp32 (training_precision)
    precision: str = "auto"
    candidate_depth: int = 30
    batch_groups: int = 4
    learning_rate: float = 4e-5
    head_learning_rate: float = 1e-3
    warmup: float = 0.05
    seed: int = 0
    validation_holes_per_article: int = 3
    validation_questions: int = 1500
    # The app judges the top 8 (SearchParams.rerank_depth). Calibrating on those 8 instead was
    # tried (README, "Also tried"): no better on held-out articles, and it refused a seed question.
    rerank_depth: int = 12
    false_abstention: float = 0.04
    checkpoint_every: int = 100


# Where candidates, indexes and checkpoints are kept unless --work says otherwise.
DEFAULT_WORK = Path(__file__).resolve().parent.parent / ".cache" / "train-reranker"

PRECISIONS = ("auto", "bf16", "fp32")


def native_bf16() -> bool:
    """Whether this CPU computes in bf16 itself (AVX512-BF16 or AMX)."""
    import torch

    return any(getattr(torch.cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported",
                                                                       "_is_amx_tile_supported"))


def training_precision(precision: str) -> str:
    """"bf16" or "fp32" for a ``TrainSettings.precision``.

    "auto" takes bf16 only where the CPU has it: elsewhere torch emulates it, and a
    training step took 105 s in bf16 against 5 s in fp32 (AMD EPYC with AVX2 only).

    Raises:
        ValueError: an unknown precision, naming the choices.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(map(repr, PRECISIONS))}")
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return precision


# -- stage 1: candidates ---------------------------------------------------------


def _searcher(articles, folder: Path, *, holes_per_article: int = 0, show_progress: bool = True):
    from qa.backends import default_embedder
    from qa.index import update_index
    from qa.retrieval import Searcher

    questions = write_corpus(articles, folder / "corpus", holes_per_article=holes_per_article)
    embedder = default_embedder()
    index, _ = update_index(folder / "corpus", folder / "index", embedder=embedder, show_progress=show_progress)
    return Searcher(index, embedder), questions


def _passage_row(index, i: int) -> dict:
    p = index.passages[i]
    return {"doc_id": p.doc_id, "start": p.start, "end": p.end,
            "sentences": [[a - p.start, b - p.start] for a, b in p.sentences]}


def _answer_sentence(p, q: SquadQuestion) -> int:
    a = q.answer[0]
    return next((n for n, (s, e) in enumerate(p.sentences) if s <= a < e), -1)


def build_groups(searcher, questions: Sequence[SquadQuestion], settings: TrainSettings, *,
                 show_progress: bool = True) -> list[dict]:
    """Training groups (see the module docstring), in a fixed order for a fixed seed."""
    from tqdm.auto import tqdm

    index = searcher.index
    rng = random.Random(settings.seed)
    answerable = [q for q in questions if not q.is_hole]
    picked = rng.sample(answerable, min(settings.groups, len(answerable)))
    groups = []
    for q in tqdm(picked, desc="Finding candidates", unit="question", disable=not show_progress):
        ranked, fused = searcher.rank(q.question)
        top = ranked[: settings.candidate_depth]
        hole = rng.random() < settings.hole_share
        texts = {i: index.quote(i) for i in top}
        first, count = index.doc_ranges[q.doc_id]
        covering = [i for i in range(first, first + count)
                    if index.passages[i].start <= q.answer[0] and q.answer[1] <= index.passages[i].end]
        if not covering:
            continue  # the answer straddles two passages
        positive = min(covering, key=lambda i: (ranked.index(i) if i in fused else len(ranked), i))
        negatives = [i for i in top if q.answer_text not in texts[i] and i not in covering]
        if hole:
            negatives = [i for i in negatives if not _overlaps(index.passages[i], q.paragraph)]
            chosen = negatives[: settings.group_size]
            rows = [dict(_passage_row(index, i), label=0, answer_sentence=-1, first_stage=fused.get(i, 0.0))
                    for i in chosen]
        else:
            n_hard = min(3, settings.group_size - 1)
            hard, rest = negatives[:n_hard], negatives[n_hard:]
            chosen = hard + rng.sample(rest, min(len(rest), settings.group_size - 1 - len(hard)))
            rows = [dict(_passage_row(index, positive), label=1,
                         answer_sentence=_answer_sentence(index.passages[positive], q),
                         first_stage=fused.get(positive, 0.0))]
            rows += [dict(_passage_row(index, i), label=0, answer_sentence=-1, first_stage=fused.get(i, 0.0))
                     for i in chosen]
        if rows:
            groups.append({"question": q.question, "passages": rows})
    return groups


def _relative(p) -> list[tuple[int, int]]:
    return [(a - p.start, b - p.start) for a, b in p.sentences]


def _overlaps(p, span: tuple[int, int]) -> bool:
    return p.start < span[1] and span[0] < p.end


# -- stage 2: training -----------------------------------------------------------


def _batch_tensors(encoder, groups: list[dict], texts_of):
    """Flatten groups into padded tensors, labels, group slices and the positives' sentence masks."""
    import torch

    from qa.reranker import MAX_PAIR_WORDPIECES, sentence_token_masks

    all_ids, all_types, labels, slices, sentence_targets = [], [], [], [], []
    for g in groups:
        texts = [texts_of(p) for p in g["passages"]]
        ids, mask, types, encodings = encoder.encode(g["question"], texts)
        base = len(all_ids)
        slices.append((base, base + len(texts), next((n for n, p in enumerate(g["passages"]) if p["label"]), -1)))
        for r, (p, e) in enumerate(zip(g["passages"], encodings)):
            n = len(e.ids)
            all_ids.append(e.ids)
            all_types.append(e.type_ids)
            labels.append(float(p["label"]))
            if p["label"] and p["answer_sentence"] >= 0:
                sentence_targets.append((base + r, e, p["sentences"], p["answer_sentence"]))
    # Widths rounded up to a multiple of 32: a few tensor shapes, not one per length, so
    # the CPU kernels' per-shape caches (and the process's memory) stop growing.
    width = min(-(-max(len(x) for x in all_ids) // 32) * 32, MAX_PAIR_WORDPIECES)
    ids = torch.zeros((len(all_ids), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for r, (x, t) in enumerate(zip(all_ids, all_types)):
        ids[r, : len(x)] = torch.tensor(x)
        types[r, : len(t)] = torch.tensor(t)
        mask[r, : len(x)] = 1
    sentences = [(row, torch.from_numpy(sentence_token_masks(e, spans, width)), target)
                 for row, e, spans, target in sentence_targets]
    return ids, mask, types, torch.tensor(labels), slices, sentences


def _loss(net, batch, precision: str = "bf16"):
    import torch
    import torch.nn.functional as F

    ids, mask, types, labels, slices, sentences = batch
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits, token_scores = net(ids, mask, types)
    logits, token_scores = logits.float(), token_scores.float()
    loss = F.binary_cross_entropy_with_logits(logits, labels)
    listwise = [F.cross_entropy(logits[a:b][None], torch.tensor([pos])) for a, b, pos in slices if pos >= 0]
    if listwise:
        loss = loss + torch.stack(listwise).mean()
    pointer = []
    for row, masks, target in sentences:
        if not masks[target].any():
            continue  # the answer's sentence was cut off by truncation
        m = masks.float()
        scores = (m * token_scores[row][None]).sum(1) / m.sum(1).clamp(min=1.0)
        scores = scores.masked_fill(~masks.any(1), -1e4)
        pointer.append(F.cross_entropy(scores[None], torch.tensor([target])))
    if pointer:
        loss = loss + torch.stack(pointer).mean()
    return loss


def _save_checkpoint(path: Path, net, optimizer, scheduler, step: int) -> None:
    import torch

    from qa.reranker import trained_parameters

    state = net.state_dict()
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"step": step, "model": {n: state[n] for n in trained_parameters(net)},
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)


def train_network(groups: list[dict], texts_of, settings: TrainSettings, work: Path, *, show_progress: bool = True,
                  stop_after: int | None = None):
    """Fine-tune the cross-encoder on the groups; resumes from ``work/checkpoint.pt``.

    Args:
        stop_after: stop (checkpointed) once this many steps are done in all, as a
            kill would; the next call goes on from there.
    """
    import torch
    from tqdm.auto import tqdm

    from qa.reranker import PairEncoder, build_network

    precision = training_precision(settings.precision)
    logger.info("training in %s", precision)
    torch.manual_seed(settings.seed)
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    net = build_network(settings.layers, dropout=settings.dropout)
    for name, prm in net.named_parameters():
        prm.requires_grad = not (name.startswith("bert.embeddings.word_embeddings")
                                 or name.startswith("bert.embeddings.position_embeddings"))
    heads = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("bert.")]
    body = [p for n, p in net.named_parameters() if p.requires_grad and n.startswith("bert.")]
    optimizer = torch.optim.AdamW([{"params": body, "lr": settings.learning_rate},
                                   {"params": heads, "lr": settings.head_learning_rate}], weight_decay=0.01)
    order = list(range(len(groups)))
    random.Random(settings.seed + 1).shuffle(order)
    steps = math.ceil(len(order) / settings.batch_groups)
    warmup = max(1, int(settings.warmup * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / "checkpoint.pt"
    step = 0
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        net.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        logger.info("resuming training at step %d of %d", step, steps)
    encoder = PairEncoder()
    net.train()
    bar = tqdm(total=steps, initial=step, desc="Training the reranker", unit="step", disable=not show_progress)
    recent: list[float] = []
    last = steps if stop_after is None else min(steps, stop_after)
    while step < last:
        chunk = [groups[j] for j in order[step * settings.batch_groups : (step + 1) * settings.batch_groups]]
        loss = _loss(net, _batch_tensors(encoder, chunk, texts_of), precision)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        recent = (recent + [loss.item()])[-50:]
        bar.update(1)
        bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}", rss=f"{_rss_mb():.0f}MB")
        if step % settings.checkpoint_every == 0 or step == last:
            _save_checkpoint(checkpoint, net, optimizer, scheduler, step)
    bar.close()
    net.eval()
    return net


def _rss_mb(field: str = "VmRSS") -> float:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return 0.0


# -- stage 3: calibration --------------------------------------------------------


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-3, iterations: int = 50) -> np.ndarray:
    """Weights (one per column of ``x``, then the bias) of a logistic regression, by Newton's method."""
    X = np.hstack([x, np.ones((len(x), 1))]).astype(np.float64)
    w = np.zeros(X.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-X @ w))
        grad = X.T @ (p - y) + l2 * w
        hess = (X * (p * (1 - p))[:, None]).T @ X + l2 * np.eye(X.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def choose_threshold(best_answerable: np.ndarray, false_abstention: float) -> float:
    """The probability below which only ``false_abstention`` of answerable questions' best passages fall."""
    if not len(best_answerable):
        return 0.5
    return float(np.quantile(best_answerable, false_abstention))


def calibrate(scorer, searcher, questions: Sequence[SquadQuestion], settings: TrainSettings, *,
              show_progress: bool = True) -> tuple["Calibration", dict]:
    """Fit the relevance probability and the abstention threshold on validation questions."""
    from tqdm.auto import tqdm

    from qa.reranker import Calibration

    rng = random.Random(settings.seed + 2)
    answerable = [q for q in questions if not q.is_hole]
    holes = [q for q in questions if q.is_hole]
    sample = rng.sample(answerable, min(settings.validation_questions, len(answerable))) + holes
    index = searcher.index
    rows = []
    for q in tqdm(sample, desc="Calibrating", unit="question", disable=not show_progress):
        ranked, fused = searcher.rank(q.question)
        top = ranked[: settings.rerank_depth]
        scores = scorer.score(q.question, [index.quote(i) for i in top], [_relative(index.passages[i]) for i in top])
        logits = [s.logit for s in scores]
        labels = [holds_answer(q, index.doc_id_of(i), index.passages[i].start, index.passages[i].end,
                               index.quote(i)) for i in top]
        rows.append((q.is_hole, np.asarray(logits), np.asarray([fused[i] for i in top]), np.asarray(labels)))
    x = np.concatenate([np.stack([r[1], r[2]], axis=1) for r in rows])
    y = np.concatenate([r[3] for r in rows]).astype(np.float64)
    w = fit_logistic(x, y)
    calibration = Calibration(w_rerank=float(w[0]), w_first=float(w[1]), bias=float(w[2]))
    best = [(hole, float(calibration.probability(lg, fs).max())) for hole, lg, fs, _ in rows]
    calibration.threshold = choose_threshold(np.array([b for hole, b in best if not hole]), settings.false_abstention)
    calibration.false_abstention = settings.false_abstention
    hole_best = np.array([b for hole, b in best if hole])
    report = {"validation_questions": len(sample) - len(holes), "validation_holes": len(holes),
              "validation_holes_abstained": float((hole_best < calibration.threshold).mean()) if len(holes) else None,
              "calibration": asdict(calibration)}
    return calibration, report


# -- the whole recipe --------------------------------------------------------------

# What a work folder's candidates and checkpoint were made with: resuming with other values
# would mix two recipes in one model (calibration settings may change: it is redone each run).
TRAINING_FIELDS = ("layers", "groups", "group_size", "hole_share", "dropout", "precision", "candidate_depth",
                   "batch_groups", "learning_rate", "head_learning_rate", "warmup", "seed")
# Settings that runs made before the field existed used (BERT's default dropout, for one).
BEFORE_RECORDED = {"dropout": 0.1, "precision": "bf16"}


def check_resumable(work: Path, settings: TrainSettings) -> None:
    """Refuse to go on from candidates or a checkpoint in ``work`` that other training settings made.

    Raises:
        ValueError: naming the settings that differ.
    """
    recorded = work / "settings.json"
    made = (work / "checkpoint.pt").is_file() or any(work.glob("groups-*.jsonl"))
    if not made or not recorded.is_file():
        return
    try:
        before = json.loads(recorded.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        before = {}
    now = asdict(settings)
    before = {**BEFORE_RECORDED, **before}
    differs = [f"{k} {before.get(k)!r} there, {now[k]!r} asked" for k in TRAINING_FIELDS if before.get(k) != now[k]]
    if differs:
        raise ValueError(f"{work} holds a training run with other settings ({'; '.join(differs)}): "
                         "rerun with those settings to resume it, or give another --work")


def train_reranker(data: str | Path, out: str | Path, *, work: str | Path | None = None,
                   settings: TrainSettings | None = None, show_progress: bool = True) -> dict:
    """Build the relevance model from SQuAD (``data``) and the bundled weights into ``out``.

    Args:
        data: the SQuAD v1.1 train folder.
        out: the weights file to write (e.g. models/reranker.safetensors).
        work: where candidates, indexes and checkpoints are kept (resumable);
            default ``.cache/train-reranker`` at the repository root.

    Returns:
        a report: settings, sizes, seconds per stage, validation figures, the file's sha256.
    """
    from qa.embedding import bundled_model_path, check_weights
    from qa.reranker import RerankerConfig

    settings = settings or TrainSettings()
    # Recorded as resolved: a run resumed on a CPU of another kind keeps the precision it began with.
    settings = replace(settings, precision=training_precision(settings.precision))
    work = Path(work) if work else DEFAULT_WORK
    work.mkdir(parents=True, exist_ok=True)
    check_resumable(work, settings)
    (work / "settings.json").write_text(json.dumps(asdict(settings), indent=2), encoding="utf-8")
    seconds: dict[str, float] = {}
    split = split_articles(load_squad(data))

    t0 = time.perf_counter()
    train_searcher, train_questions = _searcher(split["train"], work / "train", show_progress=show_progress)
    groups_file = work / f"groups-{settings.seed}-{settings.groups}-{settings.group_size}.jsonl"
    if groups_file.is_file():
        groups = [json.loads(line) for line in groups_file.read_text(encoding="utf-8").splitlines()]
    else:
        groups = build_groups(train_searcher, train_questions, settings, show_progress=show_progress)
        tmp = groups_file.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(g) + "\n" for g in groups), encoding="utf-8")
        os.replace(tmp, groups_file)
    seconds["candidates"] = time.perf_counter() - t0
    documents = train_searcher.index.documents

    def texts_of(p: dict) -> str:
        return documents[p["doc_id"]].text[p["start"] : p["end"]]

    t0 = time.perf_counter()
    net = train_network(groups, texts_of, settings, work, show_progress=show_progress)
    seconds["training"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    config = RerankerConfig(layers=settings.layers, base_sha256=check_weights(bundled_model_path()),
                            training=asdict(settings))
    sha256, val_report = _calibrate_into(net, config, out, split["validation"], work, settings,
                                         show_progress=show_progress)
    seconds["calibration"] = time.perf_counter() - t0
    report = {"settings": asdict(settings), "groups": len(groups),
              "holes": sum(1 for g in groups if not any(p["label"] for p in g["passages"])),
              "train_articles": len(split["train"]), "validation_articles": len(split["validation"]),
              "test_articles": len(split["test"]), "seconds": seconds, **val_report,
              "peak_rss_mb": _rss_mb("VmHWM"), "out": str(out), "sha256": sha256}
    (work / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def _calibrate_into(net, config, out: str | Path, articles, work: Path, settings: TrainSettings, *,
                    show_progress: bool = True) -> tuple[str, dict]:
    """Calibrate ``net`` on the validation ``articles`` and write it with its calibration to ``out``.

    Returns:
        (the file's sha256, the validation figures).
    """
    from qa.reranker import Calibration, save_weights
    from qa.reranker_backends import load_reranker

    val_searcher, val_questions = _searcher(articles, work / "validation",
                                            holes_per_article=settings.validation_holes_per_article,
                                            show_progress=show_progress)
    # Calibrated as it will be served: the fp16 weights as shipped, on the fastest faithful backend.
    # The uncalibrated file stays in the work folder: ``out`` is written once, when calibrated.
    uncalibrated = work / "uncalibrated.safetensors"
    save_weights(net, uncalibrated, config, Calibration())
    scorer = load_reranker("auto", path=uncalibrated, expected_sha256=None)
    calibration, val_report = calibrate(scorer, val_searcher, val_questions, settings, show_progress=show_progress)
    val_report["calibrated_on"] = scorer.backend
    return save_weights(net, out, config, calibration), val_report


CALIBRATION_FIELDS = ("validation_holes_per_article", "validation_questions", "rerank_depth", "false_abstention")


def recalibrate_reranker(data: str | Path, weights: str | Path, out: str | Path, *, work: str | Path | None = None,
                         false_abstention: float | None = None, show_progress: bool = True) -> dict:
    """Calibrate a trained weights file again, as ``train-reranker``'s last stage does, without training.

    The tensors are written back bit for bit (fp16 read as fp32 and written as fp16);
    the calibration and the calibration settings in the metadata are today's
    (``TrainSettings``); the training settings stay those the file was trained with.

    Args:
        data: the SQuAD v1.1 train folder (its validation articles are used).
        weights: the trained file (e.g. models/reranker.safetensors); its hash is not checked.
        out: the file to write (may be ``weights`` itself: it is replaced atomically).
        work: where the validation corpus and index are kept (default ``.cache/train-reranker``).
        false_abstention: the share of answerable validation questions the threshold may
            refuse (default ``TrainSettings.false_abstention``).

    Raises:
        ValueError: ``false_abstention`` outside (0, 0.5).
        RerankerError: ``weights`` is missing or not a relevance model file.

    Returns:
        a report: the calibration settings, the validation figures, seconds, the new sha256.
    """
    from qa.reranker import load_network

    defaults = asdict(TrainSettings())
    if false_abstention is not None:
        if not 0.0 < false_abstention < 0.5:
            raise ValueError(f"the false-abstention rate must lie in (0, 0.5), got {false_abstention}")
        defaults["false_abstention"] = false_abstention
    net, config, _ = load_network(weights, expected_sha256=None)
    trained = {k: v for k, v in config.training.items() if k in defaults and k not in CALIBRATION_FIELDS}
    settings = TrainSettings(**{**defaults, **trained})
    config = replace(config, training={**config.training, **{k: defaults[k] for k in CALIBRATION_FIELDS}})
    work = Path(work) if work else DEFAULT_WORK
    t0 = time.perf_counter()
    split = split_articles(load_squad(data))
    sha256, val_report = _calibrate_into(net, config, out, split["validation"], work, settings,
                                         show_progress=show_progress)
    return {"weights": str(weights), "calibration_settings": {k: defaults[k] for k in CALIBRATION_FIELDS},
            **val_report, "seconds": time.perf_counter() - t0, "out": str(out), "sha256": sha256}
