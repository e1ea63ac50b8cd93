"""Per-voxel maps: a map made from each augmented label patch and given to the loss beside the target. DBCE's
weight map is one kind; signed distance maps, U-Net border weights and Skeleton Recall's tubed skeletons are others.

- ``labels``: label-map validation, bounding boxes, axis scale (numpy / OpenCV / scipy)
- ``dilation``: exact dilation by a physical ball and its cost model (numpy / OpenCV / edt)
- ``dbce``: DBCE weight maps, ``dbce_weight_map``, ``region_dbce_weight_maps``, ``DBCEWeightMap``
- ``squared_distance``: exact squared distances confined to a structure's box (numba)
- ``distance``: signed distance maps (boundary loss), U-Net border weights
- ``skeletons``: tubed skeletons (Skeleton Recall)
- ``structure_sizes``: structure radii, for a dilation radius derived from the dataset
- ``transform``: ``VoxelMapTransform``, the batchgeneratorsv2 transform that makes a map in nnU-Net's augmentation
  workers at every deep-supervision scale, and ``DBCEWeightMapTransform``, DBCE's (torch)
- ``loader``: ``VoxelMapDataLoader``, which carries the maps into nnU-Net's batches (nnU-Net)

The trainer base that joins them, ``nnUNetTrainerVoxelMap``, is in ``nnunetv2_dbce.trainers.voxel_map``. Importing
this package imports none of its modules.
"""
