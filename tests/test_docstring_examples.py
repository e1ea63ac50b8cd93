"""The examples in the package's docstrings run as doctests against the installed package, so they cannot go stale."""
import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest
import torch

import nnunetv2_dbce


def modules_with_examples() -> list:
    """Names of the package's modules whose source holds a doctest prompt."""
    names = [info.name for info in pkgutil.walk_packages(nnunetv2_dbce.__path__, "nnunetv2_dbce.")]
    return sorted(name for name in names
                  if ">>> " in Path(importlib.util.find_spec(name).origin).read_text(encoding="utf-8"))


def test_the_loss_and_weight_map_modules_have_examples():
    assert {"nnunetv2_dbce.voxel_maps.dbce", "nnunetv2_dbce.losses.dbce", "nnunetv2_dbce.losses.pm_dice",
            "nnunetv2_dbce.losses.pm_dice_ce", "nnunetv2_dbce.losses.compound",
            "nnunetv2_dbce.losses.topology", "nnunetv2_dbce.losses.focal", "nnunetv2_dbce.losses.boundary",
            "nnunetv2_dbce.voxel_maps.distance", "nnunetv2_dbce.voxel_maps.skeletons",
            "nnunetv2_dbce.voxel_maps.transform", "nnunetv2_dbce.voxel_maps.loader"} <= set(modules_with_examples())


@pytest.mark.parametrize("name", modules_with_examples())
def test_docstring_examples_hold(name):
    torch.manual_seed(0)
    result = doctest.testmod(importlib.import_module(name), verbose=False, report=True)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring example lines of {name} failed"
