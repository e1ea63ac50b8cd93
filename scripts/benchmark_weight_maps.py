"""Per-sample CPU cost of DBCE weight maps next to nnU-Net's default training transforms, one thread.

Both run on the same synthetic patches (``CASES``: 3D 128^3 and 2D 512^2 / 256^2 with organ-sized, small
and many structures, up to 120 classes), fed to nnU-Net 2.8's ``get_training_transforms`` set up as its
trainer sets them up: rotation +-180 degrees in 2D and +-30 in 3D, mirroring on every axis, the patch
enlarged by ``get_patch_size`` exactly as its data loader does, one deep-supervision scale per pooling of
the U-Net nnU-Net plans for the patch. The weight-map figure is ``DBCEWeightMapTransform`` on the
augmented patch, all deep-supervision scales together, told the dataset's largest label as the trainers tell it,
timed where it runs in training: right after nnU-Net's transforms of the same sample (each row after its own run of
them, the augmentation reseeded so that every row sees the same samples). Timed instead after all samples were
augmented, as before, the same maps cost 20-35 % less in 2D: in the pipeline they start with caches that nnU-Net's
transforms have just filled with their own data.
``--dilation`` prints the cost of the three exact
dilations (OpenCV kernel, runs on packed rows, distance transform) that the cost model in ``voxel_maps.dilation`` is
fitted to, and the one it picks; ``--voxel-maps`` adds rows for the
packaged per-voxel maps (the boundary loss's signed distances, the U-Net border weights, Skeleton Recall's tubed
skeletons) on the same samples, and on the vessel-tree cases the cost of clDice's soft skeletons (forward and
backward of ``ClDiceLoss`` for one sample, which runs in the training step instead of the workers).
``--numpy-path`` adds, ahead of the DBCE rows, the same maps through the numpy/OpenCV path
(``weight_map_in_boxes``) that the compiled 2D maps replace: before and after on the same samples.

``--profile N`` instead profiles each row's map calls where they run (cProfile, right after the transforms of
each sample) and prints the N functions that took the most time of their own, per call: the fixed costs of a
map that takes well under a millisecond show up there.

A second part plots the cost of ``dbce_weight_map`` alone against patch size and radius
(structures scaled with the patch) to ``--plot``.

    python scripts/benchmark_weight_maps.py [--cases 2D] [--voxel-maps] [--numpy-path] [--dilation] [--profile 15]
        [--plot docs/weight_map_cost.png]
"""
import argparse
import cProfile
import os
import pstats
import random
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np
import torch
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from scipy import ndimage
from threadpoolctl import threadpool_limits

from nnunetv2_dbce import DBCEWeightMapTransform, VoxelMapTransform, dbce_weight_map
from nnunetv2_dbce.losses.topology import ClDiceLoss
from nnunetv2_dbce.tools.figures import saved_figure
from nnunetv2_dbce.tools.synthetic import vessel_case
from nnunetv2_dbce.voxel_maps.dbce import weight_map_in_boxes
from nnunetv2_dbce.voxel_maps.distance import SignedDistanceMaps, UNetBorderWeights
from nnunetv2_dbce.voxel_maps.labels import axis_scale, label_map_and_max
from nnunetv2_dbce.voxel_maps.skeletons import TubedSkeletons


