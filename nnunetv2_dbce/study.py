"""A loss study on an nnU-Net dataset: train several trainers on the same folds, evaluate each with
nnU-Net's own validation (per-class Dice) plus HD95 and normalised surface distance, and write one CSV,
a Markdown table and PNG plots.

Run ``python scripts/study.py --help``. nnU-Net does the planning, preprocessing, training, validation and
Dice; this module only chooses what to run and collects the results. Runs go to ``<out>/nnUNet_results``
(never the user's ``nnUNet_results``), one subprocess per (trainer, fold) with its log in ``<out>/logs``.
A rerun skips finished runs and continues interrupted ones from ``checkpoint_latest.pth``; it must use the
same epochs, iterations and plans (kept in ``<out>/study.json``), trainers and folds may be added.

Small plans: nnU-Net's plans are sized for a GPU. With ``--batch-size`` / ``--patch-size`` the study writes
a plans variant next to the source plans, under its own identifier (the source file is never edited)
and with the source's ``data_identifier``, so the preprocessed data are reused as they are.
"""
import argparse
import csv
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from nnunetv2_dbce.preprocessed import check_configuration, dataset_folder, dataset_name

DEFAULT_TRAINERS = ("nnUNetTrainerCELoss", "nnUNetTrainerBalancedCE", "nnUNetTrainerDBCE_R1",
                    "nnUNetTrainerDBCE_R3", "nnUNetTrainerDBCE", "nnUNetTrainerDBCE_R10", "nnUNetTrainer",
                    "nnUNetTrainerDiceLoss", "nnUNetTrainerPMDice", "nnUNetTrainerPMDiceCE",
                    "nnUNetTrainerDBCEPMDice")
