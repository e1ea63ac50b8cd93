"""The study's runs as SLURM jobs, submitted with submitit (one job per (trainer, fold), in one job array).

Each job is the same unit as a local run (``StudyRun``): it trains in a child process, continuing from
``checkpoint_latest.pth`` if there is one, and writes the run's record itself, with its own machine's provenance.
A job that reaches its time limit or is preempted is requeued by submitit (``Checkpointable``) and continues
from the latest checkpoint. The job ids are kept in ``<work>/slurm/jobs.json``, so a later call of the same
study shows the state of every job, waits for the active ones, and resubmits only runs whose job ended
without a record (failed, cancelled, killed).
"""
import argparse
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from nnunetv2_dbce.tools.cli import UserError
from nnunetv2_dbce.tools.study_local import minutes_text, signal_group
from nnunetv2_dbce.tools.study_run import Resources, StudyRun

try:
    import submitit
except ImportError:  # the optional extra "cluster"
    submitit = None  # type: ignore[assignment]

ACTIVE_STATES = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                 "RESIZING", "SUSPENDED", "STOPPED", "PREEMPTED", "SIGNALING", "STAGE_OUT")
STOPPED_STATES = ("CANCELLED", "TIMEOUT", "DEADLINE", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL")
ENDED_WITHOUT_RESULT = "ENDED"  # left the queue without a result: cancelled, killed, lost node
_child: subprocess.Popen | None = None  # the training process of the job running in this process


def require_submitit() -> Any:
    if submitit is None:
        raise UserError("--slurm needs submitit: pip install 'nnunetv2-dbce[cluster]'")
    return submitit


class StudyJob(submitit.helpers.Checkpointable if submitit else object):  # type: ignore[misc]  # optional base
    """What one SLURM job runs: ``run`` trained (unless finished before) and recorded. ``environment``: the
    nnU-Net variables of the submitting shell (data folders, the user's trainer folders)."""

    def __init__(self, run: StudyRun, dataset_json: dict, environment: dict):
        self.run, self.dataset_json, self.environment = run, dataset_json, environment

    def __call__(self) -> str:
        global _child
        os.environ.update(self.environment)
        threads = int(os.environ.get("SLURM_CPUS_PER_TASK", 0)) or len(os.sched_getaffinity(0))
        resources = Resources(threads=threads if self.run.args.device == "cpu" else None)
        minutes = None
        if not self.run.finished():
            start = time.monotonic()
            _child = self.run.start(resources)
            code = _child.wait()
            _child = None
            if code != 0:
                raise RuntimeError(self.run.failure(code))
            minutes = round((time.monotonic() - start) / 60, 2)
        return str(self.run.write_record(self.dataset_json, minutes, resources))

    def checkpoint(self, *args: object, **kwargs: object) -> Any:
        """Called by submitit before a time-limit requeue or a preemption: stop the training process (nnU-Net's
        ``checkpoint_latest.pth`` stays) and requeue this job, which then continues from that checkpoint."""
        if _child is not None and _child.poll() is None:
            signal_group(_child, signal.SIGINT)
            try:
                _child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                signal_group(_child, signal.SIGKILL)
        return submitit.helpers.DelayedSubmission(StudyJob(self.run, self.dataset_json, self.environment))


def executor(args: argparse.Namespace) -> "submitit.SlurmExecutor":
    """A submitit executor with the study's ``--slurm-*`` options; jobs' files in ``<work>/slurm/<job id>``."""
    submitit = require_submitit()
    folder = args.work / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    gpus = args.slurm_gpus if args.slurm_gpus is not None else (args.gpus_per_run if args.device == "cuda" else 0)
    parameters = {"job_name": f"study_{args.dataset}_{args.configuration}", "time": args.slurm_time,
                  "array_parallelism": args.slurm_array_parallelism,
                  "additional_parameters": dict(item.split("=", 1) for item in args.slurm_extra)}
    optional = {"partition": args.slurm_partition, "cpus_per_task": args.slurm_cpus,
                "mem": f"{args.slurm_mem:g}G" if args.slurm_mem else None, "account": args.slurm_account,
                "qos": args.slurm_qos, "gpus_per_node": gpus or None}
    parameters.update({key: value for key, value in optional.items() if value is not None})
    slurm = submitit.SlurmExecutor(folder=folder / "%j")
    slurm.update_parameters(**parameters)
    return slurm


def job_state(job: Any) -> str:
    """SLURM's state while the job is in the queue (``squeue``, which needs no accounting database); once it has
    ended: SLURM's reason if it was stopped (``CANCELLED``, ``TIMEOUT``, ...), else ``COMPLETED`` or ``FAILED`` from
    the result submitit wrote, else ``ENDED`` (left the queue without a result)."""
    try:
        queued = subprocess.run(["squeue", "-h", "-j", str(job.job_id), "--states=all", "-o", "%T"],
                                capture_output=True, text=True, timeout=60).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        queued = []
    state = queued[0] if queued else None
    if state in ACTIVE_STATES or state in STOPPED_STATES:
        return state
    if job.paths.result_pickle.exists():
        outcome, _ = submitit.core.utils.pickle_load(job.paths.result_pickle)
        return "COMPLETED" if outcome == "success" else "FAILED"
    return state or ENDED_WITHOUT_RESULT


def failure_text(job: Any) -> str:
    """Why a job failed, in one line: the last line of its error (``StudyRun.failure`` for a failed run, which
    names the run's log) and the job's own log."""
    if job.paths.result_pickle.exists():
        _, error = submitit.core.utils.pickle_load(job.paths.result_pickle)
        lines = [line for line in str(error).strip().splitlines() if line.strip()]
        last = lines[-1].removeprefix("RuntimeError: ") if lines else "failed"  # StudyJob's own error: its text
        return f"{last} (job log {job.paths.stderr})"
    return f"no result (job log {job.paths.stderr})"


class JobBook:
    """``<work>/slurm/jobs.json``: the job id of each (trainer, fold) of the study."""

    def __init__(self, work: Path):
        self.path = work / "slurm" / "jobs.json"
        self.ids = json.loads(self.path.read_text()) if self.path.is_file() else {}

    @staticmethod
    def key(run: StudyRun) -> str:
        return f"{run.trainer}__fold{run.fold}"

    def job(self, run: StudyRun) -> Any:
        job_id = self.ids.get(self.key(run))
        if job_id is None:
            return None
        return submitit.SlurmJob(folder=self.path.parent / "%j", job_id=job_id)

    def save(self, jobs: dict) -> None:
        self.ids.update({self.key(run): str(job.job_id) for run, job in jobs.items()})
        self.path.write_text(json.dumps(self.ids, indent=1))


def run_on_slurm(runs: list, args: argparse.Namespace, dataset_json: dict) -> tuple:
    """Submit the runs that have no active job, then (unless ``--submit-only``) wait until every job has ended,
    with progress. Returns ``(failed runs, runs still active)``: the latter is empty unless ``--submit-only``."""
    require_submitit()
    book = JobBook(args.work)
    jobs, to_submit = {}, []
    for run in runs:
        job = book.job(run)
        state = job_state(job) if job is not None else None
        if state in ACTIVE_STATES:
            jobs[run] = job
            print(f"{run.name}: job {job.job_id} {state}", flush=True)
        elif state == "COMPLETED" and run.recorded():
            continue
        else:
            if job is not None:
                print(f"{run.name}: job {job.job_id} {state} without a record: submitting it again", flush=True)
            to_submit.append(run)
    if to_submit:
        environment = {key: value for key, value in os.environ.items()
                       if key.startswith(("nnUNet_", "nnUNetv2_dbce", "OMP_", "CUDA_"))}
        slurm = executor(args)
        with slurm.batch():
            submitted = [slurm.submit(StudyJob(run, dataset_json, environment)) for run in to_submit]
        jobs.update(zip(to_submit, submitted))
        book.save(dict(zip(to_submit, submitted)))
        for run, job in zip(to_submit, submitted):
            print(f"{run.name}: submitted as job {job.job_id}", flush=True)
    if args.submit_only:
        return [], list(jobs)
    return wait_for(jobs, args.poll_seconds), []


def wait_for(jobs: dict, poll_seconds: float) -> list:
    """Poll the jobs until none is active; print each change of state and the time waited. Returns the runs
    whose job failed or ended without a record (each reported with where to look)."""
    states: dict[StudyRun, str] = {}
    failed: list[StudyRun] = []
    start = time.monotonic()
    while True:
        changed = False
        for run, job in jobs.items():
            state = job_state(job)
            if state != states.get(run):
                states[run], changed = state, True
                detail = f": {failure_text(job)}" if state not in ACTIVE_STATES and state != "COMPLETED" else ""
                print(f"{run.name}: job {job.job_id} {state}{detail}", flush=True)
        active = [run for run, state in states.items() if state in ACTIVE_STATES]
        if changed:
            done = sum(state == "COMPLETED" for state in states.values())
            print(f"[{done}/{len(jobs)} done, {len(active)} queued or running, "
                  f"{minutes_text(time.monotonic() - start)} waited]", flush=True)
        if not active:
            break
        time.sleep(poll_seconds)
    for run, state in states.items():
        if state != "COMPLETED" or not run.recorded():
            failed.append(run)
    return failed
