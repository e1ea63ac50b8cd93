"""The report of a loss study: a pure function of the records in ``<out>/runs`` (and the settings in
``<out>/study.json``), so that records from any mix of machines, local runs and cluster jobs merge into one
report. Writes ``results.csv``, ``results.md``, ``comparisons.json`` and the plots."""
import csv
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnunetv2_dbce.tools.cli import UserError
from nnunetv2_dbce.tools.evaluate import (
    CASE_METRICS,
    lesion_scores,
    size_bin,
    size_bins,
    zero_dice_cases,
)
from nnunetv2_dbce.tools.figures import saved_figure
from nnunetv2_dbce.tools.provenance import ENVIRONMENT_FIELDS
from nnunetv2_dbce.tools.statistics import holm, paired_comparison

if TYPE_CHECKING:  # matplotlib is imported where the plots are drawn
    from matplotlib.axes import Axes

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


def load_records(out: Path) -> tuple[list[dict], dict[str, dict[int, dict]]]:
    """Every record in ``<out>/runs``: rows (one per trainer, fold, case, label) and ``{trainer: {fold: json}}``.
    A metric a record does not hold (recorded before the metric existed) reads as NaN."""
    rows: list[dict] = []
    runs: dict[str, dict[int, dict]] = {}
    for path in sorted((out / "runs").glob("*.csv")):
        meta = json.loads(path.with_suffix(".json").read_text())
        runs.setdefault(meta["trainer"], {})[meta["fold"]] = meta
        with open(path) as handle:
            for row in csv.DictReader(handle):
                rows.append({"trainer": meta["trainer"], "fold": meta["fold"], "case": row["case"],
                             "label": row["label"], **{m: float(row.get(m, "nan")) for m in CASE_METRICS}})
    return rows, runs


def trainer_order(trainers: Iterable[str]) -> list:
    """The default list's order first, then any other trainers alphabetically."""
    known = [t for t in DEFAULT_TRAINERS if t in trainers]
    return known + sorted(t for t in trainers if t not in DEFAULT_TRAINERS)


def short(trainer: str) -> str:
    return trainer.replace("nnUNetTrainer", "") or "Dice+CE (default)"


def fold_values(rows: list[dict], trainer: str, label: str, folds: Sequence[int], metric: str) -> list:
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


def mean_and_spread(values: Sequence[float], digits: int) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "n/a"
    spread = f" ± {np.std(finite, ddof=1):.{digits}f}" if len(finite) > 1 else ""
    return f"{np.mean(finite):.{digits}f}{spread}"


TABLE_METRICS = (("Dice", "Dice", 3), ("HD95", "HD95 mm", 2), ("NSD", "NSD", 3), ("lesion_F1", "lesion F1", 3),
                 ("dice_small", "Dice small", 3), ("dice_medium", "Dice medium", 3), ("dice_large", "Dice large", 3))


TOPOLOGY_METRICS = (("clDice", "clDice", 3), ("betti0_error", "b0 error", 2), ("betti1_error", "b1 error", 2))


def table_metrics(rows: list[dict]) -> tuple:
    """``TABLE_METRICS``, and the topology metrics (clDice, Betti errors per case) that some record holds."""
    held = [m for m in TOPOLOGY_METRICS if any(not math.isnan(r.get(m[0], math.nan)) for r in rows)]
    return TABLE_METRICS + tuple(held)


