"""Evaluate an nnU-Net predictions folder, from any trainer: nnU-Net's Dice plus boundary, lesion-wise and
size-binned metrics, per case and label (or region).

``nnUNetv2_dbce_evaluate GT_FOLDER PRED_FOLDER -djfile DATASET_JSON [-o OUT.json] [-np N]`` takes the
arguments of nnU-Net's ``nnUNetv2_evaluate_folder`` (no plans file needed) and writes nnU-Net's
``summary.json`` layout, extended, plus a CSV with one row per case and label.

Per case and label or region (``regions_class_order`` in dataset.json: the regions, as nnU-Net evaluates):
- ``Dice``, ``IoU``, ``TP`` ... exactly nnU-Net's ``compute_metrics`` (empty reference and prediction: NaN).
- ``HD95`` (mm) and ``NSD`` (tolerance in mm), MONAI, image spacing: see ``surface_metrics``.
- Lesions are the connected components of the label's mask (full connectivity). ``ref_lesions`` /
  ``detected_lesions``: reference components / those overlapped by any predicted voxel; ``pred_lesions`` /
  ``tp_lesions``: predicted components / those overlapping any reference voxel. Voxels of the ignore label
  are left out of both masks first.
- ``ref_volume``: reference volume in mm^3 (mm^2 for 2D images).
- ``clDice`` (hard skeletons), ``betti0_error`` (|b0(P) - b0(L)|, components) and ``betti1_error`` (2D: holes; NaN
  in 3D): see ``topology_metrics``.

Over cases: ``mean`` / ``foreground_mean`` as nnU-Net's; ``lesion_wise`` per label: recall =
sum(detected) / sum(ref lesions), precision = sum(tp) / sum(pred lesions), F1, and the counts;
``dice_by_size`` per label: the cases whose reference holds the label are split into tertiles of reference
volume (``size_bins``), mean Dice per tertile; ``topology`` per label: mean clDice and the summed Betti errors.
"""
import argparse
import csv
import math
import multiprocessing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from nnunetv2_dbce.tools.cli import UserError, console_command
from nnunetv2_dbce.tools.surface_metrics import surface_distances

if TYPE_CHECKING:  # nnU-Net is imported where it is used: the command starts fast
    from nnunetv2.imageio.base_reader_writer import BaseReaderWriter

NSD_TOLERANCE_MM = 1.0
CASE_METRICS = ("Dice", "IoU", "TP", "FP", "FN", "HD95", "NSD", "ref_volume", "ref_lesions", "detected_lesions",
                "pred_lesions", "tp_lesions", "clDice", "betti0_error", "betti1_error")


def lesion_counts(reference: np.ndarray, prediction: np.ndarray) -> dict:
    """Connected components (full connectivity) of two boolean masks and how many of each touch the other."""
    structure = ndimage.generate_binary_structure(reference.ndim, reference.ndim)
    ref_components, num_ref = ndimage.label(reference, structure)
    pred_components, num_pred = ndimage.label(prediction, structure)
    return {"ref_lesions": num_ref, "detected_lesions": int(np.unique(ref_components[prediction & reference]).size),
            "pred_lesions": num_pred, "tp_lesions": int(np.unique(pred_components[prediction & reference]).size)}


def topology_metrics(reference: np.ndarray, prediction: np.ndarray) -> dict:
    """clDice of two boolean masks (Shit et al. 2021, hard skeletons of ``skimage.morphology.skeletonize``):
    ``2 Tprec Tsens / (Tprec + Tsens)`` with ``Tprec = |S(P) & L| / |S(P)|``, ``Tsens = |S(L) & P| / |S(L)|``, NaN
    when both masks are empty, 0 when one is; and the Betti number errors ``|b0(P) - b0(L)|`` (connected
    components, full connectivity) and, for 2D masks (singleton axes dropped), ``|b1(P) - b1(L)|`` (holes: the
    background's face-connected components that do not touch the border; NaN in 3D)."""
    reference, prediction = np.squeeze(reference), np.squeeze(prediction)
    if not reference.any() and not prediction.any():
        cldice = math.nan
    elif not reference.any() or not prediction.any():
        cldice = 0.0
    else:
        prediction_skeleton, reference_skeleton = skeleton(prediction), skeleton(reference)
        precision = float((prediction_skeleton & reference).sum()) / float(prediction_skeleton.sum())
        sensitivity = float((reference_skeleton & prediction).sum()) / float(reference_skeleton.sum())
        cldice = 2 * precision * sensitivity / (precision + sensitivity) if precision + sensitivity > 0 else 0.0
    full = ndimage.generate_binary_structure(reference.ndim, reference.ndim)
    betti0 = abs(ndimage.label(prediction, full)[1] - ndimage.label(reference, full)[1])
    betti1 = abs(holes(prediction) - holes(reference)) if reference.ndim == 2 else math.nan
    return {"clDice": cldice, "betti0_error": betti0, "betti1_error": betti1}


