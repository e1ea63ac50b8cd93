"""One run of a loss study: one (trainer, fold) trained and validated by nnU-Net in a process of its own, then
evaluated into a record. Runs one after another, several at once (``--jobs``) and SLURM jobs all do exactly this.

The record of a run is ``<out>/runs/<trainer>__fold<k>.csv`` (per-case metrics) and ``.json`` (training curves,
minutes, loss settings, provenance); the run's nnU-Net output folder and log live under ``--work``.
"""
import csv
import json
import os
import re
import subprocess
import sys
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path

from nnunetv2_dbce.tools.cli import UserError
from nnunetv2_dbce.tools.evaluate import CASE_METRICS, csv_rows, evaluate_folder
from nnunetv2_dbce.tools.nnunet import dataset_folder, dataset_name, fold_cases
from nnunetv2_dbce.tools.provenance import provenance


@dataclass(frozen=True)
class Resources:
    """What one run may use: ``gpus`` (given to it as ``CUDA_VISIBLE_DEVICES``; None: whatever is visible),
    ``threads`` (torch threads on the CPU; None: every core) and ``augmentation_workers`` (``nnUNet_n_proc_DA``;
    None: nnU-Net's default)."""

    gpus: tuple | None = None
    threads: int | None = None
    augmentation_workers: int | None = None

    def environment(self) -> dict:
        """Environment variables that give a child process these resources."""
        environment = {}
        if self.gpus is not None:
            environment["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.gpus))
        if self.threads is not None:
            environment["OMP_NUM_THREADS"] = str(self.threads)
        if self.augmentation_workers is not None:
            environment["nnUNet_n_proc_DA"] = str(self.augmentation_workers)
        return environment

    def describe(self) -> str:
        parts = [f"GPU {','.join(map(str, self.gpus))}"] if self.gpus is not None else []
        if self.threads is not None:
            parts.append(f"{self.threads} thread{'s' if self.threads > 1 else ''}")
        if self.augmentation_workers is not None:
            parts.append(f"{self.augmentation_workers} augmentation worker"
                         f"{'s' if self.augmentation_workers > 1 else ''}")
        return ", ".join(parts)


@dataclass(frozen=True, eq=False)
class StudyRun:
    """One (trainer, fold) of the study ``args`` (the parsed command line) with the study's plans identifier."""

    args: Namespace
    plans: str
    trainer: str
    fold: int

    @property
    def name(self) -> str:
        return f"{self.trainer} fold {self.fold}"

    @property
    def output_folder(self) -> Path:
        """nnU-Net's ``fold_<k>`` folder of this run, in the study's own ``nnUNet_results``."""
        return self.args.work / "nnUNet_results" / dataset_name(self.args.dataset) / \
            f"{self.trainer}__{self.plans}__{self.args.configuration}" / f"fold_{self.fold}"

    def record(self, suffix: str) -> Path:
        return record_path(self.args.out, self.trainer, self.fold, suffix)

    @property
    def log(self) -> Path:
        return self.args.work / "logs" / f"{self.trainer}__fold{self.fold}.log"

    def recorded(self) -> bool:
        return self.record(".csv").is_file()

    def finished(self) -> bool:
        """Whether nnU-Net's final validation of this run is written."""
        return (self.output_folder / "validation" / "summary.json").is_file()

    def epochs_done(self) -> int:
        """Epochs finished so far, from nnU-Net's newest training log in the output folder (0 if none)."""
        logs = sorted(self.output_folder.glob("training_log_*.txt"), key=log_start)
        if not logs:
            return 0
        return epochs_started(logs[-1].read_text(errors="replace"))

    def failure(self, code: int) -> str:
        """Why the child failed, in one line: its exit code, the last line of its log (the exception, for an
        error in Python) and where the log is."""
        try:
            with open(self.log, "rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - 20000))
                lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
        except OSError:
            lines = []
        cause = f": {lines[-1]}" if lines else ""
        return f"{self.name} failed (exit {code}){cause}; see {self.log}"

    def command(self, resources: Resources) -> list:
        """The child process that trains and validates this run (``nnUNetv2_dbce_study ... --run-one``)."""
        args = self.args
        return [sys.executable, "-m", "nnunetv2_dbce.tools.study", args.dataset, "-c", args.configuration,
                "-p", self.plans, "--epochs", str(args.epochs), "--iterations", str(args.iterations),
                "--val-iterations", str(args.val_iterations), "-o", str(args.out), "--work", str(args.work),
                "--device", args.device, "--gpus-per-run", str(args.gpus_per_run),
                *(["--checkpoint-every", str(args.checkpoint_every)] if args.checkpoint_every else []),
                *(["--disable-tta"] if args.disable_tta else []),
                *(["--seed", str(args.seed)] if args.seed is not None else []),
                *(["--threads", str(resources.threads)] if resources.threads is not None else []),
                "--run-one", self.trainer, str(self.fold)]

    def start(self, resources: Resources) -> subprocess.Popen:
        """Start the child in a session of its own (so that stopping the study stops it as a whole), its output
        appended to the run's log."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as handle:
            return subprocess.Popen(self.command(resources), stdout=handle, stderr=subprocess.STDOUT,
                                    env={**os.environ, **resources.environment()}, start_new_session=True)

    def write_record(self, dataset_json: dict, minutes: float | None, resources: Resources) -> Path:
        """Evaluate this finished run's validation predictions and write its record (per-case CSV + JSON)."""
        args = self.args
        validation = self.output_folder / "validation"
        predicted = {path.name for path in validation.iterdir()} if validation.is_dir() else set()
        unpredicted = [case for case in fold_cases(args.dataset, self.fold, "val")
                       if case + dataset_json["file_ending"] not in predicted]
        if unpredicted:
            raise UserError(f"{self.trainer} fold {self.fold}: {len(unpredicted)} validation cases of the fold have "
                            f"no prediction in {validation} (e.g. {unpredicted[0]})")
        summary = evaluate_folder(dataset_folder(args.dataset) / "gt_segmentations", validation, dataset_json,
                                  num_processes=os.cpu_count() or 1, tolerance=args.nsd_tolerance,
                                  progress=False, chill=True)  # the fold's cases, checked above
        path = self.record(".csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".tmp"), "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["case", "label", *CASE_METRICS])
            writer.writeheader()
            writer.writerows(csv_rows(summary, dataset_json["file_ending"]))
        self.record(".json").write_text(json.dumps(
            {"trainer": self.trainer, "fold": self.fold, "minutes": minutes, **run_facts(self.output_folder),
             "provenance": run_provenance(args, resources)}, indent=1))
        os.replace(path.with_suffix(".tmp"), path)  # the CSV last: a record is complete once it exists
        return path


def epochs_started(training_log: str) -> int:
    """The number of the last epoch nnU-Net's training log says it started (``...: Epoch 12``; not its
    ``Epoch time: 63.4 s`` lines), i.e. the epochs finished before it; 0 if none."""
    started = re.findall(r": Epoch (\d+)\s*$", training_log, flags=re.MULTILINE)
    return int(started[-1]) if started else 0


def log_start(log: Path) -> tuple:
    """When nnU-Net started the training that writes ``log`` (``training_log_2026_12_3_9_05_01.txt``: its numbers
    are not zero-padded, so names do not sort by time)."""
    return tuple(int(n) for n in log.stem.removeprefix("training_log_").split("_"))


def record_path(out: Path, trainer: str, fold: int, suffix: str) -> Path:
    return out / "runs" / f"{trainer}__fold{fold}{suffix}"


def run_provenance(args: Namespace, resources: Resources) -> dict:
    """The provenance fields of a run trained with ``resources`` on this machine (``tools.provenance``)."""
    from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
    workers = resources.augmentation_workers
    return provenance(args.device, (resources.threads or os.cpu_count()) if args.device == "cpu" else None,
                      get_allowed_n_proc_DA() if workers is None else workers, args.seed,
                      args.gpus_per_run if args.device == "cuda" else None)


def run_facts(output_folder: Path) -> dict:
    """From a finished run's final checkpoint: nnU-Net's logged curves (train/val loss, EMA pseudo Dice and the
    pseudo Dice of each label or region per epoch) and the loss settings the package's trainers record there
    (e.g. a derived radius; None otherwise)."""
    import torch

    from nnunetv2_dbce.trainers.settings import SETTINGS_KEY, without_trainer
    checkpoint = torch.load(output_folder / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    logging = checkpoint["logging"]
    settings = checkpoint["init_args"].get(SETTINGS_KEY)
    curves: dict[str, list] = {key: [float(v) for v in logging[key]]
                               for key in ("train_losses", "val_losses", "ema_fg_dice")}
    curves["dice_per_class"] = [[float(v) for v in epoch] for epoch in logging["dice_per_class_or_region"]]
    return {"curves": curves, "loss_settings": without_trainer(settings) if settings else None}


def train_one(args: Namespace, trainer_name: str, fold: int) -> None:
    """Train (or continue) one trainer on one fold with the study's epoch budget, then validate: the child process.

    nnU-Net's trainer, shortened by setting its epoch and iteration counts before it initialises (the
    learning-rate schedule follows ``num_epochs``); ``--checkpoint-every`` sets how often it saves
    ``checkpoint_latest.pth`` (nnU-Net: every 50 epochs). ``--disable-tta`` validates without mirroring; the
    checkpoints keep nnU-Net's mirroring axes for later predictions. With ``--gpus-per-run K > 1`` the run is
    nnU-Net's DDP over K processes, one GPU each, as ``nnUNetv2_train -num_gpus K`` runs it.
    """
    if args.device == "cuda" and args.gpus_per_run > 1:
        import torch.multiprocessing as mp
        from nnunetv2.run.run_training import find_free_network_port
        os.environ.setdefault("MASTER_ADDR", "localhost")
        os.environ.setdefault("MASTER_PORT", str(find_free_network_port()))
        mp.spawn(train_ddp_rank, args=(args, trainer_name, fold), nprocs=args.gpus_per_run, join=True)
        return
    train_and_validate(args, trainer_name, fold)


def train_ddp_rank(rank: int, args: Namespace, trainer_name: str, fold: int) -> None:
    """One rank of a DDP run, set up and torn down with nnU-Net's own ``setup_ddp`` and ``cleanup_ddp``."""
    import torch
    from nnunetv2.run.run_training import cleanup_ddp, setup_ddp
    setup_ddp(rank, args.gpus_per_run)
    torch.cuda.set_device(torch.device("cuda", rank))
    train_and_validate(args, trainer_name, fold)
    cleanup_ddp()


def train_and_validate(args: Namespace, trainer_name: str, fold: int) -> None:
    import random

    import numpy as np
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint
    if args.device == "cpu":
        torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if args.seed is not None:
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
    trainer = get_trainer_from_args(args.dataset, args.configuration, fold, trainer_name, args.plans,
                                    device=torch.device(args.device))
    trainer.num_epochs = args.epochs
    trainer.num_iterations_per_epoch = args.iterations
    trainer.num_val_iterations_per_epoch = args.val_iterations
    if args.checkpoint_every:
        trainer.save_every = args.checkpoint_every
    maybe_load_checkpoint(trainer, continue_training=True, validation_only=False)
    trainer.run_training()
    if args.disable_tta:
        trainer.inference_allowed_mirroring_axes = None
    trainer.perform_actual_validation()
