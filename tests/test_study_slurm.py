"""The study on a real SLURM cluster (``bash scripts/slurm_local.sh start``: a one-node cluster on this machine):
submitted through submitit, merged into the same report as a local study, a failing run reported while the others
finish, a cancelled job continued from its checkpoint by a rerun. CI starts the cluster and sets
NNUNETV2_DBCE_REQUIRE_SLURM=1, so that these tests fail there instead of being skipped."""
import csv
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from helpers import DATASET_ID, STUDY, TINY_STUDY

pytestmark = pytest.mark.e2e


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
    for log in sorted(output_folder.glob("training_log_*.txt")):
        epochs = re.findall(r": Epoch (\d+)", log.read_text())
        if epochs:
            firsts.append(int(epochs[0]))
    return firsts


def test_requeued_and_cancelled_jobs_continue_from_their_checkpoint(preprocessed_dataset, slurm_cluster,
                                                                  nnunet_env, tmp_path):
    """A job given SLURM's time-limit signal is requeued by submitit and continues from checkpoint_latest.pth; a job
    cancelled with scancel is resubmitted by a rerun of the study, which continues it from its checkpoint too."""
    out, work = tmp_path / "study", tmp_path / "work"
    arguments = TINY_STUDY[:TINY_STUDY.index("--epochs")] + ["--epochs", "8", "--iterations", "4"] + \
        TINY_STUDY[TINY_STUDY.index("--val-iterations"):]
    command = [STUDY, str(DATASET_ID), *arguments, "-tr", "nnUNetTrainer_tiny", "--checkpoint-every", "1",
               "-o", str(out), "--work", str(work), "--slurm", "--slurm-time", "20", "--poll-seconds", "2"]
    submit = study([*command, "--submit-only"], nnunet_env)
    assert submit.returncode == 0, submit.stderr
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
    subprocess.run(["scancel", "--signal=USR2", job], check=True)  # what SLURM sends before the time limit
    wait_until(lambda: len(first_epoch_of_each_start(run)) >= 2, 300, "the requeued job to train again")
    assert first_epoch_of_each_start(run)[1] >= 1

    resumed_at = wait_until(lambda: (e := saved_epoch()) is not None and e >= first_epoch_of_each_start(run)[1] + 1
                            and e, 300, "a checkpoint of the requeued job")
    subprocess.run(["scancel", job], check=True)
    wait_until(lambda: not subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip()
               or "CANCELLED" in subprocess.run(["squeue", "-h", "-j", job, "--states=all", "-o", "%T"],
                                                capture_output=True, text=True).stdout, 120, "the cancellation")
    status = study([*command, "--submit-only"], nnunet_env)
    assert f"nnUNetTrainer_tiny fold 0: job {job} " in status.stdout and "without a record: submitting it again" \
        in status.stdout
    second_job = re.search(r"submitted as job (\S+)", status.stdout).group(1)
    assert second_job != job
    finish = study(command, nnunet_env)
    assert finish.returncode == 0, finish.stdout + finish.stderr
    assert f"nnUNetTrainer_tiny fold 0: job {second_job} COMPLETED" in finish.stdout
    assert (out / "runs" / "nnUNetTrainer_tiny__fold0.csv").is_file() and (out / "results.md").is_file()
    starts = first_epoch_of_each_start(run)
    assert len(starts) == 3 and starts[0] == 0 and starts[2] >= resumed_at >= starts[1] + 1
    assert len(json.loads((out / "runs" / "nnUNetTrainer_tiny__fold0.json").read_text())["curves"]["train_losses"]) == 8
