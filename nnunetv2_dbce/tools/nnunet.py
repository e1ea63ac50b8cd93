"""nnU-Net's folders and commands as the tools use them: a dataset's folder and plans in
``nnUNet_preprocessed`` (with errors that name what is missing) and nnU-Net's console scripts."""
import shutil
import sys
from pathlib import Path


def dataset_name(dataset: str) -> str:
    """``DatasetXXX_Name`` of a dataset id or name."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    return maybe_convert_to_dataset_name(dataset)


def dataset_folder(dataset: str) -> Path:
    """``$nnUNet_preprocessed/DatasetXXX_Name``."""
    from nnunetv2.paths import nnUNet_preprocessed
    if nnUNet_preprocessed is None:
        raise SystemExit("nnUNet_preprocessed is not set: point it (and nnUNet_raw) at your nnU-Net folders")
    return Path(nnUNet_preprocessed) / dataset_name(dataset)


def check_configuration(plans: dict, configuration: str, plans_name: str) -> None:
    """Refuse a configuration the plans do not define, listing the ones they do."""
    if configuration not in plans["configurations"]:
        raise SystemExit(f"configuration {configuration!r} is not in {plans_name}.json "
                         f"(it has {sorted(plans['configurations'])})")


def nnunet_command(name: str) -> str:
    """Path of an nnU-Net console script, preferring the one beside the running interpreter."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: is nnunetv2 installed in this environment?")
    return found
