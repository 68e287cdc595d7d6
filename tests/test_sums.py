"""Planned sums over axes (BLAS products with ones) against numpy's sum."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from panelglm._engine.sums import sum_axes

SHAPES = [(3, 100, 100), (100, 100, 3), (1, 40, 1, 9), (5, 1, 3000), (2, 3, 4, 5), (12,), (4, 1)]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_subset_of_axes_matches_numpy(shape):
    rng = np.random.default_rng(len(shape))
    x = rng.normal(size=shape)
    for r in range(len(shape) + 1):
        for drop in combinations(range(len(shape)), r):
            want = x.sum(axis=drop)
            got = sum_axes(x, drop)
            assert got.shape == want.shape, drop
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13 * np.abs(x).max())


def test_strided_input_and_no_axes():
    x = np.random.default_rng(0).normal(size=(20, 30, 4)).transpose(2, 0, 1)
    np.testing.assert_allclose(sum_axes(x, (1,)), x.sum(axis=1), rtol=1e-13)
    assert sum_axes(x, ()) is x
    stepped = np.random.default_rng(1).normal(size=(6, 5, 4))[::2, :, 1:]
    np.testing.assert_allclose(sum_axes(stepped, (0, 2)), stepped.sum(axis=(0, 2)), rtol=1e-13)


def test_permuted_layout_sums_as_stored():
    """A group's result (columns before the last axis) and any other axis order."""
    x = np.random.default_rng(1).normal(size=(6, 3, 5, 4))
    for perm in [(0, 2, 3, 1), (3, 1, 0, 2), (1, 0, 2, 3)]:
        v = x.transpose(perm)
        for r in range(1, 4):
            for drop in combinations(range(4), r):
                got = sum_axes(v, drop)
                np.testing.assert_allclose(got, v.sum(axis=drop), rtol=1e-13, atol=1e-13)


def test_empty_reversed_and_fortran_ordered_inputs():
    rng = np.random.default_rng(2)
    empty = np.zeros((0, 4, 3))
    for drop in [(0,), (1,), (0, 2)]:
        got = sum_axes(empty, drop)
        assert got.shape == empty.sum(axis=drop).shape
        np.testing.assert_array_equal(got, empty.sum(axis=drop))
    reversed_ = rng.normal(size=(5, 6, 7))[::-1, :, ::-1]
    fortran = np.asfortranarray(rng.normal(size=(5, 6, 7)))
    for x in (reversed_, fortran):
        for drop in [(0,), (2,), (0, 1), (1, 2)]:
            np.testing.assert_allclose(sum_axes(x, drop), x.sum(axis=drop), rtol=1e-13)


def test_the_caches_stay_small_and_the_ones_read_only(monkeypatch):
    import panelglm._engine.sums as sums

    monkeypatch.setattr(sums, "_PLANS", {})
    monkeypatch.setattr(sums, "_ONES", {})
    rng = np.random.default_rng(3)
    for n in range(8, 200):
        x = rng.normal(size=(2, n))
        np.testing.assert_allclose(sum_axes(x, (1,)), x.sum(axis=1), rtol=1e-13)
    assert len(sums._ONES) <= 65
    assert all(not one.flags.writeable for one in sums._ONES.values())
