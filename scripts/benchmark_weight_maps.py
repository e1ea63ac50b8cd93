"""Per-sample CPU cost of DBCE weight maps next to nnU-Net's default training transforms, one thread.

Both run on the same synthetic patches: 3D 128^3 with three foreground classes of very different sizes
and 2D 512^2 with a large and a small structure, fed to nnU-Net 2.8's ``get_training_transforms`` at
nnU-Net's enlarged initial patch size exactly as its data loader does. The weight-map figure is
``DilatedBalancedWeightsTransform`` on the augmented patch, all deep-supervision scales together.

    python scripts/benchmark_weight_maps.py [--repeats 10]
"""
import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size  # noqa: E402
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from nnunetv2_dbce import DilatedBalancedWeightsTransform  # noqa: E402


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
}


def summary(times):
    times = np.asarray(times) * 1000
    return (f"mean {np.mean(times):7.1f} ms, median {np.median(times):7.1f} "
            f"(IQR {np.percentile(times, 25):.1f}-{np.percentile(times, 75):.1f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--radii", type=float, nargs="+", default=[5, 10])
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
        print()


if __name__ == "__main__":
    main()
