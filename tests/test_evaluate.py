"""The evaluator (nnUNetv2_dbce_evaluate) against nnU-Net's Dice and brute-force references, on an
anisotropic 3D dataset with an ignore label, and on regions."""
import csv
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_dbce.tools.evaluate import (
    evaluate_case,
    evaluate_folder,
    holes,
    lesion_scores,
    main,
    size_bin,
    size_bins,
    summarize,
    topology_metrics,
    zero_dice_cases,
)
from nnunetv2_dbce.tools.nnunet import nnunet_command
from reference import reference_component_sizes, reference_lesion_counts, reference_surface_metrics

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


def test_console_command(folders, tmp_path, capsys):
    """``main`` in this process (where mutation testing sees it), then the installed command once."""
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": LABELS, "file_ending": ".nii.gz"}))
    out = tmp_path / "summary.json"
    main([str(folders / "gt"), str(folders / "pred"), "-djfile", str(tmp_path / "dataset.json"), "-o", str(out),
          "-np", "1"])
    printed, progress = capsys.readouterr()
    assert "Evaluating cases: 100%" in progress and "3/3" in progress
    summary = json.loads(out.read_text())
    assert set(summary["lesion_wise"]) == {"1", "2"} and summary["lost"] == {} and "LOST" not in printed
    for label in ("1", "2"):
        mean, lesions, topology = summary["mean"][label], summary["lesion_wise"][label], summary["topology"][label]
        assert (f"{label}: Dice {mean['Dice']:.4f}, HD95 {mean['HD95']:.2f} mm, NSD {mean['NSD']:.4f}, lesion F1 "
                f"{lesions['F1']:.3f} (recall {lesions['recall']:.3f}, precision {lesions['precision']:.3f}), clDice "
                f"{topology['clDice']:.4f}, Betti errors b0 {topology['betti0_error']:g} b1 "
                f"{topology['betti1_error']:g}") in printed
    assert f"Wrote {out} and {out.with_suffix('.csv')}" in printed
    with open(out.with_suffix(".csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((row["case"], row["label"]) for row in rows) == [(f"case_{c}", label) for c in range(3)
                                                                   for label in ("1", "2")]
    main([str(folders / "gt"), str(folders / "pred"), "-djfile", str(tmp_path / "dataset.json"), "-np", "1"])
    assert (folders / "pred" / "summary_dbce.json").is_file()  # the default output: in the predictions folder
    (folders / "pred" / "summary_dbce.json").unlink()
    (folders / "pred" / "summary_dbce.csv").unlink()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_code:
        main([str(folders / "gt"), str(folders / "pred"), "-djfile", str(tmp_path / "missing.json")])
    assert exit_code.value.code == 1
    assert capsys.readouterr().err.startswith(f"nnUNetv2_dbce_evaluate: error: cannot read the dataset.json "
                                              f"{tmp_path / 'missing.json'}")


@pytest.mark.cli
def test_installed_command_fails_in_one_line(folders, tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": LABELS, "file_ending": ".nii.gz"}))
    missing = subprocess.run([EVALUATE,
                              str(tmp_path), str(folders / "pred"), "-djfile", str(tmp_path / "dataset.json")],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip().splitlines() == [
        f"nnUNetv2_dbce_evaluate: error: 3 predictions have no reference in {tmp_path}, e.g. case_0.nii.gz"]


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
    assert topology_metrics(ring, ring)["betti1_error"] == 0
    far_bar = np.roll(bar, 4, axis=0)  # rows 8-10: no overlap with the bar
    assert topology_metrics(bar, far_bar)["clDice"] == 0.0  # both skeletons miss the other mask
    diagonal = np.zeros((4, 4), bool)
    diagonal[0, 0] = diagonal[1, 1] = True  # one component with full connectivity
    apart = np.zeros((4, 4), bool)
    apart[0, 0] = apart[2, 2] = True
    assert topology_metrics(diagonal, apart)["betti0_error"] == 1 and topology_metrics(apart, diagonal)[
        "betti0_error"] == 1
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


def test_a_label_at_dice_0_on_half_its_cases_is_flagged_lost(folders, tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    for case in range(3):
        prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(folders / "pred" / f"case_{case}.nii.gz")))
        if case < 2:
            prediction[prediction == 2] = 0  # label 2 never predicted in two of the three cases
        write(prediction, tmp_path / "pred" / f"case_{case}.nii.gz")
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": LABELS, "file_ending": ".nii.gz"}))
    main([str(folders / "gt"), str(tmp_path / "pred"), "-djfile", str(tmp_path / "dataset.json"), "-np", "1"])
    summary = json.loads((tmp_path / "pred" / "summary_dbce.json").read_text())
    assert summary["lost"] == {"2": {"zero_dice": 2, "cases": 3}}
    assert "LOST 2: Dice 0 on 2 of the 3 cases that contain it" in capsys.readouterr().out
    in_workers = evaluate_folder(folders / "gt", tmp_path / "pred", {"labels": LABELS, "file_ending": ".nii.gz"},
                                 num_processes=2)
    assert in_workers["lost"] == {2: {"zero_dice": 2, "cases": 3}}
    progress = capsys.readouterr().err
    assert "Evaluating cases: 100%" in progress and "3/3" in progress


def test_folder_mistakes_are_refused_in_one_clear_message(folders, tmp_path, capsys):
    """Missing folders, no predictions, predictions without reference, references without prediction (unless
    chill, as nnU-Net's -chill), an output that is not .json; one prediction alone is evaluated."""
    from nnunetv2_dbce.tools.cli import UserError
    dataset_json = {"labels": LABELS, "file_ending": ".nii.gz"}
    gt, pred = folders / "gt", folders / "pred"
    (tmp_path / "empty").mkdir()
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "case_1.nii.gz").write_bytes((pred / "case_1.nii.gz").read_bytes())
    for arguments, message in (
            ((tmp_path / "nope", pred), f"the reference folder {tmp_path / 'nope'} does not exist"),
            ((gt, tmp_path / "nope"), f"the predictions folder {tmp_path / 'nope'} does not exist"),
            ((gt, tmp_path / "empty"), f"no predictions (.nii.gz) in {tmp_path / 'empty'}"),
            ((tmp_path / "one", pred), f"2 predictions have no reference in {tmp_path / 'one'}, e.g. case_0.nii.gz"),
            ((gt, tmp_path / "one"), f"2 of the 3 references in {gt} have no prediction in {tmp_path / 'one'} (e.g. "
                                     f"case_0.nii.gz); -chill evaluates the 1 there are")):
        with pytest.raises(UserError) as error:
            evaluate_folder(*arguments, dataset_json, num_processes=1, progress=False)
        assert str(error.value) == message
    with pytest.raises(UserError, match=r"^the output file must end with \.json, got .*summary\.csv$"):
        evaluate_folder(gt, pred, dataset_json, tmp_path / "summary.csv", num_processes=1, progress=False)
    one = evaluate_folder(gt, tmp_path / "one", dataset_json, num_processes=1, progress=False, chill=True)
    assert [Path(case["prediction_file"]).name for case in one["metric_per_case"]] == ["case_1.nii.gz"]
    assert capsys.readouterr().err == ""  # progress=False: no progress bar


def reference_holes(mask):
    """b1 by flood fill: the background's face-connected components with a ring of background around the image,
    which joins every component that touches the border into one, minus that one."""
    return len(reference_component_sizes(np.pad(~mask, 1, constant_values=True))) - 1


def test_holes_equal_a_flood_fill_on_random_masks():
    """Random masks dense enough to enclose background pixels next to every border row and column."""
    rng = np.random.default_rng(0)
    counted = []
    for _ in range(60):
        mask = rng.random((int(rng.integers(4, 9)), int(rng.integers(4, 9)))) < 0.6
        counted.append(reference_holes(mask))
        assert holes(mask) == counted[-1]
    assert max(counted) >= 2


def test_size_tertiles_lesion_scores_and_lost_labels_of_hand_made_numbers():
    assert size_bins([0, 0.5, 2, 4, 8]) == pytest.approx(list(np.quantile([0.5, 2, 4, 8], [1 / 3, 2 / 3])))
    assert size_bins([0, 3, 5]) == []  # fewer than three cases with the label: no tertiles
    assert [size_bin(v, [1.0, 2.0]) for v in (0, 0.5, 1.0, 1.5, 2.0, 9)] == [None, 0, 1, 1, 2, 2]
    assert size_bin(3, []) is None

    scores = lesion_scores(4, 2, 5, 1)
    assert scores == {"recall": 0.5, "precision": 0.2, "F1": pytest.approx(2 * 0.5 * 0.2 / 0.7), "ref_lesions": 4,
                      "detected_lesions": 2, "pred_lesions": 5, "tp_lesions": 1}
    assert lesion_scores(2, 0, 3, 0)["F1"] == 0.0  # nothing found, nothing right: F1 0
    for no_reference_or_prediction in (lesion_scores(0, 0, 2, 0), lesion_scores(2, 0, 0, 0)):
        assert math.isnan(no_reference_or_prediction["F1"])
    assert math.isnan(lesion_scores(0, 0, 2, 0)["recall"]) and math.isnan(lesion_scores(2, 0, 0, 0)["precision"])

    assert zero_dice_cases([0, 0.8]) == (1, 2) and zero_dice_cases([0, 0.5, 0.7]) is None
    assert zero_dice_cases([]) is None


def test_summary_of_hand_made_cases():
    """Lost labels count only the cases whose reference holds the label (however small its volume); means and
    Betti sums of metrics that are NaN in every case stay NaN, without warnings."""
    import warnings

    def case(dice, ref_volume, betti1):
        metrics = dict.fromkeys(("IoU", "HD95", "NSD", "clDice"), 0.5)
        metrics.update(Dice=dice, ref_volume=ref_volume, ref_lesions=1, detected_lesions=1, pred_lesions=1,
                       tp_lesions=1, betti0_error=1, betti1_error=betti1)
        return {"metrics": {1: metrics}}

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_and_lost = summarize([case(0.0, 0.5, math.nan), case(0.0, 0.4, math.nan), case(0.9, 5, math.nan)], [1])
        absent = summarize([case(0.0, 0, 2), case(0.0, 0, 1), case(0.9, 5, math.nan), case(math.nan, 0, math.nan)],
                           [1])
        single = summarize([case(0.7, 3, math.nan)], [1])
    assert tiny_and_lost["lost"] == {1: {"zero_dice": 2, "cases": 3}}
    assert tiny_and_lost["dice_by_size"][1] == {"edges": size_bins([0.5, 0.4, 5]), "dice": [0.0, 0.0, 0.9],
                                                "cases": [1, 1, 1]}
    topology = tiny_and_lost["topology"][1]
    assert math.isnan(topology["betti1_error"]) and topology["betti0_error"] == 3
    assert absent["lost"] == {}
    assert absent["topology"][1]["betti1_error"] == 3 and absent["mean"][1]["Dice"] == pytest.approx(0.3)
    assert single["mean"][1]["Dice"] == 0.7 and math.isnan(single["mean"][1]["betti1_error"])
    assert single["foreground_mean"]["Dice"] == 0.7 and math.isnan(single["foreground_mean"]["betti1_error"])
    two_labels = summarize([{"metrics": {1: case(0.2, 3, math.nan)["metrics"][1],
                                         2: case(0.6, 4, 1)["metrics"][1]}}], [1, 2])
    assert two_labels["foreground_mean"]["Dice"] == pytest.approx(0.4)
    assert two_labels["foreground_mean"]["betti1_error"] == 1  # a label's NaN left out of the mean over labels


def test_a_2d_image_stored_as_3d_is_measured_in_2d(tmp_path):
    """The singleton axis's spacing does not enter the reference volume (mm^2), here with an axis of 2 voxels."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    reference = np.zeros((1, 2, 9), np.uint8)
    reference[0, :, 2:5] = 1
    for name in ("gt", "pred"):
        image = sitk.GetImageFromArray(reference)
        image.SetSpacing((0.8, 0.5, 5.0))
        sitk.WriteImage(image, str(tmp_path / f"{name}.nii.gz"))
    result = evaluate_case(str(tmp_path / "gt.nii.gz"), str(tmp_path / "pred.nii.gz"), SimpleITKIO(), [1])
    assert result["metrics"][1]["ref_volume"] == pytest.approx(6 * 0.8 * 0.5)
    assert result["metrics"][1]["Dice"] == 1
