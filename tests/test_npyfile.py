"""qa.npyfile: rows of a .npy file read on demand equal the array's own rows, however asked."""

from __future__ import annotations

import numpy as np
import pytest

from qa.npyfile import NpyRows


@pytest.fixture()
def arrays(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.random((300, 5), dtype=np.float32)
    vector = np.arange(40, dtype=np.int64) * 3
    np.save(tmp_path / "matrix.npy", matrix)
    np.save(tmp_path / "vector.npy", vector)
    return (matrix, NpyRows(tmp_path / "matrix.npy")), (vector, NpyRows(tmp_path / "vector.npy"))


def test_rows_asked_by_index_array_equal_numpy_fancy_indexing(arrays):
    rng = np.random.default_rng(1)
    for array, rows in arrays:
        n = len(array)
        keys = [np.sort(rng.choice(n, 20, replace=False)),  # ascending, no repeats: read in place
                rng.choice(n, 25),  # any order, with repeats
                np.arange(n)[::-1], [n - 1, 0, n - 1], [7], np.array([[1, 2], [9, 3]]),
                np.r_[10:20, 30:31, 2:5]]  # runs of consecutive rows and single ones
        for key in keys:
            got = rows[key]
            want = array[np.asarray(key).ravel()]
            assert got.dtype == array.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_ints_slices_empty_and_out_of_range(arrays):
    (matrix, rows), _ = arrays
    np.testing.assert_array_equal(rows[5], matrix[5])
    np.testing.assert_array_equal(rows[-1], matrix[-1])
    np.testing.assert_array_equal(rows[10:50:7], matrix[10:50:7])
    assert rows[[]].shape == (0, 5)
    with pytest.raises(IndexError):
        rows[[0, 300]]
    with pytest.raises(IndexError):
        rows[300]
