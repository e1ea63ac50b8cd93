"""One paired comparison between two trainers of a study, outside the study's own table.

The study (``nnUNetv2_dbce_study``) compares each trainer with Dice+CE and its paper's baselines, Holm-corrected
over its table. This prints any other pair from the same records, per label: the cases paired, the median
per-case difference (first - second) with its bootstrap 95 % interval and the Wilcoxon p-value, uncorrected.

    python scripts/paired_difference.py docs/results/hippocampus_2d nnUNetTrainerDBCE_R5 nnUNetTrainerDBCE_R3 --fold 1
"""
import argparse
import json
from pathlib import Path

from nnunetv2_dbce.tools.statistics import paired_comparison
from nnunetv2_dbce.tools.study_report import load_records, paired_values


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", type=Path, help="the study's -o folder (records in runs/, labels in study.json)")
    parser.add_argument("trainer")
    parser.add_argument("baseline")
    parser.add_argument("--fold", type=int, nargs="+", help="only these folds (default: every fold both have)")
    parser.add_argument("--metric", default="Dice")
    args = parser.parse_args()
    names = json.loads((args.study / "study.json").read_text())["labels"]
    rows, _ = load_records(args.study)
    if args.fold is not None:
        rows = [r for r in rows if r["fold"] in args.fold]
    for label, name in names.items():
        values, baseline = paired_values(rows, args.trainer, args.baseline, label, args.metric)
        test = paired_comparison(values, baseline)
        print(f"{name}: n = {test['n']}, median {args.metric} difference {test['median_difference']:+.3f} "
              f"[{test['ci_low']:+.3f}, {test['ci_high']:+.3f}], Wilcoxon p = {test['p']:.2g} (uncorrected)")


if __name__ == "__main__":
    main()
