"""Puts the trainers of nnunetv2-dbce on nnU-Net's trainer search path at interpreter start-up.

Installed next to ``nnunetv2_dbce`` and run by ``nnunetv2_dbce.pth``, so ``nnUNetv2_train`` and
``nnUNetv2_predict`` find ``-tr nnUNetTrainerDBCE`` with no set-up. nnU-Net 2.8 searches the folders
listed in the environment variable ``nnUNet_extTrainer`` (separated by ``os.pathsep``); we append
our shim folder and keep the user's own entries first, so their trainers still win on a name clash.
This runs in every Python process of the environment: it must stay cheap and must never raise.
``nnUNetv2_dbce_autoload=0`` in the environment switches it off.
"""
import os
import sys

TYPE_CHECKING = False  # importing typing would slow every interpreter start-up; type checkers read this as True
if TYPE_CHECKING:
    from typing import TextIO

ENV_VAR = "nnUNet_extTrainer"
SWITCH = "nnUNetv2_dbce_autoload"  # set to 0 to turn the hook off (stock nnU-Net behaviour)


def trainer_folder() -> "str | None":
    """Folder holding the shim module that re-exports our trainers, or None if the package is missing."""
    package = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nnunetv2_dbce")
    if not os.path.isdir(package):  # editable install: the package stays in the source tree
        import importlib.util
        spec = importlib.util.find_spec("nnunetv2_dbce")
        if spec is None or not spec.submodule_search_locations:
            return None
        package = list(spec.submodule_search_locations)[0]
    folder = os.path.join(package, "nnunet_trainers")
    return folder if os.path.isdir(folder) else None


def register(environ: "os._Environ[str] | dict[str, str]" = os.environ, stderr: "TextIO | None" = None) -> None:
    """Append our trainer folder to ``environ[nnUNet_extTrainer]`` unless it is already listed or the hook is
    switched off (``nnUNetv2_dbce_autoload=0``). A value that is neither on nor off is said on ``stderr``, once per
    process, and the hook stays on."""
    value = environ.get(SWITCH, "1").strip().lower()
    if value in ("0", "false", "no", "off"):
        return
    if value not in ("", "1", "true", "yes", "on"):
        (stderr or sys.stderr).write(f"{SWITCH}={environ[SWITCH]!r} is neither on (1, true, yes, on) nor off "
                                     f"(0, false, no, off): the nnunetv2-dbce trainers stay on nnU-Net's search path\n")
    folder = trainer_folder()
    if folder is None:
        return
    entries = [e for e in environ.get(ENV_VAR, "").split(os.pathsep) if e]
    if any(os.path.normcase(os.path.abspath(e)) == os.path.normcase(folder) for e in entries):
        return
    environ[ENV_VAR] = os.pathsep.join(entries + [folder])


try:
    register()
except Exception:  # a broken hook must never stop Python from starting
    pass