CSV_COLUMNS = ("trainer", "fold", "case", "label", "dice", "hd95_mm", "nsd")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
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
    parser.add_argument("--patch-size", type=int, nargs="+", help="patch size of the derived small plans")
    parser.add_argument("--nsd-tolerance", type=float, default=1.0, help="NSD tolerance in mm")
    parser.add_argument("-o", "--out", type=Path, default=Path("study"), help="output folder")
    parser.add_argument("-device", "--device", default="cpu", choices=("cpu", "cuda", "mps"))
    parser.add_argument("--run-one", nargs=2, metavar=("TRAINER", "FOLD"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def ensure_preprocessed(dataset: str, configuration: str, plans: str) -> Path:
    """Plan and preprocess with nnU-Net's own command unless the source plans exist already."""
    folder = dataset_folder(dataset)
    if not (folder / f"{plans}.json").is_file():
        if plans != "nnUNetPlans":
            raise SystemExit(f"{folder / plans}.json does not exist")
        print(f"No plans in {folder}: running nnUNetv2_plan_and_preprocess -d {dataset} -c {configuration}")
        subprocess.run([str(Path(sys.executable).with_name("nnUNetv2_plan_and_preprocess")), "-d", dataset,
                        "-c", configuration, "--verify_dataset_integrity"], check=True)
    return folder


def derive_small_plans(folder: Path, source: str, configuration: str, batch_size=None, patch_size=None) -> str:
    """Write a plans variant with a smaller batch and/or patch for ``configuration``; return its identifier.

    The variant keeps the source's ``data_identifier`` (same preprocessed data) and network; a patch size
    must stay divisible by the network's total stride on every axis.
    """
    if batch_size is None and patch_size is None:
        return source
    plans = json.loads((folder / f"{source}.json").read_text())
    check_configuration(plans, configuration, source)
    config = plans["configurations"][configuration]
    if "inherits_from" in config:
        raise SystemExit(f"{configuration} inherits from another configuration: give --batch-size/--patch-size "
                         f"for a configuration with its own settings")
    identifier = source
    if batch_size is not None:
        if batch_size < 1:
            raise SystemExit(f"--batch-size must be >= 1, got {batch_size}")
        config["batch_size"] = batch_size
        identifier += f"_bs{batch_size}"
    if patch_size is not None:
        strides = np.prod(config["architecture"]["arch_kwargs"]["strides"], axis=0)
        if len(patch_size) != len(strides) or any(p % s for p, s in zip(patch_size, strides)):
            raise SystemExit(f"--patch-size {patch_size} must have {len(strides)} values, each divisible by the "
                             f"network's total stride {strides.tolist()}")
        config["patch_size"] = list(patch_size)
        identifier += "_ps" + "x".join(map(str, patch_size))
    plans["plans_name"] = identifier
    plans["configurations"] = {configuration: config}
    path = folder / f"{identifier}.json"
    text = json.dumps(plans, indent=4)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    print(f"Study plans: {identifier} ({path}), derived from {source} for {configuration}: batch size "
          f"{config['batch_size']}, patch size {config['patch_size']}, data {config['data_identifier']}")
    return identifier


def run_folder(args, plans: str, trainer: str, fold: int) -> Path:
    return args.out / "nnUNet_results" / dataset_name(args.dataset) / f"{trainer}__{plans}__{args.configuration}" \
        / f"fold_{fold}"


def train_one(args, plans: str, trainer_name: str, fold: int):
    """Train (or continue) one trainer on one fold with the study's epoch budget, then validate.

    Runs in its own process: nnU-Net's trainer, shortened by setting its epoch and iteration counts
    before it initialises (the learning-rate schedule follows ``num_epochs``).
    """
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint
    if args.device == "cpu":
        torch.set_num_threads(os.cpu_count())
    trainer = get_trainer_from_args(args.dataset, args.configuration, fold, trainer_name, plans,
                                    device=torch.device(args.device))
    trainer.num_epochs = args.epochs
    trainer.num_iterations_per_epoch = args.iterations
    trainer.num_val_iterations_per_epoch = args.val_iterations
    maybe_load_checkpoint(trainer, continue_training=True, validation_only=False)
    trainer.run_training()
    trainer.perform_actual_validation()


def foreground_labels(dataset_json: dict) -> dict:
    """``{label value: name}`` of the foreground labels (the ignore label is not a class)."""
    if "regions_class_order" in dataset_json:
        raise SystemExit("the study measures labels, not regions: region-based datasets are not supported")
    return {value: name for name, value in dataset_json["labels"].items() if name != "ignore" and value > 0}


def finished(run: Path) -> bool:
    """Whether nnU-Net's final validation of a run is written."""
    return (run / "validation" / "summary.json").is_file()


def evaluate_run(folder: Path, gt_folder: Path, dataset_json: dict, labels, tolerance: float):
    """Per-case rows (case, label, Dice, HD95, NSD) of one finished run, cached in ``study_metrics.json``.

    Dice is nnU-Net's own (``validation/summary.json``); HD95 and NSD are computed on the same files.
    """
    from nnunetv2.evaluation.evaluate_predictions import load_summary_json
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    from nnunetv2_dbce.surface_metrics import surface_metrics

    cache = folder / "study_metrics.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    summary = load_summary_json(str(folder / "validation" / "summary.json"))
    rows = []
    reader = None
    for case in summary["metric_per_case"]:
        reference_file = gt_folder / Path(case["reference_file"]).name
        reader = reader or determine_reader_writer_from_dataset_json(dataset_json, str(reference_file))()
        reference, properties = reader.read_seg(str(reference_file))
        prediction, _ = reader.read_seg(case["prediction_file"])
        distances = surface_metrics(reference[0], prediction[0], labels, properties["spacing"], tolerance)
        name = Path(case["reference_file"]).name[:-len(dataset_json["file_ending"])]
        for label in labels:
            hd95, nsd = distances[label]
            rows.append({"case": name, "label": label, "dice": case["metrics"][label]["Dice"],
                         "hd95_mm": hd95, "nsd": nsd})
    cache.write_text(json.dumps(rows))
    return rows


def training_curves(folder: Path) -> dict:
    """nnU-Net's logged curves of a finished run (train/val loss, EMA pseudo Dice per epoch)."""
    import torch
    logging = torch.load(folder / "checkpoint_final.pth", map_location="cpu", weights_only=False)["logging"]
    return {key: [float(v) for v in logging[key]] for key in ("train_losses", "val_losses", "ema_fg_dice")}


def fold_means(rows, trainer, label, metric):
    """Mean of ``metric`` over cases, per fold (NaN distances left out), for one trainer and label."""
    means = []
    for fold in sorted({r["fold"] for r in rows if r["trainer"] == trainer}):
        values = [r[metric] for r in rows if r["trainer"] == trainer and r["fold"] == fold and r["label"] == label]
        finite = [v for v in values if v is not None and not math.isnan(v)]
        means.append(float(np.mean(finite)) if finite else math.nan)
    return means


def markdown_table(rows, trainers, label_names) -> str:
    """Mean over folds +- standard deviation of the fold means, per trainer and label. A fold in which no
    case has an HD95 (the label never predicted) has no HD95 mean; 'n/a' when no fold has one."""
    header = ["trainer"] + [f"{metric} {name}" for name in label_names.values()
                            for metric in ("Dice", "HD95 mm", "NSD")] + ["mean Dice", "cases w/o HD95"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for trainer in trainers:
        cells = [trainer]
        dice_means = []
        for label in label_names:
            for metric, digits in (("dice", 3), ("hd95_mm", 2), ("nsd", 3)):
                means = [m for m in fold_means(rows, trainer, label, metric) if not math.isnan(m)]
                spread = f" ± {np.std(means, ddof=1):.{digits}f}" if len(means) > 1 else ""
                cells.append(f"{np.mean(means):.{digits}f}{spread}" if means else "n/a")
                if metric == "dice":
                    dice_means.append(np.mean(means))
        cells.append(f"{np.mean(dice_means):.3f}")
        missing = sum(1 for r in rows if r["trainer"] == trainer and math.isnan(r["hd95_mm"]))
        cells.append(str(missing))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_metrics(rows, trainers, label_names, path: Path):
    """Per-label Dice and HD95 per trainer: bar = mean over folds, dots = fold means."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    metrics = (("dice", "Dice"), ("hd95_mm", "HD95 (mm)"), ("nsd", "NSD"))
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(8, 0.9 * len(trainers) * len(label_names)), 11))
    width = 0.8 / len(label_names)
    x = np.arange(len(trainers))
    for ax, (metric, title) in zip(axes, metrics):
        for k, (label, name) in enumerate(label_names.items()):
            per_trainer = [fold_means(rows, t, label, metric) for t in trainers]
            offset = x + (k - (len(label_names) - 1) / 2) * width
            ax.bar(offset, [np.mean(m) for m in per_trainer], width, label=name, alpha=0.6)
            for xi, means in zip(offset, per_trainer):
                ax.plot([xi] * len(means), means, "k.", markersize=4)
        ax.set_ylabel(title)
        ax.set_xticks(x, [t.replace("nnUNetTrainer", "") or "(default)" for t in trainers], rotation=30,
                      ha="right")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(title="bars: mean over folds; dots: folds", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(curves: dict, path: Path):
    """Training curves per trainer (mean over folds): train loss, validation loss, EMA pseudo Dice."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = (("train_losses", "train loss"), ("val_losses", "validation loss"), ("ema_fg_dice", "EMA pseudo Dice"))
    fig, axes = plt.subplots(1, len(keys), figsize=(16, 5))
    for ax, (key, title) in zip(axes, keys):
        for index, (trainer, per_fold) in enumerate(curves.items()):
            length = min(len(c[key]) for c in per_fold)
            ax.plot(np.arange(length), np.mean([c[key][:length] for c in per_fold], axis=0),
                    color=plt.cm.tab20(index % 20), label=trainer.replace("nnUNetTrainer", "") or "(default)")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_study(args):
    folder = ensure_preprocessed(args.dataset, args.configuration, args.plans)
    plans = derive_small_plans(folder, args.plans, args.configuration, args.batch_size, args.patch_size)
    check_same_settings(args, plans)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    label_names = foreground_labels(dataset_json)
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    runs = [(trainer, fold) for trainer in args.trainers for fold in args.folds]
    print(f"Study: {len(args.trainers)} trainers x folds {args.folds} on {args.dataset} {args.configuration} "
          f"({plans}), {args.epochs} epochs x {args.iterations} iterations, device {args.device}, out {args.out}")
    durations = []
    to_train = sum(not finished(run_folder(args, plans, t, f)) for t, f in runs)
    rows, curves = [], {}
    for index, (trainer, fold) in enumerate(runs, 1):
        run = run_folder(args, plans, trainer, fold)
        if not finished(run):
            eta = f", about {np.mean(durations) * (to_train - len(durations)) / 60:.0f} min left" if durations else ""
            print(f"[{index}/{len(runs)}] {trainer} fold {fold}: training{eta}", flush=True)
            start = time.time()
            command = [sys.executable, "-m", "nnunetv2_dbce.study", *child_arguments(args, plans), "--run-one",
                       trainer, str(fold)]
            log = args.out / "logs" / f"{trainer}__fold{fold}.log"
            with open(log, "a") as handle:
                result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
            if result.returncode != 0:
                raise SystemExit(f"{trainer} fold {fold} failed (exit {result.returncode}); see {log}")
            durations.append(time.time() - start)
            print(f"[{index}/{len(runs)}] {trainer} fold {fold}: done in {durations[-1] / 60:.1f} min", flush=True)
        else:
            print(f"[{index}/{len(runs)}] {trainer} fold {fold}: finished before, reusing", flush=True)
        for row in evaluate_run(run, folder / "gt_segmentations", dataset_json, label_names, args.nsd_tolerance):
            rows.append({"trainer": trainer, "fold": fold, **row})
        curves.setdefault(trainer, []).append(training_curves(run))
    write_outputs(args, plans, rows, curves, label_names)


def check_same_settings(args, plans: str):
    """Record the settings that finished runs depend on in ``<out>/study.json``; refuse to mix others in."""
    settings = {"dataset": args.dataset, "configuration": args.configuration, "plans": plans,
                "epochs": args.epochs, "iterations": args.iterations, "val_iterations": args.val_iterations,
                "nsd_tolerance": args.nsd_tolerance}
    path = args.out / "study.json"
    if path.is_file():
        before = json.loads(path.read_text())
        changed = {key: (before.get(key), value) for key, value in settings.items() if before.get(key) != value}
        if changed:
            differences = ", ".join(f"{key}: {old} -> {new}" for key, (old, new) in changed.items())
            raise SystemExit(f"{args.out} holds a study with other settings ({differences}); use another --out, "
                             f"or the same settings to resume")
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2))


def child_arguments(args, plans: str):
    """The options a child process needs to train one run, with the study's (derived) plans identifier."""
    return [args.dataset, "-c", args.configuration, "-p", plans, "--epochs", str(args.epochs), "--iterations",
            str(args.iterations), "--val-iterations", str(args.val_iterations), "-o", str(args.out), "--device",
            args.device]


def write_outputs(args, plans, rows, curves, label_names):
    with open(args.out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    table = markdown_table(rows, args.trainers, label_names)
    command = " ".join(["python scripts/study.py", *map(shlex.quote, sys.argv[1:])])
    (args.out / "results.md").write_text(
        f"# Loss study: {dataset_name(args.dataset)} {args.configuration}, plans {plans}\n\n"
        f"{args.epochs} epochs x {args.iterations} iterations, folds {args.folds}; mean over folds ± standard "
        f"deviation of the fold means. Dice from nnU-Net's validation; HD95/NSD (tolerance "
        f"{args.nsd_tolerance:g} mm) on the same predictions; cases where a class is missing from the "
        f"prediction or the reference have no HD95 (counted in the last column).\n\n"
        f"`{command}`\n\n{table}\n![metrics](metrics.png)\n\n![curves](curves.png)\n")
    plot_metrics(rows, args.trainers, label_names, args.out / "metrics.png")
    plot_curves(curves, args.out / "curves.png")
    print(table)
    print(f"Wrote {args.out / 'results.csv'}, results.md, metrics.png, curves.png")


def main(argv=None):
    args = parse_args(argv)
    os.environ["nnUNet_results"] = str((args.out / "nnUNet_results").resolve())
    if args.run_one:
        train_one(args, args.plans, args.run_one[0], int(args.run_one[1]))
    else:
        run_study(args)


if __name__ == "__main__":
    main()
