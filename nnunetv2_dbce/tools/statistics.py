"""Paired comparisons of two trainers on the same cases: Wilcoxon signed-rank test, median paired difference
with a bootstrap 95% interval, and Holm's correction over a family of tests."""
import math
from collections.abc import Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 10000


def paired_comparison(values: Sequence[float], baseline: Sequence[float], seed: int = 0) -> dict:
    """``values`` against ``baseline``, paired case by case; pairs with a NaN are left out.

    :return: ``n`` pairs, ``median_difference`` (values - baseline), ``ci_low`` / ``ci_high`` (percentile
        bootstrap of the median difference, 95%), ``p`` (two-sided Wilcoxon signed-rank test, scipy's
        default zero handling; 1 when every difference is 0, NaN with no pairs).
    """
    from scipy.stats import wilcoxon

    ours, theirs = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if ours.shape != theirs.shape:
        raise ValueError(f"paired values need the same length, got {ours.shape} and {theirs.shape}")
    differences = (ours - theirs)[~(np.isnan(ours) | np.isnan(theirs))]
    n = differences.size
    if n == 0:
        return {"n": 0, "median_difference": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan}
    rng = np.random.default_rng(seed)
    medians = np.median(differences[rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n))], axis=1)
    p = 1.0 if not differences.any() else float(wilcoxon(differences).pvalue)
    return {"n": int(n), "median_difference": float(np.median(differences)),
            "ci_low": float(np.percentile(medians, 2.5)), "ci_high": float(np.percentile(medians, 97.5)), "p": p}


def holm(p_values: Sequence[float]) -> list:
    """Holm-Bonferroni adjusted p-values (same order; NaN stays NaN and does not count as a test)."""
    p = np.asarray(p_values, dtype=float)
    tested = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(p.shape, math.nan)
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()
