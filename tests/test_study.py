"""The loss study (local and on SLURM), the weight-map inspector, the Kvasir converter and the surface metrics they
report."""
import csv
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from helpers import DATASET_ID, STUDY, TINY_STUDY, run_cli
from nnunetv2_dbce.tools.cli import UserError
from nnunetv2_dbce.tools.inspect import patch_shares, weight_summary
from nnunetv2_dbce.tools.nnunet import nnunet_command
from nnunetv2_dbce.tools.plans import derive_small_plans
from nnunetv2_dbce.tools.provenance import checkout_commit, cpu_name, package_commit
from nnunetv2_dbce.tools.study import label_names
from nnunetv2_dbce.tools.study_report import (
    add_size_bins,
    comparisons,
    fold_dice_table,
    fold_sections,
    metrics_table,
    paper_baselines,
    provenance_lines,
)
from nnunetv2_dbce.tools.study_run import log_start
from nnunetv2_dbce.tools.surface_metrics import surface_distances
from nnunetv2_dbce.voxel_maps.dbce import dbce_weight_map
from reference import ball_structuring_element, reference_surface_metrics

INSPECT, CONVERT_KVASIR = (nnunet_command(f"nnUNetv2_dbce_{name}") for name in ("inspect", "convert_kvasir"))


@pytest.mark.parametrize("shape, spacing", [((10, 13, 9), (2.5, 0.8, 1.1)), ((1, 17, 15), (999.0, 1.0, 0.7))])
def test_surface_metrics_match_brute_force(shape, spacing):
    rng = np.random.default_rng(len(shape) + int(spacing[0]))
    for _ in range(4):
        reference = ndimage.binary_dilation(rng.random(shape) > 0.97, iterations=2).astype(np.int16)
        prediction = ndimage.binary_dilation(rng.random(shape) > 0.97, iterations=2).astype(np.int16) * 2
        prediction[(reference == 1) & (rng.random(shape) > 0.3)] = 1
        hd95, nsd = surface_distances(reference == 1, prediction == 1, spacing, tolerance=1.5)
        kept = [s for s, n in zip(spacing, shape) if n > 1]  # 2D images stored as 3D: measured in 2D
        expected = reference_surface_metrics(reference.squeeze() == 1, prediction.squeeze() == 1, kept, 1.5)
        assert hd95 == pytest.approx(expected[0], rel=1e-5)
        assert nsd == pytest.approx(expected[1], rel=1e-5)


def test_surface_metrics_of_absent_classes():
    reference = np.zeros((6, 6), np.int16)
    prediction = reference.copy()
    prediction[2:4, 2:4] = 1
    hd95, nsd = surface_distances(reference == 1, prediction == 1, (1.0, 1.0), 1.0)
    assert math.isnan(hd95) and nsd == 0.0  # predicted but absent: no distance, NSD 0
    assert surface_distances(reference == 2, prediction == 2, (1.0, 1.0), 1.0) == (0.0, 1.0)  # absent from both
    with pytest.raises(ValueError, match="do not match"):
        surface_distances(reference == 1, prediction[:5] == 1, (1.0, 1.0), 1.0)


def test_small_plans_variant_keeps_source_and_data(tmp_path):
    arch = {"n_stages": 4, "features_per_stage": [32, 64, 128, 256], "strides": [[1, 1], [2, 2], [2, 2], [2, 2]],
            "kernel_sizes": [[3, 3]] * 4, "n_conv_per_stage": [2, 2, 2, 2], "n_conv_per_stage_decoder": [2, 2, 2]}
    source = {"plans_name": "nnUNetPlans", "configurations": {
        "2d": {"data_identifier": "nnUNetPlans_2d", "batch_size": 366, "patch_size": [56, 40], "spacing": [1.0, 1.0],
               "architecture": {"arch_kwargs": arch}},
        "3d_fullres": {"data_identifier": "nnUNetPlans_3d_fullres", "batch_size": 2}}}
    (tmp_path / "nnUNetPlans.json").write_text(json.dumps(source))
    identifier = derive_small_plans(tmp_path, "nnUNetPlans", "2d", batch_size=8, features=16)
    assert identifier == "nnUNetPlans_bs8_f16"
    assert json.loads((tmp_path / "nnUNetPlans.json").read_text()) == source
    variant = json.loads((tmp_path / f"{identifier}.json").read_text())
    assert variant["plans_name"] == identifier and list(variant["configurations"]) == ["2d"]
    config = variant["configurations"]["2d"]
    assert (config["batch_size"], config["patch_size"], config["data_identifier"]) == (8, [56, 40], "nnUNetPlans_2d")
    assert config["architecture"]["arch_kwargs"]["features_per_stage"] == [16, 32, 64, 128]
    assert derive_small_plans(tmp_path, "nnUNetPlans", "2d") == "nnUNetPlans"
    with pytest.raises(UserError, match="configuration '3d_lowres' is not in"):
        derive_small_plans(tmp_path, "nnUNetPlans", "3d_lowres", batch_size=2)
    with pytest.raises(UserError, match="--patch-size needs 2 positive values"):
        derive_small_plans(tmp_path, "nnUNetPlans", "2d", patch_size=[32])


