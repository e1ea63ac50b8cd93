"""Slow, obviously-correct references the fast code is checked against. Small inputs only."""
import itertools
import math

import numpy as np
from scipy import ndimage

from nnunetv2_dbce.weight_maps import BALL_TOLERANCE


def ball_structuring_element(radius: float, spacing=None, ndim: int = 2) -> np.ndarray:
    """Boolean ball: offsets d with sum((d_a * spacing_a / min(spacing))**2) <= R**2, built offset by offset."""
    spacing = np.ones(ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)
    scale = spacing / spacing.min()
    half = [int(math.floor(radius / s)) + 1 for s in scale]  # one more than needed: the test below decides
    element = np.zeros([2 * h + 1 for h in half], dtype=bool)
    for offset in itertools.product(*[range(-h, h + 1) for h in half]):
        squared = sum((o * s) ** 2 for o, s in zip(offset, scale))
        if squared <= radius ** 2 * (1 + BALL_TOLERANCE):
            element[tuple(o + h for o, h in zip(offset, half))] = True
    return element


def reference_weights(label_map: np.ndarray, radius: float, spacing=None, ignore_label=None) -> np.ndarray:
    """DESIGN section 1 steps 1-3, with scipy's binary_dilation and a loop over voxels."""
    valid = np.ones(label_map.shape, bool) if ignore_label is None else label_map != ignore_label
    n = int(valid.sum())
    classes = sorted(int(c) for c in np.unique(label_map[valid]) if c != 0)
    element = ball_structuring_element(radius, spacing, label_map.ndim)
    dilated = {c: ndimage.binary_dilation(label_map == c, structure=element) & valid for c in classes}
    outside = valid.copy()
    for d in dilated.values():
        outside &= ~d
    num_regions = len(classes) + (outside.sum() > 0)
    w = {c: n / (num_regions * dilated[c].sum()) for c in classes}
    w0 = n / (num_regions * outside.sum()) if outside.sum() > 0 else None

    weights = np.zeros(label_map.shape, dtype=np.float64)
    for index in np.ndindex(label_map.shape):
        label = int(label_map[index])
        if not valid[index]:
            continue
        if label != 0:
            weights[index] = w[label]
            continue
        bands = [w[c] for c in classes if dilated[c][index]]
        weights[index] = max(bands) if bands else w0
    return weights


def reference_weighted_ce(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray, ignore_index=None) -> float:
    """sum_i w_i * CE_i / sum_i w_i with a loop over voxels; logits (B, C, ...), labels/weights (B, ...)."""
    numerator = denominator = 0.0
    for b in range(logits.shape[0]):
        for index in np.ndindex(labels.shape[1:]):
            label = int(labels[(b, *index)])
            if ignore_index is not None and label == ignore_index:
                continue
            scores = [float(logits[(b, c, *index)]) for c in range(logits.shape[1])]
            top = max(scores)
            log_sum = top + math.log(sum(math.exp(s - top) for s in scores))
            w = float(weights[(b, *index)])
            numerator += w * (log_sum - scores[label])
            denominator += w
    return numerator / denominator if denominator > 0 else 0.0


def reference_pm_dice(probabilities: np.ndarray, onehot: np.ndarray, gamma, batch_dice: bool, do_bg: bool,
                      smooth: float, mask: np.ndarray = None) -> float:
    """DESIGN's PM Dice with loops over voxels; probabilities/onehot (B, C, ...), mask (B, ...) or None."""
    batch, classes = probabilities.shape[:2]
    gammas = [gamma] * classes if np.ndim(gamma) == 0 else list(gamma)
    groups = [list(range(batch))] if batch_dice else [[b] for b in range(batch)]
    dices = []
    for samples in groups:
        for c in range(0 if do_bg else 1, classes):
            numerator = denominator = 0.0
            for b in samples:
                for index in np.ndindex(probabilities.shape[2:]):
                    if mask is not None and not mask[(b, *index)]:
                        continue
                    p, y = float(probabilities[(b, c, *index)]), float(onehot[(b, c, *index)])
                    m = abs(y - p) ** gammas[c]
                    numerator += m * y * p
                    denominator += m * (y * y + p * p)
            dices.append((2 * numerator + smooth) / (denominator + smooth))
    return 1 - sum(dices) / len(dices)
