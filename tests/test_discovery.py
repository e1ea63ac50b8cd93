"""Zero-set-up discovery: nnU-Net's own trainer lookup finds the package's trainers and the user's."""
import ast
import io
import os
import subprocess
import sys

import pytest

import nnunetv2_dbce.trainers
import nnunetv2_dbce_autoload
from helpers import USER_TRAINER_FOLDER

LOOKUP = ("import sys; from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find; "
          "[print(name, find(name).__module__) for name in sys.argv[1:]]")


def look_up(names, extra_env):
    """Run nnU-Net's trainer lookup (what nnUNetv2_train and nnUNetv2_predict call) in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    env.update(extra_env)
    result = subprocess.run([sys.executable, "-c", LOOKUP, *names], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = dict(line.split() for line in result.stdout.splitlines() if line.startswith("nnUNetTrainer"))
    return found


def test_package_trainers_are_found_with_nothing_set():
    names = nnunetv2_dbce.trainers.__all__
    found = look_up(names, {})
    assert found == {name: getattr(nnunetv2_dbce.trainers, name).__module__ for name in names}
    assert all(module.startswith("nnunetv2_dbce.trainers.") for module in found.values())


def test_user_trainer_folder_keeps_working_beside_ours():
    found = look_up(["nnUNetTrainerDBCE_tiny", "nnUNetTrainerDBCE"], {"nnUNet_extTrainer": str(USER_TRAINER_FOLDER)})
    assert found == {"nnUNetTrainerDBCE_tiny": "dbce_test_trainers", "nnUNetTrainerDBCE": "nnunetv2_dbce.trainers.dbce"}


def test_register_appends_once_after_the_users_entries():
    ours = nnunetv2_dbce_autoload.trainer_folder()
    assert ours is not None and os.path.isfile(os.path.join(ours, "nnunetv2_dbce_trainers.py"))
    environ = {}
    nnunetv2_dbce_autoload.register(environ)
    assert environ["nnUNet_extTrainer"] == ours
    environ = {"nnUNet_extTrainer": os.pathsep.join(["/my/trainers", "/more/trainers"])}
    nnunetv2_dbce_autoload.register(environ)
    nnunetv2_dbce_autoload.register(environ)
    assert environ["nnUNet_extTrainer"].split(os.pathsep) == ["/my/trainers", "/more/trainers", ours]


def test_the_hook_can_be_switched_off():
    environ = {"nnUNet_extTrainer": "/my/trainers", "nnUNetv2_dbce_autoload": "0"}
    nnunetv2_dbce_autoload.register(environ)
    assert environ["nnUNet_extTrainer"] == "/my/trainers"
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    result = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('nnUNet_extTrainer'))"],
                            env=dict(env, nnUNetv2_dbce_autoload="0"), capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "None"


def test_a_switch_value_that_is_neither_on_nor_off_is_said():
    said = io.StringIO()
    environ = {"nnUNet_extTrainer": "/my/trainers", "nnUNetv2_dbce_autoload": "maybe"}
    nnunetv2_dbce_autoload.register(environ, said)
    assert "nnUNetv2_dbce_autoload='maybe' is neither on" in said.getvalue()
    assert environ["nnUNet_extTrainer"].startswith("/my/trainers" + os.pathsep)  # stays on
    quiet = io.StringIO()
    nnunetv2_dbce_autoload.register({"nnUNetv2_dbce_autoload": "Yes"}, quiet)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("name", ["nnUNetTrainerDBCE_nope"])
def test_unknown_trainer_still_fails_clearly(name):
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    result = subprocess.run([sys.executable, "-c", LOOKUP, name], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0 and "Could not find requested nnunet trainer" in result.stderr


def test_importing_the_package_loads_the_losses_only():
    """``import nnunetv2_dbce`` (to use a loss) loads neither nnU-Net, OpenCV, edt, scipy, batchgeneratorsv2 nor
    matplotlib; the weight maps, transforms and trainer base behind the lazy names load at first use."""
    heavy = ["nnunetv2", "cv2", "edt", "scipy", "batchgeneratorsv2", "matplotlib"]
    probe = "\n".join([
        "import sys, nnunetv2_dbce",
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))",
        "from nnunetv2_dbce import dbce_weight_map, VoxelMapTransform, nnUNetTrainerVoxelMap",
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))",
        "print(dbce_weight_map.__module__, nnUNetTrainerVoxelMap.__module__)",
        "print('region_dbce_weight_maps' in dir(nnunetv2_dbce))"])
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"})
    before, after, modules, listed = result.stdout.splitlines()[-4:]
    assert before == "[]", result.stderr
    assert {"nnunetv2", "cv2", "edt", "batchgeneratorsv2"} <= set(ast.literal_eval(after))
    assert modules == "nnunetv2_dbce.voxel_maps.dbce nnunetv2_dbce.trainers.voxel_map" and listed == "True"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = nnunetv2_dbce.nope


@pytest.mark.parametrize("old, new", sorted(nnunetv2_dbce.RENAMED.items()))
def test_a_renamed_public_name_still_works_with_a_deprecation_warning(old, new):
    with pytest.warns(DeprecationWarning, match=f"nnunetv2_dbce.{old} is now nnunetv2_dbce.{new}"):
        assert getattr(nnunetv2_dbce, old) is getattr(nnunetv2_dbce, new)
