"""A user's own trainer folder, listed in nnUNet_extTrainer by the end-to-end tests: a DBCE subclass
with a handful of iterations, as the README tells users to write one."""
import torch

from nnunetv2_dbce.trainers import nnUNetTrainerDBCE


class nnUNetTrainerDBCE_tiny(nnUNetTrainerDBCE):
    dilation_radius = 3

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 3
        self.num_val_iterations_per_epoch = 2
