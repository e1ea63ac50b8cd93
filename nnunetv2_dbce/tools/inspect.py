"""Weight-map inspector: the DBCE weight map of one preprocessed nnU-Net case, as NIfTI and as a PNG montage.

    nnUNetv2_dbce_inspect DATASET CASE [-c 2d] [-r 0 5 10] [-o inspect/] [--summary]
    nnUNetv2_dbce_inspect DATASET --fold 2 [-c 2d] [-r 0 3 5] [--split val]   # the summary of a fold's cases

Writes ``<case>_image.nii.gz`` (first channel), ``<case>_label.nii.gz`` and ``<case>_weights_R<r>.nii.gz``
per radius, all on the preprocessed voxel grid with the configuration's spacing, so they overlay each other
in ITK-SNAP or 3D Slicer; and ``<case>_weight_map.png``: image, label and each weight map on the slice with
the most foreground. The whole case is weighted as one patch (training computes the map per augmented
patch, so class shares there vary with the crop); 2D configurations weight each slice on its own, as
their 2D patches are.

``--summary`` (or ``--fold``) prints, per radius and label, what the weights give the label: its weight relative
to the background outside every band (1 is plain CE), its share of the patch's total weight, the share of its
background band, and how much of its band it shares with another label's band.
"""
import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnunetv2_dbce.tools.cli import UserError, console_command
from nnunetv2_dbce.tools.figures import saved_figure
from nnunetv2_dbce.tools.nnunet import check_configuration, dataset_folder, fold_cases
from nnunetv2_dbce.voxel_maps.dbce import dbce_weight_map
from nnunetv2_dbce.voxel_maps.dilation import check_radius, dilate
from nnunetv2_dbce.voxel_maps.labels import axis_scale


def load_preprocessed_case(dataset: str, case: str, configuration: str, plans: str) -> tuple:
    """Image (C, Z, Y, X), label map (Z, Y, X), spacing (per axis, mm), 2D flag and ignore label of a case."""
    import json

    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = dataset_folder(dataset)
    plans_json = json.loads((folder / f"{plans}.json").read_text())
    check_configuration(plans_json, configuration, plans)
    config = PlansManager(plans_json).get_configuration(configuration)
    data_folder = folder / config.data_identifier
    if not data_folder.is_dir():
        raise UserError(f"{data_folder} does not exist: preprocess {configuration} first")
    dataset_class = infer_dataset_class(str(data_folder))
    identifiers = dataset_class.get_identifiers(str(data_folder))
    if case not in identifiers:
        raise UserError(f"case {case!r} is not in {data_folder} (e.g. {identifiers[:3]})")
    data, seg, _, _ = dataset_class(str(data_folder), [case]).load_case(case)
    ignore_label = json.loads((folder / "dataset.json").read_text())["labels"].get("ignore")
    image, label_map = np.asarray(data), np.asarray(seg[0]).astype(np.int16)
    label_map[label_map < 0] = 0
    is_2d = len(config.spacing) == 2
    spacing = (1.0, *config.spacing) if is_2d else tuple(config.spacing)
    return image, label_map, spacing, is_2d, ignore_label


def weight_map(label_map: np.ndarray, radius: float, spacing: Sequence[float], is_2d: bool,
               ignore_label: int | None = None) -> np.ndarray:
    """DBCE weights (float32, shape of ``label_map``); slice by slice along axis 0 when ``is_2d``."""
    if is_2d:
        return np.stack([dbce_weight_map(s, radius, spacing[1:], ignore_label) for s in label_map])
    return dbce_weight_map(label_map, radius, spacing, ignore_label)


