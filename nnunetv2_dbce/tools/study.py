"""A loss study on an nnU-Net dataset: train several trainers on the same folds, evaluate each run's
validation predictions with ``nnunetv2_dbce.tools.evaluate`` (nnU-Net's Dice, HD95, NSD, lesion-wise
detection, Dice by structure size), compare trainers case by case (Wilcoxon signed-rank, bootstrap
intervals, Holm's correction), and write a CSV, a Markdown report and plots.

nnU-Net does the planning, preprocessing, training and validation; this module chooses what to run and
collects the results. Two folders:
- ``--out`` holds the study's *records*: ``study.json`` (settings), one ``runs/<trainer>__fold<k>.csv``
  (per-case metrics) and ``.json`` (training curves, minutes, provenance) per finished run, and the report. It is small
  and meant to be committed: a run with a record is never trained again, on any machine, and the report
  merges every record in the folder.
- ``--work`` (default ``<out>/work``) holds the heavy part: ``nnUNet_results`` of the study's runs (never the
  user's ``nnUNet_results``) and one log per run. An interrupted run continues from its
  ``checkpoint_latest.pth``; a finished run without a record is evaluated, not retrained.
A rerun must use the same epochs, iterations and plans (kept in ``study.json``); trainers and folds may be added.

Small plans: nnU-Net's plans are sized for a GPU. ``--batch-size``, ``--patch-size`` (re-plans the network
topology as nnU-Net's planner does) and ``--features`` (features of the first stage) write a plans
variant next to the source plans under its own identifier, reusing the same preprocessed data.

Where the runs train: one after another (default), several at once on this machine (``--jobs``,
``study_local``) or as SLURM jobs (``--slurm``, ``study_slurm``); each run is the same unit (``study_run``)
and the report (``study_report``) is a function of the records alone.
"""
import argparse
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from nnunetv2_dbce.tools.cli import UserError, console_command
from nnunetv2_dbce.tools.nnunet import dataset_folder, dataset_id, dataset_name, nnunet_command
from nnunetv2_dbce.tools.plans import derive_small_plans
from nnunetv2_dbce.tools.study_local import LocalScheduler, local_resources
from nnunetv2_dbce.tools.study_report import DEFAULT_TRAINERS, report
from nnunetv2_dbce.tools.study_run import StudyRun, train_one


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nnUNetv2_dbce_study", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("dataset", help="nnU-Net dataset id or name (DatasetXXX_Name)")
    parser.add_argument("-c", "--configuration", default="2d")
    parser.add_argument("-tr", "--trainers", nargs="+", default=list(DEFAULT_TRAINERS))
    parser.add_argument("-f", "--folds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=50, help="training iterations per epoch")
    parser.add_argument("--val-iterations", type=int, default=10, help="validation iterations per epoch")
    parser.add_argument("-p", "--plans", default="nnUNetPlans", help="source plans identifier")
    parser.add_argument("--batch-size", type=int, help="batch size of the derived small plans")
    parser.add_argument("--patch-size", type=int, nargs="+", help="patch size of the derived small plans (the "
                        "network topology is re-planned for it)")
    parser.add_argument("--features", type=int, help="features of the first stage in the derived small plans "
                        "(nnU-Net: 32), doubled per stage up to nnU-Net's maximum")
    parser.add_argument("--disable-tta", action="store_true", help="final validation without mirroring")
    parser.add_argument("--nsd-tolerance", type=float, default=1.0, help="NSD tolerance in mm")
    parser.add_argument("-o", "--out", type=Path, default=Path("study"), help="records and report (commit it)")
    parser.add_argument("--work", type=Path, help="trained models and logs; default: OUT/work")
    parser.add_argument("--report-only", action="store_true", help="train nothing: report the records in OUT")
    parser.add_argument("-device", "--device", default="cpu", choices=("cpu", "cuda", "mps"))
    parser.add_argument("--seed", type=int, help="seed torch, NumPy and random before each run (initial weights, "
                        "sampling; nnU-Net's augmentation workers and threads still make runs differ); recorded")
    parser.add_argument("--checkpoint-every", type=int, metavar="EPOCHS",
                        help="save checkpoint_latest.pth every EPOCHS epochs (nnU-Net: 50), what an interrupted, "
                        "cancelled or requeued run continues from")
    several = parser.add_argument_group("several runs at once, on this machine")
    several.add_argument("--jobs", type=int, default=1, help="train up to JOBS (trainer, fold) runs at the same "
                         "time: one GPU group each with -device cuda, a share of the cores and augmentation "
                         "workers each on the CPU")
    several.add_argument("--gpus", nargs="+", help="GPUs to give the runs, one group of --gpus-per-run each "
                         "(default: all visible)")
    several.add_argument("--gpus-per-run", type=int, default=1, help="GPUs per run: more than 1 trains each run "
                         "with nnU-Net's DDP (as nnUNetv2_train -num_gpus)")
    cluster = parser.add_argument_group("on a SLURM cluster (pip install 'nnunetv2-dbce[cluster]')")
    cluster.add_argument("--slurm", action="store_true", help="submit each (trainer, fold) as one SLURM job "
                         "(submitit), wait for them with progress and write the report")
    cluster.add_argument("--submit-only", action="store_true", help="with --slurm: return after submitting; the "
                         "same command later shows every job's state and, once all are done, writes the report")
    cluster.add_argument("--slurm-partition")
    cluster.add_argument("--slurm-time", type=int, default=24 * 60, help="time limit per job, minutes; a job that "
                         "reaches it is requeued and continues from checkpoint_latest.pth")
    cluster.add_argument("--slurm-gpus", type=int, help="GPUs per job (default: --gpus-per-run with -device cuda, "
                         "else none)")
    cluster.add_argument("--slurm-cpus", type=int, help="CPUs per job (default: the partition's default)")
    cluster.add_argument("--slurm-mem", type=float, help="memory per job, GB")
    cluster.add_argument("--slurm-account")
    cluster.add_argument("--slurm-qos")
    cluster.add_argument("--slurm-array-parallelism", type=int, default=256,
                         help="most jobs of the study's job array running at once")
    cluster.add_argument("--slurm-extra", nargs="+", default=[], metavar="KEY=VALUE",
                         help="any other sbatch option, e.g. constraint=a100 exclude=node3")
    cluster.add_argument("--poll-seconds", type=float, default=30, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run-one", nargs=2, metavar=("TRAINER", "FOLD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.work = args.work or args.out / "work"
    if args.submit_only and not args.slurm:
        parser.error("--submit-only needs --slurm")
    if args.gpus and args.device != "cuda":
        parser.error("--gpus needs -device cuda")
    if args.jobs < 1 or args.gpus_per_run < 1:
        parser.error("--jobs and --gpus-per-run must be at least 1")
    bad_extra = [item for item in args.slurm_extra if "=" not in item]
    if bad_extra:
        parser.error(f"--slurm-extra takes KEY=VALUE items, not {' '.join(bad_extra)}")
    return args


def ensure_preprocessed(dataset: str, configuration: str, plans: str) -> Path:
    """Plan and preprocess with nnU-Net's own command unless the source plans exist already."""
    folder = dataset_folder(dataset)
    if not (folder / f"{plans}.json").is_file():
        if plans != "nnUNetPlans":
            raise UserError(f"{folder / plans}.json does not exist")
        identifier = str(dataset_id(dataset))
        print(f"No plans in {folder}: running nnUNetv2_plan_and_preprocess -d {identifier} -c {configuration}")
        planned = subprocess.run([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", identifier,
                                  "-c", configuration, "--verify_dataset_integrity"])
        if planned.returncode != 0:
            raise UserError(f"nnUNetv2_plan_and_preprocess -d {identifier} -c {configuration} failed (exit "
                            f"{planned.returncode}): its output is above")
    return folder


def label_names(dataset_json: dict) -> dict:
    """``{label or region key as in the CSV: name}`` of what nnU-Net evaluates (ignore label left out)."""
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    labels = LabelManager(dataset_json["labels"], dataset_json.get("regions_class_order"))
    keys = labels.foreground_regions if labels.has_regions else labels.foreground_labels
    names = {}
    for name, value in dataset_json["labels"].items():
        key = tuple(value) if isinstance(value, list) else value
        if key in keys:
            names[str(key)] = name
    return names


def check_same_settings(args: argparse.Namespace, plans: str, names: dict) -> None:
    """Record the settings that finished runs depend on in ``<out>/study.json``; refuse to mix others in."""
    settings = {"dataset": dataset_name(args.dataset), "configuration": args.configuration, "plans": plans,
                "epochs": args.epochs, "iterations": args.iterations, "val_iterations": args.val_iterations,
                "disable_tta": args.disable_tta, "nsd_tolerance": args.nsd_tolerance, "labels": names}
    path = args.out / "study.json"
    if path.is_file():
        before = json.loads(path.read_text())
        changed = {key: (before.get(key), value) for key, value in settings.items() if before.get(key) != value}
        if changed:
            differences = ", ".join(f"{key}: {old} -> {new}" for key, (old, new) in changed.items())
            raise UserError(f"{args.out} holds a study with other settings ({differences}); use another --out, "
                            f"or the same settings to resume")
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2))


