"""Trainers whose loss works on labels only: a region-based dataset is refused when the trainer is built."""
import torch

from nnunetv2_dbce.trainers.settings import TrainerBase


class LabelsOnly(TrainerBase):
    """Trainer mixin: raise before training if the dataset is region-based (``regions_class_order`` in
    dataset.json), saying why with the class's ``labels_only_because``."""

    labels_only_because: str

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.label_manager.has_regions:
            raise ValueError(f"{type(self).__name__} does not support region-based training (dataset.json defines "
                             f"regions with 'regions_class_order'); {self.labels_only_because}")