def skeleton(mask: np.ndarray) -> np.ndarray:
    """``skimage.morphology.skeletonize`` of a boolean mask, except that an object thinned away entirely (3D
    thinning deletes a 2x2x2 cube) is its own skeleton: every object of the mask keeps at least one voxel."""
    from skimage.morphology import skeletonize
    thinned = skeletonize(mask)
    objects = ndimage.label(mask, ndimage.generate_binary_structure(mask.ndim, mask.ndim))[0]
    return thinned | (mask & ~np.isin(objects, np.unique(objects[thinned])))


def holes(mask: np.ndarray) -> int:
    """b1 of a 2D mask: components of its background (face connectivity, the complement of the mask's full
    connectivity) that do not touch the image border."""
    background, count = ndimage.label(~mask, ndimage.generate_binary_structure(2, 1))
    border = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    return count - int(np.count_nonzero(border))


def evaluate_case(reference_file: str, prediction_file: str, reader_writer: "BaseReaderWriter",
                  labels_or_regions: Sequence, ignore_label: int | None = None,
                  tolerance: float = NSD_TOLERANCE_MM) -> dict:
    """nnU-Net's ``compute_metrics`` of one case, each label's entry extended by the metrics of this module."""
    from nnunetv2.evaluation.evaluate_predictions import (
        compute_metrics,
        region_or_label_to_mask,
    )

    result = compute_metrics(reference_file, prediction_file, reader_writer, list(labels_or_regions), ignore_label)
    reference, properties = reader_writer.read_seg(reference_file)
    prediction, _ = reader_writer.read_seg(prediction_file)
    reference, prediction = reference[0], prediction[0]
    spacing = [float(s) for s in properties["spacing"]]
    measured = [s for s, n in zip(spacing, reference.shape) if n > 1]  # 2D images stored as 3D: measured in 2D
    voxel_volume = float(np.prod(measured))  # 1.0 for a one-voxel image
    kept = None if ignore_label is None else reference != ignore_label
    for label in labels_or_regions:
        ref_mask = region_or_label_to_mask(reference, label)
        pred_mask = region_or_label_to_mask(prediction, label)
        if kept is not None:
            ref_mask &= kept
            pred_mask &= kept
        hd95, nsd = surface_distances(ref_mask, pred_mask, spacing, tolerance)
        result["metrics"][label].update(HD95=hd95, NSD=nsd, ref_volume=float(ref_mask.sum()) * voxel_volume,
                                        **lesion_counts(ref_mask, pred_mask), **topology_metrics(ref_mask, pred_mask))
    return result


def _evaluate_case_star(arguments: tuple) -> dict:
    return evaluate_case(*arguments)


def size_bins(volumes: Sequence[float]) -> list:
    """The two tertile edges of the positive reference volumes (empty list if fewer than three)."""
    positive = [v for v in volumes if v > 0]
    return [float(e) for e in np.quantile(positive, [1 / 3, 2 / 3])] if len(positive) >= 3 else []


def size_bin(volume: float, edges: Sequence[float]) -> int | None:
    """0, 1 or 2: the tertile of ``volume`` (small, medium, large); None for an empty reference or no edges."""
    if volume <= 0 or not edges:
        return None
    return int(np.searchsorted(edges, volume, side="right"))


def lesion_scores(ref_lesions: int, detected: int, pred_lesions: int, tp: int) -> dict:
    """Recall, precision and F1 of summed lesion counts (NaN where undefined)."""
    recall = detected / ref_lesions if ref_lesions else math.nan
    precision = tp / pred_lesions if pred_lesions else math.nan
    f1 = 2 * recall * precision / (recall + precision) if recall + precision > 0 else \
        (0.0 if not (math.isnan(recall) or math.isnan(precision)) else math.nan)
    return {"recall": recall, "precision": precision, "F1": f1, "ref_lesions": ref_lesions,
            "detected_lesions": detected, "pred_lesions": pred_lesions, "tp_lesions": tp}


def zero_dice_cases(dice_of_cases_with_label: Sequence[float]) -> tuple | None:
    """``(cases at Dice 0, cases)`` when a label is *lost*: Dice 0 on at least half of the cases that contain it
    (the run never learned to predict it); None otherwise."""
    zero, total = sum(d == 0 for d in dice_of_cases_with_label), len(dice_of_cases_with_label)
    return (zero, total) if total and 2 * zero >= total else None


