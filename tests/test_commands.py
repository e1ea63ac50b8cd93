"""The console commands as a user meets them: exit codes and one-line refusals of bad input."""
import subprocess

import pytest

from nnunetv2_dbce.tools import demo
from nnunetv2_dbce.tools.nnunet import nnunet_command


def test_demo_exits_0_after_a_successful_run(monkeypatch):
    """`bash scripts/demo.sh && ...` must go on after a good demo: main() returns nothing for sys.exit."""
    ran = []
    monkeypatch.setattr(demo, "run_demo", lambda args: ran.append(args) or {"spot": 1.0, "blob": 0.99})
    assert demo.main(["--epochs", "2"]) is None and ran[0].epochs == 2


@pytest.mark.parametrize("arguments, message", [(["--radius", "-3"], "--radius: "), (["--epochs", "0"], "at least 1")])
def test_demo_refuses_bad_settings_before_any_work(tmp_path, arguments, message):
    result = subprocess.run([nnunet_command("nnUNetv2_dbce_demo"), "--out", str(tmp_path / "demo"), *arguments],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "demo").exists()  # refused before writing anything