def metrics_table(rows: list[dict], trainers: Sequence[str], folds: Sequence[int], names: dict) -> str:
    """Per label: mean over ``folds`` ± SD of the fold means of each metric of ``table_metrics``."""
    lines, metrics = [], table_metrics(rows)
    for label, name in names.items():
        header = ["trainer", *[title for _, title, _ in metrics]]
        lines += [f"**{name}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for trainer in trainers:
            cells = [short(trainer)] + [mean_and_spread(fold_values(rows, trainer, label, folds, metric), digits)
                                        for metric, _, digits in metrics]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def fold_dice_table(rows: list[dict], trainers: Sequence[str], folds: Sequence[int], names: dict) -> str:
    """Mean Dice of each fold, per trainer and label: whether an ordering replicates across folds."""
    header = ["trainer", *[f"{name} fold {fold}" for name in names.values() for fold in folds]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for trainer in trainers:
        cells = [f"{value:.3f}" for label in names for value in fold_values(rows, trainer, label, folds, "Dice")]
        lines.append("| " + " | ".join([short(trainer), *cells]) + " |")
    return "\n".join(lines) + "\n"


def paired_values(rows: list[dict], trainer: str, other: str, label: str,
                  metric: str = "Dice") -> tuple[list[float], list[float]]:
    """Values of two trainers on the (fold, case) pairs both have, in the same order."""
    def by_case(t: str) -> dict:
        return {(r["fold"], r["case"]): r[metric] for r in rows if r["trainer"] == t and r["label"] == label}
    mine, theirs = by_case(trainer), by_case(other)
    common = sorted(set(mine) & set(theirs))
    return [mine[k] for k in common], [theirs[k] for k in common]


def comparisons(rows: list[dict], trainers: Sequence[str], names: dict) -> list:
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


def comparisons_table(tests: list[dict], names: dict) -> str:
    header = ["trainer", "against", "label", "cases", "median ΔDice [95% CI]", "p", "p (Holm)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for t in tests:
        mark = " *" if t["p_holm"] < 0.05 else ""
        lines.append(f"| {short(t['trainer'])} | {short(t['against'])} | {names[t['label']]} | {t['n']} | "
                     f"{t['median_difference']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]{mark} | "
                     f"{t['p']:.2g} | {t['p_holm']:.2g} |")
    return "\n".join(lines) + "\n"


def add_size_bins(rows: list[dict], names: dict) -> dict:
    """Tertile edges of the reference volume per label over every recorded case; each row gets ``size_bin``."""
    edges = {}
    for label in names:
        volumes = {r["case"]: r["ref_volume"] for r in rows if r["label"] == label}
        edges[label] = size_bins(list(volumes.values()))
    for r in rows:
        r["size_bin"] = size_bin(r["ref_volume"], edges[r["label"]])
    return edges


def folds_phrase(folds: Sequence[int]) -> str:
    """``fold 1`` or ``folds 0, 1, 2``."""
    return f"fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))}"


def settings_lines(runs: dict, trainers: Sequence[str]) -> list:
    """One line per trainer whose records hold loss settings: the settings, with their folds if they differ."""
    lines = []
    for trainer in trainers:
        folds_by_settings: dict[str, list] = {}
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
        by_value: dict[str, list] = {}
        for (trainer, fold), value in sorted(described.items()):
            if value:
                by_value.setdefault(str(value.get(field)), []).append(f"{short(trainer)} fold {fold}")
        counted = [f"{value} ({len(members)} runs)" for value, members in by_value.items()]
        lines.append(f"- {field}: " + "; ".join(counted))
        if field in ENVIRONMENT_FIELDS and len(by_value) > 1:
            warnings.append(f"The records disagree on {field}: " + "; ".join(
                f"{value} ({', '.join(members)})" for value, members in by_value.items()))
    return lines, warnings


def lost_labels(rows: list[dict], names: dict) -> list:
    """``"<trainer> fold <k>: <label> (Dice 0 on n of m cases)"`` for every run and label whose Dice is 0 on at least
    half of the cases that contain the label (reference volume above 0): the run never learned to predict it."""
    dice: dict[tuple, list] = {}
    for r in rows:
        if r["ref_volume"] > 0:
            dice.setdefault((r["trainer"], r["fold"], r["label"]), []).append(r["Dice"])
    return [f"{short(trainer)} fold {fold}: {names[label]} (Dice 0 on {counts[0]} of {counts[1]} cases)"
            for (trainer, fold, label), values in dice.items() if (counts := zero_dice_cases(values))]


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


def report(out: Path) -> None:
    """Merge every record in ``out``: ``results.csv``, ``results.md``, ``metrics.png``, ``size.png``, ``curves.png``."""
    settings = json.loads((out / "study.json").read_text())
    names = settings["labels"]
    rows, runs = load_records(out)
    if not rows:
        raise UserError(f"no records in {out / 'runs'}")
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
            f"{settings['nsd_tolerance']:g} mm; lesion F1 from the fold's summed lesion counts; "
            + ("clDice (hard skeletons) and Betti number errors per case (b1: 2D only); "
               if len(table_metrics(rows)) > len(TABLE_METRICS) else "") + "Dice by size: "
            "cases in tertiles of reference volume (edges per label: "
            + "; ".join(f"{names[k]} {', '.join(f'{e:.0f}' for e in v)}" for k, v in edges.items()) + ").",
            f"{len(minutes)} runs trained here, {min(minutes):.1f}-{max(minutes):.1f} min each." if minutes else "", ""]
    lost = lost_labels(rows, names)
    if lost:
        text += ["**Lost labels** (Dice 0 on at least half of the cases that contain the label: the run never learned "
                 "to predict it):", "", *[f"- lost: {line}" for line in lost], ""]
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
    for warning in disagreements + [f"lost: {line}" for line in lost]:
        print(f"Warning: {warning}", file=sys.stderr)
    print(f"Wrote {out / 'results.csv'}, results.md, comparisons.json, metrics.png, size.png, curves.png")


def bar_plot(ax: "Axes", per_trainer_label: dict, trainers: Sequence[str], names: dict, title: str) -> None:
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


def plot_metrics(rows: list[dict], trainers: Sequence[str], fold_sets: dict, names: dict, path: Path) -> None:
    """Per-label Dice, HD95, NSD and lesion-wise F1 per trainer: bar = mean over folds, dots = folds."""
    metrics = (("Dice", "Dice"), ("HD95", "HD95 (mm)"), ("NSD", "NSD"), ("lesion_F1", "lesion-wise F1"))
    with saved_figure(path, len(metrics), 1, figsize=(max(8, 0.7 * len(trainers) * len(names)), 14)) as (_, axes):
        for ax, (metric, title) in zip(axes, metrics):
            values = {(t, label): np.asarray(fold_values(rows, t, label, fold_sets[t], metric))
                      for t in trainers for label in names}
            bar_plot(ax, values, trainers, names, title)
        axes[0].legend(title="bars: mean over folds; dots: folds", fontsize=8)


def plot_sizes(rows: list[dict], trainers: Sequence[str], fold_sets: dict, names: dict, path: Path) -> None:
    """Dice per reference-volume tertile (small, medium, large), one panel per label."""
    with saved_figure(path, len(names), 1, figsize=(max(8, 0.7 * len(trainers) * 3), 4.5 * len(names)),
                      squeeze=False) as (_, axes):
        for ax, (label, name) in zip(axes[:, 0], names.items()):
            values = {(t, size): np.asarray(fold_values(rows, t, label, fold_sets[t], f"dice_{size}"))
                      for t in trainers for size in SIZE_NAMES}
            bar_plot(ax, values, trainers, {size: size for size in SIZE_NAMES}, f"Dice, {name}")
            ax.legend(title="reference volume tertile", fontsize=8)


def plot_curves(curves: dict, path: Path) -> None:
    """Training curves per trainer (mean over folds): train loss, validation loss, EMA pseudo Dice."""
    keys = (("train_losses", "train loss"), ("val_losses", "validation loss"), ("ema_fg_dice", "EMA pseudo Dice"))
    with saved_figure(path, 1, len(keys), figsize=(16, 5)) as (_, axes):
        from matplotlib import colormaps
        for ax, (key, title) in zip(axes, keys):
            for index, (trainer, per_fold) in enumerate(curves.items()):
                length = min(len(c[key]) for c in per_fold)
                ax.plot(np.arange(length), np.mean([c[key][:length] for c in per_fold], axis=0),
                        color=colormaps["tab20"](index % 20), label=short(trainer))
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        axes[-1].legend(fontsize=7)
