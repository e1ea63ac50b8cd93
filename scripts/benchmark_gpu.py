"""One command for GPU figures: real nnU-Net training iterations of Dice+CE and of this package's trainers.

For each configuration and trainer, the trainer is built as ``nnUNetv2_train`` builds it and started as nnU-Net
starts it (``on_train_start``: its data-loading workers with pinned memory, ``torch.compile`` as nnU-Net
decides it, AMP on CUDA), then ``train_step(next(dataloader_train))`` is timed exactly as ``run_training``
calls it: median ms per iteration after a warm-up, the ratio to Dice+CE (``nnUNetTrainer``), and the peak GPU
memory of the timed iterations. Data: MSD hippocampus (``Dataset004_Hippocampus``, 2d and 3d_fullres) when it is
preprocessed under ``nnUNet_preprocessed``; otherwise generated vessel trees (``tools/synthetic.py``, 2D 128^2
and 3D 64^3), planned and preprocessed by nnU-Net in a temporary folder. Trained models go to a temporary
``nnUNet_results``.

    python scripts/benchmark_gpu.py                   # CUDA, 30 timed iterations after 10 warm-up, 2d and 3d_fullres
    python scripts/benchmark_gpu.py --device cpu --tiny   # the same path on the CPU, small: what the tests run
"""
import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAINERS = ["nnUNetTrainer", "nnUNetTrainerDBCE", "nnUNetTrainerDiceDBCE", "nnUNetTrainerPMDice",
            "nnUNetTrainerPMDiceCE"]
HIPPOCAMPUS = "Dataset004_Hippocampus"
GENERATED = {"2d": (996, 2, 128, 20), "3d_fullres": (997, 3, 64, 10)}  # id, dims, size, training cases


def hippocampus_ready(configuration: str) -> bool:
    """Whether nnU-Net's preprocessed MSD hippocampus holds ``configuration``."""
    folder = Path(os.environ.get("nnUNet_preprocessed", "/nonexistent")) / HIPPOCAMPUS
    return (folder / "nnUNetPlans.json").is_file() and (folder / f"nnUNetPlans_{configuration}").is_dir()


def generated_dataset(configuration: str, root: Path, tiny: bool) -> str:
    """Generate, plan and preprocess the vessel trees for ``configuration`` under ``root``: the dataset name."""
    from nnunetv2_dbce.tools.nnunet import nnunet_command
    from nnunetv2_dbce.tools.synthetic import write_vessel_dataset
    dataset_id, dims, size, cases = GENERATED[configuration]
    if tiny:
        size, cases = (48, 6) if dims == 2 else (24, 6)
    folder = write_vessel_dataset(Path(os.environ["nnUNet_raw"]), dataset_id, num_train=cases, num_test=0, size=size,
                                  dims=dims)
    subprocess.run([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", configuration,
                    "-np", "2"], check=True, stdout=subprocess.DEVNULL)
    return folder.name


def time_trainer(name: str, dataset: str, configuration: str, device, warm_up: int, iterations: int) -> tuple:
    """(ms per timed iteration, peak GPU memory in GiB or None) of ``name`` started as nnUNetv2_train starts it."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        trainer = get_trainer_from_args(dataset, configuration, 0, name, "nnUNetPlans", device=device)
        trainer.on_train_start()
        trainer.on_train_epoch_start()
    seconds = []
    try:
        for step in range(warm_up + iterations):
            if step == warm_up and device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            trainer.train_step(next(trainer.dataloader_train))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - start)
    finally:
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            trainer.on_train_end()  # stops its data-loading workers
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    return [1000 * s for s in seconds[warm_up:]], peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--configurations", nargs="+", default=["2d", "3d_fullres"], choices=list(GENERATED))
    parser.add_argument("--warm-up", type=int, default=10, help="untimed iterations per trainer (compiling included)")
    parser.add_argument("--iterations", type=int, default=30, help="timed iterations per trainer")
    parser.add_argument("--tiny", action="store_true", help="generated data at a few pixels, 1 warm-up and 3 timed "
                        "iterations: the code path, not figures")
    args = parser.parse_args(argv)
    if args.tiny:
        args.warm_up, args.iterations = 1, 3
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        os.environ["nnUNet_results"] = str(root / "results")  # before nnunetv2 is imported: it reads them once
        use_hippocampus = not args.tiny and all(hippocampus_ready(c) for c in args.configurations)
        if not use_hippocampus:
            for key in ("nnUNet_raw", "nnUNet_preprocessed"):
                os.environ[key] = str(root / key)
        import torch
        device = torch.device(args.device)
        if device.type == "cuda":
            if not torch.cuda.is_available():
                sys.exit("benchmark_gpu.py: no CUDA device; --device cpu runs the same path on the CPU")
            torch.backends.cudnn.benchmark = True  # as nnUNetv2_train sets it
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"torch {torch.__version__} on {name}; {args.iterations} timed iterations after {args.warm_up} "
              f"warm-up per trainer; data: {'MSD hippocampus' if use_hippocampus else 'generated vessel trees'}")
        for configuration in args.configurations:
            dataset = HIPPOCAMPUS if use_hippocampus else generated_dataset(configuration, root, args.tiny)
            print(f"\n{dataset} {configuration}")
            baseline = None
            for trainer in TRAINERS:
                times, peak = time_trainer(trainer, dataset, configuration, device, args.warm_up, args.iterations)
                median = statistics.median(times)
                baseline = baseline or median
                memory = f"{peak:6.2f} GiB peak" if peak is not None else "memory n/a (CPU)"
                print(f"  {trainer:<24} {median:9.1f} ms per iteration (min {min(times):.1f}, max {max(times):.1f})"
                      f"  {median / baseline:5.3f}x  {memory}", flush=True)


if __name__ == "__main__":
    main()
