"""Paired statistics of the study: Wilcoxon, bootstrap interval of the median difference, Holm's correction."""
import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from nnunetv2_dbce.tools.statistics import holm, paired_comparison


def test_all_positive_differences_give_the_exact_wilcoxon_p():
    values = np.arange(10) / 10 + 0.5
    baseline = values - np.linspace(0.01, 0.1, 10)
    result = paired_comparison(values, baseline)
    assert result["n"] == 10 and result["p"] == pytest.approx(2 / 2 ** 10)  # one of 2^10 sign patterns, two-sided
    assert result["median_difference"] == pytest.approx(0.055)
    assert 0.01 <= result["ci_low"] <= result["median_difference"] <= result["ci_high"] <= 0.1


def test_pairs_with_nan_are_dropped_and_p_is_scipys():
    rng = np.random.default_rng(3)
    values, baseline = rng.random(40), rng.random(40)
    values[[2, 7]] = np.nan
    baseline[11] = np.nan
    result = paired_comparison(values, baseline, seed=5)
    kept = ~(np.isnan(values) | np.isnan(baseline))
    assert result["n"] == 37
    assert result["p"] == pytest.approx(wilcoxon(values[kept] - baseline[kept]).pvalue)
    assert result["median_difference"] == pytest.approx(np.median(values[kept] - baseline[kept]))
    assert result == paired_comparison(values, baseline, seed=5)  # reproducible bootstrap


def test_degenerate_comparisons():
    assert paired_comparison([0.5, 0.7], [0.5, 0.7])["p"] == 1.0
    assert math.isnan(paired_comparison([math.nan], [0.3])["p"])
    with pytest.raises(ValueError, match="same length"):
        paired_comparison([1, 2], [1])


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06; NaN is no test
    adjusted = holm([0.01, 0.04, math.nan, 0.03])
    assert adjusted[0] == pytest.approx(0.03) and adjusted[1] == pytest.approx(0.06)
    assert math.isnan(adjusted[2]) and adjusted[3] == pytest.approx(0.06)
    assert holm([0.5, 0.9]) == [1.0, 1.0]
