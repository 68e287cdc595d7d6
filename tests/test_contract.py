"""The planned pair contraction against ``np.einsum`` for every pair of axis sets."""

from itertools import chain, combinations

import numpy as np
import pytest

from panelglm._model.contract import DensePair

SHAPE = (3, 4, 2, 5)
LETTERS = "abcd"


def _subsets(n):
    return list(chain.from_iterable(combinations(range(n), r) for r in range(n + 1)))


def _values(rng, axes, n_cols):
    return rng.standard_normal((*(SHAPE[a] for a in axes), n_cols))


@pytest.mark.parametrize("a_axes", _subsets(len(SHAPE)))
def test_dense_pair_matches_einsum(a_axes):
    rng = np.random.default_rng(len(a_axes) + 7 * sum(a_axes))
    for b_axes in _subsets(len(SHAPE)):
        u = tuple(sorted(set(a_axes) | set(b_axes)))
        for n_a, n_b in ((1, 1), (3, 2), (2, 6)):
            a, b = _values(rng, a_axes, n_a), _values(rng, b_axes, n_b)
            t = rng.standard_normal([SHAPE[x] for x in u])
            letters = ["".join(LETTERS[x] for x in axes) for axes in (u, a_axes, b_axes)]
            ref = np.einsum("{},{}y,{}z->yz".format(*letters), t, a, b)
            got = DensePair(u, a_axes, a, b_axes, b)(t)
            assert got.shape == (n_a, n_b)
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_dense_pair_takes_a_view_of_t_laid_out_otherwise():
    rng = np.random.default_rng(0)
    a, b = _values(rng, (1,), 2), _values(rng, (0, 2), 3)
    t = np.asfortranarray(rng.standard_normal((3, 4, 2)))[:, ::1]
    ref = np.einsum("abc,by,acz->yz", t, a, b)
    np.testing.assert_allclose(DensePair((0, 1, 2), (1,), a, (0, 2), b)(t), ref, rtol=1e-12)
