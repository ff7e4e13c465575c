"""Rows of a .npy file read on demand with ``pread``: big arrays that are never loaded whole.

A memory map would do the same reads, but every page it touches counts as the
process's memory, and the kernel maps the cached pages around each touched row
as well: a few hundred questions against a million-passage index made a memory
map of its vectors and sentences count for gigabytes. Reading the rows asked for
costs one system call per run of consecutive rows (a question reads about 130),
read straight into the array returned.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class NpyRows:
    """A read-only 1-D or 2-D .npy array whose rows are read from disk when indexed.

    ``rows[i]``, ``rows[a:b]`` and ``rows[array_of_indices]`` return NumPy arrays;
    ``np.asarray(rows)`` reads it all. The file stays open for the object's life,
    so it keeps reading even after the file is unlinked (a merged-away segment).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        try:
            with open(self.path, "rb") as f:
                major, _ = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(f)
                self._offset = f.tell()
            size = os.fstat(self._fd).st_size
        except BaseException:
            os.close(self._fd)
            raise
        if fortran or dtype.hasobject or len(shape) not in (1, 2):
            os.close(self._fd)
            raise ValueError(f"{self.path}: not a C-ordered 1-D or 2-D array of numbers")
        self.shape, self.dtype = tuple(shape), dtype
        self._row_bytes = dtype.itemsize * (shape[1] if len(shape) == 2 else 1)
        if size < self._offset + self._row_bytes * shape[0]:
            os.close(self._fd)
            raise ValueError(f"{self.path}: the file is shorter than its header says")

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _read(self, start: int, stop: int) -> np.ndarray:
        count = max(0, stop - start)
        data = os.pread(self._fd, count * self._row_bytes, self._offset + start * self._row_bytes) if count else b""
        return np.frombuffer(data, dtype=self.dtype).reshape((count, *self.shape[1:]))

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"row {key} of {len(self)}")
            return self._read(i, i + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            block = self._read(start, stop) if start < stop else self._read(0, 0)
            return block if step == 1 else block[::step]
        rows = np.asarray(key, dtype=np.int64).ravel()
        if len(rows) == 0:
            return self._read(0, 0)
        if rows.min() < 0 or rows.max() >= len(self):
            raise IndexError(f"rows out of range 0..{len(self) - 1}")
        # Each run of consecutive rows is read straight into its place in one array:
        # one system call and no copies per run (a re-score reads ~100 scattered rows).
        wanted, where = np.unique(rows, return_inverse=True)
        out = np.empty((len(wanted), *self.shape[1:]), dtype=self.dtype)
        buffer = memoryview(out.reshape(-1).view(np.uint8))
        first_rows = wanted.tolist()
        size = self._row_bytes
        lo = 0
        for hi in (np.flatnonzero(np.diff(wanted) != 1) + 1).tolist() + [len(wanted)]:
            want = (hi - lo) * size
            if os.preadv(self._fd, [buffer[lo * size : hi * size]], self._offset + first_rows[lo] * size) != want:
                raise OSError(f"{self.path}: short read")
            lo = hi
        if len(wanted) == len(rows) and (where == np.arange(len(rows))).all():
            return out  # asked in ascending order without repeats (the usual case)
        return out[where.ravel()]

    def __array__(self, dtype=None, copy=None):
        whole = self._read(0, len(self))
        return whole if dtype is None else whole.astype(dtype)
