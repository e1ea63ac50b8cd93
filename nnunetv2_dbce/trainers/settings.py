"""Loss settings (dilation radius, gamma) that travel with nnU-Net's checkpoints.

nnU-Net re-creates a trainer from its class and then loads the checkpoint, so a setting that lives in a
class attribute would silently take the class's current value on ``nnUNetv2_train ... -c``. The
settings are therefore recorded in the trainer's ``my_init_kwargs``, which nnU-Net saves in every
checkpoint (``init_args``) and restores in ``load_checkpoint``, and compared there.
"""
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # the mixin's methods use and extend nnU-Net's trainer
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer as TrainerBase
else:
    TrainerBase = object

SETTINGS_KEY = "nnunetv2_dbce_loss_settings"


def without_trainer(settings: dict) -> dict:
    """The loss settings alone, without the name of the trainer that recorded them."""
    return {name: value for name, value in settings.items() if name != "trainer"}


class CheckpointedLossSettings(TrainerBase):
    """Mixin for the package's trainers with loss settings. When the trainer is built the settings are
    checked (``validate_loss_settings``, before any training) and recorded once in ``my_init_kwargs``, so
    every checkpoint holds ``loss_settings()``; on loading, a checkpoint of the same trainer brings back the
    settings it was trained with, a checkpoint of another trainer with other settings is refused. Training
    states the settings in use, once, on the console and in the log (``describe_loss_settings``)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.check_loss_settings("")
        self.my_init_kwargs[SETTINGS_KEY] = self.loss_settings()

    def check_loss_settings(self, origin: str) -> None:
        """``validate_loss_settings``; a bad setting is stated in one line on the console and in the log before
        the error is raised (nnU-Net's ``nnUNetv2_train`` then shows its traceback). ``origin``: where the
        settings came from, for the message."""
        try:
            self.validate_loss_settings()
        except (ValueError, TypeError) as error:
            self.print_to_log_file(f"ERROR: {type(self).__name__}{origin}: {error}", also_print_to_console=True)
            raise

    def validate_loss_settings(self) -> None:
        """Check and normalise the settings; each trainer class checks its own and calls super."""

    def loss_settings(self) -> dict:
        """The settings that define this trainer's loss; each trainer class adds its own to this dict."""
        return {"trainer": type(self).__name__}

    def describe_loss_settings(self) -> list:
        """Lines stating the settings in use; each trainer class adds its own."""
        return []

    def on_train_start(self) -> None:
        super().on_train_start()
        for line in self.describe_loss_settings():
            self.print_to_log_file(line, also_print_to_console=True)

    def load_checkpoint(self, filename_or_checkpoint: str | dict) -> None:
        current = self.my_init_kwargs[SETTINGS_KEY]
        super().load_checkpoint(filename_or_checkpoint)
        saved = self.my_init_kwargs.get(SETTINGS_KEY)
        if saved is None:
            self.print_to_log_file(f"The checkpoint records no loss settings (written by nnU-Net or an older "
                                   f"nnunetv2-dbce); continuing with {current}")
            self.my_init_kwargs[SETTINGS_KEY] = current
            return
        saved_loss = without_trainer(saved)
        if saved_loss == without_trainer(current):
            return
        if saved["trainer"] != current["trainer"]:
            raise ValueError(f"Refusing to load a checkpoint of {saved['trainer']} (loss settings {saved_loss}) into "
                             f"{current['trainer']}, whose loss settings differ: {current}")
        self.print_to_log_file(f"Resuming with the loss settings of the checkpoint, {saved_loss}, not the class's "
                               f"current ones, {current}")
        for name, value in saved_loss.items():
            setattr(self, name, value)
        self.check_loss_settings(" (loss settings of the checkpoint)")
        self.loss = self._build_loss()
