"""A loss study on an nnU-Net dataset: train several trainers on the same folds, evaluate each run's
validation predictions with ``nnunetv2_dbce.tools.evaluate`` (nnU-Net's Dice, HD95, NSD, lesion-wise
detection, Dice by structure size), compare trainers case by case (Wilcoxon signed-rank, bootstrap
intervals, Holm's correction), and write a CSV, a Markdown report and plots.

nnU-Net does the planning, preprocessing, training and validation; this module chooses what to run and
collects the results. Two folders:
- ``--out`` holds the study's *records*: ``study.json`` (settings), one ``runs/<trainer>__fold<k>.csv``
  (per-case metrics) and ``.json`` (training curves, minutes) per finished run, and the report. It is small
  and meant to be committed: a run with a record is never trained again, on any machine, and the report
  merges every record in the folder.
- ``--work`` (default ``<out>/work``) holds the heavy part: ``nnUNet_results`` of the study's runs (never the
  user's ``nnUNet_results``) and one log per run. An interrupted run continues from its
  ``checkpoint_latest.pth``; a finished run without a record is evaluated, not retrained.
A rerun must use the same epochs, iterations and plans (kept in ``study.json``); trainers and folds may be added.

Small plans: nnU-Net's plans are sized for a GPU. ``--batch-size``, ``--patch-size`` (re-plans the network
topology as nnU-Net's planner does) and ``--features`` (features of the first stage) write a plans
variant next to the source plans under its own identifier, reusing the same preprocessed data.
"""
import argparse
import csv
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from nnunetv2_dbce.tools.evaluate import CASE_METRICS, csv_rows, evaluate_folder, lesion_scores, size_bin, size_bins
from nnunetv2_dbce.tools.plans import derive_small_plans
from nnunetv2_dbce.tools.nnunet import dataset_folder, dataset_name, nnunet_command
from nnunetv2_dbce.tools.provenance import ENVIRONMENT_FIELDS, provenance
from nnunetv2_dbce.tools.statistics import holm, paired_comparison

# Named by their settings (never a package default, which may change), so a record always says what ran.
DEFAULT_TRAINERS = ("nnUNetTrainerCELoss", "nnUNetTrainerBalancedCE", "nnUNetTrainerDBCE_R1",
                    "nnUNetTrainerDBCE_R3", "nnUNetTrainerDBCE_R5", "nnUNetTrainerDBCE_R10",
                    "nnUNetTrainerDBCE_derived", "nnUNetTrainerDiceDBCE_R3", "nnUNetTrainer",
                    "nnUNetTrainerDiceLoss", "nnUNetTrainerTopk10Loss", "nnUNetTrainerDiceTopK10Loss",
                    "nnUNetTrainerFocalLoss", "nnUNetTrainerFocalTversky", "nnUNetTrainerPMDice_gamma1",
                    "nnUNetTrainerPMDice_gamma2", "nnUNetTrainerPMDice_gamma3", "nnUNetTrainerPMDiceCE_gamma2",
                    "nnUNetTrainerDBCEPMDice_R5_gamma2")
DEFAULT_BASELINE = "nnUNetTrainer"  # nnU-Net's Dice+CE
DERIVED_RADIUS = "nnUNetTrainerDBCE_derived"
SIZE_NAMES = ("small", "medium", "large")


def paper_baselines(trainer: str) -> tuple:
    """What each paper says its loss beats: balanced CE and CE for DBCE; Dice and the losses made for hard
    pixels (focal, focal Tversky, TopK) for PM Dice alone. PM Dice+CE is compared with Dice+CE only."""
    if trainer.startswith("nnUNetTrainerDBCE"):
        return "nnUNetTrainerBalancedCE", "nnUNetTrainerCELoss"
    if trainer.startswith("nnUNetTrainerPMDice") and not trainer.startswith("nnUNetTrainerPMDiceCE"):
        return ("nnUNetTrainerDiceLoss", "nnUNetTrainerFocalLoss", "nnUNetTrainerFocalTversky",
                "nnUNetTrainerTopk10Loss")
    return ()


