#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the tests of `nnUNetv2_dbce_study --slurm`.
#   bash scripts/slurm_local.sh start   # installs Debian's slurmctld, slurmd, slurm-client and munge if missing
#                                       # (root, apt-get), writes a one-node slurm.conf, starts munged,
#                                       # slurmctld and slurmd, waits until the node takes jobs
#   bash scripts/slurm_local.sh stop    # stops the three daemons (the packages and config stay)
# The node offers every core and 90% of the memory in one partition, `local`. No accounting database:
# `sacct` fails, and submitit falls back to `squeue` (it warns once). Needs root.
set -euo pipefail
action=${1:-}
node=$(hostname -s)
conf=/etc/slurm/slurm.conf

start() {
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
        || ! command -v sbatch >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null
    fi
    local cpus memory
    cpus=$(nproc)
    memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
    cat > "$conf" <<EOF
ClusterName=local
SlurmctldHost=$node
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
KillWait=10
NodeName=$node CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    chown munge:munge /run/munge
    pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 60); do
        if sinfo -h -N -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "SLURM is up: node $node, $cpus CPUs, ${memory} MB, partition local"
            return 0
        fi
        scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    echo "SLURM did not come up; see /var/log/slurm/" >&2
    sinfo -N >&2 || true
    return 1
}

stop() {
    pkill -x slurmd || true
    pkill -x slurmctld || true
    pkill -x munged || true
}

case "$action" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
