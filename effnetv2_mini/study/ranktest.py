"""How likely a rank correlation is by chance: the exact permutation test of Spearman's rho.

With n candidates ranked twice (no ties) and no relation between the two rankings, each of the n!
orderings of the second ranking is equally likely. The one-sided p-value of an observed rho is the
share of those orderings whose rho is at least as large (``greater``) or at most as large
(``less``). Four candidates ranked the same way twice: 1 of the 24 orderings reaches rho = 1,
p = 1/24 = 0.042; a rho of 0.8 over four candidates (one adjacent swap) is reached by 4 of the 24
orderings, p = 0.17: no evidence either way.

Counting every ordering is exact and cheap up to :data:`EXACT_UP_TO` candidates (8! = 40,320
orderings); above that the normal approximation rho * sqrt(n - 1) ~ N(0, 1) is used.
"""

from __future__ import annotations

import itertools
import math

__all__ = ["EXACT_UP_TO", "spearman_of_permutation", "spearman_p_value"]

EXACT_UP_TO = 8
_TOLERANCE = 1e-9  # rho values are fractions: count equal ones as reached despite float rounding


def spearman_of_permutation(order: tuple[int, ...]) -> float:
    """Spearman's rho between ranks 0..n-1 and ``order`` (the second ranking's rank of each item):
    1 - 6 sum d^2 / (n (n^2 - 1))."""
    n = len(order)
    return 1 - 6 * sum((i - r) ** 2 for i, r in enumerate(order)) / (n * (n * n - 1))


def spearman_p_value(rho: float, n: int, alternative: str = "greater") -> float:
    """One-sided p-value of Spearman's ``rho`` over ``n`` untied candidates: the chance, with no
    relation between the rankings, of a rho at least as large (``alternative="greater"``) or at most
    as large (``"less"``). Exact (every ordering counted) for ``n <= EXACT_UP_TO``, else the normal
    approximation."""
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    if n < 2:
        raise ValueError(f"a rank correlation needs at least 2 candidates, got {n}")
    sign = 1 if alternative == "greater" else -1
    if n <= EXACT_UP_TO:
        reached = sum(sign * (spearman_of_permutation(order) - rho) >= -_TOLERANCE
                      for order in itertools.permutations(range(n)))
        return reached / math.factorial(n)
    return 0.5 * math.erfc(sign * rho * math.sqrt(n - 1) / math.sqrt(2))
