"""Unbiased pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code").

For a problem with ``n`` samples of which ``c`` pass, the unbiased estimate of pass@k is
``1 - C(n - c, k) / C(n, k)``. The binomials overflow quickly, so it is computed as the product
``prod_{i = n - c + 1}^{n} (1 - k / i)``, which equals ``C(n - c, k) / C(n, k)`` exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

DEFAULT_KS = (1, 5, 10)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples and ``c`` correct ones.

    Raises:
        ValueError: unless ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k(n={n}, c={c}, k={k}): need 0 <= c <= n")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k(n={n}, c={c}, k={k}): need 1 <= k <= n; draw at least k samples")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def ks_for(n: int, ks: Iterable[int] = DEFAULT_KS) -> list[int]:
    """The ``ks`` that an evaluation with ``n`` samples per problem can estimate (``k <= n``)."""
    return [k for k in ks if k <= n]


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean pass@k over problems given ``(n, c)`` per problem; ``nan`` for an empty list."""
    if not counts:
        return float("nan")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)
