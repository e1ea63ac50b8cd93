"""Figure of DBCE weight maps next to their label map (the README's picture).

    python scripts/weight_map_figure.py [--mask PATH] [--radii 0 5 10] [--out docs/weight_map.png]

``--mask``: a 2D label image (PNG, integer labels). Default: one Kvasir-SEG polyp mask from
``../shared/data/kvasir_seg_256`` when that folder exists, else a case of the demo's generated dataset.
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from PIL import Image  # noqa: E402

from nnunetv2_dbce import dilated_balanced_weights  # noqa: E402
from nnunetv2_dbce.demo import synthetic_case  # noqa: E402

KVASIR_MASK = Path(__file__).resolve().parents[2] / "shared/data/kvasir_seg_256/masks/cju0s690hkp960855tjuaqvv0.png"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mask", type=Path, default=KVASIR_MASK if KVASIR_MASK.exists() else None)
    parser.add_argument("--radii", type=float, nargs="+", default=[0, 5, 10])
    parser.add_argument("--out", type=Path, default=Path("docs/weight_map.png"))
    args = parser.parse_args()

    if args.mask is not None:
        label_map, source = np.asarray(Image.open(args.mask)).astype(np.int16), args.mask.name
    else:
        label_map, source = synthetic_case(np.random.default_rng(3), 128)[1].astype(np.int16), "generated demo case"
    weights = [dilated_balanced_weights(label_map, radius) for radius in args.radii]
    norm = LogNorm(vmin=min(w.min() for w in weights), vmax=max(w.max() for w in weights))

    figure, axes = plt.subplots(1, 1 + len(weights), figsize=(3.2 * (1 + len(weights)), 3.4), layout="constrained")
    axes[0].imshow(label_map, cmap="gray", interpolation="nearest")
    axes[0].set_title(f"label map\n({source})", fontsize=9)
    for ax, radius, weight in zip(axes[1:], args.radii, weights):
        shown = ax.imshow(weight, cmap="magma", norm=norm, interpolation="nearest")
        ax.contour(label_map > 0, levels=[0.5], colors="cyan", linewidths=0.6)
        title = "balanced CE (R = 0)" if radius == 0 else f"DBCE, R = {radius:g}"
        values = " / ".join(f"{v:.2f}" for v in np.unique(weight))
        ax.set_title(f"{title}\nweights {values}", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    figure.colorbar(shown, ax=axes[1:], shrink=0.8, label="voxel weight (log scale)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