def test_smaller_patch_replans_the_topology_as_nnunets_planner_does(tmp_path):
    """A 1024x1024 plan (9 stages) asked for 256x256 patches gets nnU-Net's topology for 256x256 (7 stages,
    bottleneck 4x4) and builds a network whose first training step runs on such a patch."""
    import torch
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    stages = 9
    arch = {"n_stages": stages, "features_per_stage": [min(32 * 2 ** i, 512) for i in range(stages)],
            "conv_op": "torch.nn.modules.conv.Conv2d", "kernel_sizes": [[3, 3]] * stages,
            "strides": [[1, 1]] + [[2, 2]] * (stages - 1), "n_conv_per_stage": [2] * stages,
            "n_conv_per_stage_decoder": [2] * (stages - 1), "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True}}
    source = {"plans_name": "nnUNetPlans", "configurations": {"2d": {
        "data_identifier": "nnUNetPlans_2d", "batch_size": 12, "patch_size": [1024, 1024], "spacing": [1.0, 1.0],
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                         "arch_kwargs": arch, "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}}}
    (tmp_path / "nnUNetPlans.json").write_text(json.dumps(source))
    identifier = derive_small_plans(tmp_path, "nnUNetPlans", "2d", batch_size=4, patch_size=[256, 256])
    config = json.loads((tmp_path / f"{identifier}.json").read_text())["configurations"]["2d"]
    new = config["architecture"]["arch_kwargs"]
    _, strides, kernels, patch, _ = get_pool_and_conv_props([1.0, 1.0], [256, 256], 4, 999999)
    assert identifier == "nnUNetPlans_bs4_ps256x256" and config["patch_size"] == [256, 256] == list(patch)
    assert new["n_stages"] == len(strides) == 7 and new["strides"] == [list(s) for s in strides]
    assert new["kernel_sizes"] == [list(k) for k in kernels]
    assert new["features_per_stage"] == [32, 64, 128, 256, 512, 512, 512]
    assert len(new["n_conv_per_stage"]) == 7 and len(new["n_conv_per_stage_decoder"]) == 6
    network = get_network_from_plans(config["architecture"]["network_class_name"], new,
                                     config["architecture"]["_kw_requires_import"], 3, 2, deep_supervision=True)
    outputs = network(torch.zeros(4, 3, 256, 256))  # the 9-stage network failed here (1x1 bottleneck)
    assert outputs[0].shape == (4, 2, 256, 256)
    # a patch the planner must pad, and a residual-encoder plan keeps its blocks pattern
    arch.update(n_blocks_per_stage=[1, 3, 4, 6, 6, 6, 6, 6, 6])
    del arch["n_conv_per_stage"]
    (tmp_path / "nnUNetResEncUNetMPlans.json").write_text(json.dumps(source))
    identifier = derive_small_plans(tmp_path, "nnUNetResEncUNetMPlans", "2d", patch_size=[250, 100])
    config = json.loads((tmp_path / f"{identifier}.json").read_text())["configurations"]["2d"]
    assert identifier == "nnUNetResEncUNetMPlans_ps256x112" and config["patch_size"] == [256, 112]
    assert config["architecture"]["arch_kwargs"]["n_blocks_per_stage"] == [1, 3, 4, 6, 6, 6][:len(
        config["architecture"]["arch_kwargs"]["strides"])]


def test_label_names_leave_out_the_ignore_label_and_name_regions():
    labels = {"background": 0, "anterior": 1, "posterior": 2, "ignore": 3}
    assert label_names({"labels": labels}) == {"1": "anterior", "2": "posterior"}
    regions = {"labels": {"background": 0, "whole": [1, 2], "core": 2}, "regions_class_order": [1, 2]}
    assert label_names(regions) == {"(1, 2)": "whole", "2": "core"}


def test_metrics_table_spread_over_folds_and_missing_distances():
    def row(trainer, fold, case, dice, hd95, volume):
        return {"trainer": trainer, "fold": fold, "case": case, "label": "1", "Dice": dice, "HD95": hd95, "NSD": 0.5,
                "ref_volume": volume, "ref_lesions": 1, "detected_lesions": int(dice > 0), "pred_lesions": 2,
                "tp_lesions": int(dice > 0)}
    rows = [row("T", 0, "a", 0.8, 2.0, 10), row("T", 0, "b", 0.6, math.nan, 20), row("T", 1, "c", 0.4, 4.0, 30),
            row("T", 1, "d", 0.4, 6.0, 40), row("U", 0, "a", 0.0, math.nan, 10), row("U", 1, "c", 0.0, math.nan, 30)]
    edges = add_size_bins(rows, {"1": "organ"})
    assert edges["1"] == pytest.approx([20, 30])  # tertiles of the volumes 10, 20, 30, 40
    lines = metrics_table(rows, ["T", "U"], [0, 1], {"1": "organ"}).splitlines()
    # Dice fold means 0.7 and 0.4; HD95 2.0 (NaN left out) and 5.0; lesion F1 per fold: recall 1, precision 0.5
    # -> 0.667 both folds; sizes (edges 20, 30; an edge value goes up): small = a (0.8), medium = b (0.6), both
    # in fold 0; large = c, d (0.4) in fold 1
    assert lines[4] == "| T | 0.550 ± 0.212 | 3.50 ± 2.12 | 0.500 ± 0.000 | 0.667 ± 0.000 | 0.800 | 0.600 | 0.400 |"
    assert lines[5] == "| U | 0.000 ± 0.000 | n/a | 0.500 ± 0.000 | 0.000 ± 0.000 | 0.000 | n/a | 0.000 |"
    per_fold = fold_dice_table(rows, ["T", "U"], [0, 1], {"1": "organ"}).splitlines()
    assert per_fold[0] == "| trainer | organ fold 0 | organ fold 1 |"
    assert per_fold[2:] == ["| T | 0.700 | 0.400 |", "| U | 0.000 | 0.000 |"]


def test_report_has_a_table_per_fold_set_while_folds_are_partly_run():
    # fold 0: all; folds 0-1: the deciding trainers; fold 2 started for two of them
    sections = fold_sections({"A": [0], "B": [0, 1], "C": [0, 1, 2], "D": [0, 1, 2], "E": [0, 1]})
    assert sections == [
        ("All trainers, fold 0", ["A", "B", "C", "D", "E"], [0]),
        ("Trainers run on folds 0, 1", ["B", "C", "D", "E"], [0, 1]),
        ("Trainers run on folds 0, 1, 2", ["C", "D"], [0, 1, 2])]
    # sets that do not nest, and no fold common to all: each set with those that ran it
    assert fold_sections({"A": [1], "B": [0, 2], "C": [0, 1, 2]}) == [
        ("Trainers run on fold 1", ["A", "C"], [1]), ("Trainers run on folds 0, 2", ["B", "C"], [0, 2]),
        ("Trainers run on folds 0, 1, 2", ["C"], [0, 1, 2])]
    assert fold_sections({"A": [0, 1], "B": [0, 1]}) == [("All trainers, folds 0, 1", ["A", "B"], [0, 1])]


def test_comparisons_pair_cases_against_dice_ce_and_the_papers_baseline():
    rng = np.random.default_rng(0)
    rows = []
    for trainer, shift in (("nnUNetTrainer", 0.0), ("nnUNetTrainerBalancedCE", -0.2), ("nnUNetTrainerDBCE", 0.0)):
        for case in range(30):
            rows.append({"trainer": trainer, "fold": 0, "case": f"c{case}", "label": "1",
                         "Dice": 0.6 + 0.01 * case + shift + 0.001 * rng.random()})
    tests = comparisons(rows, ["nnUNetTrainer", "nnUNetTrainerBalancedCE", "nnUNetTrainerDBCE"], {"1": "organ"})
    against = {(t["trainer"], t["against"]): t for t in tests}
    assert set(against) == {("nnUNetTrainerBalancedCE", "nnUNetTrainer"), ("nnUNetTrainerDBCE", "nnUNetTrainer"),
                            ("nnUNetTrainerDBCE", "nnUNetTrainerBalancedCE")}
    dbce_vs_balanced = against[("nnUNetTrainerDBCE", "nnUNetTrainerBalancedCE")]
    assert dbce_vs_balanced["median_difference"] == pytest.approx(0.2, abs=0.002) and dbce_vs_balanced["p_holm"] < 0.05
    assert against[("nnUNetTrainerDBCE", "nnUNetTrainer")]["p_holm"] > 0.05
    assert paper_baselines("nnUNetTrainerDBCE_R3") == ("nnUNetTrainerBalancedCE", "nnUNetTrainerCELoss")
    assert paper_baselines("nnUNetTrainerPMDice_gamma3")[0] == "nnUNetTrainerDiceLoss"
    assert "nnUNetTrainerFocalLoss" in paper_baselines("nnUNetTrainerPMDice")
    assert paper_baselines("nnUNetTrainerPMDiceCE") == () and paper_baselines("nnUNetTrainerTopk10Loss") == ()


def test_the_derived_radius_is_compared_with_every_fixed_radius():
    trainers = ["nnUNetTrainer", "nnUNetTrainerDBCE_R3", "nnUNetTrainerDBCE_R10", "nnUNetTrainerDBCE_derived"]
    rows = [{"trainer": trainer, "fold": 0, "case": f"c{case}", "label": "1", "Dice": 0.5 + 0.01 * case + 0.1 * k}
            for k, trainer in enumerate(trainers) for case in range(12)]
    against = {(t["trainer"], t["against"]): t for t in comparisons(rows, trainers, {"1": "organ"})}
    assert {a for t, a in against if t == "nnUNetTrainerDBCE_derived"} == set(trainers[:3])
    assert {a for t, a in against if t == "nnUNetTrainerDBCE_R3"} == {"nnUNetTrainer"}  # fixed radii: not each other
    assert against[("nnUNetTrainerDBCE_derived", "nnUNetTrainerDBCE_R3")]["median_difference"] == pytest.approx(0.2)


def test_report_lists_provenance_and_says_where_records_disagree():
    described = {"nnunetv2": "2.8.1", "torch": "2.14.1", "device": "cpu (x)", "seed": None}
    runs = {"nnUNetTrainer": {0: {"provenance": described}, 1: {"provenance": dict(described, torch="2.13.0")}},
            "nnUNetTrainerDBCE_R3": {0: {"provenance": dict(described, seed=3)}, 1: {}}}
    lines, warnings = provenance_lines(runs)
    assert lines == ["- no provenance (recorded before nnunetv2-dbce kept it): 1 runs",
                     "- nnunetv2: 2.8.1 (3 runs)", "- torch: 2.14.1 (2 runs); 2.13.0 (1 runs)",
                     "- device: cpu (x) (3 runs)", "- seed: None (2 runs); 3 (1 runs)"]
    assert warnings == ["The records disagree on torch: 2.14.1 (Dice+CE (default) fold 0, DBCE_R3 fold 0); "
                        "2.13.0 (Dice+CE (default) fold 1)"]  # a seed may differ: not an environment field
    assert provenance_lines({"nnUNetTrainer": {0: {"provenance": described}}})[1] == []


def git(folder, *arguments):
    return subprocess.run(["git", "-C", str(folder), *arguments], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_commit_of_a_checkout_and_of_a_built_wheel(tmp_path):
    """The package's commit: HEAD of the checkout it is imported from (+dirty when its files changed), nothing for
    a folder that is not at the top of a checkout, and the commit the build hook writes into a wheel."""
    repository = Path(__file__).resolve().parents[1]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repository), str(clone)], check=True)
    head = git(clone, "rev-parse", "HEAD")
    assert checkout_commit(clone / "nnunetv2_dbce") == head
    (clone / "nnunetv2_dbce" / "__init__.py").write_text("# changed\n")
    assert checkout_commit(clone / "nnunetv2_dbce") == head + "+dirty"
    assert checkout_commit(clone / "nnunetv2_dbce" / "losses") is None and checkout_commit(tmp_path) is None
    git(clone, "checkout", "-q", "--", "nnunetv2_dbce")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "wheel"),
                    str(clone)], check=True, capture_output=True)
    with zipfile.ZipFile(next((tmp_path / "wheel").glob("*.whl"))) as wheel:
        assert wheel.read("nnunetv2_dbce/BUILD_COMMIT").decode().strip() == head


