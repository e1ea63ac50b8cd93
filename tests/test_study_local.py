"""Several study runs at once on one machine (``--jobs``): how the machine is shared, the scheduling of real child
processes, and stopping them all."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnunetv2_dbce.tools.study_local import STOP_GRACE_SECONDS, LocalScheduler, local_resources
from nnunetv2_dbce.tools.study_run import Resources, epochs_started

CHILD = """
import json, os, sys, time
start = time.time()
time.sleep(float(sys.argv[2]))
with open(sys.argv[1], "w") as handle:
    json.dump({"gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "threads": os.environ.get("OMP_NUM_THREADS"),
               "start": start, "end": time.time()}, handle)
sys.exit(int(sys.argv[3]))
"""


class FakeRun:
    """A run whose child process sleeps, then writes when it ran and what it was given, and exits with ``code``."""

    def __init__(self, folder: Path, index: int, seconds: float, code: int = 0):
        self.name, self.seconds, self.code = f"run {index}", seconds, code
        self.result, self.log = folder / f"run{index}.json", folder / f"run{index}.log"

    def finished(self):
        return False

    def failure(self, code):
        return f"{self.name} failed (exit {code})"

    def epochs_done(self):
        return 0

    def record(self, suffix):
        return self.result.with_suffix(suffix)

    def start(self, resources: Resources) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", CHILD, str(self.result), str(self.seconds), str(self.code)],
                                env={**os.environ, **resources.environment()}, start_new_session=True)


def test_resources_of_gpu_groups_and_cpu_shares(monkeypatch):
    assert local_resources("cuda", 4, ["0", "1", "2", "3"]) == [Resources(gpus=(g,)) for g in "0123"]
    assert local_resources("cuda", 8, [0, 1, 2, 3, 5], gpus_per_run=2) == [Resources(gpus=("0", "1")),
                                                                        Resources(gpus=("2", "3"))]
    assert local_resources("cuda", 1, ["6", "7"]) == [Resources(gpus=("6",))]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    assert local_resources("cuda", 3) == [Resources(gpus=("4",)), Resources(gpus=("5",))]
    with pytest.raises(ValueError, match="each run needs 4 GPU"):
        local_resources("cuda", 1, ["0", "1"], gpus_per_run=4)
    with pytest.raises(ValueError, match="at least 1"):
        local_resources("cpu", 0)
    half = Resources(threads=4, augmentation_workers=3)
    assert local_resources("cpu", 2, cpus=8, augmentation_workers=6) == [half, half]
    one = Resources(threads=1, augmentation_workers=1)
    assert local_resources("cpu", 4, cpus=2, augmentation_workers=2) == [one] * 4
    assert Resources(gpus=("2", "3")).environment() == {"CUDA_VISIBLE_DEVICES": "2,3"}


def test_runs_never_share_a_gpu_and_a_freed_gpu_takes_the_next_run(tmp_path):
    runs = [FakeRun(tmp_path, i, seconds) for i, seconds in enumerate([6.0, 0.3, 0.3, 0.3, 1.0])]
    recorded, lines = [], []
    failed = LocalScheduler(runs, local_resources("cuda", 2, ["0", "1"]), 1,
                            lambda run, minutes, resources: recorded.append((run.name, resources.gpus)),
                            poll_seconds=0.05, say=lines.append).run()
    assert failed == [] and sorted(name for name, _ in recorded) == [run.name for run in runs]
    spans = [json.loads(run.result.read_text()) for run in runs]
    for gpu in "01":
        on_gpu = sorted((s["start"], s["end"]) for s in spans if s["gpus"] == gpu)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(on_gpu, on_gpu[1:]))  # one at a time
    assert {s["gpus"] for s in spans} == {"0", "1"}
    # run 0 keeps one GPU busy for 6 s; runs 1-3 follow each other on the other, each started as the one before
    # ended (a start-up of the child process later), not when run 0 ends
    assert [s["gpus"] for s in spans[1:4]] == [spans[1]["gpus"]] * 3 and spans[1]["gpus"] != spans[0]["gpus"]
    for before, after in zip(spans[1:3], spans[2:4]):
        assert 0 <= after["start"] - before["end"] < 3.0
    assert any("run 0: training (GPU" in line for line in lines)


def test_cpu_shares_and_a_failing_run_does_not_stop_the_others(tmp_path):
    runs = [FakeRun(tmp_path, 0, 0.2, code=3), FakeRun(tmp_path, 1, 0.2), FakeRun(tmp_path, 2, 0.2)]
    recorded, lines = [], []
    slots = local_resources("cpu", 2, cpus=2, augmentation_workers=2)
    failed = LocalScheduler(runs, slots, 1, lambda run, minutes, resources: recorded.append(run.name),
                            poll_seconds=0.05, say=lines.append).run()
    assert failed == [runs[0]] and sorted(recorded) == ["run 1", "run 2"]
    assert "FAILED: run 0 failed (exit 3)" in lines
    assert {json.loads(run.result.read_text())["threads"] for run in runs} == {"1"}


def test_interrupting_the_study_stops_every_run(tmp_path):
    runs = [FakeRun(tmp_path, i, 60) for i in range(3)]
    started = []

    def say(line):
        started.append(line)
        if len(started) == 2:  # both slots busy: the user presses Ctrl-C
            raise KeyboardInterrupt

    scheduler = LocalScheduler(runs, local_resources("cuda", 2, ["0", "1"]), 1, lambda *a: None,
                               poll_seconds=0.05, say=say)
    begin = time.monotonic()
    with pytest.raises(SystemExit, match="stopped 2 run"):
        scheduler.run()
    # the runs would sleep 60 s; a child that outlives its SIGINT (seen once, under CI load, sent right after start) is
    # SIGKILLed after STOP_GRACE_SECONDS, so the bound leaves room for that and still catches waiting for the runs
    assert time.monotonic() - begin < STOP_GRACE_SECONDS + 20 < 60
    for process, _, _ in scheduler.running.values():
        assert process.poll() is not None  # ended, not left behind
    assert not any(run.result.exists() for run in runs) and len(scheduler.pending) == 1


def test_progress_reads_the_epoch_number_not_the_epoch_time():
    """nnU-Net logs "Epoch 3" when an epoch starts and "Epoch time: 63.43 s" when it ends; a log ending with the
    second once made the study's progress line raise and the run count as failed."""
    log = "\n".join(["2026-12-03 17:40:01.1: Epoch 2", "2026-12-03 17:41:02.5: Epoch time: 61.40 s",
                     "2026-12-03 17:41:03.3: Epoch 3", "2026-12-03 17:42:04.9: train_loss -0.61",
                     "2026-12-03 17:42:05.0: Epoch time: 63.43 s", ""])
    assert epochs_started(log) == 3
    assert epochs_started("2026-12-03 17:40:00.0: This is the training log\n") == 0