def parse_args(argv=None):
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
    parser.add_argument("--run-one", nargs=2, metavar=("TRAINER", "FOLD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.work = args.work or args.out / "work"
    return args


def ensure_preprocessed(dataset: str, configuration: str, plans: str) -> Path:
    """Plan and preprocess with nnU-Net's own command unless the source plans exist already."""
    folder = dataset_folder(dataset)
    if not (folder / f"{plans}.json").is_file():
        if plans != "nnUNetPlans":
            raise SystemExit(f"{folder / plans}.json does not exist")
        print(f"No plans in {folder}: running nnUNetv2_plan_and_preprocess -d {dataset} -c {configuration}")
        subprocess.run([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", dataset,
                        "-c", configuration, "--verify_dataset_integrity"], check=True)
    return folder


def run_folder(args, plans: str, trainer: str, fold: int) -> Path:
    return args.work / "nnUNet_results" / dataset_name(args.dataset) / \
        f"{trainer}__{plans}__{args.configuration}" / f"fold_{fold}"


def record_path(out: Path, trainer: str, fold: int, suffix: str) -> Path:
    return out / "runs" / f"{trainer}__fold{fold}{suffix}"


def train_one(args, plans: str, trainer_name: str, fold: int):
    """Train (or continue) one trainer on one fold with the study's epoch budget, then validate.

    Runs in its own process: nnU-Net's trainer, shortened by setting its epoch and iteration counts
    before it initialises (the learning-rate schedule follows ``num_epochs``). ``--disable-tta`` validates
    without mirroring; the checkpoints keep nnU-Net's mirroring axes for later predictions.
    """
    import random

    import torch
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint
    if args.device == "cpu":
        torch.set_num_threads(run_threads(args))
    if args.seed is not None:
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
    trainer = get_trainer_from_args(args.dataset, args.configuration, fold, trainer_name, plans,
                                    device=torch.device(args.device))
    trainer.num_epochs = args.epochs
    trainer.num_iterations_per_epoch = args.iterations
    trainer.num_val_iterations_per_epoch = args.val_iterations
    maybe_load_checkpoint(trainer, continue_training=True, validation_only=False)
    trainer.run_training()
    if args.disable_tta:
        trainer.inference_allowed_mirroring_axes = None
    trainer.perform_actual_validation()


def run_threads(args) -> int:
    """Torch threads of one run on the CPU: every core."""
    return os.cpu_count()


def run_provenance(args) -> dict:
    """The provenance fields of a run trained by this study process (``tools.provenance``)."""
    from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
    return provenance(args.device, run_threads(args) if args.device == "cpu" else None, get_allowed_n_proc_DA(),
                      args.seed)


def finished(run: Path) -> bool:
    """Whether nnU-Net's final validation of a run is written."""
    return (run / "validation" / "summary.json").is_file()


def run_facts(run: Path) -> dict:
    """From a finished run's final checkpoint: nnU-Net's logged curves (train/val loss, EMA pseudo Dice and the
    pseudo Dice of each label or region per epoch) and the loss settings the package's trainers record there
    (e.g. a derived radius; None otherwise)."""
    import torch
    from nnunetv2_dbce.trainers.settings import SETTINGS_KEY, without_trainer
    checkpoint = torch.load(run / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    logging = checkpoint["logging"]
    settings = checkpoint["init_args"].get(SETTINGS_KEY)
    curves = {key: [float(v) for v in logging[key]] for key in ("train_losses", "val_losses", "ema_fg_dice")}
    curves["dice_per_class"] = [[float(v) for v in epoch] for epoch in logging["dice_per_class_or_region"]]
    return {"curves": curves,
            "loss_settings": without_trainer(settings) if settings else None}


def write_record(args, run: Path, trainer: str, fold: int, dataset_json: dict, minutes):
    """Evaluate a finished run's validation predictions and write its record (per-case CSV + JSON)."""
    summary = evaluate_folder(dataset_folder(args.dataset) / "gt_segmentations", run / "validation", dataset_json,
                              num_processes=max(1, os.cpu_count()), tolerance=args.nsd_tolerance, progress=False)
    path = record_path(args.out, trainer, fold, ".csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["case", "label", *CASE_METRICS])
        writer.writeheader()
        writer.writerows(csv_rows(summary, dataset_json["file_ending"]))
    record_path(args.out, trainer, fold, ".json").write_text(json.dumps(
        {"trainer": trainer, "fold": fold, "minutes": minutes, **run_facts(run), "provenance": run_provenance(args)},
        indent=1))


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


def check_same_settings(args, plans: str, names: dict):
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
            raise SystemExit(f"{args.out} holds a study with other settings ({differences}); use another --out, "
                             f"or the same settings to resume")
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2))


def child_arguments(args, plans: str):
    """The options a child process needs to train one run, with the study's (derived) plans identifier."""
    return [args.dataset, "-c", args.configuration, "-p", plans, "--epochs", str(args.epochs), "--iterations",
            str(args.iterations), "--val-iterations", str(args.val_iterations), "-o", str(args.out), "--work",
            str(args.work), "--device", args.device, *(["--disable-tta"] if args.disable_tta else []),
            *(["--seed", str(args.seed)] if args.seed is not None else [])]


def run_study(args):
    folder = ensure_preprocessed(args.dataset, args.configuration, args.plans)
    plans = derive_small_plans(folder, args.plans, args.configuration, args.batch_size, args.patch_size,
                               args.features)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    check_same_settings(args, plans, label_names(dataset_json))
    (args.work / "logs").mkdir(parents=True, exist_ok=True)
    runs = [(trainer, fold) for trainer in args.trainers for fold in args.folds]
    print(f"Study: {len(args.trainers)} trainers x folds {args.folds} on {args.dataset} {args.configuration} "
          f"({plans}), {args.epochs} epochs x {args.iterations} iterations, device {args.device}, records in "
          f"{args.out}, models in {args.work}")
    to_train = [(t, f) for t, f in runs if not record_path(args.out, t, f, ".csv").is_file()
                and not finished(run_folder(args, plans, t, f))]
    durations = []
    for index, (trainer, fold) in enumerate(runs, 1):
        if record_path(args.out, trainer, fold, ".csv").is_file():
            print(f"[{index}/{len(runs)}] {trainer} fold {fold}: recorded before, reusing", flush=True)
            continue
        run = run_folder(args, plans, trainer, fold)
        minutes = None
        if not finished(run):
            left = len(to_train) - len(durations)
            eta = f", about {np.mean(durations) * left / 60:.0f} min left" if durations else ""
            print(f"[{index}/{len(runs)}] {trainer} fold {fold}: training{eta}", flush=True)
            start = time.time()
            command = [sys.executable, "-m", "nnunetv2_dbce.tools.study", *child_arguments(args, plans),
                       "--run-one", trainer, str(fold)]
            log = args.work / "logs" / f"{trainer}__fold{fold}.log"
            with open(log, "a") as handle:
                result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
            if result.returncode != 0:
                raise SystemExit(f"{trainer} fold {fold} failed (exit {result.returncode}); see {log}")
            durations.append(time.time() - start)
            minutes = round(durations[-1] / 60, 2)
            print(f"[{index}/{len(runs)}] {trainer} fold {fold}: done in {minutes:.1f} min", flush=True)
        write_record(args, run, trainer, fold, dataset_json, minutes)
        print(f"[{index}/{len(runs)}] {trainer} fold {fold}: recorded in {record_path(args.out, trainer, fold, '.csv')}",
              flush=True)
    report(args.out)


# ---------------------------------------------------------------------------------------------- the report

def load_records(out: Path):
    """Every record in ``<out>/runs``: rows (one per trainer, fold, case, label) and ``{trainer: {fold: json}}``."""
    rows, runs = [], {}
    for path in sorted((out / "runs").glob("*.csv")):
        meta = json.loads(path.with_suffix(".json").read_text())
        runs.setdefault(meta["trainer"], {})[meta["fold"]] = meta
        with open(path) as handle:
            for row in csv.DictReader(handle):
                rows.append({"trainer": meta["trainer"], "fold": meta["fold"], "case": row["case"],
                             "label": row["label"], **{m: float(row[m]) for m in CASE_METRICS}})
    return rows, runs


def trainer_order(trainers) -> list:
    """The default list's order first, then any other trainers alphabetically."""
    known = [t for t in DEFAULT_TRAINERS if t in trainers]
    return known + sorted(t for t in trainers if t not in DEFAULT_TRAINERS)


def short(trainer: str) -> str:
    return trainer.replace("nnUNetTrainer", "") or "Dice+CE (default)"


def fold_values(rows, trainer, label, folds, metric: str) -> list:
    """Per fold: the mean of ``metric`` over the fold's cases (NaN left out), ``lesion_F1`` from the fold's
    summed lesion counts, or ``dice_<size>`` the mean Dice of the cases in that size tertile."""
    values = []
    for fold in folds:
        cases = [r for r in rows if r["trainer"] == trainer and r["fold"] == fold and r["label"] == label]
        if metric == "lesion_F1":
            values.append(lesion_scores(*[int(sum(r[k] for r in cases)) for k in
                                          ("ref_lesions", "detected_lesions", "pred_lesions", "tp_lesions")])["F1"])
            continue
        key = metric
        if metric.startswith("dice_"):
            cases = [r for r in cases if r["size_bin"] == SIZE_NAMES.index(metric[5:])]
            key = "Dice"
        finite = [r[key] for r in cases if not math.isnan(r[key])]
        values.append(float(np.mean(finite)) if finite else math.nan)
    return values


def mean_and_spread(values, digits: int) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "n/a"
    spread = f" ± {np.std(finite, ddof=1):.{digits}f}" if len(finite) > 1 else ""
    return f"{np.mean(finite):.{digits}f}{spread}"


TABLE_METRICS = (("Dice", "Dice", 3), ("HD95", "HD95 mm", 2), ("NSD", "NSD", 3), ("lesion_F1", "lesion F1", 3),
                 ("dice_small", "Dice small", 3), ("dice_medium", "Dice medium", 3), ("dice_large", "Dice large", 3))


def metrics_table(rows, trainers, folds, names: dict) -> str:
    """Per label: mean over ``folds`` ± SD of the fold means of each metric in ``TABLE_METRICS``."""
    lines = []
    for label, name in names.items():
        header = ["trainer", *[title for _, title, _ in TABLE_METRICS]]
        lines += [f"**{name}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for trainer in trainers:
            cells = [short(trainer)] + [mean_and_spread(fold_values(rows, trainer, label, folds, metric), digits)
                                        for metric, _, digits in TABLE_METRICS]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def fold_dice_table(rows, trainers, folds, names: dict) -> str:
    """Mean Dice of each fold, per trainer and label: whether an ordering replicates across folds."""
    header = ["trainer", *[f"{name} fold {fold}" for name in names.values() for fold in folds]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for trainer in trainers:
        cells = [f"{value:.3f}" for label in names for value in fold_values(rows, trainer, label, folds, "Dice")]
        lines.append("| " + " | ".join([short(trainer), *cells]) + " |")
    return "\n".join(lines) + "\n"


def paired_values(rows, trainer, other, label, metric="Dice"):
    """Values of two trainers on the (fold, case) pairs both have, in the same order."""
    def by_case(t):
        return {(r["fold"], r["case"]): r[metric] for r in rows if r["trainer"] == t and r["label"] == label}
    mine, theirs = by_case(trainer), by_case(other)
    common = sorted(set(mine) & set(theirs))
    return [mine[k] for k in common], [theirs[k] for k in common]


def comparisons(rows, trainers, names: dict) -> list:
    """Each trainer against Dice+CE and against its paper's baselines (the derived radius also against every
    fixed radius), per label, Dice paired per case; p-values Holm-adjusted over all these tests together."""
    tests = []
    for trainer in trainers:
        fixed_radii = [t for t in trainers if re.fullmatch(r"nnUNetTrainerDBCE_R\d+", t)] \
            if trainer == DERIVED_RADIUS else []
        for other in (DEFAULT_BASELINE, *paper_baselines(trainer), *fixed_radii):
            if other == trainer or other not in trainers:
                continue
            for label in names:
                values, baseline = paired_values(rows, trainer, other, label)
                tests.append({"trainer": trainer, "against": other, "label": label,
                              **paired_comparison(values, baseline)})
    for test, adjusted in zip(tests, holm([t["p"] for t in tests])):
        test["p_holm"] = adjusted
    return tests


def comparisons_table(tests, names: dict) -> str:
    header = ["trainer", "against", "label", "cases", "median ΔDice [95% CI]", "p", "p (Holm)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for t in tests:
        mark = " *" if t["p_holm"] < 0.05 else ""
        lines.append(f"| {short(t['trainer'])} | {short(t['against'])} | {names[t['label']]} | {t['n']} | "
                     f"{t['median_difference']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]{mark} | "
                     f"{t['p']:.2g} | {t['p_holm']:.2g} |")
    return "\n".join(lines) + "\n"


def add_size_bins(rows, names: dict) -> dict:
    """Tertile edges of the reference volume per label over every recorded case; each row gets ``size_bin``."""
    edges = {}
    for label in names:
        volumes = {r["case"]: r["ref_volume"] for r in rows if r["label"] == label}
        edges[label] = size_bins(list(volumes.values()))
    for r in rows:
        r["size_bin"] = size_bin(r["ref_volume"], edges[r["label"]])
    return edges


def folds_phrase(folds) -> str:
    """``fold 1`` or ``folds 0, 1, 2``."""
    return f"fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))}"


def settings_lines(runs: dict, trainers) -> list:
    """One line per trainer whose records hold loss settings: the settings, with their folds if they differ."""
    lines = []
    for trainer in trainers:
        folds_by_settings = {}
        for fold, meta in sorted(runs[trainer].items()):
            if meta.get("loss_settings"):
                described = ", ".join(f"{k} {v}" for k, v in meta["loss_settings"].items())
                folds_by_settings.setdefault(described, []).append(fold)
        if len(folds_by_settings) == 1:
            lines.append(f"- {short(trainer)}: {next(iter(folds_by_settings))}")
        elif folds_by_settings:
            lines.append(f"- {short(trainer)}: " + "; ".join(
                f"{described} ({folds_phrase(folds)})" for described, folds in folds_by_settings.items()))
    return lines


def provenance_lines(runs: dict) -> tuple:
    """Lines of the report's header naming what produced the records (each provenance field with its values and
    how many runs had each), and the warnings for fields of ``ENVIRONMENT_FIELDS`` on which the records disagree."""
    described = {(trainer, fold): meta.get("provenance") for trainer, per_fold in runs.items()
                 for fold, meta in per_fold.items()}
    missing = sorted(key for key, value in described.items() if value is None)
    lines, warnings = [], []
    if missing:
        lines.append(f"- no provenance (recorded before nnunetv2-dbce kept it): {len(missing)} runs")
    fields = [field for value in described.values() if value for field in value]
    for field in dict.fromkeys(fields):
        by_value = {}
        for (trainer, fold), value in sorted(described.items()):
            if value:
                by_value.setdefault(str(value.get(field)), []).append(f"{short(trainer)} fold {fold}")
        lines.append(f"- {field}: " + "; ".join(f"{value} ({len(members)} runs)" for value, members in by_value.items()))
        if field in ENVIRONMENT_FIELDS and len(by_value) > 1:
            warnings.append(f"The records disagree on {field}: " + "; ".join(
                f"{value} ({', '.join(members)})" for value, members in by_value.items()))
    return lines, warnings


def fold_sections(fold_sets: dict) -> list:
    """``(title, trainers, folds)`` per table of the report: the folds every trainer ran, then each other fold
    set some trainer ran (fewest folds first) with every trainer that ran at least those folds."""
    trainers = list(fold_sets)
    common = sorted(set.intersection(*[set(f) for f in fold_sets.values()]))
    sections = []
    if common:
        sections.append((f"All trainers, {folds_phrase(common)}", trainers, common))
    for folds in sorted({tuple(f) for f in fold_sets.values()} - {tuple(common)}, key=lambda f: (len(f), f)):
        sections.append((f"Trainers run on {folds_phrase(folds)}",
                         [t for t in trainers if set(folds) <= set(fold_sets[t])], list(folds)))
    return sections


def report(out: Path):
    """Merge every record in ``out``: ``results.csv``, ``results.md``, ``metrics.png``, ``size.png``, ``curves.png``."""
    settings = json.loads((out / "study.json").read_text())
    names = settings["labels"]
    rows, runs = load_records(out)
    if not rows:
        raise SystemExit(f"no records in {out / 'runs'}")
    trainers = trainer_order(runs)
    edges = add_size_bins(rows, names)
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["trainer", "fold", "case", "label", *CASE_METRICS, "size_bin"])
        writer.writeheader()
        writer.writerows(rows)
    fold_sets = {t: sorted(runs[t]) for t in trainers}
    sections = fold_sections(fold_sets)
    tests = comparisons(rows, trainers, names)
    minutes = [m["minutes"] for per_fold in runs.values() for m in per_fold.values() if m.get("minutes")]
    text = [f"# Loss study: {settings['dataset']} {settings['configuration']}, plans {settings['plans']}", "",
            f"{settings['epochs']} epochs x {settings['iterations']} iterations per run; final validation "
            f"{'without' if settings['disable_tta'] else 'with'} mirroring. Mean over folds ± SD of the fold means. "
            f"Dice as nnU-Net's; HD95 (mm) over cases where both masks are non-empty; NSD tolerance "
            f"{settings['nsd_tolerance']:g} mm; lesion F1 from the fold's summed lesion counts; Dice by size: "
            f"cases in tertiles of reference volume (edges per label: "
            + "; ".join(f"{names[k]} {', '.join(f'{e:.0f}' for e in v)}" for k, v in edges.items()) + ").",
            f"{len(minutes)} runs trained here, {min(minutes):.1f}-{max(minutes):.1f} min each." if minutes else "", ""]
    described, disagreements = provenance_lines(runs)
    text += ["Provenance of the records:", "", *described, "", *[f"**{w}**" for w in disagreements],
             *([""] if disagreements else [])]
    for title, members, folds in sections:
        text += [f"## {title}", "", metrics_table(rows, members, folds, names), ""]
        if len(folds) > 1:
            text += ["Dice per fold:", "", fold_dice_table(rows, members, folds, names), ""]
    recorded_settings = settings_lines(runs, trainers)
    if recorded_settings:
        text += ["## Loss settings recorded in the checkpoints", "", *recorded_settings, ""]
    text += ["## Paired comparisons (Dice, per case)", "",
             "Median of the per-case Dice differences (trainer - baseline) with a bootstrap 95% interval, two-sided "
             "Wilcoxon signed-rank p, and p Holm-adjusted over every test in this table; * = adjusted p < 0.05.", "",
             comparisons_table(tests, names), "![metrics](metrics.png)", "", "![Dice by size](size.png)", "",
             "![curves](curves.png)", ""]
    (out / "results.md").write_text("\n".join(text))
    plot_metrics(rows, trainers, {t: fold_sets[t] for t in trainers}, names, out / "metrics.png")
    plot_sizes(rows, trainers, fold_sets, names, out / "size.png")
    plot_curves({t: [runs[t][f]["curves"] for f in fold_sets[t]] for t in trainers}, out / "curves.png")
    (out / "comparisons.json").write_text(json.dumps(tests, indent=1))
    print("\n".join(text))
    for warning in disagreements:
        print(f"Warning: {warning}", file=sys.stderr)
    print(f"Wrote {out / 'results.csv'}, results.md, comparisons.json, metrics.png, size.png, curves.png")


def bar_plot(ax, per_trainer_label, trainers, names, title):
    """Bars (mean of the fold values) per trainer and label, dots for the folds."""
    width = 0.8 / len(names)
    x = np.arange(len(trainers))
    for k, (label, name) in enumerate(names.items()):
        offset = x + (k - (len(names) - 1) / 2) * width
        values = [per_trainer_label[(t, label)] for t in trainers]
        ax.bar(offset, [np.nanmean(v) if np.isfinite(v).any() else np.nan for v in values], width, label=name,
               alpha=0.6)
        for xi, folds in zip(offset, values):
            ax.plot([xi] * len(folds), folds, "k.", markersize=4)
    ax.set_ylabel(title)
    ax.set_xticks(x, [short(t) for t in trainers], rotation=35, ha="right")
    ax.grid(axis="y", alpha=0.3)


def plot_metrics(rows, trainers, fold_sets, names, path: Path):
    """Per-label Dice, HD95, NSD and lesion-wise F1 per trainer: bar = mean over folds, dots = folds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    metrics = (("Dice", "Dice"), ("HD95", "HD95 (mm)"), ("NSD", "NSD"), ("lesion_F1", "lesion-wise F1"))
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(8, 0.7 * len(trainers) * len(names)), 14))
    for ax, (metric, title) in zip(axes, metrics):
        values = {(t, label): np.asarray(fold_values(rows, t, label, fold_sets[t], metric))
                  for t in trainers for label in names}
        bar_plot(ax, values, trainers, names, title)
    axes[0].legend(title="bars: mean over folds; dots: folds", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sizes(rows, trainers, fold_sets, names, path: Path):
    """Dice per reference-volume tertile (small, medium, large), one panel per label."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(names), 1, figsize=(max(8, 0.7 * len(trainers) * 3), 4.5 * len(names)),
                             squeeze=False)
    for ax, (label, name) in zip(axes[:, 0], names.items()):
        values = {(t, size): np.asarray(fold_values(rows, t, label, fold_sets[t], f"dice_{size}"))
                  for t in trainers for size in SIZE_NAMES}
        bar_plot(ax, values, trainers, {size: size for size in SIZE_NAMES}, f"Dice, {name}")
        ax.legend(title="reference volume tertile", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
                    color=plt.cm.tab20(index % 20), label=short(trainer))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    if args.report_only:
        report(args.out)
        return
    os.environ["nnUNet_results"] = str((args.work / "nnUNet_results").resolve())
    if args.run_one:
        train_one(args, args.plans, args.run_one[0], int(args.run_one[1]))
    else:
        run_study(args)


if __name__ == "__main__":
    main()
