"""A label the network stopped predicting is never silent: a warning in nnU-Net's log and on the console."""
import math
from collections.abc import Sequence

from nnunetv2_dbce.trainers.settings import TrainerBase

LOST_DICE = 0.01  # EMA pseudo Dice below this: the label is not predicted
LEARNING_DICE = 0.1  # ... while another label is above this
LOST_EPOCHS = 10  # ... for this many epochs in a row, after the warm-up


def warm_up_epochs(num_epochs: int) -> int:
    return max(10, math.ceil(0.1 * num_epochs))


def label_emas(history: Sequence[Sequence[float]]) -> list:
    """Per epoch, each label's exponential moving average of nnU-Net's per-label pseudo Dice, as nnU-Net averages its
    mean (``0.9 * previous + 0.1 * new``); an epoch where a label's Dice is NaN (absent) keeps the previous value."""
    emas: list[list[float]] = []
    for dice in history:
        if not emas:
            emas.append([float(d) for d in dice])
            continue
        emas.append([previous if math.isnan(d) else (d if math.isnan(previous) else 0.9 * previous + 0.1 * d)
                     for previous, d in zip(emas[-1], dice)])
    return emas


def newly_lost_labels(history: Sequence[Sequence[float]], num_epochs: int) -> list:
    """Indices (into the per-label Dice) of the labels that have just become lost at the last logged epoch: their
    EMA pseudo Dice has been below ``LOST_DICE`` for exactly ``LOST_EPOCHS`` epochs after the warm-up, while
    another label's is above ``LEARNING_DICE``. A label is reported once per such streak."""
    emas = label_emas(history)
    last = len(emas) - 1
    if last < warm_up_epochs(num_epochs) + LOST_EPOCHS - 1:
        return []
    lost = []
    for label in range(len(emas[-1])):
        streak = 0
        for epoch in range(last, warm_up_epochs(num_epochs) - 1, -1):
            if not emas[epoch][label] < LOST_DICE:
                break
            streak += 1
        others = [ema for index, ema in enumerate(emas[-1]) if index != label]
        if streak == LOST_EPOCHS and any(ema > LEARNING_DICE for ema in others):
            lost.append(label)
    return lost


class LostLabelWarning(TrainerBase):
    """Trainer mixin: after every epoch, ``newly_lost_labels`` of nnU-Net's logged pseudo Dice; each is written to
    the training log and the console with what to try."""

    def on_epoch_end(self) -> None:
        history = self.logger.get_value("dice_per_class_or_region", step=None)
        labels = self.label_manager
        keys = labels.foreground_regions if labels.has_regions else labels.foreground_labels
        names = {tuple(v) if isinstance(v, list) else v: name for name, v in self.dataset_json["labels"].items()}
        for index in newly_lost_labels(history, self.num_epochs):
            key = tuple(keys[index]) if isinstance(keys[index], (list, tuple)) else keys[index]
            others = ", ".join(f"{names.get(k, k)} {ema:.2f}" for k, ema in zip(keys, label_emas(history)[-1])
                               if k != keys[index])
            self.print_to_log_file(
                f"WARNING: label {names.get(key, key)!r} ({key}) is lost: its EMA pseudo Dice has stayed below "
                f"{LOST_DICE} for the last {LOST_EPOCHS} epochs (up to epoch {self.current_epoch}) while others learn "
                f"({others}). The network has stopped predicting it and may not recover. Try nnU-Net's Dice+CE "
                f"(nnUNetTrainer), a smaller DBCE radius, or a Dice term (nnUNetTrainerDiceDBCE).",
                also_print_to_console=True)
        super().on_epoch_end()
