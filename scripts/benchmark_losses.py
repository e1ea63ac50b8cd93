"""Forward + backward cost of this package's losses next to nnU-Net's Dice+CE on the same logits.

nnU-Net's default loss is ``DC_and_CE_loss`` with ``MemoryEfficientSoftDiceLoss`` (batch Dice,
background excluded, smoothing 1e-5), built here exactly as ``nnUNetTrainer._build_loss`` builds it.
Every loss gets the same logits and labels (and DBCE the weight maps of those labels); the losses are
timed in interleaved rounds, in a new random order each round. One row per loss: median and interquartile
range, the ratio of medians to Dice+CE, and the memory autograd keeps for the backward pass (besides the logits)
in logits-sized copies.

    python scripts/benchmark_losses.py [--device cpu|cuda] [--repeats 20] [--autocast]

``--autocast``: logits in the autocast precision (fp16 on CUDA, bf16 on the CPU) and every loss called under
``torch.autocast``, as nnU-Net's training step calls it on a GPU (on the CPU nnU-Net trains in fp32).
"""
import argparse
import time

import numpy as np
import torch
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.utilities.helpers import softmax_helper_dim1

from nnunetv2_dbce import DBCELoss, PMDiceCELoss, PMDiceLoss, dbce_weight_map

SHAPES = {"2D 12 x 3 x 256^2": (12, 3, 256, 256), "3D 2 x 4 x 96^3": (2, 4, 96, 96, 96)}


def nnunet_dice_ce():
    return DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                          weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)


def pm_dice():
    return PMDiceLoss(softmax_helper_dim1, gamma=2.0, batch_dice=True, do_bg=False, smooth=1e-5)


def pm_dice_ce():
    """What ``nnUNetTrainerPMDiceCE`` and ``nnUNetTrainerDBCEPMDice`` train with on label maps (with weights: DBCE)."""
    return PMDiceCELoss(gamma=2.0, batch_dice=True, do_bg=False, smooth=1e-5)


def inputs(shape, device):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=generator)
    target = torch.zeros((shape[0], 1, *shape[2:]))
    grid = np.indices(shape[2:])
    for b in range(shape[0]):
        for label in range(1, shape[1]):
            centre = np.random.default_rng(b * 10 + label).uniform(0.2, 0.8, len(shape) - 2) * np.array(shape[2:])
            radius = shape[2] / (4 * label)
            inside = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2
            target[b, 0][torch.from_numpy(inside)] = label
    weights = torch.stack([torch.from_numpy(dbce_weight_map(t[0].numpy(), 5))[None] for t in target])
    return logits.to(device), target.to(device), weights.to(device)


def under_autocast(loss, device):
    """``loss`` called under ``torch.autocast``, as nnU-Net's ``train_step`` calls it on a GPU."""
    def call(*arguments):
        with torch.autocast(device.type):
            return loss(*arguments)
    return call


def time_once(loss, arguments, device) -> float:
    """Milliseconds of one forward + backward."""
    logits = arguments[0].clone().requires_grad_()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    loss(logits, *arguments[1:]).backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000


def saved_for_backward(loss, arguments) -> float:
    """Bytes autograd keeps for the backward pass of one loss call, in units of the logits' size."""
    storages = {}

    def keep(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    logits = arguments[0].clone().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        loss(logits, *arguments[1:])
    storages.pop(logits.untyped_storage().data_ptr(), None)
    return sum(storages.values()) / (logits.numel() * logits.element_size())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--autocast", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    precision = f"under autocast ({torch.get_autocast_dtype(device.type)})" if args.autocast else "fp32"
    print(f"torch {torch.__version__}, device {device}, {precision}, {torch.get_num_threads()} CPU threads, "
          f"{args.repeats} repeats; forward + backward, median (IQR), ratio of medians to nnU-Net's Dice+CE; "
          f"memory autograd keeps for the backward pass besides the logits, in logits-sized copies")
    for name, shape in SHAPES.items():
        logits, target, weights = inputs(shape, device)
        if args.autocast:
            logits = logits.to(torch.get_autocast_dtype(device.type))
        rows = {
            "nnU-Net Dice+CE (DC_and_CE_loss)": (nnunet_dice_ce(), (logits, target)),
            "PMDiceLoss, gamma 2": (pm_dice(), (logits, target)),
            "PM Dice + CE (nnUNetTrainerPMDiceCE)": (pm_dice_ce(), (logits, target)),
            "DBCELoss": (DBCELoss(), (logits, target, weights)),
            "DBCE + PM Dice (nnUNetTrainerDBCEPMDice)": (pm_dice_ce(), (logits, target, weights)),
        }
        if args.autocast:
            rows = {row: (under_autocast(loss, device), arguments) for row, (loss, arguments) in rows.items()}
        print(f"\n{name}")
        for loss, arguments in rows.values():  # warm-up
            time_once(loss, arguments, device)
        times = {row: [] for row in rows}
        order = np.random.default_rng(0)
        for _ in range(args.repeats):  # interleaved, so that load from elsewhere hits every loss alike, and in a
            for row in order.permutation(list(rows)):  # new order each round, so that no loss always follows another
                times[row].append(time_once(*rows[row], device))
        baseline = np.median(times["nnU-Net Dice+CE (DC_and_CE_loss)"])
        for row, (loss, arguments) in rows.items():
            row_times = np.array(times[row])
            print(f"  {row:<42} {np.median(row_times):8.1f} ms ({np.percentile(row_times, 25):.1f}-"
                  f"{np.percentile(row_times, 75):.1f})  {np.median(row_times) / baseline:5.2f}x   "
                  f"saved {saved_for_backward(loss, arguments):4.2f}")


if __name__ == "__main__":
    main()
