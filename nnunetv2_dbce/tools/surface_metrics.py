"""Boundary metrics per case and class: 95th-percentile Hausdorff distance (HD95) and normalised surface
distance (NSD, also called surface Dice), computed by MONAI on masks in physical units (mm).

Conventions (stated because papers differ): a structure's surface is its voxels that touch the outside
(MONAI's edge definition); HD95 is the larger of the two directed 95th percentiles; NSD counts surface
points of both masks within ``tolerance`` mm of the other surface. A class absent from both reference
and prediction scores HD95 0 and NSD 1; absent from exactly one of them, HD95 is NaN (no distance
exists; reported as a count, left out of means) and NSD 0. Axes of length 1 (2D images stored as 3D)
are dropped before measuring, so 2D data get 2D surfaces.
"""
import math
import warnings
from collections.abc import Sequence

import numpy as np


def surface_distances(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float],
                      tolerance: float) -> tuple:
    """HD95 (mm) and NSD (fraction) of two boolean masks of the same shape.

    :param reference: boolean mask, any dimensionality (axes of length 1 are dropped).
    :param prediction: boolean mask, same shape.
    :param spacing: voxel size per axis of the masks (mm).
    :param tolerance: NSD tolerance in mm.
    :return: ``(hd95, nsd)``.
    """
    import torch
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    if reference.shape != prediction.shape or len(spacing) != reference.ndim:
        raise ValueError(f"reference {reference.shape}, prediction {prediction.shape} and spacing {tuple(spacing)} "
                         f"do not match")
    kept = [axis for axis, size in enumerate(reference.shape) if size > 1]
    ref, pred = reference.astype(bool).squeeze(), prediction.astype(bool).squeeze()
    spacing = [float(spacing[axis]) for axis in kept]
    if not ref.any() and not pred.any():
        return 0.0, 1.0
    if not ref.any() or not pred.any():
        return math.nan, 0.0
    ref_t = torch.from_numpy(np.stack([~ref, ref])[None])
    pred_t = torch.from_numpy(np.stack([~pred, pred])[None])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*always_return_as_numpy", FutureWarning)
        hd95 = compute_hausdorff_distance(pred_t, ref_t, percentile=95, spacing=spacing).item()
        nsd = compute_surface_dice(pred_t, ref_t, [tolerance], spacing=spacing).item()
    return hd95, nsd
