"""nnU-Net's folders and commands as the tools use them: a dataset's folder and plans in
``nnUNet_preprocessed`` (with errors that name what is missing) and nnU-Net's console scripts."""
import shutil
import sys
from pathlib import Path

from nnunetv2_dbce.tools.cli import UserError


def dataset_name(dataset: str) -> str:
    """``DatasetXXX_Name`` of a dataset id or name that nnU-Net's folders hold (raw, preprocessed or results).

    Raises:
        UserError: no such dataset (with the folders searched), or neither an id nor a ``DatasetXXX_Name``.
    """
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw, nnUNet_results
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    folders = {"nnUNet_raw": nnUNet_raw, "nnUNet_preprocessed": nnUNet_preprocessed, "nnUNet_results": nnUNet_results}
    searched = ", ".join(f"{key}={value}" for key, value in folders.items())
    try:
        name = maybe_convert_to_dataset_name(dataset)
    except (RuntimeError, ValueError):
        raise UserError(f"no dataset {dataset!r} in {searched}: give its id or DatasetXXX_Name") from None
    if not any(folder and (Path(folder) / name).is_dir() for folder in folders.values()):
        raise UserError(f"no dataset {name} in {searched}")
    return name


def dataset_id(dataset: str) -> int:
    """The id of a dataset given by id or name (``Dataset004_Hippocampus`` -> 4), for nnU-Net's ``-d``."""
    return int(dataset_name(dataset)[len("Dataset"):len("Dataset") + 3])


def dataset_folder(dataset: str) -> Path:
    """``$nnUNet_preprocessed/DatasetXXX_Name``."""
    from nnunetv2.paths import nnUNet_preprocessed
    if nnUNet_preprocessed is None:
        raise UserError("nnUNet_preprocessed is not set: point it (and nnUNet_raw) at your nnU-Net folders")
    return Path(nnUNet_preprocessed) / dataset_name(dataset)


def check_configuration(plans: dict, configuration: str, plans_name: str) -> None:
    """Refuse a configuration the plans do not define, listing the ones they do."""
    if configuration not in plans["configurations"]:
        raise UserError(f"configuration {configuration!r} is not in {plans_name}.json "
                        f"(it has {sorted(plans['configurations'])})")


def nnunet_command(name: str) -> str:
    """Path of an nnU-Net console script, preferring the one beside the running interpreter."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: is nnunetv2 installed in this environment?")
    return found


def fold_cases(dataset: str, fold: int, split: str) -> list:
    """The cases of nnU-Net's fold ``fold`` (``split``: ``train`` or ``val``) from ``splits_final.json``."""
    import json
    path = dataset_folder(dataset) / "splits_final.json"
    if not path.is_file():
        raise UserError(f"{path} does not exist: nnU-Net writes it when it first trains a fold")
    splits = json.loads(path.read_text())
    if not 0 <= fold < len(splits):
        raise UserError(f"{path} has folds 0-{len(splits) - 1}, not {fold}")
    return splits[fold][split]
