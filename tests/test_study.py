"""The loss study, the weight-map inspector, the Kvasir converter and the surface metrics they report."""
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from conftest import DATASET_ID, run_cli
from nnunetv2_dbce.study import derive_small_plans, foreground_labels, markdown_table
from nnunetv2_dbce.surface_metrics import surface_metrics
from nnunetv2_dbce.weight_maps import dilated_balanced_weights

SCRIPTS = Path(__file__).parents[1] / "scripts"


@pytest.mark.parametrize("shape, spacing", [((10, 13, 9), (2.5, 0.8, 1.1)), ((1, 17, 15), (999.0, 1.0, 0.7))])
def test_surface_metrics_match_brute_force(shape, spacing):
    rng = np.random.default_rng(len(shape) + int(spacing[0]))
    for _ in range(4):
        reference = ndimage.binary_dilation(rng.random(shape) > 0.97, iterations=2).astype(np.int16)
        prediction = ndimage.binary_dilation(rng.random(shape) > 0.97, iterations=2).astype(np.int16) * 2
        prediction[(reference == 1) & (rng.random(shape) > 0.3)] = 1
        hd95, nsd = surface_metrics(reference, prediction, [1], spacing, tolerance=1.5)[1]
        kept = [s for s, n in zip(spacing, shape) if n > 1]  # 2D images stored as 3D: measured in 2D
        expected = reference_surface_metrics(reference.squeeze() == 1, prediction.squeeze() == 1, kept, 1.5)
        assert hd95 == pytest.approx(expected[0], rel=1e-5)
        assert nsd == pytest.approx(expected[1], rel=1e-5)


def test_surface_metrics_of_absent_classes():
    reference = np.zeros((6, 6), np.int16)
    prediction = reference.copy()
    prediction[2:4, 2:4] = 1
    metrics = surface_metrics(reference, prediction, [1, 2], (1.0, 1.0), 1.0)
    assert math.isnan(metrics[1][0]) and metrics[1][1] == 0.0  # predicted but absent: no distance, NSD 0
    assert metrics[2] == (0.0, 1.0)  # absent from both: perfect
    with pytest.raises(ValueError, match="do not match"):
        surface_metrics(reference, prediction[:5], [1], (1.0, 1.0), 1.0)


def test_small_plans_variant_keeps_source_and_data(tmp_path):
    source = {"plans_name": "nnUNetPlans", "configurations": {
        "2d": {"data_identifier": "nnUNetPlans_2d", "batch_size": 366, "patch_size": [56, 40],
               "architecture": {"arch_kwargs": {"strides": [[1, 1], [2, 2], [2, 2], [2, 2]]}}},
        "3d_fullres": {"data_identifier": "nnUNetPlans_3d_fullres", "batch_size": 2}}}
    (tmp_path / "nnUNetPlans.json").write_text(json.dumps(source))
    identifier = derive_small_plans(tmp_path, "nnUNetPlans", "2d", batch_size=8, patch_size=[32, 24])
    assert identifier == "nnUNetPlans_bs8_ps32x24"
    assert json.loads((tmp_path / "nnUNetPlans.json").read_text()) == source
    variant = json.loads((tmp_path / f"{identifier}.json").read_text())
    assert variant["plans_name"] == identifier and list(variant["configurations"]) == ["2d"]
    config = variant["configurations"]["2d"]
    assert (config["batch_size"], config["patch_size"], config["data_identifier"]) == (8, [32, 24], "nnUNetPlans_2d")
    assert derive_small_plans(tmp_path, "nnUNetPlans", "2d") == "nnUNetPlans"
    with pytest.raises(SystemExit, match="divisible by the network's total stride"):
        derive_small_plans(tmp_path, "nnUNetPlans", "2d", patch_size=[30, 24])
    with pytest.raises(SystemExit, match="configuration '3d_lowres' is not in"):
        derive_small_plans(tmp_path, "nnUNetPlans", "3d_lowres", batch_size=2)


def test_foreground_labels_leave_out_the_ignore_label_and_refuse_regions():
    labels = {"background": 0, "anterior": 1, "posterior": 2, "ignore": 3}
    assert foreground_labels({"labels": labels}) == {1: "anterior", 2: "posterior"}
    regions = {"labels": {"background": 0, "whole": [1, 2], "core": 2}, "regions_class_order": [1, 2]}
    with pytest.raises(SystemExit, match="region-based datasets are not supported"):
        foreground_labels(regions)


def test_markdown_table_spread_over_folds_and_missing_distances():
    rows = [{"trainer": "T", "fold": fold, "case": f"c{case}", "label": 1, "dice": dice, "hd95_mm": hd, "nsd": 0.5}
            for fold, values in ((0, [(0.8, 2.0), (0.6, math.nan)]), (1, [(0.4, 4.0), (0.4, 6.0)]))
            for case, (dice, hd) in enumerate(values)]
    never = [{"trainer": "U", "fold": fold, "case": "c0", "label": 1, "dice": 0.0, "hd95_mm": math.nan, "nsd": 0.0}
             for fold in (0, 1)]
    lines = markdown_table(rows + never, ["T", "U"], {1: "organ"}).splitlines()
    # fold means: Dice 0.7 and 0.4 -> 0.55 +- std 0.212; HD95 2.0 (NaN left out) and 5.0 -> 3.5 +- 2.12
    assert lines[2] == "| T | 0.550 ± 0.212 | 3.50 ± 2.12 | 0.500 ± 0.000 | 0.550 | 1 |"
    assert lines[3] == "| U | 0.000 ± 0.000 | n/a | 0.000 ± 0.000 | 0.000 | 2 |"