def patch_shares(label_map: np.ndarray, weights: np.ndarray, radius: float, spacing: Sequence[float]) -> dict:
    """What the weight map of one patch gives each foreground class c present in it:
    ``relative``: c's weight over the weight of the background outside every band (1 = plain CE);
    ``share``: the part of the patch's total weight on c's voxels (plain CE: c's area fraction);
    ``band_share``: the part on the background band around c (voxels of c's dilated mask not of any class);
    ``shared_band``: the part of c's band that lies in another class's band too (those voxels take the larger
    weight of the two)."""
    scale = axis_scale(spacing, label_map.ndim)
    classes = [int(c) for c in np.unique(label_map) if c > 0]
    dilated = {c: dilate(label_map == c, radius, scale) for c in classes}
    outside = ~np.any(list(dilated.values()), axis=0) if classes else np.ones(label_map.shape, bool)
    background_weight = float(weights[outside].mean()) if outside.any() else float("nan")
    total = float(weights.sum())
    shares = {}
    for c in classes:
        band = dilated[c] & (label_map == 0)
        others = np.any([d for o, d in dilated.items() if o != c], axis=0) if len(classes) > 1 else np.zeros_like(band)
        shares[c] = {"relative": float(weights[label_map == c][0]) / background_weight,
                     "share": float(weights[label_map == c].sum()) / total,
                     "band_share": float(weights[band].sum()) / total,
                     "shared_band": float((band & others).sum()) / max(1, int(band.sum()))}
    return shares


def weight_summary(cases: Sequence[tuple], radii: Sequence[float], labels: dict) -> str:
    """Per radius and foreground label: ``patch_shares`` averaged over the patches (2D: slices; 3D: volumes)
    that contain the label, as a Markdown table. ``cases``: ``(label_map, spacing, is_2d)``."""
    per: dict[tuple, list[np.ndarray]] = {(r, c): [] for r in radii for c in labels}
    for label_map, spacing, is_2d in cases:
        patches = [(s, spacing[1:]) for s in label_map] if is_2d else [(label_map, spacing)]
        for patch, patch_spacing in patches:
            for radius in radii:
                weights = dbce_weight_map(patch, radius, patch_spacing)
                for c, values in patch_shares(patch, weights, radius, patch_spacing).items():
                    per[(radius, c)].append(values)
    lines = ["| R | label | patches | weight / background's | share of the weight | share of its band | "
             "band shared with another label |", "|---|---|---|---|---|---|---|"]
    for radius in radii:
        for c, name in labels.items():
            values = per[(radius, c)]
            if values:
                mean = {key: np.nanmean([v[key] for v in values]) for key in values[0]}
                lines.append(f"| {radius:g} | {name} | {len(values)} | {mean['relative']:.2f} | {mean['share']:.3f} | "
                             f"{mean['band_share']:.3f} | {mean['shared_band']:.3f} |")
    return "\n".join(lines)


def write_nifti(array: np.ndarray, spacing: Sequence[float], path: Path) -> None:
    import SimpleITK as sitk
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    sitk.WriteImage(image, str(path))


def montage(image: np.ndarray, label_map: np.ndarray, weights: dict, title: str, path: Path) -> None:
    """Image (Y, X, or Y, X, 3 for RGB), label map and one weight map per radius (log colour scale)."""
    columns = 2 + len(weights)
    with saved_figure(path, 1, columns, figsize=(3.0 * columns, 3.6), layout="constrained") as (figure, axes):
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import LogNorm

        positive = [w[w > 0] for w in weights.values()]
        norm = LogNorm(vmin=min(p.min() for p in positive), vmax=max(p.max() for p in positive))
        if image.ndim == 3:
            image = (image - image.min()) / max(image.max() - image.min(), 1e-8)
        axes[0].imshow(image, cmap="gray", interpolation="nearest")
        axes[0].set_title(title, fontsize=9)
        axes[1].imshow(label_map, cmap="viridis", interpolation="nearest")
        axes[1].set_title(f"label map (labels {', '.join(map(str, np.unique(label_map)))})", fontsize=9)
        for ax, (radius, weight) in zip(axes[2:], weights.items()):
            ax.imshow(np.where(weight > 0, weight, np.nan), cmap="magma", norm=norm, interpolation="nearest")
            ax.contour(label_map > 0, levels=[0.5], colors="cyan", linewidths=0.6)
            name = "balanced CE (R = 0)" if radius == 0 else f"DBCE, R = {radius:g}"
            values = " / ".join(f"{v:.2f}" for v in np.unique(weight))
            ax.set_title(f"{name}\nweights {values}", fontsize=9)
        for ax in axes:
            ax.set_axis_off()
        figure.colorbar(ScalarMappable(norm, "magma"), ax=axes[2:], shrink=0.8, label="voxel weight (log scale)")


