"""Exact nearest-centroid search with an int8 pre-filter that is certified by error bounds.

VisE mining assigns every comment to the nearest of 5,000 centroids in 256 dimensions (Section 3.1 of the paper):
a float32 ``points x centroids`` product that is 70% of step 2 on one core. :class:`CentroidSearch` returns the same
index as that product, about twice as fast on a CPU with int8 dot-product instructions (AVX512-VNNI, AMX):

1. **Score in int8.** The score to maximise, ``x . c_j - |c_j|^2 / 2``, is a dot product of extended vectors:
   ``x`` gains ``m`` coordinates equal to a constant ``kappa``, ``c_j`` gains ``m`` equal to
   ``-|c_j|^2 / (2 kappa m)``. Centroids are quantised once with one scale (``c'_j ~ a q_j``); points per block of
   rows sorted by their largest coordinate, so one scale fits each block (``x' ~ s p``). One integer GEMM
   (``torch._int_mm``, oneDNN's s8s8 kernel with int32 output) gives ``p . q_j``; ``s a`` is the same for the whole
   block, so the integers themselves are ranked, with no float epilogue.
2. **Bound the error.** ``x' . c'_j - s a p . q_j = (x' - s p) . a q_j + x' . (c'_j - a q_j)``, so by
   Cauchy-Schwarz the error is at most ``|x' - s p| |a q_j| + |x'| |c'_j - a q_j|`` (norms computed, not
   assumed, the extension's rounding included), plus a float32 slack.
3. **Keep every centroid that could win.** With ``j1`` the best integer score, the true best score is at least
   ``j1``'s float32 score; a centroid whose approximate score plus the largest bound falls below that cannot be
   the nearest. On the benchmark corpus about 5 of the 5,000 centroids remain per point.
4. **Re-rank the survivors in float32** (a gathered dot product each); ties go to the lower index, as
   ``argmax`` does.

The answer is the float32 nearest centroid (two centroids within float32 rounding of each other may be swapped,
as between any two BLAS libraries). Written by hand because no library offers an exact search of this shape
faster than a dense product: faiss' flat index is that product, its IVF and HNSW indexes are approximate
(measured 89-96% agreement at ``k = 5000``).

``method="auto"`` takes the int8 path when torch has the integer product, a self-check on a small problem
passes, the CPU reports int8 dot-product instructions (detected at run time), and the problem is large enough
(``k >= 256``, ``dim >= 16``); the float32 path otherwise. ``benchmarks/bench_mining.py`` measures both in one run.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> centroids = rng.standard_normal((300, 32)).astype(np.float32)
    >>> points = rng.standard_normal((1000, 32)).astype(np.float32)
    >>> search = CentroidSearch(centroids)
    >>> nearest = search(points)
    >>> brute = ((points[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    >>> bool((nearest == brute).all()), search.method in ("int8", "float32")
    (True, True)
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np

__all__ = ["CentroidSearch", "Method", "int8_search_available"]

Method = Literal["auto", "int8", "float32"]
_MIN_CENTROIDS, _MIN_DIM = 256, 16  # below this the float32 product is already cheap


@cache
def _int8_kernel_works() -> bool:
    """Whether torch has the int8 x int8 -> int32 matrix product and it is exact (checked on a small problem)."""
    try:
        import torch

        if not hasattr(torch, "_int_mm"):
            return False
        rng = np.random.default_rng(0)
        left = rng.integers(-127, 128, (24, 40), dtype=np.int8)
        right = rng.integers(-127, 128, (70, 40), dtype=np.int8)
        got = torch._int_mm(torch.from_numpy(left), torch.from_numpy(right).t()).numpy()
        return bool(np.array_equal(got, left.astype(np.int64) @ right.astype(np.int64).T))
    except Exception:  # any build without the op or with another signature: the float32 path
        return False


@cache
def _cpu_has_int8_dot_products() -> bool:
    import torch

    probes = ("_is_vnni_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def int8_search_available() -> bool:
    """Whether ``method="auto"`` may take the int8 path on this machine (op present and checked, VNNI or AMX)."""
    return _int8_kernel_works() and _cpu_has_int8_dot_products()


_MAX_BIAS_COLUMNS = 8


class _Int8Kernel:
    """Centroids quantised to int8 with one scale, and the augmented columns that carry the bias ``-|c_j|^2 / 2``.

    A point ``x`` is extended by ``m`` coordinates equal to ``kappa``, each centroid by ``m`` coordinates equal to
    ``h_j / (kappa m)``; the extended dot product is ``x . c_j + h_j``, the score to maximise, and one integer
    product (``torch._int_mm``, oneDNN's s8s8 GEMM with int32 output) computes its quantised form.
    """

    def __init__(self, centroids: np.ndarray, half: np.ndarray) -> None:
        exact = centroids.astype(np.float64)
        self.largest = float(np.abs(exact).max(initial=0.0))
        self.scale = self.largest / 127 or 1.0
        self.quantised = np.clip(np.rint(exact / self.scale), -127, 127).astype(np.int8)
        dequantised = self.scale * self.quantised.astype(np.float64)
        self._norms2 = (dequantised**2).sum(1)  # |a q_j|^2
        self.largest_norm = float(np.sqrt(self._norms2.max(initial=0.0)))
        self._errors2 = ((exact - dequantised) ** 2).sum(1)  # |c_j - a q_j|^2
        self._half = half.astype(np.float64)
        self.largest_half = float(np.abs(self._half).max(initial=0.0))

    def extended(self, kappa: float) -> tuple[object, int, float, float]:
        """The extended int8 centroids (a ``(dim + m, k)`` tensor) for points extended by ``kappa``.

        Returns:
            ``(matrix, m, largest_norm, largest_error)``: the largest ``|a q'_j|`` and ``|c'_j - a q'_j|`` of the
            extended centroids (in float64).
        """
        import torch

        wanted = self.largest_half / (kappa * self.largest) if self.largest > 0 else 1.0
        m = int(min(_MAX_BIAS_COLUMNS, max(1, np.ceil(wanted))))
        bias = self._half / (kappa * m)
        quantised = np.clip(np.rint(bias / self.scale), -127, 127)
        error = bias - self.scale * quantised  # clipped where m columns do not suffice: bounded all the same
        norms = np.sqrt(self._norms2 + m * (self.scale * quantised) ** 2)
        errors = np.sqrt(self._errors2 + m * error**2)
        matrix = np.empty((len(self.quantised), self.quantised.shape[1] + m), dtype=np.int8)
        matrix[:, : self.quantised.shape[1]] = self.quantised
        matrix[:, self.quantised.shape[1] :] = quantised.astype(np.int8)[:, None]
        return torch.from_numpy(matrix).t(), m, float(norms.max()), float(errors.max())


class CentroidSearch:
    """The index of each point's nearest centroid (Euclidean), exact up to float32 rounding.

    Args:
        centroids: ``(k, dim)`` array.
        method: ``"auto"`` (int8 pre-filter where :func:`int8_search_available` and the problem is large enough),
            ``"int8"`` (raises where the op is missing), or ``"float32"`` (the blocked dense product).
        block: Points per block (its scores stay in the cache).

    Attributes:
        method: The path taken, ``"int8"`` or ``"float32"``.
        candidates_per_point: On the int8 path, the mean number of centroids re-ranked per point in the last call.

    Raises:
        ValueError: ``centroids`` is not a finite 2-D array, or ``method`` is unknown or unavailable.

    Examples:
        >>> import numpy as np
        >>> search = CentroidSearch(np.array([[0.0, 0.0], [1.0, 1.0]], dtype=np.float32))
        >>> search(np.array([[0.1, 0.2], [0.9, 0.7]], dtype=np.float32)).tolist()
        [0, 1]
    """

    def __init__(self, centroids: np.ndarray, method: Method = "auto", block: int = 256) -> None:
        centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        if centroids.ndim != 2 or not np.isfinite(centroids).all():
            raise ValueError(f"centroids must be a finite (k, dim) array, got shape {centroids.shape}")
        if method not in ("auto", "int8", "float32"):
            raise ValueError(f"method must be 'auto', 'int8' or 'float32', got {method!r}")
        if method == "int8" and not _int8_kernel_works():
            raise ValueError("method='int8' needs torch with oneDNN's qlinear_pointwise op; use 'auto' or 'float32'")
        self.centroids = centroids
        self.block = int(block)
        self.candidates_per_point = 0.0
        self._half = -0.5 * (centroids**2).sum(1)  # float32, as the dense path scores: x.c - |c|^2 / 2
        large = len(centroids) >= _MIN_CENTROIDS and centroids.shape[1] >= _MIN_DIM
        self.method = (
            "int8" if method == "int8" or (method == "auto" and large and int8_search_available()) else ("float32")
        )
        if self.method == "int8":
            self._kernel = _Int8Kernel(centroids, self._half)
            # float32 rounding of the scores re-ranked and of the floor is far inside this slack
            self._slack_scale = 1e-4 * (self._kernel.largest_norm + 1.0)
        else:
            self._transposed = np.ascontiguousarray(centroids.T)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Nearest centroid of each row of ``points`` (``(n, dim)``), as int64; all zeros when there are no centroids.

        Raises:
            ValueError: ``points`` is not a finite ``(n, dim)`` array of the centroids' width.
        """
        points = np.ascontiguousarray(points, dtype=np.float32)
        out = np.zeros(len(points), dtype=np.int64)
        if len(self.centroids) == 0:
            return out
        if points.ndim != 2 or points.shape[1] != self.centroids.shape[1]:
            raise ValueError(f"points must be (n, {self.centroids.shape[1]}), got shape {points.shape}")
        if len(points) == 0:
            return out
        largest = np.abs(points).max(1)
        if not np.isfinite(largest).all():
            raise ValueError("points hold NaN or infinite values")
        if self.method == "float32":
            self._dense(points, out)
        else:
            self._int8(points, largest, out)
        return out

    def _dense(self, points: np.ndarray, out: np.ndarray) -> None:
        buffer = np.empty((min(self.block * 4, len(points)), len(self.centroids)), dtype=np.float32)
        for start in range(0, len(points), len(buffer)):
            chunk = points[start : start + len(buffer)]
            scores = buffer[: len(chunk)]
            np.matmul(chunk, self._transposed, out=scores)
            scores += self._half
            out[start : start + len(chunk)] = scores.argmax(1)

    def _int8(self, points: np.ndarray, largest: np.ndarray, out: np.ndarray) -> None:
        import torch

        kernel = self._kernel
        # the extension kappa: at most every row's largest coordinate (so it quantises as finely as the row), and
        # large enough that the bias needs at most _MAX_BIAS_COLUMNS columns
        smallest = float(largest[largest > 0].min(initial=np.inf))
        needed = kernel.largest_half / (_MAX_BIAS_COLUMNS * kernel.largest) if kernel.largest > 0 else 0.0
        kappa = max(smallest if np.isfinite(smallest) else 0.0, needed) or 1.0
        matrix, m, largest_norm, largest_error = kernel.extended(kappa)
        order = np.argsort(largest, kind="stable")  # rows of similar range share a block's quantisation scale
        # float32 sums of squares: their relative rounding (about 1e-5 for any width up to 4,096) times the terms
        # of the bound stays far inside the slack of _certified
        lengths = np.sqrt(np.einsum("ij,ij->i", points, points)).astype(np.float64)
        dim = points.shape[1]
        block = min(self.block, len(points))
        buffers = np.empty((2, block, dim), dtype=np.float32)
        extended = np.empty((block, dim + m), dtype=np.int8)
        candidates = 0
        for start in range(0, len(points), self.block):
            rows = order[start : start + self.block]
            chunk = points[rows]
            scale = max(float(largest[rows].max()), kappa) / 127
            quantised, residual = buffers[0, : len(rows)], buffers[1, : len(rows)]
            np.multiply(chunk, np.float32(1 / scale), out=quantised)
            np.clip(np.rint(quantised, out=quantised), -127, 127, out=quantised)
            # the float32 residual's rounding (about 1e-7 of |x|) is far inside the slack of _certified
            np.subtract(chunk, np.multiply(quantised, np.float32(scale), out=residual), out=residual)
            integers = extended[: len(rows)]
            integers[:, :dim] = quantised
            extension = min(127.0, float(np.rint(kappa / scale)))
            integers[:, dim:] = extension
            # the extended point's residual and length: m more coordinates, kappa - scale * extension each
            rho = np.sqrt(np.einsum("ij,ij->i", residual, residual) + m * (kappa - scale * extension) ** 2)
            length = lengths[rows]
            scores = torch._int_mm(torch.from_numpy(integers), matrix).numpy()
            bound = rho * largest_norm + np.sqrt(length**2 + m * kappa**2) * largest_error
            winner, n = self._certified(chunk, scores, scale * kernel.scale, bound, length)
            out[rows] = winner
            candidates += n
        self.candidates_per_point = candidates / len(points)

    def _certified(
        self, chunk: np.ndarray, scores: np.ndarray, unit: float, bound: np.ndarray, length: np.ndarray
    ) -> tuple[np.ndarray, int]:
        """Re-rank, exactly, every centroid whose integer score leaves it a chance of being the nearest.

        ``scores * unit`` approximates each extended dot product ``x . c_j + h_j`` within ``bound`` (per row).
        """
        first = scores.argmax(1)
        slack = self._slack_scale * (length + 1.0)
        # the best integer candidate's float32 score bounds the true best score from below; a possible winner's
        # approximate score is at most its error bound under that
        floor = np.einsum("nd,nd->n", chunk, np.take(self.centroids, first, 0)) + self._half[first] - slack
        threshold = np.floor((floor - bound - slack) / unit) - 1  # in integer units, rounded down and one lower
        threshold = np.clip(threshold, np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
        flat = np.flatnonzero(scores >= threshold[:, None])
        rows, cols = np.divmod(flat, scores.shape[1])  # sorted by row, then column
        if len(flat) == len(chunk) and np.array_equal(rows, np.arange(len(chunk))):
            return cols, len(flat)  # one candidate per row: its best integer one, which always passes its floor
        change = np.r_[True, rows[1:] != rows[:-1]]
        starts, group = np.flatnonzero(change), np.cumsum(change) - 1
        exact = np.einsum("nd,nd->n", np.take(chunk, rows, 0), np.take(self.centroids, cols, 0))
        exact += self._half[cols]
        won = exact == np.maximum.reduceat(exact, starts)[group]
        winner = first.copy()  # (every row has a candidate, its best integer one; kept should one be missing)
        # the lowest index among equal scores, as argmax: the smallest winning column of each row
        winner[rows[starts]] = np.minimum.reduceat(np.where(won, cols, len(self.centroids)), starts)
        return winner, len(flat)
