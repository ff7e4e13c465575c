"""Benchmarks: how fast qa is and how good its answers are, measured on this machine.

Only the command line (qa/cli.py) imports these; nothing else in the library does.

    speed.py      python -m qa bench: embedders, build, index end to end, web app (one run)
    scale.py      the index at N passages (replicated SciFact), measured in a fresh process
    formats.py    python -m qa.bench.formats: extraction on the formats fixtures; a PDF against the same text
    build.py      python -m qa bench-build: qa index against a plain torch encode, and where the time goes
    relevance.py  python -m qa bench-relevance: held-out answer quality, with and without the relevance model
    beir.py       python -m qa bench-quality: nDCG@10, Recall@100, MRR@10 on a BEIR folder (SciFact)
    common.py     paths to the repository and ../shared, the load average, Markdown tables
"""
