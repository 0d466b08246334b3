"""Unbiased pass@k against the closed form 1 - C(n-c, k) / C(n, k), on hand-computed cases."""

from math import comb

import pytest

from evals.passk import ks_for, mean_pass_at_k, pass_at_k


def closed_form(n: int, c: int, k: int) -> float:
    return 1.0 - comb(n - c, k) / comb(n, k)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (1, 0, 1, 0.0),
        (1, 1, 1, 1.0),
        (10, 3, 1, 0.3),  # pass@1 is the fraction of correct samples
        (5, 1, 5, 1.0),  # every 5-subset of 5 samples contains the correct one
        (10, 1, 5, 0.5),  # 1 - C(9,5)/C(10,5) = 1 - 126/252
        (10, 2, 5, 1 - 56 / 252),  # C(8,5) = 56
        (4, 2, 2, 1 - 1 / 6),  # C(2,2)/C(4,2) = 1/6
        (20, 0, 10, 0.0),
    ],
)
def test_hand_computed_cases(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_matches_closed_form_on_a_grid():
    for n in range(1, 31):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(closed_form(n, c, k), abs=1e-12)


def test_large_n_stays_finite_and_exact():
    # C(1000, 500) overflows a float; the product form does not.
    assert pass_at_k(1000, 1, 10) == pytest.approx(0.01, abs=1e-12)
    assert pass_at_k(1000, 500, 500) == pytest.approx(closed_form(1000, 500, 500), abs=1e-12)


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 5)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(3, 4, 1)


def test_ks_limited_by_n_and_mean():
    assert ks_for(1) == [1]
    assert ks_for(7) == [1, 5]
    assert ks_for(10) == [1, 5, 10]
    assert mean_pass_at_k([(10, 3), (10, 0)], 1) == pytest.approx(0.15)