def summarize(per_case: list, labels_or_regions: Sequence) -> dict:
    """nnU-Net's summary layout (``metric_per_case``, ``mean``, ``foreground_mean``) plus ``lesion_wise``,
    ``dice_by_size`` and ``topology`` per label, and ``lost``: ``{label: {"zero_dice": n, "cases": m}}`` for the
    labels at Dice 0 on at least half of the m cases that contain them."""
    means, lesion_wise, dice_by_size, topology, lost = {}, {}, {}, {}, {}
    for label in labels_or_regions:
        metrics = [case["metrics"][label] for case in per_case]
        if zero_dice := zero_dice_cases([c["Dice"] for c in metrics if c["ref_volume"] > 0]):
            lost[label] = {"zero_dice": zero_dice[0], "cases": zero_dice[1]}
        means[label] = {m: float(np.nanmean([c[m] for c in metrics])) if any(not math.isnan(c[m]) for c in metrics)
                        else math.nan for m in metrics[0]}
        counts = [sum(c[key] for c in metrics) for key in ("ref_lesions", "detected_lesions", "pred_lesions",
                                                            "tp_lesions")]
        lesion_wise[label] = lesion_scores(*counts)
        topology[label] = {"clDice": means[label]["clDice"],
                           **{key: float(np.nansum([c[key] for c in metrics])) if any(
                               not math.isnan(c[key]) for c in metrics) else math.nan
                              for key in ("betti0_error", "betti1_error")}}
        edges = size_bins([c["ref_volume"] for c in metrics])
        bins = [size_bin(c["ref_volume"], edges) for c in metrics]
        dice_by_size[label] = {"edges": edges, "dice": [
            float(np.nanmean(d)) if (d := [c["Dice"] for c, b in zip(metrics, bins) if b == k]) else math.nan
            for k in range(3)], "cases": [bins.count(k) for k in range(3)]}
    foreground = [label for label in labels_or_regions if label != 0]
    foreground_mean = {m: float(np.nanmean(values)) if not np.isnan(values).all() else math.nan
                       for m in means[foreground[0]] if (values := [means[label][m] for label in foreground])}
    return {"metric_per_case": per_case, "mean": means, "foreground_mean": foreground_mean,
            "lesion_wise": lesion_wise, "dice_by_size": dice_by_size, "topology": topology, "lost": lost}


def case_name(path: str, file_ending: str) -> str:
    return Path(path).name[:-len(file_ending)]


def csv_rows(summary: dict, file_ending: str) -> list:
    """One row per case and label: ``case``, ``label`` and ``CASE_METRICS``."""
    return [{"case": case_name(case["reference_file"], file_ending), "label": str(label),
             **{m: case["metrics"][label][m] for m in CASE_METRICS}}
            for case in summary["metric_per_case"] for label in case["metrics"]]