def synthetic_labels(shape, structures, seed=0):
    """Label map with ellipsoids ``(label, radius in voxels)`` at random places, later ones on top."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    labels = np.zeros(shape, np.int16)
    for label, radius in structures:
        centre = [rng.uniform(radius, n - radius) if n > 2 * radius else n / 2 for n in shape]
        radii = radius * rng.uniform(0.7, 1.3, len(shape))
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1
        labels[inside] = label
    return labels


def scattered(num_classes, radius_range, seed=0):
    """``num_classes`` structures with radii spread over ``radius_range`` (a TotalSegmentator-like patch)."""
    radii = np.random.default_rng(seed).uniform(*radius_range, num_classes)
    return [(label, float(r)) for label, r in enumerate(radii, start=1)]


# nnU-Net's trainer augments 2D patches with rotations of +-180 degrees (+-15 when the patch is elongated) and 3D
# with +-30 degrees, mirrors every axis, and feeds the transforms a patch enlarged by get_patch_size.
ROTATION = {2: np.pi, 3: np.pi / 6}
CASES = {
    "3D 128^3, 3 classes (radii 40, 12, 3)": dict(patch=(128, 128, 128), structures=[(1, 40), (2, 12), (3, 3)]),
    "3D 128^3, 3 organ-sized (radii 40, 30, 25)": dict(patch=(128, 128, 128),
                                                     structures=[(1, 40), (2, 30), (3, 25)]),
    "3D 128^3, 20 classes (radii 8-25)": dict(patch=(128, 128, 128), structures=scattered(20, (8, 25))),
    "3D 128^3, 120 classes (radii 4-14)": dict(patch=(128, 128, 128), structures=scattered(120, (4, 14))),
    "3D 128^3, 1 class covering ~half": dict(patch=(128, 128, 128), structures=[(1, 63)]),
    "2D 512^2, 2 classes (radii 80, 6)": dict(patch=(512, 512), structures=[(1, 80), (2, 6)]),
    "2D 512^2, 1 class covering ~half": dict(patch=(512, 512), structures=[(1, 220)]),
    "2D 512^2, 3 organ-sized (radii 90, 60, 50)": dict(patch=(512, 512), structures=[(1, 90), (2, 60), (3, 50)]),
    "2D 256^2, 2 small (radii 10, 6)": dict(patch=(256, 256), structures=[(1, 10), (2, 6)]),
    "2D 512^2, vessel trees": dict(patch=(512, 512), structures="vessels"),
    "3D 128^3, vessel trees": dict(patch=(128, 128, 128), structures="vessels"),
}


# the scipy row takes ~80 s per sample with 120 classes: measured once (before the OpenCV kernels), then skipped
NAIVE_MAX_CLASSES = 20
# the packaged voxel maps compute distances (and skeletons) per class: timed on the few-class cases
VOXEL_MAP_MAX_CLASSES = 3


def case_labels(shape, structures):
    """The case's label map: ellipsoids, or (``structures == "vessels"``) the generated vessel trees (label 1)."""
    if structures == "vessels":
        return vessel_case(np.random.default_rng(0), tuple(shape))[1].astype(np.int16)
    return synthetic_labels(shape, structures)


class WeightMapInBoxes:
    """DBCE weight maps through the numpy/OpenCV path (``weight_map_in_boxes``) whatever the map: the "before" of the
    compiled 2D map."""

    def __init__(self, radius: float):
        self.radius = float(radius)

    def __call__(self, labels: np.ndarray, spacing) -> np.ndarray:
        label_map, max_label = label_map_and_max(labels)
        return weight_map_in_boxes(label_map, max_label, self.radius, axis_scale(spacing, label_map.ndim), None)


def map_transforms(radii, num_classes, voxel_maps, numpy_path=False):
    """(row label, transform) pairs: DBCE at each radius (first through the numpy/OpenCV path when asked), then the
    packaged per-voxel maps when asked; each told the dataset's largest label, as nnU-Net's trainers tell it."""
    rows = [(f"numpy/OpenCV path, R = {radius:g}", VoxelMapTransform(WeightMapInBoxes(radius), max_label=num_classes))
            for radius in (radii if numpy_path else [])]
    rows += [(f"weight maps, R = {radius:g}", DBCEWeightMapTransform(radius, max_label=num_classes))
             for radius in radii]
    if voxel_maps and num_classes <= VOXEL_MAP_MAX_CLASSES:
        rows += [("boundary loss: signed distances", VoxelMapTransform(SignedDistanceMaps(num_classes + 1),
                                                                        continuous=True, max_label=num_classes)),
                 ("U-Net border weights (w0 10, sigma 5)", VoxelMapTransform(UNetBorderWeights(),
                                                                             max_label=num_classes)),
                 ("Skeleton Recall: tubed skeletons", VoxelMapTransform(TubedSkeletons(range(1, num_classes + 1)),
                                                                        max_label=num_classes))]
    return rows


def cldice_seconds(segmentation: torch.Tensor, num_classes: int) -> float:
    """clDice's soft skeletons for one sample at full resolution: ``ClDiceLoss`` forward and backward on random
    logits (what Skeleton Recall's map spares the training step)."""
    logits = torch.randn((1, num_classes + 1, *segmentation.shape[1:]), requires_grad=True)
    start = time.perf_counter()
    ClDiceLoss()(logits, segmentation[None].long()).backward()
    return time.perf_counter() - start


def naive_weight_maps(label_map: np.ndarray, radius: float) -> None:
    """The approach to beat: scipy's binary_dilation of every class with a ball structuring element."""
    ball = sum(g ** 2 for g in np.indices([2 * int(radius) + 1] * label_map.ndim) - int(radius)) <= radius ** 2
    for label in range(1, int(label_map.max()) + 1):
        ndimage.binary_dilation(label_map == label, structure=ball)


def summary(times):
    """Mean with its standard error (the figure the ratios use), median and interquartile range, in ms."""
    times = np.asarray(times) * 1000
    return (f"mean {np.mean(times):7.2f} ± {np.std(times, ddof=1) / np.sqrt(len(times)):5.2f} ms, median "
            f"{np.median(times):6.2f} (IQR {np.percentile(times, 25):.2f}-{np.percentile(times, 75):.2f})")