def test_study_smoke_run_and_resume(preprocessed_dataset, nnunet_env, tmp_path):
    """One tiny trainer, one fold, through the study script: outputs agree with nnU-Net's own validation,
    and a second call reuses the finished run instead of training again."""
    out = tmp_path / "study"
    command = [sys.executable, str(SCRIPTS / "study.py"), str(DATASET_ID), "-c", "2d", "-tr",
               "nnUNetTrainerDBCE_tiny", "-f", "0", "--epochs", "1", "--iterations", "2", "--val-iterations", "1",
               "--batch-size", "2", "-o", str(out)]
    first = run_cli(command, nnunet_env)
    assert "Study plans: nnUNetPlans_bs2" in first.stdout and "training" in first.stdout
    run = out / "nnUNet_results" / preprocessed_dataset.name / "nnUNetTrainerDBCE_tiny__nnUNetPlans_bs2__2d" / "fold_0"
    summary = json.loads((run / "validation" / "summary.json").read_text())
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * len(summary["metric_per_case"])  # labels spot and blob, every validation case
    for row in rows:
        case = next(c for c in summary["metric_per_case"] if Path(c["reference_file"]).name == f"{row['case']}.png")
        assert float(row["dice"]) == pytest.approx(case["metrics"][row["label"]]["Dice"], nan_ok=True)
    table = (out / "results.md").read_text()
    assert "nnUNetTrainerDBCE_tiny" in table and "python scripts/study.py 991" in table
    for png in ("metrics.png", "curves.png"):
        assert Image.open(out / png).size[0] > 100
    checkpoint_time = (run / "checkpoint_final.pth").stat().st_mtime
    second = run_cli(command, nnunet_env)
    assert "finished before, reusing" in second.stdout
    assert (run / "checkpoint_final.pth").stat().st_mtime == checkpoint_time
    other = subprocess.run([*command[:-6], "--epochs", "2", *command[-6:]], env=nnunet_env, capture_output=True,
                           text=True)
    assert other.returncode != 0 and "holds a study with other settings (epochs: 1 -> 2)" in other.stderr


def test_inspector_writes_the_training_weight_map(preprocessed_dataset, nnunet_env, tmp_path):
    import SimpleITK as sitk
    case = "demo_000"
    run_cli([sys.executable, str(SCRIPTS / "inspect_weight_map.py"), str(DATASET_ID), case, "-r", "0", "3",
             "-o", str(tmp_path)], nnunet_env)
    label_map = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{case}_label.nii.gz")))
    for radius in (0, 3):
        weights = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{case}_weights_R{radius}.nii.gz")))
        np.testing.assert_allclose(weights[0], dilated_balanced_weights(label_map[0], radius), rtol=1e-6)
    assert set(np.unique(label_map)) == {0, 1, 2}
    assert Image.open(tmp_path / f"{case}_weight_map.png").size[0] > 300
    missing = subprocess.run([sys.executable, str(SCRIPTS / "inspect_weight_map.py"), str(DATASET_ID), "nope",
                              "-o", str(tmp_path)], env=nnunet_env, capture_output=True, text=True)
    assert missing.returncode != 0 and "case 'nope' is not in" in missing.stderr


def test_kvasir_conversion(tmp_path):
    source = tmp_path / "kvasir"
    (source / "images").mkdir(parents=True)
    (source / "masks").mkdir()
    rng = np.random.default_rng(0)
    for case in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(source / "images" / f"{case}.jpg")
        Image.fromarray((rng.random((16, 16)) > 0.7).astype(np.uint8)).save(source / "masks" / f"{case}.png")
    command = [sys.executable, str(SCRIPTS / "convert_kvasir.py"), "--source", str(source), "--raw",
               str(tmp_path / "raw"), "--id", "777"]
    subprocess.run(command, check=True, capture_output=True)
    target = tmp_path / "raw" / "Dataset777_KvasirSEG"
    dataset_json = json.loads((target / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "R", "1": "G", "2": "B"} and dataset_json["numTraining"] == 2
    for case in ("a", "b"):
        np.testing.assert_array_equal(np.asarray(Image.open(target / "imagesTr" / f"{case}_0000.png")),
                                      np.asarray(Image.open(source / "images" / f"{case}.jpg").convert("RGB")))
        np.testing.assert_array_equal(np.asarray(Image.open(target / "labelsTr" / f"{case}.png")),
                                      np.asarray(Image.open(source / "masks" / f"{case}.png")))
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(source / "masks" / "b.png")
    bad = subprocess.run(command, capture_output=True, text=True)
    assert bad.returncode != 0 and "expected a single-channel 0/1 mask" in bad.stderr