def evaluate_folder(gt_folder: str | Path, pred_folder: str | Path, dataset_json: dict,
                    output_file: str | Path | None = None, num_processes: int = 2,
                    tolerance: float = NSD_TOLERANCE_MM, progress: bool = True, chill: bool = False) -> dict:
    """Evaluate every prediction in ``pred_folder`` against the same file name in ``gt_folder``.

    :param output_file: ``.json`` summary to write (and a ``.csv`` next to it); None: nothing written.
    :param chill: as nnU-Net's ``-chill``: evaluate the predictions there are even if some references have none.
    :return: the summary (labels as ints, regions as tuples).

    Raises:
        UserError: a folder that does not exist, no predictions, a prediction without reference, or (unless
            ``chill``) references without prediction.
    """
    from nnunetv2.evaluation.evaluate_predictions import (
        label_or_region_to_key,
        save_summary_json,
    )
    from nnunetv2.imageio.reader_writer_registry import (
        determine_reader_writer_from_dataset_json,
    )
    from nnunetv2.utilities.json_export import recursive_fix_for_json_export
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    from tqdm import tqdm

    file_ending = dataset_json["file_ending"]
    gt_folder, pred_folder = Path(gt_folder), Path(pred_folder)
    for kind, folder in (("reference", gt_folder), ("predictions", pred_folder)):
        if not folder.is_dir():
            raise UserError(f"the {kind} folder {folder} does not exist")
    predictions = sorted(p for p in pred_folder.iterdir() if p.name.endswith(file_ending))
    if not predictions:
        raise UserError(f"no predictions ({file_ending}) in {pred_folder}")
    missing = [p.name for p in predictions if not (gt_folder / p.name).is_file()]
    if missing:
        raise UserError(f"{len(missing)} predictions have no reference in {gt_folder}, e.g. {missing[0]}")
    unpredicted = sorted({p.name for p in gt_folder.iterdir() if p.name.endswith(file_ending)} -
                         {p.name for p in predictions})
    if unpredicted and not chill:
        total = len(predictions) + len(unpredicted)
        raise UserError(f"{len(unpredicted)} of the {total} references in {gt_folder} have no prediction in "
                        f"{pred_folder} (e.g. {unpredicted[0]}); -chill evaluates the {len(predictions)} there are")
    labels = LabelManager(dataset_json["labels"], dataset_json.get("regions_class_order"))
    labels_or_regions = labels.foreground_regions if labels.has_regions else labels.foreground_labels
    reader_writer = determine_reader_writer_from_dataset_json(dataset_json, str(predictions[0]))()
    jobs = [(str(gt_folder / p.name), str(p), reader_writer, labels_or_regions, labels.ignore_label, tolerance)
            for p in predictions]
    if num_processes == 1:  # in this process: no worker start-up (seconds of imports)
        per_case = [_evaluate_case_star(job) for job in tqdm(jobs, disable=not progress, desc="Evaluating cases")]
    else:
        with multiprocessing.get_context("spawn").Pool(num_processes) as pool:
            per_case = list(tqdm(pool.imap(_evaluate_case_star, jobs), total=len(jobs), disable=not progress,
                                 desc="Evaluating cases"))
    summary = summarize(per_case, labels_or_regions)
    recursive_fix_for_json_export(summary)
    if output_file is not None:
        output_file = Path(output_file)
        if output_file.suffix != ".json":
            raise UserError(f"the output file must end with .json, got {output_file}")
        keyed = {part: {label_or_region_to_key(k): v for k, v in summary[part].items()}
                 for part in ("lesion_wise", "dice_by_size", "topology", "lost")}
        save_summary_json({**summary, **keyed}, str(output_file))  # nnU-Net's: label / region keys as strings
        with open(output_file.with_suffix(".csv"), "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["case", "label", *CASE_METRICS])
            writer.writeheader()
            writer.writerows(csv_rows(summary, file_ending))
    return summary


@console_command("nnUNetv2_dbce_evaluate")
def main(argv: Sequence[str] | None = None) -> None:
    from nnunetv2.configuration import default_num_processes
    parser = argparse.ArgumentParser(prog="nnUNetv2_dbce_evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("gt_folder", help="folder with the reference segmentations")
    parser.add_argument("pred_folder", help="folder with the predicted segmentations (same file names)")
    parser.add_argument("-djfile", required=True, help="the dataset's dataset.json")
    parser.add_argument("-o", help="output .json (a .csv is written next to it); default: "
                        "PRED_FOLDER/summary_dbce.json")
    parser.add_argument("-np", type=int, default=default_num_processes, help="processes")
    parser.add_argument("--nsd-tolerance", type=float, default=NSD_TOLERANCE_MM, help="NSD tolerance in mm")
    parser.add_argument("-chill", action="store_true", help="as nnU-Net's: do not refuse when references have no "
                        "prediction (only the predictions there are are evaluated)")
    args = parser.parse_args(argv)
    import json
    try:
        dataset_json = json.loads(Path(args.djfile).read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read the dataset.json {args.djfile}: {error}") from None
    output = Path(args.o) if args.o else Path(args.pred_folder) / "summary_dbce.json"
    summary = evaluate_folder(args.gt_folder, args.pred_folder, dataset_json, output, args.np, args.nsd_tolerance,
                              chill=args.chill)
    for label, mean in summary["mean"].items():
        lesions = summary["lesion_wise"][label]
        topology = summary["topology"][label]
        print(f"{label}: Dice {mean['Dice']:.4f}, HD95 {mean['HD95']:.2f} mm, NSD {mean['NSD']:.4f}, "
              f"lesion F1 {lesions['F1']:.3f} (recall {lesions['recall']:.3f}, precision {lesions['precision']:.3f}), "
              f"clDice {topology['clDice']:.4f}, Betti errors b0 {topology['betti0_error']:g} "
              f"b1 {topology['betti1_error']:g}")
    for label, counts in summary["lost"].items():
        print(f"LOST {label}: Dice 0 on {counts['zero_dice']} of the {counts['cases']} cases that contain it; the "
              f"model does not predict it")
    print(f"Wrote {output} and {output.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
