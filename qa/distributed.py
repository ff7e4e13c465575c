"""The index built on Ray: reading, extraction, chunking and embedding as a Ray Data pipeline.

``ray_update_index`` does what ``qa.index.update_index`` does, with the work spread over
a Ray cluster (or a local Ray): the same diff against the corpus, the same segments
written by the same writer, the same atomic manifest, committed every
``Layout.batch_passages`` passages. Only where the passages and their vectors come from
differs:

    corpus files --map_batches(_read_documents, tasks)--> documents, passages, tokens
                 --map_batches(_Embed, a pool of actors)--> + passage and sentence vectors
                 --> the driver, in corpus order --> segments and manifest (qa.index)

Each embedder actor loads the hash-checked model once (``default_embedder``). Ray
restarts an actor that dies and runs its batch again, so a killed worker costs time, not
passages; a killed driver leaves the last committed manifest, and running again goes
on from there (committed documents are recognised and skipped, as in a local build).

Every node reads the corpus files itself: the corpus folder must be at the same path on
every node (a shared file system). The index folder is written by the driver only.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from qa.backends import default_embedder
from qa.chunking import Chunker, Passage, count_tiktokens
from qa.corpus import Document
from qa.embedding import WordPieces, bundled_model_path, check_model_files
from qa.extract import Source
from qa.index import Index, IndexParams, Layout, UpdateReport, _Piece, _Writer, read_and_chunk, update_index
from qa.lexical import Postings

logger = logging.getLogger(__name__)

DOCS_PER_TASK = 16  # documents a read task or an embedder call takes at a time
READER_CPUS = 0.25  # what a read task reserves: the embedders keep the cores
EMBEDDER_CPUS = 0.75


class ModelInfo(WordPieces):
    """What the driver needs of the model without loading it: name, hash, dimension, word pieces.

    ``backend`` is the one the workers report (set as their vectors arrive).
    """

    def __init__(self, model_dir: str | os.PathLike | None = None):
        self.model_dir = Path(model_dir) if model_dir else bundled_model_path()
        self.sha256 = check_model_files(self.model_dir)
        self.backend: str | None = None
        self._open_counter(self.model_dir)


# -- on the workers ---------------------------------------------------------------


@lru_cache(maxsize=4)
def _chunker(max_tokens: int, overlap_tokens: int, title_prefix: bool) -> tuple[Chunker, WordPieces, IndexParams]:
    """One tokenizer and chunker per worker process (a task's worker is reused)."""
    params = IndexParams(max_tokens, overlap_tokens, title_prefix)
    pieces = WordPieces()
    model_dir = bundled_model_path()
    check_model_files(model_dir)
    pieces._open_counter(model_dir)
    return Chunker(params.chunk_params(), count_tokens=count_tiktokens,
                   count_wordpieces=pieces.count_wordpieces), pieces, params


def _read_documents(batch: dict, *, params: dict) -> dict:
    """Ray Data stage 1: read, extract, chunk and tokenize a batch of corpus files.

    Returns:
        {"doc_id": [...], "record": [JSON text per document]}: the stat entry, and either
        the document and its passages, embedding inputs and BM25 tokens, or why it was skipped.
    """
    chunker, pieces, index_params = _chunker(params["max_tokens"], params["overlap_tokens"], params["title_prefix"])
    records = []
    for doc_id, path in zip(batch["doc_id"], batch["path"]):
        read = read_and_chunk(str(doc_id), Path(str(path)), chunker, index_params, pieces)
        if read.error is not None:
            records.append(json.dumps({"entry": read.entry, "skipped": read.error}, ensure_ascii=False))
            continue
        doc = read.doc
        records.append(json.dumps({
            "entry": read.entry,
            "document": {"title": doc.title, "text": doc.text, "source": doc.source.to_dict(),
                         "pages": list(doc.pages) if doc.pages is not None else None},
            "passages": [[p.start, p.end, [list(s) for s in p.sentences]] for p in read.passages],
            "inputs": [[text, [list(s) for s in spans]] for text, spans in read.inputs],
            "tokens": read.tokens,
        }, ensure_ascii=False))
    return {"doc_id": [str(d) for d in batch["doc_id"]], "record": records}


class _Embed:
    """Ray Data stage 2, an actor: the checked model loaded once, passages embedded batch by batch."""

    def __init__(self):
        self.embedder = default_embedder()

    def __call__(self, batch: dict) -> dict:
        records = [json.loads(r) for r in batch["record"]]
        texts = [t for r in records for t, _ in r.get("inputs", ())]
        spans = [[tuple(s) for s in ss] for r in records for _, ss in r.get("inputs", ())]
        vectors, sentences = self.embedder.embed_passages(texts, spans)
        sentences = sentences.astype(np.float16)
        out_vectors, out_sentences, out_records = [], [], []
        row = sent = 0
        for r in records:
            n = len(r.get("passages", ()))
            m = sum(len(s) for _, _, s in r.get("passages", ()))
            out_vectors.append(vectors[row : row + n].tobytes())
            out_sentences.append(sentences[sent : sent + m].tobytes())
            row, sent = row + n, sent + m
            r.pop("inputs", None)
            out_records.append(json.dumps(r, ensure_ascii=False))
        backend = getattr(self.embedder, "backend", "torch")
        return {"doc_id": list(batch["doc_id"]), "record": out_records, "vectors": out_vectors,
                "sentences": out_sentences, "backend": [backend] * len(records)}


# -- on the driver -------------------------------------------------------------------


def _pipeline(ray, files: dict[str, Path], doc_ids: list[str], params: IndexParams, workers: int):
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # documents come back in corpus order
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    items = [{"doc_id": d, "path": os.path.abspath(files[d])} for d in doc_ids]
    blocks = max(1, min(len(items), -(-len(items) // DOCS_PER_TASK)))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = ds.map_batches(_read_documents, fn_kwargs={"params": asdict(params)}, batch_size=DOCS_PER_TASK,
                        batch_format="numpy", num_cpus=READER_CPUS,
                        compute=ray.data.TaskPoolStrategy(size=max(1, workers)))
    return ds.map_batches(_Embed, batch_size=DOCS_PER_TASK, batch_format="numpy", num_cpus=EMBEDDER_CPUS,
                          compute=ray.data.ActorPoolStrategy(size=workers))


class _RayWriter(_Writer):
    """``qa.index``'s writer, fed by the Ray pipeline instead of embedding in this process."""

    def __init__(self, *args, ray, workers: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.ray = ray
        self.workers = workers

    def _batches(self, files: dict[str, Path], doc_ids: list[str], manifest: dict
                 ) -> Iterator[tuple[_Piece | None, int, bool]]:
        if not doc_ids:
            return
        rows = _pipeline(self.ray, files, doc_ids, self.params, self.workers).iter_rows()
        docs, entries, passages, vectors, sentences, tokens, size = [], [], [], [], [], [], 0
        backends: set[str] = set()
        for k, row in enumerate(rows):
            doc_id, record = str(row["doc_id"]), json.loads(row["record"])
            if doc_id != doc_ids[k]:
                raise RuntimeError(f"the Ray pipeline returned {doc_id} where {doc_ids[k]} was due")
            st = record["entry"]
            size += st["size"]
            last = k == len(doc_ids) - 1
            if "skipped" in record:
                logger.warning("skipped %s", record["skipped"])
                self.report.skipped[doc_id] = record["skipped"]
                manifest["skipped"][doc_id] = {"reason": record["skipped"], **st}
            else:
                manifest["skipped"].pop(doc_id, None)
                manifest["restat"].pop(doc_id, None)
                d = record["document"]
                doc = Document(doc_id, d["title"], d["text"], Source.from_dict(d["source"]),
                               tuple(d["pages"]) if d["pages"] is not None else None)
                docs.append(doc)
                entries.append(st)
                passages.extend(Passage(doc_id, a, b, tuple(tuple(s) for s in ss)) for a, b, ss in record["passages"])
                vectors.append(np.frombuffer(row["vectors"], dtype=np.float32).reshape(-1, self.embedder.dim))
                sentences.append(np.frombuffer(row["sentences"], dtype=np.float16).reshape(-1, self.embedder.dim))
                tokens.extend(record["tokens"])
                backends.add(str(row["backend"]))
                self.embedder.backend = str(row["backend"])
            if len(passages) >= self.layout.batch_passages or last:
                piece = self._ray_piece(docs, entries, passages, vectors, sentences, tokens, backends) if docs else None
                yield piece, size, last
                docs, entries, passages, vectors, sentences, tokens, size = [], [], [], [], [], [], 0
                backends = set()

    def _ray_piece(self, docs, entries, passages, vectors, sentences, tokens, backends) -> _Piece:
        by_id = {d.doc_id: i for i, d in enumerate(docs)}
        self.report.embedded += len(passages)
        table = np.array([(by_id[p.doc_id], p.start, p.end) for p in passages], dtype=np.int32).reshape(-1, 3)
        counts = np.array([len(p.sentences) for p in passages], dtype=np.int64)
        sentence_rows = np.zeros(len(passages) + 1, dtype=np.int64)
        np.cumsum(counts, out=sentence_rows[1:])
        spans = np.array([s for p in passages for s in p.sentences], dtype=np.int32).reshape(-1, 2)
        dim = self.embedder.dim
        vectors = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
        sentences = np.concatenate(sentences) if sentences else np.zeros((0, dim), np.float16)
        if len(vectors) != len(passages) or len(sentences) != len(spans):
            raise RuntimeError("the Ray pipeline returned vectors that do not match the passages")
        return _Piece(docs, entries, table, sentence_rows, spans, vectors, np.arange(len(passages)), sentences,
                      np.arange(len(spans)), Postings.build(tokens), np.arange(len(passages)),
                      tuple(sorted(backends)))


def ray_update_index(
    corpus_dir: str | os.PathLike,
    index_dir: str | os.PathLike,
    *,
    address: str | None = None,
    workers: int | None = None,
    params: IndexParams | None = None,
    layout: Layout | None = None,
    only: Iterable[str] | None = None,
    model: WordPieces | None = None,
    show_progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[Index, UpdateReport]:
    """``qa.index.update_index`` with reading, chunking and embedding on Ray.

    Args:
        address: a Ray cluster's address (``host:port`` of its head); None starts a
            local Ray with this machine's cores.
        workers: embedder actors (default: one per CPU the cluster offers).
        model: the model's identity for the manifest (default ``ModelInfo()``: the
            bundled, hash-checked weights; the workers load them themselves).
        Others: as ``update_index``.

    Returns:
        (the new Index, an UpdateReport of what changed).

    Raises:
        FileNotFoundError: the corpus folder does not exist.
        IndexBusyError: another process is updating the same index.
        RayUnavailableError: Ray is not installed or the cluster does not answer.
    """
    from qa.ray_engine import start_ray

    params = params or IndexParams()
    layout = layout or Layout()
    index_dir = Path(index_dir)
    model = model or ModelInfo()

    def make_writer(index: Index, diff, report: UpdateReport) -> "_RayWriter":
        model.backend = model.backend or index.manifest["model"].get("backend")
        ray = start_ray(address) if diff.added or diff.changed else None  # removals need no workers
        actors = workers
        if actors is None:
            actors = max(1, int(ray.cluster_resources().get("CPU", 1) // 1)) if ray is not None else 1
        return _RayWriter(index_dir, index, embedder=model, params=params, layout=layout, report=report,
                          ray=ray, workers=actors)

    return update_index(corpus_dir, index_dir, embedder=model, params=params, layout=layout, only=only,
                        show_progress=show_progress, on_progress=on_progress, make_writer=make_writer)

