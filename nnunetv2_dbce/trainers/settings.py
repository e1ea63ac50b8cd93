"""Loss settings (dilation radius, gamma) that travel with nnU-Net's checkpoints.

nnU-Net re-creates a trainer from its class and then loads the checkpoint, so a setting that lives in a
class attribute would silently take the class's current value on ``nnUNetv2_train ... -c``. The
settings are therefore recorded in the trainer's ``my_init_kwargs``, which nnU-Net saves in every
checkpoint (``init_args``) and restores in ``load_checkpoint``, and compared there.
"""
SETTINGS_KEY = "nnunetv2_dbce_loss_settings"


def without_trainer(settings: dict) -> dict:
    """The loss settings alone, without the name of the trainer that recorded them."""
    return {name: value for name, value in settings.items() if name != "trainer"}


class CheckpointedLossSettings:
    """Mixin for the package's trainers. ``record_loss_settings()`` (called once the settings are
    validated) puts ``loss_settings()`` into every checkpoint; on loading, a checkpoint of the same
    trainer brings back the settings it was trained with, a checkpoint of another trainer with other
    settings is refused."""

    def loss_settings(self) -> dict:
        """The settings that define this trainer's loss; each trainer class adds its own to this dict."""
        return {"trainer": type(self).__name__}

    def record_loss_settings(self) -> None:
        self.my_init_kwargs[SETTINGS_KEY] = self.loss_settings()

    def load_checkpoint(self, filename_or_checkpoint) -> None:
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
        self.loss = self._build_loss()