def print_profile(title: str, profile: cProfile.Profile, calls: int, top: int) -> None:
    """The ``top`` functions of ``profile`` by time of their own, in microseconds per map call (profiler overhead
    included: compare functions with each other, not with the timed figures)."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    own = sorted(((tottime, ncalls, function if line == 0 else f"{function} ({Path(file).name}:{line})")
                  for (file, line, function), (_, ncalls, tottime, _, _) in stats.items()), reverse=True)
    print(f"{title}: {sum(t for t, _, _ in own) / calls * 1e6:.0f} us per call under the profiler")
    for tottime, ncalls, function in own[:top]:
        print(f"    {tottime / calls * 1e6:7.1f} us  {ncalls / calls:5.1f} calls  {function}")


def deep_supervision_scales(patch):
    """nnU-Net's scales for a plain U-Net planned on this patch: one per pooling, as its trainer derives them."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
    _, strides, _, _, _ = get_pool_and_conv_props([1.0] * len(patch), list(patch), 4, 999999)
    return [[float(f) for f in s] for s in 1 / np.cumprod(np.vstack(strides), axis=0)][:-1]


def dilation_crossover():
    """The three exact dilations (OpenCV kernel in 2D, runs on packed rows, distance transform) on boxes around a
    large structure, timed, next to the one ``dilate``'s cost model picks."""
    from nnunetv2_dbce.voxel_maps import dilation as dilation_module

    for shape, radius_of_structure in (((30, 26), 6), ((40, 40), 10), ((61, 50), 12), ((80, 80), 20),
                                       ((100, 117), 25), ((256, 256), 90), ((300, 371), 75), ((512, 512), 200),
                                       ((24, 24, 24), 6), ((48, 48, 48), 12), ((100, 100, 100), 40),
                                       ((128, 128, 128), 50)):
        grid = np.indices(shape)
        mask = (((grid - np.reshape(shape, (-1, *[1] * len(shape))) / 2) ** 2).sum(0) <= radius_of_structure ** 2)
        scale = np.ones(len(shape))
        for radius in (1, 2, 3, 5, 7, 10, 14, 20, 30):
            dilations = {"runs": partial(dilation_module.dilate_with_runs, mask, float(radius), tuple(scale)),
                         "distance transform": partial(dilation_module.dilate_with_distance_transform, mask, radius,
                                                       scale)}
            if len(shape) == 2:
                kernel = dilation_module.ball_kernel(float(radius), tuple(scale))
                dilations["kernel"] = partial(dilation_module.dilate_with_kernel, mask, kernel)
            timings = {}
            for name, dilation in dilations.items():
                dilation()
                start = time.perf_counter()
                for _ in range(5):
                    dilation()
                timings[name] = (time.perf_counter() - start) / 5 * 1000
            chosen = dilation_module.cheapest_dilation(float(radius), tuple(scale), mask.shape)
            fastest = min(timings, key=timings.__getitem__)
            print(f"box {'x'.join(map(str, shape))}, R = {radius:2d}: "
                  + ", ".join(f"{name} {ms:7.3f} ms" for name, ms in timings.items())
                  + f"; dilate takes {chosen}" + ("" if chosen == fastest else f" (fastest: {fastest})"))


