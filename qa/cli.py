"""python -m qa: build the index, ask questions, evaluate. Turns library errors into messages."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from qa.arguments import check_count
from qa.citations import render_text
from qa.collection import Collection
from qa.corpus import DocumentError
from qa.embedding import ModelError
from qa.extract import SUFFIXES
from qa.index import IndexBusyError, IndexFormatError, IndexParams
from qa.ray_engine import RayUnavailableError
from qa.retrieval import SearchParams
from qa.shards import ShardError, ShardedCollection, is_shard_set, split_index

DEFAULT_CORPUS = "seeds"
DEFAULT_INDEX = "index"


class UserError(Exception):
    """A problem to tell the user in one line (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in the CLI's one form: one line, ``error: ...``, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {_shown(message)} (see {self.prog} --help)\n")


# Every character str.splitlines() breaks at: an error must stay one line, whatever was typed.
_LINE_BREAKS = "[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]"


def _shown(text: str) -> str:
    """Text as it can be printed on one line: an undecodable byte (a lone surrogate) becomes
    U+FFFD, a line break a space."""
    return re.sub(_LINE_BREAKS, " ", re.sub("[\ud800-\udfff]", "\ufffd", text))


def _stdin_lines():
    """The lines of stdin, each decoded on its own: an undecodable byte fails its line, not the batch."""
    source = getattr(sys.stdin, "buffer", sys.stdin)
    for n, line in enumerate(source):
        if isinstance(line, bytes):
            line = line.decode("utf-8", errors="surrogateescape")  # check_question names the bad byte
        yield line.removeprefix("\ufeff") if n == 0 else line


def _collection(args, *, corpus: str | None = None) -> Collection:
    index_dir = Path(args.index)
    if is_shard_set(index_dir):  # a shard set: searched whole, here or on Ray actors
        return ShardedCollection(index_dir, engine=getattr(args, "engine", "local"),
                                 address=getattr(args, "ray_address", None))
    corpus_dir = corpus
    if corpus_dir is None:
        # An existing index knows its corpus; otherwise the default corpus.
        try:
            manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
            if "shard" in manifest:  # updated alone, a shard would take in the whole corpus
                raise UserError(f"{index_dir} is one shard of a shard set: ask the set (its parent folder)")
            corpus_dir = str((index_dir.resolve().parent / manifest["corpus"]))
        except (OSError, ValueError, KeyError):
            if not index_dir.exists():
                raise UserError(f"no index at {index_dir}: build it first with `python -m qa index --index {index_dir}`")
            corpus_dir = DEFAULT_CORPUS
    return Collection(corpus_dir, index_dir, show_progress=not getattr(args, "quiet", False))


def cmd_index(args) -> int:
    from qa.corpus import corpus_files

    if not corpus_files(args.corpus) and not args.allow_empty:
        try:
            held = json.loads((Path(args.index) / "manifest.json").read_text(encoding="utf-8"))["counts"]["documents"]
        except (OSError, ValueError, KeyError):
            held = 0
        if held:
            raise UserError(f"{args.corpus} holds no documents ({', '.join(SUFFIXES)}); the index at {args.index} still holds "
                            f"{held} and is left as it is (pass --allow-empty to empty it)")
    if args.engine == "ray":
        from qa.distributed import ray_update_index

        report = ray_update_index(args.corpus, args.index, address=args.ray_address, workers=args.workers,
                                  show_progress=not args.quiet)[1]
    else:
        report = Collection(args.corpus, args.index, show_progress=not args.quiet).update()
    if report.documents == 0:
        print(f"warning: {args.corpus} holds no documents ({', '.join(SUFFIXES)}); the index is empty", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
        return 0
    print(f"index {args.index}: {report.documents} documents, {report.passages} passages "
          f"({report.embedded} embedded) in {report.seconds:.1f} s")
    for label, names in (("added", report.added), ("changed", report.changed), ("removed", report.removed)):
        if names:
            print(f"  {label} ({len(names)}): {', '.join(names[:10])}{' …' if len(names) > 10 else ''}")
    for doc_id, why in report.skipped.items():
        print(f"  skipped {why}")
    if report.rebuilt:
        print(f"  rebuilt whole: {report.rebuilt}")
    if report.unchanged and not report.skipped:
        print("  up to date: nothing to do")
    return 0


def cmd_shard(args) -> int:
    out = Path(args.out) if args.out else Path(args.index).with_name(f"{Path(args.index).name}-shards")
    folders = split_index(args.index, out, args.shards)
    info = json.loads((out / "shards.json").read_text(encoding="utf-8"))
    print(f"{args.index} split into {len(folders)} shards at {out}: "
          f"{info['documents']} documents, {info['passages']} passages")
    for name, counts in zip(info["shards"], info["counts"]):
        print(f"  {name}: {counts['documents']} documents, {counts['passages']} passages")
    return 0


def cmd_ask(args) -> int:
    col = _collection(args).open()
    filters = {"doc_ids": args.doc or None, "sites": args.site or None, "since": args.since, "until": args.until}
    if args.question == "-":
        failed = 0
        for line in _stdin_lines():
            if not line.strip():
                continue
            try:
                print(json.dumps(col.ask(line, k=args.k, **filters).to_dict(), ensure_ascii=False), flush=True)
            except ValueError as exc:
                failed += 1
                print(json.dumps({"question": _shown(line.rstrip("\r\n")), "error": _shown(str(exc))},
                                 ensure_ascii=False), flush=True)
        return 1 if failed else 0
    answer = col.ask(args.question, k=args.k, **filters)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(render_text(answer))
    return 0


def cmd_document(args) -> int:
    from qa.citations import cite

    doc = _collection(args).open().document(args.doc_id)
    if args.json:
        print(json.dumps({"doc_id": doc.doc_id, "title": doc.title, "text": doc.text, "source": doc.source.to_dict()},
                         ensure_ascii=False, indent=2))
        return 0
    pages = f", {len(doc.pages)} pages" if doc.pages is not None else ""
    print(f"{doc.doc_id}: {cite(doc.title, doc.source.to_dict())}")
    print(f"  author: {doc.source.author or '-'}; {len(doc.text):,} characters{pages}")
    print()
    print(doc.text)
    return 0


def cmd_eval(args) -> int:
    from qa.evaluation import evaluate, load_questions

    try:
        questions = load_questions(args.file)
    except FileNotFoundError:
        raise UserError(f"no such file: {args.file}") from None
    col = _collection(args).open()
    report = evaluate(questions, lambda q: col.ask(q, k=max(args.k, 5)), lambda d: col.document(d).text)
    m = report.metrics()
    if args.json:
        print(json.dumps({**m, "missed": report.missed, "false_abstention_questions": report.false_abstentions,
                          "answered_unanswerable": report.answered_unanswerable}, indent=2))
        return 0
    print(f"{len(questions)} questions from {args.file}: {m['answerable']} answerable, {m['unanswerable']} not")
    print(f"hit@1 {m['hit@1']:.3f}   hit@3 {m['hit@3']:.3f}   hit@5 {m['hit@5']:.3f}   MRR {m['mrr']:.3f}")
    print(f"highlight on evidence (in the first passage that holds it): {m['highlight_on_evidence']:.3f}")
    print(f"abstained on unanswerable: {m['abstained']}/{m['unanswerable']}   "
          f"false abstentions: {m['false_abstentions']}/{m['answerable']}")
    print(f"every quote is the document's exact text: {'yes' if m['quotes_exact'] else 'NO'}")
    for miss in report.missed:
        print(f"  missed at rank 1: {miss['question']!r} (answer in {miss['doc']}, "
              f"found at rank {miss['rank']}, top was {miss['got']})")
    for q in report.false_abstentions:
        print(f"  abstained but answerable: {q!r}")
    for q in report.answered_unanswerable:
        print(f"  answered but unanswerable: {q!r}")
    return 0


def cmd_bench_quality(args) -> int:
    from qa.bench.beir import run_benchmark
    from qa.backends import default_embedder
    from qa.index import IndexParams
    from qa.retrieval import MODES, SearchParams

    if args.index and Path(args.index).resolve() == Path(DEFAULT_INDEX).resolve():
        raise UserError("bench-quality never writes into index/ (the app's index); give another --index or none")
    embedder = default_embedder()
    index_params = IndexParams(max_tokens=args.max_tokens, overlap_tokens=args.overlap, title_prefix=args.title_prefix)
    search_params = SearchParams(fusion=args.fusion, dense_weight=args.dense_weight, rrf_k=args.rrf_k)
    result = run_benchmark(args.path, embedder=embedder, index_params=index_params, search_params=search_params,
                           index_dir=args.index, modes=args.modes or MODES, depth=args.depth,
                           show_progress=not args.quiet)
    info = result["index"]
    if args.json:
        print(json.dumps({"params": {**vars(index_params), "fusion": args.fusion, "dense_weight": args.dense_weight,
                                     "rrf_k": args.rrf_k, "depth": args.depth},
                          "index": info, "queries": result["queries"],
                          "modes": [{k: v for k, v in vars(m).items() if k != "per_query"} for m in result["modes"]]}))
        return 0
    print(f"{args.path}: {info['documents']} documents, {info['passages']} passages "
          f"({info['embedded']} embedded in {info['seconds']:.0f} s); {result['queries']} test queries")
    print(f"passages {args.max_tokens} tokens, overlap {args.overlap}, title prefix {args.title_prefix}; "
          f"fusion {args.fusion} (dense weight {args.dense_weight}), depth {args.depth}")
    print(f"{'mode':8} {'nDCG@10':>8} {'R@100':>8} {'MRR@10':>8} {'seconds':>8}")
    for m in result["modes"]:
        print(f"{m.mode:8} {m.ndcg10:8.4f} {m.recall100:8.4f} {m.mrr10:8.4f} {m.seconds:8.1f}")
    return 0


def cmd_train_reranker(args) -> int:
    from dataclasses import replace

    from qa.train_reranker import TrainSettings, train_reranker

    settings = TrainSettings()
    changes = {k: getattr(args, k) for k in ("layers", "groups", "hole_share", "dropout", "precision", "seed")
               if getattr(args, k) is not None}
    for name in ("hole_share", "dropout"):
        if not 0.0 <= changes.get(name, 0.0) < 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must lie in [0, 1), got {changes[name]}")
    report = train_reranker(args.data, args.out, work=args.work, settings=replace(settings, **changes),
                            show_progress=not args.quiet)
    print(json.dumps(report, indent=2))
    print(f"wrote {report['out']} (sha256 {report['sha256']})")
    return 0


def cmd_calibrate_reranker(args) -> int:
    from qa.train_reranker import recalibrate_reranker

    report = recalibrate_reranker(args.data, args.weights, args.out, work=args.work,
                                  false_abstention=args.false_abstention, show_progress=not args.quiet)
    print(json.dumps(report, indent=2))
    print(f"wrote {report['out']} (sha256 {report['sha256']})")
    return 0


def cmd_bench_relevance(args) -> int:
    from dataclasses import asdict, replace

    from qa.bench.relevance import scifact_ndcg, score_squad, seed_figures, squad_test_corpus
    from qa.backends import default_embedder
    from qa.index import update_index
    from qa.reranker_backends import load_reranker
    from qa.retrieval import Searcher

    work = Path(args.work)
    embedder = default_embedder()
    rerankers = ({Path(w).stem: load_reranker(args.backend, path=w, expected_sha256=None) for w in args.weights}
                 if args.weights else {"shipped": load_reranker(args.backend)})
    base = SearchParams()
    settings = {"first stage": (replace(base, rerank_depth=0), None)}
    for label, reranker in rerankers.items():
        for d in args.depths:
            settings[f"{label} top {d}"] = (replace(base, rerank_depth=d), reranker)

    def searchers(index):
        return {name: Searcher(index, embedder, params, reranker=r) for name, (params, r) in settings.items()}

    index, questions = squad_test_corpus(args.data, work / "squad-test", show_progress=not args.quiet)
    rows = [score_squad(s, questions, name, answerable=args.questions, show_progress=not args.quiet)
            for name, s in searchers(index).items()]
    result = {"squad_test": [asdict(r) for r in rows], "backends": {k: r.backend for k, r in rerankers.items()},
              "thresholds": {k: r.calibration.threshold for k, r in rerankers.items()}}
    if args.seeds:
        seed_index, _ = update_index(DEFAULT_CORPUS, work / "seeds-index", embedder=embedder, show_progress=False)
        result["seeds"] = {name: seed_figures(s, args.seeds) for name, s in searchers(seed_index).items()}
    if args.scifact:
        result["scifact_ndcg10"] = scifact_ndcg(
            lambda ix: {name: (s, s.reranker is not None) for name, s in searchers(ix).items()},
            args.scifact, work / "scifact", show_progress=not args.quiet)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"held-out SQuAD test articles ({rows[0].extra['answerable']} answerable questions, "
          f"{rows[0].extra['holes']} holes, {rows[0].extra['strict_holes']} of them with the answer text nowhere "
          f"else in their article, {rows[0].extra['filtered']} filtered out)")
    for label, reranker in rerankers.items():
        print(f"  {label}: {reranker.backend}, threshold {reranker.calibration.threshold:.3f}")
    print(f"{'setting':34} {'hit@1':>6} {'hit@5':>6} {'hl@1':>6} {'false abst':>10} {'holes abst':>10} "
          f"{'strict':>6} {'filt abst':>9} {'p50 ms':>7}")
    for r in rows:
        print(f"{r.setting:34} {r.hit1:6.3f} {r.hit5:6.3f} {r.highlight1:6.3f} {r.false_abstention:10.3f} "
              f"{r.holes_abstained:10.3f} {r.strict_holes_abstained:6.3f} {r.filtered_abstained:9.3f} {r.p50_ms:7.1f}")
    if "seeds" in result:
        print("seed questions:")
        for name, m in result["seeds"].items():
            print(f"  {name:32} hit@1 {m['hit@1']:.3f} hit@5 {m['hit@5']:.3f} highlight {m['highlight_on_evidence']:.3f} "
                  f"abstained {m['abstained']}/{m['unanswerable']} false {m['false_abstentions']} "
                  f"p50 {m['p50_ms']:.1f} ms")
    if "scifact_ndcg10" in result:
        print("SciFact nDCG@10:")
        for name, v in result["scifact_ndcg10"].items():
            print(f"  {name:32} {v:.4f}")
    return 0


def _engine_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help=f"local (this process) or ray: {what} on Ray (default: local)")
    p.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                   help="with --engine ray: join this Ray cluster (default: start a local Ray)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m qa", description="Answer questions with verbatim, cited quotes.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and decisions")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("index", help="build or update the index of a corpus folder")
    p.add_argument("--corpus", default=DEFAULT_CORPUS,
                   help="folder of documents: .txt, .md, .html, .htm, .pdf, .docx (default: seeds)")
    p.add_argument("--index", default=DEFAULT_INDEX, help="index folder (default: index)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--allow-empty", action="store_true", help="let an empty corpus folder empty an existing index")
    p.add_argument("--json", action="store_true", help="print what changed, and where the time went, as JSON")
    _engine_options(p, "read, chunk and embed")
    p.add_argument("--workers", type=int, default=None, help="with --engine ray: embedder actors (default: one a CPU)")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("shard", help="split an index into shards by document, balanced by passages")
    p.add_argument("--index", default=DEFAULT_INDEX, help="the index to split (default: index)")
    p.add_argument("--shards", type=int, required=True, help="how many shards")
    p.add_argument("--out", default=None, help="the shard set's folder (default: INDEX-shards beside the index)")
    p.set_defaults(func=cmd_shard)

    p = sub.add_parser("ask", help="ask a question; '-' reads one question per line from stdin")
    p.add_argument("question", help="the question, or - for questions on stdin (JSON lines out)")
    p.add_argument("--index", default=DEFAULT_INDEX)
    p.add_argument("-k", type=int, default=5, help="passages to return (default 5)")
    p.add_argument("--json", action="store_true", help="print the result contract as JSON")
    p.add_argument("--doc", action="append", metavar="DOC_ID", help="search only this document (repeatable)")
    p.add_argument("--site", action="append", metavar="SITE", help="search only documents from this site (repeatable)")
    p.add_argument("--since", metavar="YYYY-MM-DD", help="search only documents dated on or after this day")
    p.add_argument("--until", metavar="YYYY-MM-DD", help="search only documents dated on or before this day")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _engine_options(p, "search the shards of a shard set")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("document", help="print a document's indexed text and source details")
    p.add_argument("doc_id")
    p.add_argument("--index", default=DEFAULT_INDEX)
    p.add_argument("--json", action="store_true", help="print {doc_id, title, text, source}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_document)

    p = sub.add_parser("eval", help="hit@k, MRR and abstention on a questions JSONL file")
    p.add_argument("file")
    p.add_argument("--index", default=DEFAULT_INDEX)
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench-quality", help="nDCG@10, Recall@100, MRR@10 on a BEIR folder: dense, BM25, hybrid")
    p.add_argument("path", help="BEIR folder with corpus.jsonl, queries.jsonl, qrels/test.tsv")
    p.add_argument("--index", default=None,
                   help="where to build its index (default: a temporary folder); reused when rerun with the same "
                        "passage parameters, so only search settings change")
    p.add_argument("--max-tokens", type=int, default=IndexParams().max_tokens)
    p.add_argument("--overlap", type=int, default=IndexParams().overlap_tokens)
    p.add_argument("--title-prefix", action=argparse.BooleanOptionalAction, default=IndexParams().title_prefix)
    p.add_argument("--fusion", choices=("rrf", "linear"), default=SearchParams().fusion)
    p.add_argument("--dense-weight", type=float, default=SearchParams().dense_weight)
    p.add_argument("--rrf-k", type=int, default=SearchParams().rrf_k)
    p.add_argument("--depth", type=int, default=1000, help="candidates per list (default 1000)")
    p.add_argument("--modes", nargs="+", choices=("hybrid", "dense", "bm25"))
    p.add_argument("--json", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_bench_quality)

    p = sub.add_parser("train-reranker", help="train the relevance model from SQuAD and the bundled weights")
    p.add_argument("--data", required=True, help="the SQuAD v1.1 train folder (train-v1.1.json)")
    p.add_argument("--out", required=True, help="the weights file to write, e.g. models/reranker.safetensors")
    p.add_argument("--work", default=None,
                   help="folder for candidates, indexes and checkpoints (default .cache/train-reranker); "
                        "rerun with the same folder to resume")
    p.add_argument("--layers", type=int, default=None, help="transformer layers kept (default 6)")
    p.add_argument("--groups", type=int, default=None, help="training questions (default 16000)")
    p.add_argument("--hole-share", type=float, default=None,
                   help="share of training questions whose answering paragraph is left out (default 0.15)")
    p.add_argument("--dropout", type=float, default=None,
                   help="hidden and attention dropout while training (default 0: off)")
    p.add_argument("--precision", default=None, choices=("auto", "bf16", "fp32"),
                   help="bf16 autocast or fp32 (default auto: bf16 only where the CPU computes in it)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_train_reranker)

    p = sub.add_parser("calibrate-reranker",
                       help="calibrate a trained relevance model again on the validation articles (no training)")
    p.add_argument("--data", required=True, help="the SQuAD v1.1 train folder (train-v1.1.json)")
    p.add_argument("--weights", default="models/reranker.safetensors", help="the trained file (default %(default)s)")
    p.add_argument("--out", required=True, help="the weights file to write (may be --weights itself)")
    p.add_argument("--work", default=None, help="folder for the validation corpus and index "
                                                "(default .cache/train-reranker)")
    p.add_argument("--false-abstention", type=float, default=None,
                   help="share of answerable validation questions the threshold may refuse (default 0.04)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_calibrate_reranker)

    p = sub.add_parser("bench-relevance",
                       help="answer quality on held-out SQuAD articles, SciFact and the seeds, with and without reranking")
    p.add_argument("--data", required=True, help="the SQuAD v1.1 train folder")
    p.add_argument("--scifact", default=None, help="a BEIR SciFact folder: also report nDCG@10")
    p.add_argument("--seeds", default=None, help="the seed questions JSONL: also report qa eval's figures")
    p.add_argument("--weights", nargs="+", default=None,
                   help="relevance model files to measure, side by side (default: the shipped one)")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "openvino", "onnx"))
    p.add_argument("--depths", type=int, nargs="+", default=[SearchParams().rerank_depth],
                   help="passages reranked, one row each (default %(default)s)")
    p.add_argument("--questions", type=int, default=1000, help="answerable test questions asked (default 1000)")
    p.add_argument("--work", default=".cache/bench-relevance", help="where its corpora and indexes are kept")
    p.add_argument("--json", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_bench_relevance)

    p = sub.add_parser("bench", add_help=False,
                       help="speed of embedder backends and vector indexes (python -m qa bench --help)")
    p.add_argument("options", nargs=argparse.REMAINDER)  # main() hands them to qa.bench
    p = sub.add_parser("bench-build", add_help=False,
                       help="qa index against a plain torch encode, and where the time goes "
                            "(python -m qa bench-build --help)")
    p.add_argument("options", nargs=argparse.REMAINDER)  # main() hands them to qa.bench.build
    p = sub.add_parser("bench-scale", add_help=False,
                       help="Ray builds and sharded search (python -m qa bench-scale build|query --help)")
    p.add_argument("options", nargs=argparse.REMAINDER)  # main() hands them to qa.bench.distributed
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # its options are qa.bench's own
        from qa.bench import speed as bench

        return bench.main(argv[1:])
    if argv[:1] == ["bench-build"]:
        from qa.bench import build

        return build.main(argv[1:])
    if argv[:1] == ["bench-scale"]:  # Ray builds and sharded search: qa.bench.distributed's options
        from qa.bench import distributed

        return distributed.main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        for noisy in ("faiss", "sentence_transformers", "bm25s", "httpx"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        _quiet_transformers()
    try:
        if hasattr(args, "k"):
            check_count(args.k, "-k", low=1)
        return args.func(args)
    except (UserError, ValueError, OSError, KeyError, DocumentError, ModelError, IndexFormatError,
            IndexBusyError, ImportError, ShardError, RayUnavailableError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {_shown(str(msg))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the index is unchanged", file=sys.stderr)
        return 130


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
