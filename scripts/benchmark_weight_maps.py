"""Per-sample CPU cost of DBCE weight maps next to nnU-Net's default training transforms, one thread.

Both run on the same synthetic patches: 3D 128^3 with three foreground classes of very different sizes
and 2D 512^2 with a large and a small structure, fed to nnU-Net 2.8's ``get_training_transforms`` at
nnU-Net's enlarged initial patch size exactly as its data loader does. The weight-map figure is
``DilatedBalancedWeightsTransform`` on the augmented patch, all deep-supervision scales together.

A second part plots the cost of ``dilated_balanced_weights`` alone against patch size and radius
(structures scaled with the patch) to ``--plot``.

    python scripts/benchmark_weight_maps.py [--repeats 30] [--plot docs/weight_map_cost.png]
"""
import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size  # noqa: E402
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from nnunetv2_dbce import DilatedBalancedWeightsTransform, dilated_balanced_weights  # noqa: E402


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


CASES = {
    "3D 128^3, 3 classes": dict(patch=(128, 128, 128), rotation=np.pi / 6, mirror=(0, 1, 2),
                                structures=[(1, 40), (2, 12), (3, 3)], ds_levels=5),
    "2D 512^2, 2 classes": dict(patch=(512, 512), rotation=np.pi, mirror=(0, 1),
                                structures=[(1, 80), (2, 6)], ds_levels=7),
    "2D 512^2, 1 large class": dict(patch=(512, 512), rotation=np.pi, mirror=(0, 1),
                                    structures=[(1, 220)], ds_levels=7),
}


def naive_weight_maps(label_map: np.ndarray, radius: float) -> None:
    """The approach to beat: scipy's binary_dilation of every class with a ball structuring element."""
    ball = sum(g ** 2 for g in np.indices([2 * int(radius) + 1] * label_map.ndim) - int(radius)) <= radius ** 2
    for label in range(1, int(label_map.max()) + 1):
        ndimage.binary_dilation(label_map == label, structure=ball)


def summary(times):
    times = np.asarray(times) * 1000
    return (f"mean {np.mean(times):7.1f} ms, median {np.median(times):7.1f} "
            f"(IQR {np.percentile(times, 25):.1f}-{np.percentile(times, 75):.1f})")


def plot_cost(path: Path, radii=(0, 2, 5, 10, 20)) -> None:
    """Weight-map time (median of 5, one thread) against patch size, one line per radius, 2D and 3D."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = {2: [64, 128, 256, 512, 1024], 3: [32, 64, 96, 128, 160]}
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax, ndim in zip(axes, (2, 3)):
        for radius in radii:
            costs = []
            for size in sizes[ndim]:
                structures = [(1, size * 0.3), (2, size * 0.1), (3, max(size * 0.03, 1))][:ndim]
                labels = synthetic_labels((size,) * ndim, structures)
                times = []
                for _ in range(5):
                    start = time.perf_counter()
                    dilated_balanced_weights(labels, radius)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--radii", type=float, nargs="+", default=[5, 10])
    parser.add_argument("--naive-repeats", type=int, default=3, help="samples for the scipy binary_dilation row")
    parser.add_argument("--plot", type=Path, default=None, help="also write the cost-vs-size-and-radius plot here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    print(f"torch {torch.__version__}, 1 thread, {args.repeats} augmented samples per row; ratios of means "
          f"(nnU-Net's augmentation is random, so its cost per sample varies a lot)\n")
    for name, case in CASES.items():
        patch = case["patch"]
        rotation = (-case["rotation"], case["rotation"])
        initial = get_patch_size(patch, rotation, rotation, rotation, (0.85, 1.25))
        ds_scales = [[1 / 2 ** k] * len(patch) for k in range(case["ds_levels"])]
        transforms = nnUNetTrainer.get_training_transforms(patch, rotation, ds_scales, case["mirror"], False)
        labels = synthetic_labels(tuple(initial), case["structures"])
        image = torch.from_numpy(np.random.default_rng(1).normal(size=(1, *initial)).astype(np.float32))

        augmented, nnunet_times = [], []
        with threadpool_limits(1), torch.no_grad():
            for _ in range(args.repeats):
                sample = {"image": image.clone(), "segmentation": torch.from_numpy(labels[None].copy())}
                start = time.perf_counter()
                augmented.append(transforms(**sample))
                nnunet_times.append(time.perf_counter() - start)
            print(f"{name}: nnU-Net default training transforms  {summary(nnunet_times)}")
            for radius in args.radii:
                weight_transform = DilatedBalancedWeightsTransform(radius)
                times = []
                for sample in augmented:
                    start = time.perf_counter()
                    weight_transform(segmentation=sample["segmentation"])
                    times.append(time.perf_counter() - start)
                ratio = np.mean(times) / np.mean(nnunet_times)
                print(f"{name}: weight maps, R = {radius:<4g}               {summary(times)}"
                      f"  = {100 * ratio:5.1f} % of the transforms")
            times = []
            for sample in augmented[:args.naive_repeats]:
                start = time.perf_counter()
                naive_weight_maps(sample["segmentation"][0][0].numpy(), args.radii[0])
                times.append(time.perf_counter() - start)
            print(f"{name}: naive scipy dilation, R = {args.radii[0]:<4g}      {summary(times)}"
                  f"  = {100 * np.mean(times) / np.mean(nnunet_times):5.0f} % (dilation alone)")
        print()
    if args.plot is not None:
        with threadpool_limits(1):
            plot_cost(args.plot)


if __name__ == "__main__":
    main()