def plot_cost(path: Path, radii=(0, 2, 5, 10, 20)) -> None:
    """Weight-map time (median of 5, one thread) against patch size, one line per radius, 2D and 3D."""
    sizes = {2: [64, 128, 256, 512, 1024], 3: [32, 64, 96, 128, 160]}
    with saved_figure(path, 1, 2, figsize=(10, 3.8), layout="constrained") as (_, axes):
        for ax, ndim in zip(axes, (2, 3)):
            for radius in radii:
                costs = []
                for size in sizes[ndim]:
                    structures = [(1, size * 0.3), (2, size * 0.1), (3, max(size * 0.03, 1))][:ndim]
                    labels = synthetic_labels((size,) * ndim, structures)
                    times = []
                    for _ in range(5):
                        start = time.perf_counter()
                        dbce_weight_map(labels, radius)
                        times.append(time.perf_counter() - start)
                    costs.append(1000 * np.median(times))
                ax.plot([s ** ndim for s in sizes[ndim]], costs, marker="o", label=f"R = {radius}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(f"voxels in the {ndim}D patch (side " + ", ".join(map(str, sizes[ndim])) + ")")
            ax.set_ylabel("weight map, ms (one thread)")
            shares = ", ".join(f"{share} %" for share in (30, 10, 3)[:ndim])
            ax.set_title(f"{ndim}D, {ndim} foreground classes (radii {shares} of the side)", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats-2d", type=int, default=300, help="augmented samples per 2D case")
    parser.add_argument("--repeats-3d", type=int, default=60, help="augmented samples per 3D case")
    parser.add_argument("--radii", type=float, nargs="+", default=[5, 10, 20])
    parser.add_argument("--cases", nargs="+", help="substrings of the case names to run (default: all)")
    parser.add_argument("--naive-repeats", type=int, default=3, help="samples for the scipy binary_dilation row")
    parser.add_argument("--voxel-maps", action="store_true",
                        help="also time the boundary loss's distance maps and the U-Net border weights")
    parser.add_argument("--dilation", action="store_true", help="print the OpenCV / distance transform crossover")
    parser.add_argument("--numpy-path", action="store_true",
                        help="add a row per radius through the numpy/OpenCV path the compiled 2D maps replace")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile the maps where they run and print each row's N costliest functions")
    parser.add_argument("--plot", type=Path, default=None, help="also write the cost-vs-size-and-radius plot here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    if args.dilation:
        with threadpool_limits(1):
            dilation_crossover()
        return
    print(f"torch {torch.__version__}, OpenCV {cv2.__version__}, 1 thread; ratios of means over the same augmented "
          f"samples (nnU-Net's augmentation is random: its cost per sample varies ~10x, hence many samples)\n")
    for name, case in CASES.items():
        if args.cases and not any(c in name for c in args.cases):
            continue
        patch = case["patch"]
        rotation = (-ROTATION[len(patch)], ROTATION[len(patch)])
        initial = get_patch_size(patch, rotation, rotation, rotation, (0.85, 1.25))
        transforms = nnUNetTrainer.get_training_transforms(patch, rotation, deep_supervision_scales(patch),
                                                           tuple(range(len(patch))), False)
        labels = case_labels(tuple(initial), case["structures"])
        num_classes = int(labels.max())
        image = torch.from_numpy(np.random.default_rng(1).normal(size=(1, *initial)).astype(np.float32))
        repeats = args.repeats_2d if len(patch) == 2 else args.repeats_3d

        rows = map_transforms(args.radii, num_classes, args.voxel_maps, args.numpy_path)
        profiles = {label: cProfile.Profile() for label, _ in rows}
        augmented, nnunet_times, map_times = [], [], {label: [] for label, _ in rows}
        with threadpool_limits(1), torch.no_grad():
            for _, transform in rows:  # once per process in training: the compiled 2D map's load from numba's cache
                transform(segmentation=torch.from_numpy(labels[None].copy()))
            for repeat in range(repeats):
                for label, transform in rows:
                    random.seed(repeat)
                    np.random.seed(repeat)
                    torch.manual_seed(repeat)
                    sample = {"image": image.clone(), "segmentation": torch.from_numpy(labels[None].copy())}
                    start = time.perf_counter()
                    sample = transforms(**sample)
                    nnunet_times.append(time.perf_counter() - start)
                    if args.profile:
                        profiles[label].runcall(transform, segmentation=sample["segmentation"])
                        continue
                    start = time.perf_counter()
                    transform(segmentation=sample["segmentation"])
                    map_times[label].append(time.perf_counter() - start)
                augmented.append(sample)
            print(f"{name}: nnU-Net default training transforms  {summary(nnunet_times)}")
            if args.profile:
                for label, profile in profiles.items():
                    print_profile(f"{name}: {label}", profile, repeats, args.profile)
                continue
            for label, times in map_times.items():
                ratio = np.mean(times) / np.mean(nnunet_times)
                print(f"{name}: {label:<38s} {summary(times)}  = {100 * ratio:5.1f} % of the transforms")
            if args.voxel_maps and case["structures"] == "vessels":
                with torch.enable_grad():
                    times = [cldice_seconds(sample["segmentation"][0], num_classes) for sample in augmented[:10]]
                print(f"{name}: {'clDice soft skeletons, fwd+bwd':<38s} {summary(times)}  = "
                      f"{100 * np.mean(times) / np.mean(nnunet_times):5.1f} % (in the training step)")
            if args.naive_repeats == 0 or num_classes > NAIVE_MAX_CLASSES:
                print()
                continue
            times = []
            for sample in augmented[:args.naive_repeats]:
                start = time.perf_counter()
                naive_weight_maps(sample["segmentation"][0][0].numpy(), args.radii[0])
                times.append(time.perf_counter() - start)
            print(f"{name}: {f'naive scipy dilation, R = {args.radii[0]:g}':<38s} {summary(times)}"
                  f"  = {100 * np.mean(times) / np.mean(nnunet_times):5.0f} % (dilation alone)")
        print()
    if args.plot is not None:
        with threadpool_limits(1):
            plot_cost(args.plot)


if __name__ == "__main__":
    main()
