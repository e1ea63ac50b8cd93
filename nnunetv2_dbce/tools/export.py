"""Export a model trained with this package's trainers so that stock nnU-Net runs it, without this package.

``nnUNetv2_dbce_export_for_inference -d DATASET -o OUTPUT.zip -c CONFIGS -tr TRAINER [-p PLANS] [-f FOLDS]``
(the arguments of nnU-Net's ``nnUNetv2_export_model_to_zip``) writes nnU-Net's own export zip, then rewrites
each checkpoint's ``trainer_name`` to the nnU-Net trainer that builds the same network (``nnUNetTrainer`` for
every trainer of this package). Only the loss differed during training; at inference nnU-Net needs the
trainer class for nothing but ``build_network_architecture``. The original trainer name is kept in the
checkpoint (``nnunetv2_dbce_trainer``) and the results folder keeps its name, so on the target machine:

    nnUNetv2_install_pretrained_model_from_zip OUTPUT.zip
    nnUNetv2_predict -i IN -o OUT -d DATASET -c CONFIG -tr TRAINER -f FOLDS

A trainer whose network is not built by an nnU-Net class is refused: stock nnU-Net could not rebuild it.
"""
import argparse
import io
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nnunetv2_dbce.tools.cli import UserError, console_command

if TYPE_CHECKING:  # nnU-Net is imported where it is used: the command starts fast
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

ORIGINAL_TRAINER_KEY = "nnunetv2_dbce_trainer"


def stock_trainer_name(trainer_class: "type[nnUNetTrainer]") -> str:
    """The first class in ``trainer_class``'s MRO that nnU-Net itself defines and that builds the same network."""
    build = trainer_class.build_network_architecture
    for base in trainer_class.__mro__:
        if base.__module__.startswith("nnunetv2.") and getattr(base, "build_network_architecture", None) is build:
            return base.__name__
    owner = next(b for b in trainer_class.__mro__ if "build_network_architecture" in vars(b))
    raise UserError(f"{trainer_class.__name__} builds its network with {owner.__module__}.{owner.__name__}."
                    f"build_network_architecture, which stock nnU-Net does not have: it could not rebuild this model")


def rewrite_checkpoints(source: Path, target: Path, trainer: str, stock_trainer: str) -> int:
    """Copy the zip ``source`` to ``target`` with every ``.pth`` checkpoint naming ``stock_trainer``."""
    import torch

    rewritten = 0
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith(".pth"):
                checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
                if checkpoint.get("trainer_name") != trainer:
                    raise UserError(f"{item.filename} was written by {checkpoint.get('trainer_name')}, not {trainer}")
                checkpoint["trainer_name"] = stock_trainer
                checkpoint[ORIGINAL_TRAINER_KEY] = trainer
                buffer = io.BytesIO()
                torch.save(checkpoint, buffer)
                data = buffer.getvalue()
                rewritten += 1
            zout.writestr(item, data)
    return rewritten


def export_for_inference(dataset: str, output_file: Path, configurations: Sequence[str], trainer: str,
                         plans: str = "nnUNetPlans", folds: Sequence[int | str] = (0, 1, 2, 3, 4),
                         checkpoints: Sequence[str] = ("checkpoint_final.pth",), strict: bool = True,
                         crossval_predictions: bool = False) -> str:
    """Write the zip; return the nnU-Net trainer name the checkpoints now carry."""
    from nnunetv2.model_sharing.model_export import export_pretrained_model
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    stock = stock_trainer_name(recursive_find_trainer_class_by_name(trainer))
    with tempfile.TemporaryDirectory() as folder:
        exported = Path(folder) / "nnunet_export.zip"
        export_pretrained_model(dataset_name_or_id=dataset, output_file=str(exported),
                                configurations=tuple(configurations), trainer=trainer, plans_identifier=plans,
                                folds=tuple(f if f == "all" else int(f) for f in folds), strict=strict,
                                save_checkpoints=tuple(checkpoints), export_crossval_predictions=crossval_predictions)
        if stock == trainer:
            shutil.copy(exported, output_file)
            return stock
        count = rewrite_checkpoints(exported, Path(output_file), trainer, stock)
    print(f"{count} checkpoint(s) now name {stock} (trained with {trainer}): stock nnU-Net can predict with "
          f"nnUNetv2_predict ... -tr {trainer} after nnUNetv2_install_pretrained_model_from_zip {output_file}")
    return stock


@console_command("nnUNetv2_dbce_export_for_inference")
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nnUNetv2_dbce_export_for_inference", description=__doc__.split("\n\n")[0])
    parser.add_argument("-d", required=True, help="dataset name or id")
    parser.add_argument("-o", required=True, type=Path, help="output .zip")
    parser.add_argument("-c", nargs="+", default=("3d_lowres", "3d_fullres", "2d", "3d_cascade_fullres"),
                        help="configurations")
    parser.add_argument("-tr", required=True, help="trainer class the model was trained with")
    parser.add_argument("-p", default="nnUNetPlans", help="plans identifier")
    parser.add_argument("-f", nargs="+", default=("0", "1", "2", "3", "4"), help="folds")
    parser.add_argument("-chk", nargs="+", default=("checkpoint_final.pth",), help="checkpoint files to export")
    parser.add_argument("--not_strict", action="store_true", help="allow missing folds and/or configurations")
    parser.add_argument("--exp_cv_preds", action="store_true", help="also export the cross-validation predictions")
    args = parser.parse_args(argv)
    export_for_inference(args.d, args.o, args.c, args.tr, args.p, args.f, args.chk, not args.not_strict,
                         args.exp_cv_preds)


if __name__ == "__main__":
    main()
