"""The console commands as a user meets them: exit codes and one-line refusals of bad input."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nnunetv2_dbce.tools import demo
from nnunetv2_dbce.tools.nnunet import nnunet_command


def test_demo_exits_0_after_a_successful_run(monkeypatch):
    """`bash scripts/demo.sh && ...` must go on after a good demo: main() returns nothing for sys.exit."""
    ran = []
    monkeypatch.setattr(demo, "run_demo", lambda args: ran.append(args) or {"spot": 1.0, "blob": 0.99})
    assert demo.main(["--epochs", "2"]) is None and ran[0].epochs == 2


@pytest.mark.parametrize("arguments, message", [(["--radius", "-3"], "--radius: "), (["--epochs", "0"], "at least 1")])
def test_demo_refuses_bad_settings_before_any_work(tmp_path, arguments, message):
    result = subprocess.run([nnunet_command("nnUNetv2_dbce_demo"), "--out", str(tmp_path / "demo"), *arguments],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "demo").exists()  # refused before writing anything


@pytest.fixture
def raw_only(tmp_path):
    """nnU-Net folders with one generated 2D dataset in nnUNet_raw only (never planned)."""
    from nnunetv2_dbce.tools.synthetic import write_synthetic_dataset
    env = dict(os.environ, nnUNet_raw=str(tmp_path / "raw"), nnUNet_preprocessed=str(tmp_path / "preprocessed"),
               nnUNet_results=str(tmp_path / "results"), nnUNet_def_n_proc="1")
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[key]).mkdir()
    folder = write_synthetic_dataset(Path(env["nnUNet_raw"]), 996, num_train=6, num_test=0, size=32)
    return env, folder


def one_line_error(result, prog: str, message: str) -> None:
    """Exit code 1, no traceback, and the error in one last line that names the command and holds ``message``
    (lines before it are what nnU-Net and torch print on their own: progress bars, warnings)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and lines[-1].startswith(f"{prog}: error: "), result.stderr
    assert message in lines[-1], result.stderr


def command(name, *arguments, env, timeout=300):
    return subprocess.run([nnunet_command(name), *map(str, arguments)], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_study_and_inspector_name_a_missing_dataset_in_one_line(raw_only, tmp_path):
    env, _ = raw_only
    for name, case in (("nnUNetv2_dbce_study", []), ("nnUNetv2_dbce_inspect", ["case_001"])):
        one_line_error(command(name, 4242, *case, "-o", tmp_path / name, env=env), name,
                       "no dataset '4242' in nnUNet_raw=")
        one_line_error(command(name, "Dataset997_Nope", *case, "-o", tmp_path / name, env=env), name,
                       "no dataset Dataset997_Nope in nnUNet_raw=")


def test_study_refuses_an_unknown_trainer_before_planning(raw_only, tmp_path):
    env, folder = raw_only
    result = command("nnUNetv2_dbce_study", folder.name, "-tr", "nnUNetTrainer", "nnUNetTrainerNope", "-o",
                     tmp_path / "study", env=env)
    one_line_error(result, "nnUNetv2_dbce_study", "nnU-Net finds no trainer nnUNetTrainerNope (searched")
    assert not (Path(env["nnUNet_preprocessed"]) / folder.name).exists()


def test_study_plans_a_raw_dataset_given_by_name(raw_only, tmp_path):
    """``DatasetXXX_Name`` reaches nnUNetv2_plan_and_preprocess as its id; the study then goes on (here it stops at
    a patch size the 2d configuration cannot take, after planning)."""
    env, folder = raw_only
    result = command("nnUNetv2_dbce_study", folder.name, "-c", "2d", "--patch-size", "32", "32", "32", "-tr",
                     "nnUNetTrainer", "-o", tmp_path / "study", env=env, timeout=600)
    one_line_error(result, "nnUNetv2_dbce_study", "--patch-size needs 2 positive values")
    assert (Path(env["nnUNet_preprocessed"]) / folder.name / "nnUNetPlans.json").is_file()
    assert "running nnUNetv2_plan_and_preprocess -d 996 -c 2d" in result.stdout


def test_inspector_refuses_a_negative_radius(raw_only):
    env, folder = raw_only
    result = command("nnUNetv2_dbce_inspect", folder.name, "demo_000", "-r", "-3", env=env)
    assert result.returncode == 2 and "-r: " in result.stderr and "Traceback" not in result.stderr


def test_evaluator_refuses_missing_predictions_unless_chill_and_missing_inputs(raw_only, tmp_path):
    env, folder = raw_only
    references = folder / "labelsTr"
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for path in sorted(references.glob("*.png"))[:2]:
        shutil.copy(path, predictions / path.name)
    dataset_json = folder / "dataset.json"
    evaluate = "nnUNetv2_dbce_evaluate"
    one_line_error(command(evaluate, references, predictions, "-djfile", dataset_json, "-np", 1, env=env), evaluate,
                   f"4 of the 6 references in {references} have no prediction in {predictions}")
    chill = command(evaluate, references, predictions, "-djfile", dataset_json, "-np", 1, "-chill", env=env)
    assert chill.returncode == 0, chill.stderr
    assert len(json.loads((predictions / "summary_dbce.json").read_text())["metric_per_case"]) == 2
    one_line_error(command(evaluate, tmp_path / "nowhere", predictions, "-djfile", dataset_json, env=env), evaluate,
                   f"the reference folder {tmp_path / 'nowhere'} does not exist")
    one_line_error(command(evaluate, references, predictions, "-djfile", tmp_path / "missing.json", env=env),
                   evaluate, "cannot read the dataset.json")
