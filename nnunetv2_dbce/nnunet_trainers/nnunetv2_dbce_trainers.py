"""Shim for nnU-Net's trainer lookup, which imports every module of the folders in ``nnUNet_extTrainer``
as a top-level module. This folder is put on that list at start-up (see nnunetv2_dbce_autoload); the
classes themselves live in ``nnunetv2_dbce.trainers`` so that they pickle and import normally."""
from nnunetv2_dbce.trainers import *  # noqa: F403
