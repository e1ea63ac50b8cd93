"""A lost label is never silent: the training warning (EMA pseudo Dice) and the report's flag (per-case Dice)."""
import math

import pytest
from nnunetv2.utilities.label_handling.label_handling import LabelManager

from nnunetv2_dbce.tools.study_report import lost_labels
from nnunetv2_dbce.trainers.lost_labels import LostLabelWarning, label_emas, newly_lost_labels


def test_emas_follow_nnunets_moving_average_and_skip_absent_labels():
    emas = label_emas([[0.5, 0.0], [1.0, math.nan], [0.0, 1.0]])
    assert emas[0] == [0.5, 0.0]
    assert emas[1] == pytest.approx([0.55, 0.0])  # NaN: the previous value kept
    assert emas[2] == pytest.approx([0.495, 0.1])


def test_a_label_is_reported_once_after_ten_epochs_below_threshold_past_the_warm_up():
    history = [[0.0, 0.6]] * 30  # label 0 never predicted, label 1 learns; warm-up max(10, 10 % of 40) = 10
    reported = [epoch for epoch in range(1, 31) if newly_lost_labels(history[:epoch], 40) == [0]]
    assert reported == [20]  # epochs 10-19 below 0.01: reported at the 20th logged epoch, once
    assert newly_lost_labels(history[:25], 200) == []  # warm-up of 20 epochs for a 200-epoch run: not yet
    assert newly_lost_labels([[0.0, 0.6]] * 30, 200) == [0]
    assert newly_lost_labels([[0.3, 0.6]] * 20, 40) == []  # a healthy run
    assert newly_lost_labels([[0.0, 0.05]] * 20, 40) == []  # nothing learns yet: not "lost"
    recovered = [[0.0, 0.6]] * 15 + [[0.9, 0.6]] * 5
    assert newly_lost_labels(recovered, 40) == []


class FakeTrainer:
    def __init__(self, history, dataset_json):
        self.logger = type("Logger", (), {"get_value": lambda _, key, step: history})()
        self.label_manager = LabelManager(dataset_json["labels"], dataset_json.get("regions_class_order"))
        self.dataset_json, self.num_epochs, self.current_epoch = dataset_json, 40, len(history) - 1
        self.printed, self.ended = [], 0

    def print_to_log_file(self, *args, also_print_to_console=False):
        self.printed.append((" ".join(map(str, args)), also_print_to_console))

    def on_epoch_end(self):
        self.ended += 1


def test_the_trainer_names_the_lost_label_in_its_log_and_on_the_console():
    trainer_class = type("Trainer", (LostLabelWarning, FakeTrainer), {})
    labels = {"labels": {"background": 0, "Anterior": 1, "Posterior": 2}}
    trainer = trainer_class([[0.0, 0.8]] * 20, labels)
    trainer.on_epoch_end()
    (line, console), = trainer.printed
    assert console and trainer.ended == 1
    assert line.startswith("WARNING: label 'Anterior' (1) is lost") and "(Posterior 0.80)" in line
    healthy = trainer_class([[0.5, 0.8]] * 20, labels)
    healthy.on_epoch_end()
    assert healthy.printed == [] and healthy.ended == 1
    regions = trainer_class([[0.7, 0.0]] * 20, {"labels": {"background": 0, "whole": [1, 2], "core": 2},
                                                 "regions_class_order": [1, 2]})
    regions.on_epoch_end()
    assert regions.printed[0][0].startswith("WARNING: label 'core' (2) is lost")


def row(trainer, fold, case, dice, volume=10.0, label="1"):
    return {"trainer": trainer, "fold": fold, "case": case, "label": label, "Dice": dice, "ref_volume": volume}


def test_the_report_flags_runs_with_a_label_at_dice_0_on_most_of_its_cases():
    rows = [row("R5", 2, c, 0.0) for c in "abc"] + [row("R5", 2, "d", 0.7)] + \
        [row("R5", 2, c, 0.8, label="2") for c in "abcd"] + \
        [row("R3", 2, c, d) for c, d in zip("abcd", (0.0, 0.0, 0.6, 0.7))] + \
        [row("R3", 1, c, 0.0, volume=0.0) for c in "abcd"]  # label absent from every case: not lost
    assert lost_labels(rows, {"1": "Anterior", "2": "Posterior"}) == ["R5 fold 2: Anterior (Dice 0 on 3 of 4 cases)",
                                                                       "R3 fold 2: Anterior (Dice 0 on 2 of 4 cases)"]