def test_study_smoke_run_records_and_resume(local_tiny_study, preprocessed_dataset, nnunet_env, tmp_path):
    """Two tiny trainers, one fold, through the study script: records agree with nnU-Net's own validation and
    carry their provenance, a second call reuses the records instead of training again, other settings are
    refused, and the report is made again from the records alone."""
    command, out, work, first = local_tiny_study
    assert "Study plans: nnUNetPlans_bs2_f8" in first.stdout and "training" in first.stdout
    run = work / "nnUNet_results" / preprocessed_dataset.name / "nnUNetTrainerDBCE_tiny__nnUNetPlans_bs2_f8__2d" \
        / "fold_0"
    summary = json.loads((run / "validation" / "summary.json").read_text())
    with open(out / "runs" / "nnUNetTrainerDBCE_tiny__fold0.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * len(summary["metric_per_case"])  # labels spot and blob, every validation case
    for row in rows:
        case = next(c for c in summary["metric_per_case"] if Path(c["reference_file"]).name == f"{row['case']}.png")
        assert float(row["Dice"]) == pytest.approx(case["metrics"][row["label"]]["Dice"], nan_ok=True)
    record = json.loads((out / "runs" / "nnUNetTrainerDBCE_tiny__fold0.json").read_text())
    assert len(record["curves"]["train_losses"]) == 1 and record["minutes"] > 0
    assert record["loss_settings"] == {"dilation_radius": 3.0}  # read back from the final checkpoint
    assert len(record["curves"]["dice_per_class"]) == 1 and len(record["curves"]["dice_per_class"][0]) == 2
    import torch
    assert record["provenance"] == {
        "nnunetv2_dbce": metadata.version("nnunetv2-dbce"), "commit": package_commit(),
        "nnunetv2": metadata.version("nnunetv2"), "torch": torch.__version__, "python": platform.python_version(),
        "device": f"cpu ({cpu_name()})", "gpus": None, "threads": os.cpu_count(), "augmentation_workers": 2,
        "seed": 7, "host_cpus": os.cpu_count()}
    report = (out / "results.md").read_text()
    assert f"- torch: {torch.__version__} (2 runs)" in report and "- seed: 7 (2 runs)" in report
    assert "| DBCE_tiny |" in report and "| _tiny |" in report and "- DBCE_tiny: dilation_radius 3.0" in report
    for png in ("metrics.png", "size.png", "curves.png"):
        assert Image.open(out / png).size[0] > 100
    checkpoint_time = (run / "checkpoint_final.pth").stat().st_mtime
    second = run_cli(command, nnunet_env)
    assert "nnUNetTrainerDBCE_tiny fold 0: recorded before, reusing" in second.stdout
    assert "training" not in second.stdout
    assert (run / "checkpoint_final.pth").stat().st_mtime == checkpoint_time
    other = subprocess.run([*command[:command.index("--epochs")], "--epochs", "2",
                            *command[command.index("--epochs") + 2:]], env=nnunet_env, capture_output=True, text=True)
    assert other.returncode != 0 and "holds a study with other settings (epochs: 1 -> 2)" in other.stderr
    records_only = tmp_path / "records"  # a new machine: only the committed records are left
    shutil.copytree(out / "runs", records_only / "runs")
    shutil.copy(out / "study.json", records_only)
    run_cli([STUDY, str(DATASET_ID), "--report-only", "-o", str(records_only)], nnunet_env)
    assert (records_only / "results.md").read_text() == report


def test_inspector_writes_the_training_weight_map(preprocessed_dataset, nnunet_env, tmp_path):
    import SimpleITK as sitk
    case = "demo_000"
    shown = run_cli([INSPECT, str(DATASET_ID), case, "-r", "0", "3", "-o", str(tmp_path), "--summary"], nnunet_env)
    label_map = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{case}_label.nii.gz")))
    for radius in (0, 3):
        weights = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{case}_weights_R{radius}.nii.gz")))
        np.testing.assert_allclose(weights[0], dbce_weight_map(label_map[0], radius), rtol=1e-6)
    assert set(np.unique(label_map)) == {0, 1, 2}
    assert Image.open(tmp_path / f"{case}_weight_map.png").size[0] > 300
    table = shown.stdout.splitlines()[-4:]  # R 0 and 3, labels spot and blob, one patch (a 2D image)
    assert [row.split(" | ")[:3] for row in table] == [["| 0", "spot", "1"], ["| 0", "blob", "1"],
                                                       ["| 3", "spot", "1"], ["| 3", "blob", "1"]]
    missing = subprocess.run([INSPECT, str(DATASET_ID), "nope",
                              "-o", str(tmp_path)], env=nnunet_env, capture_output=True, text=True)
    assert missing.returncode != 0 and "case 'nope' is not in" in missing.stderr


def test_weight_shares_of_two_touching_structures():
    """What the weight map gives each label, against scipy's dilation with the ball built voxel by voxel."""
    label_map = np.zeros((20, 22), np.int16)
    label_map[5:8, 5:8] = 1
    label_map[5:9, 8:11] = 2
    radius = 2
    weights = dbce_weight_map(label_map, radius)
    shares = patch_shares(label_map, weights, radius, (1.0, 1.0))
    ball = ball_structuring_element(radius)
    dilated = {c: ndimage.binary_dilation(label_map == c, structure=ball) for c in (1, 2)}
    background = weights[0, 21]
    for c, other in ((1, 2), (2, 1)):
        band = dilated[c] & (label_map == 0)
        assert shares[c]["relative"] == pytest.approx(weights[label_map == c][0] / background)
        assert shares[c]["share"] == pytest.approx(weights[label_map == c].sum() / weights.sum())
        assert shares[c]["band_share"] == pytest.approx(weights[band].sum() / weights.sum())
        assert shares[c]["shared_band"] == pytest.approx((band & dilated[other]).sum() / band.sum())
    assert 0 < shares[1]["shared_band"] < 1
    table = weight_summary([(label_map[None], (1.0, 1.0, 1.0), True)], [0, radius], {1: "a", 2: "b"}).splitlines()
    assert table[2].startswith("| 0 | a | 1 | ") and table[5].startswith(
        f"| 2 | b | 1 | {shares[2]['relative']:.2f} | {shares[2]['share']:.3f} |")


def test_kvasir_conversion(tmp_path):
    source = tmp_path / "kvasir"
    (source / "images").mkdir(parents=True)
    (source / "masks").mkdir()
    rng = np.random.default_rng(0)
    masks = {"a": (rng.random((16, 16)) > 0.7).astype(np.uint8), "b": (rng.random((16, 16)) > 0.5).astype(np.uint8)}
    for case in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(source / "images" / f"{case}.jpg")
    Image.fromarray(masks["a"]).save(source / "masks" / "a.png")  # 0/1 PNG
    Image.fromarray(masks["b"] * 255).save(source / "masks" / "b.jpg", quality=60)  # the official JPEG masks
    command = [CONVERT_KVASIR, "--source", str(source), "--raw", str(tmp_path / "raw"), "--id", "777"]
    subprocess.run(command, check=True, capture_output=True)
    target = tmp_path / "raw" / "Dataset777_KvasirSEG"
    dataset_json = json.loads((target / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "R", "1": "G", "2": "B"} and dataset_json["numTraining"] == 2
    for case in ("a", "b"):
        np.testing.assert_array_equal(np.asarray(Image.open(target / "imagesTr" / f"{case}_0000.png")),
                                      np.asarray(Image.open(source / "images" / f"{case}.jpg").convert("RGB")))
    np.testing.assert_array_equal(np.asarray(Image.open(target / "labelsTr" / "a.png")), masks["a"])
    jpeg_mask = np.asarray(Image.open(target / "labelsTr" / "b.png"))
    assert set(np.unique(jpeg_mask)) == {0, 1} and (jpeg_mask == masks["b"]).mean() > 0.9
    subprocess.run([*command, "--size", "8"], check=True, capture_output=True)
    small_image = np.asarray(Image.open(target / "imagesTr" / "a_0000.png"), dtype=float)
    full_image = np.asarray(Image.open(source / "images" / "a.jpg").convert("RGB"), dtype=float)
    # 2x2 means, PIL fixed point
    np.testing.assert_allclose(small_image, full_image.reshape(8, 2, 8, 2, 3).mean((1, 3)), atol=1.01)
    np.testing.assert_array_equal(np.asarray(Image.open(target / "labelsTr" / "a.png")).shape, (8, 8))
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(source / "masks" / "a.png")
    bad = subprocess.run(command, capture_output=True, text=True)
    assert bad.returncode != 0 and "expected a 0/1 or 0/255 mask" in bad.stderr


# ---------------------------------------------------------------------------------------------------------------
# The study on a real SLURM cluster (``bash scripts/slurm_local.sh start``: a one-node cluster on this machine):
# submitted through submitit, merged into the same report as the local study above, a failing run reported while
# the others finish, a cancelled job continued from its checkpoint by a rerun. CI starts the cluster and sets
# NNUNETV2_DBCE_REQUIRE_SLURM=1, so that these tests fail there instead of being skipped. (In this file so that
# pytest-xdist's --dist loadfile runs them beside the local study they compare with.)

@pytest.fixture(scope="module")
def slurm_cluster():
    try:
        up = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
        ready = up.returncode == 0 and any(s.startswith(("idle", "mix", "alloc")) for s in up.stdout.split())
    except (OSError, subprocess.TimeoutExpired):
        ready = False
    if not ready:
        message = "no SLURM cluster here: bash scripts/slurm_local.sh start"
        if os.environ.get("NNUNETV2_DBCE_REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)


def study(command, env, timeout=900):
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def cases_by_record(out: Path) -> dict:
    """``{record name: sorted (case, label) pairs}`` of a study's records."""
    records = {}
    for path in sorted((out / "runs").glob("*.csv")):
        with open(path) as handle:
            records[path.stem] = sorted((row["case"], row["label"]) for row in csv.DictReader(handle))
    return records


def report_shape(out: Path) -> list:
    """The report without its figures: headings, table rows' first cells and the other lines with digits removed."""
    return [re.sub(r"[-+]?\d[\d.e+-]*", "#", line.split("|")[1] if line.startswith("|") else line)
            for line in (out / "results.md").read_text().splitlines()]


@pytest.mark.e2e
def test_slurm_study_merges_like_a_local_one_and_reports_a_failing_run(local_tiny_study, slurm_cluster,
                                                                        nnunet_env, tmp_path):
    _, local_out, _, _ = local_tiny_study
    out, work = tmp_path / "study", tmp_path / "work"
    command = [STUDY, str(DATASET_ID), *TINY_STUDY, "-tr", "nnUNetTrainerDBCE_tiny", "nnUNetTrainer_tiny",
               "nnUNetTrainerFails_tiny", "--seed", "7", "-o", str(out), "--work", str(work), "--slurm",
               "--slurm-cpus", "1", "--slurm-time", "20", "--poll-seconds", "2"]
    first = study(command, nnunet_env)
    print(first.stdout)
    submitted = dict(re.findall(r"(\S+) fold 0: submitted as job (\S+)", first.stdout))
    assert set(submitted) == {"nnUNetTrainerDBCE_tiny", "nnUNetTrainer_tiny", "nnUNetTrainerFails_tiny"}
    assert len({job.split("_")[0] for job in submitted.values()}) == 1  # one job array
    failing = submitted["nnUNetTrainerFails_tiny"]
    assert first.returncode == 1
    assert re.search(rf"nnUNetTrainerFails_tiny fold 0: job {failing} FAILED: nnUNetTrainerFails_tiny fold 0 failed "
                     rf"\(exit 1\): RuntimeError: deliberate failure of a test trainer; see .*nnUNetTrainerFails_tiny__"
                     rf"fold0\.log \(job log .*log\.err\)", first.stdout)
    assert "1 run(s) failed: nnUNetTrainerFails_tiny fold 0 (log " in first.stderr
    assert "deliberate failure" in (work / "logs" / "nnUNetTrainerFails_tiny__fold0.log").read_text()

    assert cases_by_record(out) == cases_by_record(local_out)  # the same runs, the same cases and labels
    assert report_shape(out) == report_shape(local_out)
    record = json.loads((out / "runs" / "nnUNetTrainer_tiny__fold0.json").read_text())
    assert record["provenance"]["seed"] == 7 and record["provenance"]["threads"] == 1  # the job's one CPU

    again = study(command, nnunet_env)  # retries only the failed run
    assert "nnUNetTrainerDBCE_tiny fold 0: recorded before, reusing" in again.stdout
    assert f"nnUNetTrainerFails_tiny fold 0: job {failing} FAILED without a record: submitting it again" in again.stdout
    assert re.findall(r"(\S+) fold 0: submitted as job", again.stdout) == ["nnUNetTrainerFails_tiny"]
    assert again.returncode == 1


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def first_epoch_of_each_start(output_folder: Path) -> list:
    """The first epoch each start of training logged (nnU-Net writes one training log per start)."""
    firsts = []
    for log in sorted(output_folder.glob("training_log_*.txt"), key=log_start):
        epochs = re.findall(r": Epoch (\d+)", log.read_text())
        if epochs:
            firsts.append(int(epochs[0]))
    return firsts


def submit_until_checkpoint(preprocessed_dataset, nnunet_env, tmp_path, epochs: int) -> tuple:
    """Submit a one-run study (``--submit-only``) that saves a checkpoint every epoch, and wait until it saved one:
    ``(command, job id, run folder, saved epoch function)``."""
    out, work = tmp_path / "study", tmp_path / "work"
    arguments = TINY_STUDY[:TINY_STUDY.index("--epochs")] + ["--epochs", str(epochs), "--iterations", "10"] + \
        TINY_STUDY[TINY_STUDY.index("--val-iterations"):]
    command = [STUDY, str(DATASET_ID), *arguments, "-tr", "nnUNetTrainer_tiny", "--checkpoint-every", "1",
               "-o", str(out), "--work", str(work), "--slurm", "--slurm-time", "20", "--poll-seconds", "2"]
    submit = study([*command, "--submit-only"], nnunet_env)
    assert submit.returncode == 0, submit.stderr
    print(submit.stdout)
    job = re.search(r"submitted as job (\S+)", submit.stdout).group(1)
    run = work / "nnUNet_results" / preprocessed_dataset.name / "nnUNetTrainer_tiny__nnUNetPlans_bs2_f8__2d" / "fold_0"

    def saved_epoch():
        checkpoint = run / "checkpoint_latest.pth"
        if not checkpoint.is_file():
            return None
        import torch
        try:
            return torch.load(checkpoint, map_location="cpu", weights_only=False)["current_epoch"]
        except Exception:  # being written
            return None

    wait_until(lambda: (saved_epoch() or 0) >= 1, 300, "a first checkpoint")
    return command, job, run, saved_epoch


def left_the_queue(job: str) -> bool:
    state = subprocess.run(["squeue", "-h", "-j", job, "--states=all", "-o", "%T"], capture_output=True,
                           text=True).stdout.split()
    return not state or state[0] not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING")


@pytest.mark.e2e
def test_a_cancelled_job_is_resubmitted_and_continues_from_its_checkpoint(preprocessed_dataset, slurm_cluster,
                                                                       nnunet_env, tmp_path):
    command, job, run, saved_epoch = submit_until_checkpoint(preprocessed_dataset, nnunet_env, tmp_path, epochs=6)
    cancelled_at = saved_epoch()
    subprocess.run(["scancel", job], check=True)
    wait_until(lambda: left_the_queue(job), 120, "the cancellation")
    status = study([*command, "--submit-only"], nnunet_env)  # a later call: the state, and the run submitted again
    print(status.stdout)
    assert re.search(rf"nnUNetTrainer_tiny fold 0: job {job} (ENDED|FAILED|CANCELLED\S*) without a record: "
                     rf"submitting it again", status.stdout)
    second_job = re.search(r"submitted as job (\S+)", status.stdout).group(1)
    assert second_job != job
    finish = study(command, nnunet_env)  # waits for it, then writes the report
    print(finish.stdout)
    assert finish.returncode == 0, finish.stdout + finish.stderr
    assert f"nnUNetTrainer_tiny fold 0: job {second_job} COMPLETED" in finish.stdout
    assert "\n| _tiny | " in (tmp_path / "study" / "results.md").read_text()  # its row in the Dice table
    starts = first_epoch_of_each_start(run)
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= cancelled_at >= 1  # continued, not restarted
    record = json.loads((tmp_path / "study" / "runs" / "nnUNetTrainer_tiny__fold0.json").read_text())
    assert len(record["curves"]["train_losses"]) == 6


@pytest.mark.e2e
@pytest.mark.skipif(os.environ.get("NNUNETV2_DBCE_SLOW_TESTS") != "1",
                    reason="SLURM holds a requeued job back ~2.5 min: NNUNETV2_DBCE_SLOW_TESTS=1 runs it")
def test_the_time_limit_signal_requeues_the_job_which_continues(preprocessed_dataset, slurm_cluster, nnunet_env,
                                                               tmp_path):
    command, job, run, saved_epoch = submit_until_checkpoint(preprocessed_dataset, nnunet_env, tmp_path, epochs=6)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)  # what SLURM sends 90 s before the time limit
    finish = study(command, nnunet_env, timeout=900)
    assert finish.returncode == 0, finish.stdout + finish.stderr
    assert f"nnUNetTrainer_tiny fold 0: job {job} COMPLETED" in finish.stdout  # the same job, requeued
    starts = first_epoch_of_each_start(run)
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 1