def check_trainers(names: Sequence[str]) -> None:
    """Look every trainer up as ``nnUNetv2_train`` will (nnU-Net's trainers, then ``nnUNet_extTrainer``), before
    any planning or training.

    Raises:
        UserError: names nnU-Net cannot find.
    """
    import contextlib
    import io

    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    unknown = []
    for name in names:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                recursive_find_trainer_class_by_name(name)
        except (RuntimeError, AssertionError):
            unknown.append(name)
    if unknown:
        raise UserError(f"nnU-Net finds no trainer {', '.join(unknown)} (searched nnU-Net's trainers and "
                        f"nnUNet_extTrainer={os.environ.get('nnUNet_extTrainer', '')})")


def prepare(args: argparse.Namespace) -> tuple:
    """Plans (derived small plans if asked), dataset.json and the study's settings file: ``(plans, dataset_json)``."""
    folder = ensure_preprocessed(args.dataset, args.configuration, args.plans)
    plans = derive_small_plans(folder, args.plans, args.configuration, args.batch_size, args.patch_size,
                               args.features)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    check_same_settings(args, plans, label_names(dataset_json))
    return plans, dataset_json


def run_study(args: argparse.Namespace) -> None:
    dataset_name(args.dataset)  # an unknown dataset is refused before anything else
    check_trainers(args.trainers)
    plans, dataset_json = prepare(args)
    runs = [StudyRun(args, plans, trainer, fold) for trainer in args.trainers for fold in args.folds]
    where = "SLURM" if args.slurm else f"device {args.device}"
    print(f"Study: {len(args.trainers)} trainers x folds {args.folds} on {args.dataset} {args.configuration} "
          f"({plans}), {args.epochs} epochs x {args.iterations} iterations, {where}, records in {args.out}, "
          f"models in {args.work}", flush=True)
    for run in runs:
        if run.recorded():
            print(f"{run.name}: recorded before, reusing", flush=True)
    to_run = [run for run in runs if not run.recorded()]
    if args.slurm:
        from nnunetv2_dbce.tools.study_slurm import run_on_slurm
        failed, active = run_on_slurm(to_run, args, dataset_json)
        if active:
            print(f"{len(active)} job(s) submitted or still queued; the same command shows their state and writes "
                  f"the report once all are done", flush=True)
            return
    else:
        slots = local_resources(args.device, args.jobs, args.gpus, args.gpus_per_run)
        if len(slots) > 1:
            print(f"{len(slots)} runs at a time, each with {slots[0].describe()}", flush=True)
        failed = LocalScheduler(to_run, slots, args.epochs,
                                lambda run, minutes, resources: run.write_record(dataset_json, minutes, resources),
                                say=lambda line: print(line, flush=True)).run()
    if any((args.out / "runs").glob("*.csv")):
        report(args.out)
    if failed:
        raise UserError(f"{len(failed)} run(s) failed: " + "; ".join(f"{run.name} (log {run.log})" for run in failed)
                        + ". The others are recorded; the same command retries the failed runs.")


@console_command("nnUNetv2_dbce_study")
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report_only:
        report(args.out)
        return
    os.environ["nnUNet_results"] = str((args.work / "nnUNet_results").resolve())
    if args.run_one:
        train_one(args, args.run_one[0], int(args.run_one[1]))
    else:
        run_study(args)


if __name__ == "__main__":
    main()
