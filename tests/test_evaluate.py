"""The evaluator (nnUNetv2_dbce_evaluate) against nnU-Net's Dice and brute-force references, on an
anisotropic 3D dataset with an ignore label, and on regions."""
import csv
import json
import math
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_dbce.tools.evaluate import evaluate_folder, holes, topology_metrics
from nnunetv2_dbce.tools.nnunet import nnunet_command
from reference import reference_lesion_counts, reference_surface_metrics

SPACING = (2.5, 0.8, 1.1)  # numpy axis order
SHAPE = (8, 12, 10)
EVALUATE = nnunet_command("nnUNetv2_dbce_evaluate")
LABELS = {"background": 0, "organ": 1, "lesion": 2, "ignore": 3}


def write(array, path):
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(SPACING[::-1])
    sitk.WriteImage(image, str(path))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Three cases: reference and prediction with blobs of labels 1 and 2 (several lesions of 2), label 3 ignored."""
    root = tmp_path_factory.mktemp("evaluate")
    (root / "gt").mkdir()
    (root / "pred").mkdir()
    rng = np.random.default_rng(7)
    grid = np.indices(SHAPE)
    for case in range(3):
        reference = np.zeros(SHAPE, np.uint8)
        centre = rng.uniform([2, 3, 3], [6, 9, 7])
        reference[(((grid - centre[:, None, None, None]) / (1 + case * 0.6)) ** 2).sum(0) <= 4] = 1
        for _ in range(2 + case):
            spot = rng.integers(0, SHAPE)
            reference[tuple(slice(max(s - 1, 0), s + 1) for s in spot)] = 2
        prediction = reference.copy()
        prediction[rng.random(SHAPE) < 0.04] = 2  # false-positive specks
        prediction[(reference == 1) & (rng.random(SHAPE) < 0.3)] = 0
        reference[0, :3] = 3  # ignored stripe
        prediction[0, :3] = 1  # predictions there must not count
        write(reference, root / "gt" / f"case_{case}.nii.gz")
        write(prediction, root / "pred" / f"case_{case}.nii.gz")
    return root


def test_evaluator_matches_nnunet_and_brute_force(folders):
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder, load_summary_json
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    dataset_json = {"labels": LABELS, "file_ending": ".nii.gz", "channel_names": {"0": "x"}}
    summary = evaluate_folder(folders / "gt", folders / "pred", dataset_json, folders / "out.json", num_processes=1,
                              tolerance=1.5, progress=False)
    nnunet = compute_metrics_on_folder(str(folders / "gt"), str(folders / "pred"), None, SimpleITKIO(), ".nii.gz",
                                       [1, 2], ignore_label=3, num_processes=1)
    assert len(summary["metric_per_case"]) == 3
    totals = {label: dict.fromkeys(("ref_lesions", "detected_lesions", "pred_lesions", "tp_lesions"), 0)
              for label in (1, 2)}
    for case, theirs in zip(summary["metric_per_case"], nnunet["metric_per_case"]):
        reference = sitk.GetArrayFromImage(sitk.ReadImage(case["reference_file"]))
        prediction = sitk.GetArrayFromImage(sitk.ReadImage(case["prediction_file"]))
        kept = reference != 3
        for label in (1, 2):
            metrics = case["metrics"][label]
            assert metrics["Dice"] == theirs["metrics"][label]["Dice"]
            ref, pred = (reference == label) & kept, (prediction == label) & kept
            hd95, nsd = reference_surface_metrics(ref, pred, SPACING, 1.5)
            assert metrics["HD95"] == pytest.approx(hd95, rel=1e-5) and metrics["NSD"] == pytest.approx(nsd, rel=1e-5)
            counts = reference_lesion_counts(ref, pred)
            assert {k: metrics[k] for k in counts} == counts
            assert metrics["ref_volume"] == pytest.approx(ref.sum() * np.prod(SPACING))
            for key in counts:
                totals[label][key] += counts[key]
    for label in (1, 2):
        lesions = summary["lesion_wise"][label]
        recall = totals[label]["detected_lesions"] / totals[label]["ref_lesions"]
        precision = totals[label]["tp_lesions"] / totals[label]["pred_lesions"]
        assert lesions["recall"] == pytest.approx(recall) and lesions["precision"] == pytest.approx(precision)
        assert lesions["F1"] == pytest.approx(2 * recall * precision / (recall + precision))
        assert totals[2]["pred_lesions"] > totals[2]["tp_lesions"]  # the specks are false-positive lesions
        # three cases, three tertiles: one case each, from the smallest reference volume up
        by_volume = sorted(summary["metric_per_case"], key=lambda c: c["metrics"][label]["ref_volume"])
        sizes = summary["dice_by_size"][label]
        assert sizes["cases"] == [1, 1, 1]
        assert sizes["dice"] == pytest.approx([c["metrics"][label]["Dice"] for c in by_volume])
    written = load_summary_json(str(folders / "out.json"))  # nnU-Net's own reader takes the extended layout
    assert written["mean"][1]["Dice"] == pytest.approx(nnunet["mean"][1]["Dice"])
    with open(folders / "out.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {r["case"] for r in rows} == {"case_0", "case_1", "case_2"}


def test_regions_are_evaluated_as_nnunet_does(folders):
    dataset_json = {"labels": {"background": 0, "whole": [1, 2], "lesion": 2}, "regions_class_order": [1, 2],
                    "file_ending": ".nii.gz", "channel_names": {"0": "x"}}
    summary = evaluate_folder(folders / "gt", folders / "pred", dataset_json, folders / "regions.json",
                              num_processes=1, progress=False)
    assert set(json.loads((folders / "regions.json").read_text())["lesion_wise"]) == {"(1, 2)", "2"}
    case = summary["metric_per_case"][0]
    reference = sitk.GetArrayFromImage(sitk.ReadImage(case["reference_file"]))
    prediction = sitk.GetArrayFromImage(sitk.ReadImage(case["prediction_file"]))
    ref, pred = np.isin(reference, [1, 2]), np.isin(prediction, [1, 2])
    assert set(case["metrics"]) == {(1, 2), 2}  # nnU-Net keeps one-label regions as ints
    assert case["metrics"][(1, 2)]["Dice"] == pytest.approx(2 * (ref & pred).sum() / (ref.sum() + pred.sum()))
    assert case["metrics"][(1, 2)]["ref_lesions"] == reference_lesion_counts(ref, pred)["ref_lesions"]


def test_console_command(folders, tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": LABELS, "file_ending": ".nii.gz"}))
    out = tmp_path / "summary.json"
    result = subprocess.run([EVALUATE,
                             str(folders / "gt"), str(folders / "pred"), "-djfile", str(tmp_path / "dataset.json"),
                             "-o", str(out), "-np", "2"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "lesion F1" in result.stdout and out.is_file() and out.with_suffix(".csv").is_file()
    summary = json.loads(out.read_text())
    assert not math.isnan(summary["foreground_mean"]["Dice"]) and set(summary["lesion_wise"]) == {"1", "2"}
    assert summary["lost"] == {} and "LOST" not in result.stdout
    missing = subprocess.run([EVALUATE,
                              str(tmp_path), str(folders / "pred"), "-djfile", str(tmp_path / "dataset.json")],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "have no reference" in missing.stderr


def test_topology_metrics_of_hand_made_cases():
    bar = np.zeros((11, 20), bool)
    bar[4:7, 2:18] = True
    broken = bar.copy()
    broken[:, 9:11] = False  # a gap of two columns: two components instead of one
    from skimage.morphology import skeletonize
    centre_line = skeletonize(bar)
    assert centre_line[5, 9:11].all()  # the skeleton runs through the gap's columns ...
    sensitivity = (centre_line.sum() - centre_line[:, 9:11].sum()) / centre_line.sum()  # ... which misses them
    metrics = topology_metrics(bar, broken)
    assert metrics["betti0_error"] == 1 and metrics["betti1_error"] == 0
    assert metrics["clDice"] == pytest.approx(2 * sensitivity / (1 + sensitivity))  # precision 1: broken is in bar
    assert topology_metrics(bar, bar)["clDice"] == 1

    yy, xx = np.mgrid[:21, :21]
    disk = (yy - 10) ** 2 + (xx - 10) ** 2 <= 64
    ring = disk & ((yy - 10) ** 2 + (xx - 10) ** 2 > 16)
    assert holes(ring) == 1 and holes(disk) == 0  # the background around them touches the border: not a hole
    assert holes(~disk) == 1 and holes(~ring) == 1  # the disk (the ring's centre) enclosed by the mask is one
    ring_against_disk = topology_metrics(ring, disk)
    assert ring_against_disk["betti1_error"] == 1 and ring_against_disk["betti0_error"] == 0
    two_rings = topology_metrics(ring[None], np.concatenate([ring[:, :11], ring[:, :10]], 1)[None])
    assert two_rings["betti1_error"] == 1 and two_rings["betti0_error"] == 1  # a 2D image stored as 3D: 2D

    empty = np.zeros((4, 4, 4), bool)
    blob = empty.copy()
    blob[1:3, 1:3, 1:3] = True
    assert math.isnan(topology_metrics(empty, empty)["clDice"])
    assert topology_metrics(blob, empty) == {"clDice": 0.0, "betti0_error": 1, "betti1_error": pytest.approx(math.nan,
                                                                                                               nan_ok=True)}
    from skimage.morphology import skeletonize
    assert not skeletonize(blob).any()  # 3D thinning deletes the 2x2x2 cube: it stands for its own skeleton
    assert topology_metrics(blob, blob)["clDice"] == 1
    shifted = np.roll(blob, 1, axis=0)  # half of it overlaps the blob: precision = sensitivity = 1/2
    assert topology_metrics(blob, shifted)["clDice"] == pytest.approx(0.5)


def test_a_label_at_dice_0_on_half_its_cases_is_flagged_lost(folders, tmp_path):
    (tmp_path / "pred").mkdir()
    for case in range(3):
        prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(folders / "pred" / f"case_{case}.nii.gz")))
        if case < 2:
            prediction[prediction == 2] = 0  # label 2 never predicted in two of the three cases
        write(prediction, tmp_path / "pred" / f"case_{case}.nii.gz")
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": LABELS, "file_ending": ".nii.gz"}))
    result = subprocess.run([EVALUATE, str(folders / "gt"), str(tmp_path / "pred"), "-djfile",
                             str(tmp_path / "dataset.json"), "-np", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "pred" / "summary_dbce.json").read_text())
    assert summary["lost"] == {"2": {"zero_dice": 2, "cases": 3}}
    assert "LOST 2: Dice 0 on 2 of the 3 cases that contain it" in result.stdout
    in_process = evaluate_folder(folders / "gt", tmp_path / "pred", {"labels": LABELS, "file_ending": ".nii.gz"},
                             num_processes=1, progress=False)
    assert in_process["lost"] == {2: {"zero_dice": 2, "cases": 3}}
