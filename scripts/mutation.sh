#!/usr/bin/env bash
# Mutation testing of the modules the loss and evaluation numbers come from (voxel_maps/ labels, dilation,
# dbce and transform; losses/; tools/evaluate.py) against their in-process unit tests, with mutmut ([tool.mutmut] in
# pyproject.toml). Not in CI: about an hour on 2 cores with MUTATION_JOBS=2.
#   bash scripts/mutation.sh                              # every mutant
#   bash scripts/mutation.sh "nnunetv2_dbce.voxel_maps.dbce*"  # one module
# Each run starts afresh: mutmut keeps a mutant's old result and maps tests to functions only when it first
# traces them, so after a change to the code or the tests its incremental mode misses tests (new functions get
# only the new tests) and keeps stale survivors. MUTATION_RESUME=1 continues an interrupted run instead.
# Prints the score (killed / checked) per module and the surviving mutants; `mutmut show NAME` shows one.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install -q "mutmut==3.8.1"
[ "${MUTATION_RESUME:-0}" = 1 ] || rm -rf mutants
.venv/bin/mutmut run --max-children "${MUTATION_JOBS:-1}" "$@" > mutants.log 2>&1 || true
.venv/bin/mutmut results --all true | .venv/bin/python -c '
import collections, re, sys
counts = collections.defaultdict(collections.Counter)
survivors = []
for line in sys.stdin:
    match = re.match(r"\s*(nnunetv2_dbce\.[\w.]+?)\.x_?\w+__mutmut_\d+: (.+)", line)
    if match:
        module, status = match.groups()
        counts[module][status] += 1
        if status == "survived":
            survivors.append(line.strip().split(":")[0])
counts["all"] = sum(counts.values(), collections.Counter())
for module, count in sorted(counts.items(), key=lambda item: (item[0] == "all", item[0])):
    checked = sum(n for status, n in count.items() if status != "not checked")
    killed = count["killed"] + count["timeout"] + count["segfault"]  # a crash is a failing test run too
    score = f"{killed / checked:.1%}" if checked else "-"
    print(f"{module}: {score} killed ({killed} of {checked} checked; " + ", ".join(
        f"{status} {n}" for status, n in sorted(count.items())) + ")")
print("survived:", *survivors, sep="\n  ")
'