@console_command("nnUNetv2_dbce_inspect")
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nnUNetv2_dbce_inspect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="nnU-Net dataset id or name")
    parser.add_argument("case", nargs="?", help="case identifier, e.g. hippocampus_001")
    parser.add_argument("-c", "--configuration", default="2d")
    parser.add_argument("-p", "--plans", default="nnUNetPlans")
    parser.add_argument("-r", "--radii", type=float, nargs="+", default=[0, 5, 10])
    parser.add_argument("-o", "--out", type=Path, default=Path("weight_maps"))
    parser.add_argument("--png", type=Path, help="montage path (default: <out>/<case>_weight_map.png)")
    parser.add_argument("--fold", type=int, help="instead of one case: the --summary of every case of this fold "
                        "of nnU-Net's splits (the training cases, or --split val)")
    parser.add_argument("--split", choices=("train", "val"), default="train")
    parser.add_argument("--summary", action="store_true", help="print what each radius's weights give each label "
                        "(weight relative to the background, share of the weight, of its band, band shared with "
                        "another label), averaged over the patches (2D: slices) holding the label")
    args = parser.parse_args(argv)
    if (args.case is None) == (args.fold is None):
        parser.error("give a case or --fold (not both)")
    for radius in args.radii:
        try:
            check_radius(radius)
        except (TypeError, ValueError) as error:
            parser.error(f"-r: {error}")

    import json
    labels = {value: name for name, value in
              json.loads((dataset_folder(args.dataset) / "dataset.json").read_text())["labels"].items()
              if isinstance(value, int) and value > 0 and name != "ignore"}
    if args.fold is not None:
        cases = []
        for case in fold_cases(args.dataset, args.fold, args.split):
            _, label_map, spacing, is_2d, _ = load_preprocessed_case(args.dataset, case, args.configuration, args.plans)
            cases.append((label_map, spacing, is_2d))
        print(f"{len(cases)} {args.split} cases of fold {args.fold}, {args.configuration}:")
        print(weight_summary(cases, args.radii, labels))
        return

    image, label_map, spacing, is_2d, ignore_label = load_preprocessed_case(args.dataset, args.case,
                                                                            args.configuration, args.plans)
    weights = {radius: weight_map(label_map, radius, spacing, is_2d, ignore_label) for radius in args.radii}
    args.out.mkdir(parents=True, exist_ok=True)
    write_nifti(image[0].astype(np.float32), spacing, args.out / f"{args.case}_image.nii.gz")
    write_nifti(label_map.astype(np.uint8), spacing, args.out / f"{args.case}_label.nii.gz")
    for radius, weight in weights.items():
        write_nifti(weight, spacing, args.out / f"{args.case}_weights_R{radius:g}.nii.gz")

    shown = int(np.argmax((label_map > 0).sum(axis=(1, 2))))
    png = args.png or args.out / f"{args.case}_weight_map.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    title = f"{args.case} ({args.configuration})" + ("" if label_map.shape[0] == 1 else f", slice {shown}")
    slice_image = np.moveaxis(image[:, shown], 0, -1) if image.shape[0] == 3 else image[0, shown]
    montage(slice_image, label_map[shown], {r: w[shown] for r, w in weights.items()}, title, png)
    print(f"wrote {args.out}/{args.case}_{{image,label,weights_R*}}.nii.gz and {png}")
    if args.summary:
        print(weight_summary([(label_map, spacing, is_2d)], args.radii, labels))


if __name__ == "__main__":
    main()
