"""Build hook: writes the git commit the wheel is built from into ``nnunetv2_dbce/BUILD_COMMIT``, so that an
installed copy (``pip install .`` from a checkout, or ``pip install git+...``) can say which commit it is
(``nnunetv2_dbce.tools.provenance``). Builds outside a git checkout write nothing."""
import subprocess
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class BuildCommitHook(BuildHookInterface):
    def initialize(self, version, build_data):
        if self.target_name != "wheel" or version == "editable":  # an editable install reads the checkout itself
            return
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=self.root, capture_output=True, text=True,
                                    check=True).stdout.strip()
            changed = subprocess.run(["git", "status", "--porcelain", "--", "nnunetv2_dbce", "pyproject.toml"],
                                     cwd=self.root, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return
        path = Path(tempfile.mkdtemp()) / "BUILD_COMMIT"
        path.write_text(commit + ("+dirty" if changed else "") + "\n")
        build_data["force_include"][str(path)] = "nnunetv2_dbce/BUILD_COMMIT"
