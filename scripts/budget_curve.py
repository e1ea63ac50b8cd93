"""Dice against the training budget: the same trainers and folds in several studies that differ only in their
number of epochs (e.g. the 2d protocol at 1x and at 4x its iterations).

Prints, per budget and label, each trainer's mean Dice over the folds (with the folds' spread) and its paired
per-case difference to a baseline (median with bootstrap 95 % interval, Wilcoxon p Holm-adjusted over the whole
table), and draws mean Dice per label against training iterations with one line per trainer (bars: the folds'
minimum and maximum). Every study must have the same dataset, configuration, plans and labels.

    python scripts/budget_curve.py docs/results/hippocampus_2d docs/results/hippocampus_2d_4x \\
        -tr nnUNetTrainer nnUNetTrainerDBCE_R3 nnUNetTrainerDBCE_R5 nnUNetTrainerDiceDBCE_R3 -f 0 1 2 \\
        --png docs/results/budget_hippocampus_2d.png
"""
import argparse
import json
from pathlib import Path

import numpy as np

from nnunetv2_dbce.tools.figures import saved_figure
from nnunetv2_dbce.tools.statistics import holm, paired_comparison
from nnunetv2_dbce.tools.study_report import fold_values, load_records, paired_values, short

SAME_IN_EVERY_STUDY = ("dataset", "configuration", "plans", "labels", "val_iterations", "disable_tta")


def load_budgets(studies, trainers, folds) -> list:
    """``[(iterations, rows)]`` per study, fewest iterations first; refuses studies that differ in more than the
    budget or lack a (trainer, fold) record."""
    budgets, first = [], None
    for study in studies:
        settings = json.loads((study / "study.json").read_text())
        first = first or settings
        differing = [key for key in SAME_IN_EVERY_STUDY if settings.get(key) != first.get(key)]
        if differing:
            raise SystemExit(f"{study} differs from {studies[0]} in {', '.join(differing)}, not only in its budget")
        rows, runs = load_records(study)
        missing = [f"{t} fold {f}" for t in trainers for f in folds if f not in runs.get(t, {})]
        if missing:
            raise SystemExit(f"{study} has no record of {', '.join(missing)}")
        budgets.append((settings["epochs"] * settings["iterations"], [r for r in rows if r["fold"] in folds]))
    return sorted(budgets, key=lambda budget: budget[0]), first["labels"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", type=Path, nargs="+", help="the studies' -o folders")
    parser.add_argument("-tr", "--trainers", nargs="+", required=True)
    parser.add_argument("-f", "--folds", type=int, nargs="+", required=True)
    parser.add_argument("--baseline", default="nnUNetTrainer", help="the trainer the others are paired with")
    parser.add_argument("--png", type=Path, help="write the plot here")
    args = parser.parse_args()
    budgets, names = load_budgets(args.studies, args.trainers, args.folds)

    tests = []
    for iterations, rows in budgets:
        for trainer in args.trainers:
            for label in names:
                if trainer != args.baseline:
                    tests.append(((iterations, trainer, label),
                                  paired_comparison(*paired_values(rows, trainer, args.baseline, label))))
    adjusted = dict(zip([key for key, _ in tests], holm([test["p"] for _, test in tests])))
    tests = dict(tests)

    header = ["iterations", "trainer", *[f"{name} Dice (folds)" for name in names.values()],
              *[f"{name} vs {short(args.baseline)}" for name in names.values()]]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    curves = {}
    for iterations, rows in budgets:
        for trainer in args.trainers:
            cells = [str(iterations), short(trainer)]
            for label in names:
                per_fold = fold_values(rows, trainer, label, args.folds, "Dice")
                curves.setdefault((trainer, label), []).append((iterations, per_fold))
                cells.append(f"{np.mean(per_fold):.3f} ({' '.join(f'{v:.3f}' for v in per_fold)})")
            for label in names:
                test = tests.get((iterations, trainer, label))
                cells.append("" if test is None else
                             f"{test['median_difference']:+.3f} [{test['ci_low']:+.3f}, {test['ci_high']:+.3f}] "
                             f"p {adjusted[(iterations, trainer, label)]:.2g}")
            print("| " + " | ".join(cells) + " |")
    print(f"\nMedian per-case Dice difference to {short(args.baseline)} over folds {args.folds} with bootstrap 95 % "
          f"interval; Wilcoxon p Holm-adjusted over the {len(tests)} tests of this table.")
    if args.png:
        plot(curves, args.trainers, names, args.png)


def plot(curves: dict, trainers, names: dict, path: Path):
    from matplotlib.ticker import ScalarFormatter

    with saved_figure(path, 1, len(names), figsize=(6 * len(names), 4.5), squeeze=False) as (_, axes):
        for ax, (label, name) in zip(axes[0], names.items()):
            for index, trainer in enumerate(trainers):
                points = curves[(trainer, label)]
                x = np.array([iterations for iterations, _ in points])
                folds = np.array([per_fold for _, per_fold in points])
                mean = folds.mean(1)
                ax.errorbar(x * (1 + 0.02 * (index - len(trainers) / 2)), mean,
                            yerr=[mean - folds.min(1), folds.max(1) - mean], marker="o", capsize=3,
                            label=short(trainer))
            ax.set_xscale("log")
            ax.set_xticks(sorted({iterations for points in curves.values() for iterations, _ in points}))
            ax.get_xaxis().set_major_formatter(ScalarFormatter())
            ax.set_xlabel("training iterations")
            ax.set_ylabel(f"Dice, {name} (mean over folds; bars: min-max)")
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=8)
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
