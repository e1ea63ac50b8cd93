"""Several runs of a study at once on one machine (``--jobs``): each run is a child process with its own share
of the machine (``Resources``: one or more GPUs, or a share of the CPU threads and augmentation workers); a
share that frees up takes the next run. Interrupting the study (Ctrl-C, SIGTERM) stops every run; a rerun
continues them from their latest checkpoints."""
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence

from nnunetv2_dbce.tools.study_run import Resources, StudyRun

STOP_GRACE_SECONDS = 30


def visible_gpus() -> list:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else every device torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    import torch
    return [str(i) for i in range(torch.cuda.device_count())]


def local_resources(device: str, jobs: int, gpus: Sequence | None = None, gpus_per_run: int = 1,
                    cpus: int | None = None, augmentation_workers: int | None = None) -> list:
    """One ``Resources`` per run that may train at the same time.

    CUDA: the GPUs (``gpus``, default: all visible) in groups of ``gpus_per_run``, at most ``jobs`` groups; a run
    sees only its group. CPU and MPS: ``jobs`` shares, each with ``cpus // jobs`` torch threads and
    ``augmentation_workers // jobs`` augmentation workers (at least 1; ``augmentation_workers`` defaults to
    nnU-Net's ``nnUNet_n_proc_DA`` setting).

    Raises:
        ValueError: ``jobs`` or ``gpus_per_run`` below 1, or fewer GPUs than one run needs.
    """
    if jobs < 1 or gpus_per_run < 1:
        raise ValueError(f"--jobs and --gpus-per-run must be at least 1 (got {jobs} and {gpus_per_run})")
    if device == "cuda":
        gpus = [str(g) for g in (gpus if gpus else visible_gpus())]
        groups = [tuple(gpus[i:i + gpus_per_run]) for i in range(0, len(gpus) - gpus_per_run + 1, gpus_per_run)]
        if not groups:
            raise ValueError(f"each run needs {gpus_per_run} GPU(s) (--gpus-per-run), but "
                             f"{len(gpus)} {'are given' if gpus else 'are visible'}: {' '.join(gpus) or 'none'}")
        return [Resources(gpus=group) for group in groups[:jobs]]
    if augmentation_workers is None:
        from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
        augmentation_workers = get_allowed_n_proc_DA()
    share = Resources(threads=max(1, (cpus or os.cpu_count() or 1) // jobs),
                      augmentation_workers=max(1, augmentation_workers // jobs))
    return [share] * jobs


def minutes_text(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


class LocalScheduler:
    """Trains ``runs`` with at most one run per ``Resources`` at a time and records each as it finishes.

    ``record(run, minutes, resources)`` is called in this process for every run that finished (``minutes`` is
    None for a run that had finished before this call). A failing run is reported with its log and the others
    go on; ``run()`` returns the runs that failed.
    """

    def __init__(self, runs: Sequence[StudyRun], slots: Sequence[Resources], epochs: int,
                 record: Callable[[StudyRun, float | None, Resources], object], poll_seconds: float = 2.0,
                 progress_seconds: float = 300.0, say: Callable[[str], None] = print):
        self.pending = deque(runs)
        self.total = len(runs)
        self.free = list(slots)
        self.slots = len(slots)
        self.epochs = epochs
        self.record = record
        self.poll_seconds = poll_seconds
        self.progress_seconds = progress_seconds
        self.say = say
        self.running: dict[StudyRun, tuple] = {}
        self.durations: list[float] = []
        self.failed: list[StudyRun] = []
        self.done = 0

    def run(self) -> list:
        previous = signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
        try:
            last_progress = time.monotonic()
            while self.pending or self.running:
                self.start_runs()
                time.sleep(self.poll_seconds)
                if self.collect_ended() or time.monotonic() - last_progress >= self.progress_seconds:
                    self.say(self.progress())
                    last_progress = time.monotonic()
        except KeyboardInterrupt:
            self.stop_all()
            raise SystemExit(f"Interrupted: stopped {len(self.running)} run(s); the same command continues them "
                             f"from their latest checkpoints") from None
        finally:
            signal.signal(signal.SIGTERM, previous)
        return self.failed

    def start_runs(self) -> None:
        while self.pending and self.free:
            run = self.pending.popleft()
            if run.finished():  # trained before (e.g. interrupted while recording): evaluate only
                self.record(run, None, Resources())
                self.done += 1
                self.say(f"{run.name}: trained before, recorded in {run.record('.csv')}")
                continue
            resources = self.free.pop(0)
            self.running[run] = (run.start(resources), resources, time.monotonic())
            self.say(f"{run.name}: training ({resources.describe()}), log {run.log}")

    def collect_ended(self) -> bool:
        ended = False
        for run, (process, resources, start) in list(self.running.items()):
            if process.poll() is None:
                continue
            ended = True
            del self.running[run]
            self.free.append(resources)
            if process.returncode != 0:
                self.failed.append(run)
                self.say(f"FAILED: {run.failure(process.returncode)}")
                continue
            self.durations.append(time.monotonic() - start)
            self.record(run, round(self.durations[-1] / 60, 2), resources)
            self.done += 1
            self.say(f"{run.name}: done in {self.durations[-1] / 60:.1f} min, recorded in {run.record('.csv')}")
        return ended

    def progress(self) -> str:
        """One line: runs recorded, each running run with its epoch, runs waiting, and the time left."""
        now = time.monotonic()
        parts, remaining, totals = [], [], list(self.durations)
        for run, (_, resources, start) in self.running.items():
            epochs = run.epochs_done()
            parts.append(f"{run.name} ({resources.describe()}) epoch {epochs}/{self.epochs}")
            if epochs:
                total = (now - start) * self.epochs / epochs
                totals.append(total)
                remaining.append(max(0.0, total - (now - start)))
        left = ""
        if totals:
            work = sum(remaining) + len(self.pending) * sum(totals) / len(totals)
            left = f"; about {minutes_text(work / self.slots)} left"
        running = "; running: " + ", ".join(parts) if parts else ""
        failed = f", {len(self.failed)} failed" if self.failed else ""
        return f"[{self.done}/{self.total} recorded{failed}{running}; {len(self.pending)} waiting{left}]"

    def stop_all(self) -> None:
        """SIGINT to every run's process group, then SIGKILL to those still alive after ``STOP_GRACE_SECONDS``."""
        for process, _, _ in self.running.values():
            signal_group(process, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process, _, _ in self.running.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(process, signal.SIGKILL)
                process.wait()


def signal_group(process: subprocess.Popen, signal_number: int) -> None:
    try:
        os.killpg(process.pid, signal_number)
    except ProcessLookupError:
        pass


def raise_keyboard_interrupt(signal_number: int, frame: object) -> None:
    raise KeyboardInterrupt
