"""The DBCE weight-map transform for nnU-Net's batchgeneratorsv2 augmentation pipeline."""
from collections.abc import Sequence

from nnunetv2_dbce.transforms.voxel_map import VoxelMapTransform
from nnunetv2_dbce.weight_maps import DBCEWeightMap, check_radius


class DilatedBalancedWeightsTransform(VoxelMapTransform):
    """Adds ``data_dict['voxel_map']``: the DBCE weight map of the (augmented) segmentation, (1, X, Y[, Z]) float32.

    A ``VoxelMapTransform`` with ``DBCEWeightMap``: place it last, after spatial augmentation,
    ``RemoveLabelTansform`` and, with deep supervision, ``DownsampleSegForDSTransform``. The map is computed
    once from the full-resolution segmentation; when ``segmentation`` is a list (one tensor per
    deep-supervision scale, full resolution first) ``voxel_map`` is a list of maps sampled to the same shapes
    exactly as nnU-Net samples the segmentation.
    """

    def __init__(self, dilation_radius: float, spacing: Sequence[float] | None = None,
                 ignore_label: int | None = None, max_label: int | None = None):
        """
        :param dilation_radius: R in voxels of the finest axis.
        :param spacing: voxel spacing per spatial axis; None for isotropic.
        :param ignore_label: label left out of the weighting (weight 0).
        :param max_label: the largest label the dataset defines (ignore label included); a larger one in a
            patch is an error. None: not checked.
        """
        self.dilation_radius = check_radius(dilation_radius)
        super().__init__(DBCEWeightMap(self.dilation_radius, ignore_label), spacing, continuous=False,
                         max_label=max_label)
