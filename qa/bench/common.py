"""What every benchmark shares: where the repository and the shared data are, the load average, tables."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[2]  # the repository: qa/bench/common.py -> qa/bench -> qa -> root
SHARED = ROOT.parent / "shared"  # read at run time, never copied into the repository
DEFAULT_SCIFACT = SHARED / "bench" / "scifact"


def default_bench_cache() -> Path:
    return ROOT / ".cache" / "bench"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, for a table's last column."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info = f.read()
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in info]
        cpu += f" ({', '.join(flags)})"
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _cell(value, fmt: str | None = None) -> str:
    if value is None:
        return "-"
    if fmt:
        return format(value, fmt)
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) <= 1 else f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_table(rows: Sequence, columns: Sequence[tuple]) -> str:
    """A Markdown table of dataclass rows; ``columns`` are (attribute, heading[, format spec])."""
    cells = [[_cell(getattr(r, col[0]), col[2] if len(col) > 2 else None) for col in columns] for r in rows]
    heads = [col[1] for col in columns]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(heads)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    return "\n".join([line(heads), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])
