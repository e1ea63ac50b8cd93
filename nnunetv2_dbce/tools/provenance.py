"""What produced a study record: the versions, the commit, the device and the threads a run trained with."""
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def checkout_commit(folder: Path) -> str | None:
    """HEAD of the git checkout holding ``folder`` (``+dirty`` when the package's files differ from it), or None."""
    def git(*arguments: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *arguments], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        if git("rev-parse", "--show-toplevel") != str(folder.parent):
            return None
        return git("rev-parse", "HEAD") + ("+dirty" if git("status", "--porcelain", "--", str(folder)) else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def package_commit() -> str | None:
    """The git commit of this package: its checkout's HEAD when imported from a checkout (an editable install),
    else the commit written into the wheel when it was built (``hatch_build.py``), else None."""
    built = PACKAGE / "BUILD_COMMIT"
    if built.is_file():
        return built.read_text().strip()
    return checkout_commit(PACKAGE)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """``cpu (<model>)`` or ``cuda (<GPU name>)``."""
    if device == "cuda":
        import torch
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"{device} ({cpu_name()})" if device == "cpu" else device


def provenance(device: str, threads: int | None, augmentation_workers: int, seed: int | None,
               gpus: int | None = None) -> dict:
    """The fields every study record carries: package version and commit, nnU-Net, torch and Python versions,
    the device, the GPUs of the run (None on the CPU), torch's threads (None on a GPU) and nnU-Net's
    augmentation workers of the run, its seed (None: unseeded) and the machine's CPU count."""
    import torch
    return {"nnunetv2_dbce": metadata.version("nnunetv2-dbce"), "commit": package_commit(),
            "nnunetv2": metadata.version("nnunetv2"), "torch": torch.__version__,
            "python": platform.python_version(), "device": device_name(device), "gpus": gpus, "threads": threads,
            "augmentation_workers": augmentation_workers, "seed": seed, "host_cpus": os.cpu_count()}


# Fields that must agree across one study's records for its runs to be comparable.
ENVIRONMENT_FIELDS = ("nnunetv2", "torch", "python", "device")
