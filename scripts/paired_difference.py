"""Paired comparisons between trainers of a study, outside the study's own table, Holm-corrected together.

The study (``nnUNetv2_dbce_study``) compares each trainer with Dice+CE and its paper's baselines, Holm-corrected
over its table. This prints any other pairs from the same records, per label and metric: the cases paired, the
median per-case difference (first - second) with its bootstrap 95 % interval, the Wilcoxon p-value, and that
p-value Holm-adjusted over every test this call prints (pairs x metrics x labels).

    python scripts/paired_difference.py docs/results/hippocampus_2d nnUNetTrainerDBCE_R5 nnUNetTrainerDBCE_R3 --fold 1
    python scripts/paired_difference.py docs/results/vessels_2d nnUNetTrainerclDice nnUNetTrainer \\
        nnUNetTrainerSkeletonRecall nnUNetTrainer --metric Dice clDice betti0_error betti1_error
"""
import argparse
import json
from pathlib import Path

from nnunetv2_dbce.tools.statistics import holm, paired_comparison
from nnunetv2_dbce.tools.study_report import load_records, paired_values


def paired_tests(study: Path, pairs: list, metrics: list, folds: list | None = None) -> list:
    """One row per (pair, metric, label): the pair, metric, label name and ``paired_comparison``'s figures, with
    ``p_holm`` adjusted over all rows."""
    names = json.loads((study / "study.json").read_text())["labels"]
    rows, runs = load_records(study)
    for trainer in {t for pair in pairs for t in pair} - set(runs):
        raise SystemExit(f"{study / 'runs'} has no record of {trainer}; it has: {', '.join(sorted(runs))}")
    if folds is not None:
        rows = [r for r in rows if r["fold"] in folds]
    tests = [{"trainer": trainer, "baseline": baseline, "metric": metric, "label": name,
              **paired_comparison(*paired_values(rows, trainer, baseline, label, metric))}
             for trainer, baseline in pairs for metric in metrics for label, name in names.items()]
    for test, adjusted in zip(tests, holm([t["p"] for t in tests])):
        test["p_holm"] = adjusted
    return tests


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", type=Path, help="the study's -o folder (records in runs/, labels in study.json)")
    parser.add_argument("trainers", nargs="+", metavar="TRAINER BASELINE",
                        help="one or more pairs: each trainer is compared with the baseline after it")
    parser.add_argument("--fold", type=int, nargs="+", help="only these folds (default: every fold both have)")
    parser.add_argument("--metric", nargs="+", default=["Dice"], help="per-case metrics of the records")
    args = parser.parse_args()
    if len(args.trainers) % 2:
        parser.error(f"trainers come in pairs (TRAINER BASELINE), got {len(args.trainers)} names")
    pairs = list(zip(args.trainers[::2], args.trainers[1::2]))
    tests = paired_tests(args.study, pairs, args.metric, args.fold)
    print(f"{len(tests)} tests, Holm-adjusted together")
    for t in tests:
        print(f"{t['trainer']} vs {t['baseline']}, {t['label']}: n = {t['n']}, median {t['metric']} difference "
              f"{t['median_difference']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}], Wilcoxon p = {t['p']:.2g}, "
              f"Holm {t['p_holm']:.2g}")


if __name__ == "__main__":
    main()
