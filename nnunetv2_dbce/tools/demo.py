"""A short DBCE demo on CPU: a generated 2D dataset, nnU-Net planning and preprocessing, a brief
``nnUNetTrainerDBCE`` training, prediction of held-out images and nnU-Net's evaluation (per-class Dice).

Run ``nnUNetv2_dbce_demo --help``. Everything goes through nnU-Net's own command-line tools;
the only thing the demo adds is a subclass of ``nnUNetTrainerDBCE`` with fewer epochs, written to a
folder of its own and found through ``nnUNet_extTrainer`` next to this package's trainers.
"""
import argparse
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from nnunetv2_dbce.tools.cli import UserError, console_command
from nnunetv2_dbce.tools.nnunet import nnunet_command
from nnunetv2_dbce.tools.synthetic import LABELS, write_synthetic_dataset
from nnunetv2_dbce.voxel_maps.dilation import check_radius

DEMO_TRAINER = '''import torch

from nnunetv2_dbce.trainers import nnUNetTrainerDBCE


class nnUNetTrainerDBCE_demo(nnUNetTrainerDBCE):
    """nnUNetTrainerDBCE shortened for a CPU demo."""

    dilation_radius = {radius}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = {epochs}
        self.num_iterations_per_epoch = {iterations}
        self.num_val_iterations_per_epoch = {val_iterations}
'''

def run(step: str, command: list, env: dict, log_file: Path, started: float) -> None:
    """Run one nnU-Net command, its output going to ``log_file``; stop the demo with its tail if it fails."""
    print(f"[{time.time() - started:6.0f} s] {step}: {' '.join(command)}", flush=True)
    with open(log_file, "a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        result = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "".join(log_file.read_text().splitlines(keepends=True)[-40:])
        raise UserError(f"{step} failed (exit {result.returncode}); end of {log_file}:\n{tail}")


# What the demo writes into --out; a rerun removes these and nothing else.
DEMO_ENTRIES = ("demo_trainers", "nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "predictions", "demo_log.txt")


def remove_earlier_demo(out: Path) -> None:
    """Remove what an earlier demo wrote into ``out``; refuse if ``out`` holds such names not written by a demo."""
    present = [name for name in DEMO_ENTRIES if (out / name).exists()]
    if not present:
        return
    if not (out / "demo_log.txt").is_file():
        raise UserError(f"{out} holds {', '.join(present)} but no demo_log.txt: not an earlier demo's output, "
                        f"choose another --out")
    for name in present:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nnUNetv2_dbce_demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_output"),
                        help="work folder for nnUNet_raw / nnUNet_preprocessed / nnUNet_results (default: %(default)s)")
    parser.add_argument("--dataset-id", type=int, default=990)
    parser.add_argument("--radius", type=float, help="DBCE dilation radius in voxels (default: nnUNetTrainerDBCE's)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--iterations", type=int, default=25, help="training iterations per epoch")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.radius is not None:
        try:
            check_radius(args.radius)
        except (TypeError, ValueError) as error:
            parser.error(f"--radius: {error}")
    if args.epochs < 1 or args.iterations < 1:
        parser.error("--epochs and --iterations must be at least 1")
    return args


def run_demo(args: argparse.Namespace) -> dict:
    """Generate, plan, train, predict, evaluate; print and return the per-label Dice of the test images."""
    started = time.time()
    out = args.out.resolve()
    remove_earlier_demo(out)
    trainer_folder = out / "demo_trainers"
    trainer_folder.mkdir(parents=True)
    radius = "nnUNetTrainerDBCE.dilation_radius" if args.radius is None else args.radius
    (trainer_folder / "dbce_demo_trainers.py").write_text(DEMO_TRAINER.format(
        radius=radius, epochs=args.epochs, iterations=args.iterations, val_iterations=5))
    # nnUNet_def_n_proc: nnU-Net's default of 8 export processes costs more than it saves on a small CPU run
    env = dict(os.environ, nnUNet_def_n_proc=os.environ.get("nnUNet_def_n_proc", "2"),
               nnUNet_raw=str(out / "nnUNet_raw"), nnUNet_preprocessed=str(out / "nnUNet_preprocessed"),
               nnUNet_results=str(out / "nnUNet_results"),
               nnUNet_extTrainer=os.pathsep.join(filter(None, [str(trainer_folder),
                                                               os.environ.get("nnUNet_extTrainer")])))
    log_file = out / "demo_log.txt"
    dataset = write_synthetic_dataset(Path(env["nnUNet_raw"]), args.dataset_id)
    print(f"[{time.time() - started:6.0f} s] wrote {dataset} (24 training, 6 test images, 64x64); "
          f"nnU-Net output is logged to {log_file}", flush=True)

    ident, trainer, predictions = str(args.dataset_id), "nnUNetTrainerDBCE_demo", out / "predictions"
    run("plan and preprocess", [nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", ident, "-c", "2d",
                                "-np", "2", "--verify_dataset_integrity"], env, log_file, started)
    run(f"train {args.epochs} epochs x {args.iterations} iterations",
        [nnunet_command("nnUNetv2_train"), ident, "2d", "0", "-tr", trainer, "-device", args.device],
        env, log_file, started)
    run("predict the test images", [nnunet_command("nnUNetv2_predict"), "-i", str(dataset / "imagesTs"),
                                    "-o", str(predictions), "-d", ident, "-c", "2d", "-f", "0", "-tr", trainer,
                                    "-device", args.device, "-npp", "1", "-nps", "1"], env, log_file, started)
    run("evaluate", [nnunet_command("nnUNetv2_evaluate_folder"), str(dataset / "labelsTs"), str(predictions),
                     "-djfile", str(predictions / "dataset.json"), "-pfile", str(predictions / "plans.json")],
        env, log_file, started)

    summary = json.loads((predictions / "summary.json").read_text())
    names = {str(v): k for k, v in LABELS.items()}
    dice = {names[label]: metrics["Dice"] for label, metrics in summary["mean"].items()}
    print(f"\nDice on the {len(list((dataset / 'labelsTs').iterdir()))} test images "
          f"(nnU-Net's evaluation, {predictions / 'summary.json'}):")
    for name, value in dice.items():
        print(f"  {name:>6}: {value:.3f}")
    print(f"wall time: {time.time() - started:.0f} s")
    return dice


@console_command("nnUNetv2_dbce_demo")
def main(argv: Sequence[str] | None = None) -> None:
    """The console command: exit code 0 after a successful demo (the Dice is printed, not returned)."""
    run_demo(parse_args(argv))


if __name__ == "__main__":
    main()
