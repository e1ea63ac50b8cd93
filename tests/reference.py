"""Slow, obviously-correct references the fast code is checked against. Small inputs only."""
import itertools
import math

import numpy as np
from scipy import ndimage

from nnunetv2_dbce.voxel_maps.dilation import BALL_TOLERANCE


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
    """The weights of docs/losses.md, with scipy's binary_dilation and a loop over voxels."""
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
    """PM Dice as docs/losses.md defines it, with loops over voxels; probabilities/onehot (B, C, ...), mask (B, ...)
    or None."""
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


def reference_soft_dice(probabilities: np.ndarray, onehot: np.ndarray, batch_dice: bool, do_bg: bool, smooth: float,
                        mask: np.ndarray = None) -> float:
    """nnU-Net's ``MemoryEfficientSoftDiceLoss`` with loops over voxels: ``-mean_c (2 sum p y + smooth) /
    (sum p + sum y + smooth)`` (a negative Dice, not 1 - Dice); probabilities/onehot (B, C, ...), mask (B, ...)."""
    batch, classes = probabilities.shape[:2]
    groups = [list(range(batch))] if batch_dice else [[b] for b in range(batch)]
    dices = []
    for samples in groups:
        for c in range(0 if do_bg else 1, classes):
            intersection = predicted = reference = 0.0
            for b in samples:
                for index in np.ndindex(probabilities.shape[2:]):
                    if mask is not None and not mask[(b, *index)]:
                        continue
                    p, y = float(probabilities[(b, c, *index)]), float(onehot[(b, c, *index)])
                    intersection += p * y
                    predicted += p
                    reference += y
            dices.append((2 * intersection + smooth) / (predicted + reference + smooth))
    return -sum(dices) / len(dices)


def reference_surface_metrics(reference, prediction, spacing, tolerance):
    """HD95 and NSD by brute force: surface voxels (mask minus its erosion), all pairwise distances."""
    def surface(mask):
        return np.argwhere(mask & ~ndimage.binary_erosion(mask, border_value=0)) * np.asarray(spacing)

    a, b = surface(reference), surface(prediction)
    distances = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    a_to_b, b_to_a = distances.min(1), distances.min(0)
    hd95 = max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95))
    nsd = ((a_to_b <= tolerance).sum() + (b_to_a <= tolerance).sum()) / (len(a_to_b) + len(b_to_a))
    return hd95, nsd


def reference_lesion_counts(reference: np.ndarray, prediction: np.ndarray) -> dict:
    """Connected components by flood fill over all 3^n - 1 neighbours, then overlaps checked component by component."""
    def components(mask):
        labels, count = np.zeros(mask.shape, int), 0
        offsets = [o for o in itertools.product((-1, 0, 1), repeat=mask.ndim) if any(o)]
        for start in zip(*np.nonzero(mask)):
            if labels[start]:
                continue
            count += 1
            labels[start], stack = count, [start]
            while stack:
                voxel = stack.pop()
                for o in offsets:
                    n = tuple(v + d for v, d in zip(voxel, o))
                    if all(0 <= i < s for i, s in zip(n, mask.shape)) and mask[n] and not labels[n]:
                        labels[n] = count
                        stack.append(n)
        return labels, count

    ref_labels, num_ref = components(reference)
    pred_labels, num_pred = components(prediction)
    detected = sum(1 for k in range(1, num_ref + 1) if prediction[ref_labels == k].any())
    tp = sum(1 for k in range(1, num_pred + 1) if reference[pred_labels == k].any())
    return {"ref_lesions": num_ref, "detected_lesions": detected, "pred_lesions": num_pred, "tp_lesions": tp}


def reference_component_sizes(mask: np.ndarray) -> list:
    """Voxel counts of the face-connected components of a boolean mask, by flood fill from each unvisited voxel."""
    seen = np.zeros(mask.shape, bool)
    sizes = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start], stack, size = True, [start], 0
        while stack:
            voxel = stack.pop()
            size += 1
            for axis in range(mask.ndim):
                for step in (-1, 1):
                    neighbour = list(voxel)
                    neighbour[axis] += step
                    neighbour = tuple(neighbour)
                    if 0 <= neighbour[axis] < mask.shape[axis] and mask[neighbour] and not seen[neighbour]:
                        seen[neighbour] = True
                        stack.append(neighbour)
        sizes.append(size)
    return sizes
