"""CentroidSearch: the int8 pre-filter returns exactly the float32 nearest centroid, on hostile inputs too."""

from __future__ import annotations

import numpy as np
import pytest

from hf_memotion.vise.centroid_search import CentroidSearch, _int8_kernel_works

needs_int8 = pytest.mark.skipif(not _int8_kernel_works(), reason="torch without oneDNN's qlinear_pointwise op")


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _brute(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """float64 squared distances, the lowest index among equals."""
    p, c = points.astype(np.float64), centroids.astype(np.float64)
    return ((p**2).sum(1)[:, None] - 2 * p @ c.T + (c**2).sum(1)[None]).argmin(1)


def _clustered(n_points: int, k: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around k directions, and K-means-like centroids (the mean of each group, norm < 1)."""
    rng = np.random.default_rng(seed)
    directions = _unit(rng.standard_normal((k, dim)))
    owner = rng.integers(0, k, n_points)
    points = _unit(directions[owner] + 0.35 * rng.standard_normal((n_points, dim)))
    centroids = np.stack([points[owner == j].mean(0) if (owner == j).any() else directions[j] for j in range(k)])
    return points, centroids.astype(np.float32)


@needs_int8
@pytest.mark.parametrize(("k", "dim"), [(300, 16), (1000, 64), (2000, 256)])
def test_int8_search_equals_the_float32_search_on_clustered_unit_vectors(k: int, dim: int) -> None:
    points, centroids = _clustered(6000, k, dim, seed=k)
    fast, dense = CentroidSearch(centroids, method="int8"), CentroidSearch(centroids, method="float32")
    assert fast.method == "int8" and dense.method == "float32"
    got = fast(points)
    np.testing.assert_array_equal(got, dense(points))
    # the float32 answers are the float64 ones wherever the best two are not within float32 rounding
    exact = _brute(points, centroids)
    assert (got == exact).mean() > 0.999
    # the filter is doing its job: a handful of re-ranked centroids per point, not a dense re-scoring
    assert 1.0 <= fast.candidates_per_point < 0.05 * k


@needs_int8
def test_int8_search_breaks_ties_like_argmax_and_resolves_pairs_below_int8_resolution() -> None:
    rng = np.random.default_rng(0)
    base = _unit(rng.standard_normal((150, 32)))
    near = base + 2e-4 * rng.standard_normal(base.shape).astype(np.float32)  # far below one int8 step (~1/127)
    centroids = np.concatenate([base, base, near])  # exact duplicates: the lower index must win
    between = 0.51 * base[:75] + 0.49 * base[75:]  # almost halfway: the gap is small but far above rounding
    points = np.concatenate([base, _unit(base + 0.01 * rng.standard_normal(base.shape)), between])
    fast, dense = CentroidSearch(centroids, method="int8"), CentroidSearch(centroids, method="float32")
    got = fast(points)
    assert not np.isin(got, np.arange(150, 300)).any()
    # the dense product may score a copy one float32 ulp apart from its original (a BLAS kernel sums the columns of
    # a block in another order: seen on an AMD Zen 5), so its argmax may take the copy; the same centroid either way
    reference = dense(points)
    np.testing.assert_array_equal(got, np.where((reference >= 150) & (reference < 300), reference - 150, reference))
    # every base/near decision is the float64 one (the pairs differ by far more than float32 rounding)
    folded = np.where(got >= 300, got - 150, got)
    np.testing.assert_array_equal(folded, _brute(points, np.concatenate([base, near])))


@needs_int8
def test_int8_search_on_zero_tiny_huge_and_mixed_scale_points() -> None:
    points, centroids = _clustered(2000, 400, 48, seed=1)
    rng = np.random.default_rng(1)
    hostile = np.concatenate(
        [
            np.zeros((5, 48), np.float32),  # no signal: nearest to the origin
            points[:500] * 1e-6,
            points[500:1000] * 1e3,  # tiny and huge norms
            points[1000:1500] * rng.uniform(0.01, 100, (500, 1)).astype(np.float32),  # every scale in one call
            np.eye(48, dtype=np.float32)[rng.integers(0, 48, 200)] * 7,  # one-hot rows: all range in one coordinate
        ]
    )
    fast, dense = CentroidSearch(centroids, method="int8"), CentroidSearch(centroids, method="float32")
    np.testing.assert_array_equal(fast(hostile), dense(hostile))
    np.testing.assert_array_equal(fast(hostile[:5]), _brute(hostile[:5], centroids))


@needs_int8
def test_int8_search_with_large_and_uneven_centroids() -> None:
    rng = np.random.default_rng(2)
    centroids = rng.standard_normal((512, 40)).astype(np.float32) * rng.uniform(0.001, 50, (512, 1)).astype(np.float32)
    centroids[7] = 0.0  # a zero centroid quantises to zeros with a unit scale
    points = rng.standard_normal((3000, 40)).astype(np.float32) * 10
    fast = CentroidSearch(centroids, method="int8")
    np.testing.assert_array_equal(fast(points), CentroidSearch(centroids, method="float32")(points))


@needs_int8
@pytest.mark.parametrize("block", [1, 7, 256, 5000])
def test_block_size_changes_nothing(block: int) -> None:
    points, centroids = _clustered(1500, 300, 24, seed=3)
    expected = CentroidSearch(centroids, method="float32")(points)
    np.testing.assert_array_equal(CentroidSearch(centroids, method="int8", block=block)(points), expected)


def test_auto_takes_the_float32_path_for_small_problems_and_both_paths_agree_with_brute_force() -> None:
    rng = np.random.default_rng(4)
    small = rng.standard_normal((128, 5)).astype(np.float32)
    assert CentroidSearch(small).method == "float32"  # the reaction clusters' shape: 128 x 5
    points = rng.standard_normal((700, 5)).astype(np.float32)
    np.testing.assert_array_equal(CentroidSearch(small)(points), _brute(points, small))


def test_hostile_arguments_get_clear_errors() -> None:
    centroids = np.ones((3, 4), np.float32)
    search = CentroidSearch(centroids)
    with pytest.raises(ValueError, match=r"points must be \(n, 4\)"):
        search(np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        search(np.array([[0, 1, np.nan, 0]], np.float32))
    with pytest.raises(ValueError, match="finite"):
        CentroidSearch(np.array([[np.inf, 0.0]]))
    with pytest.raises(ValueError, match="method must be"):
        CentroidSearch(centroids, method="faiss")  # type: ignore[arg-type]
    assert search(np.zeros((0, 4), np.float32)).shape == (0,)
    assert CentroidSearch(np.zeros((0, 0)))(np.ones((3, 8))).tolist() == [0, 0, 0]  # no centroids yet
