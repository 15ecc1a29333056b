#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for trying `fadlora sweep --slurm` and for CI:
# slurmctld and slurmd on localhost, munge for authentication, and plugins that need neither
# cgroups nor systemd (proctrack/linuxproc, task/none) so it also runs in a container. No
# accounting daemon: `sacct` is unavailable, as on some clusters, and `fadlora sweep --status`
# falls back to what the results folder says.
#
#   sudo tools/slurm/local_cluster.sh start   # writes /etc/slurm/slurm.conf, starts the daemons
#   sudo tools/slurm/local_cluster.sh stop
#
# Needs root and Debian's packages `slurm-wlm` and `munge`.
set -euo pipefail

conf_dir=/etc/slurm
log_dir=/var/log/slurm
node=$(hostname -s)
cpus=$(nproc)

start() {
    mkdir -p "$conf_dir" "$log_dir" /var/spool/slurmctld /var/spool/slurmd /run/munge
    cat > "$conf_dir/slurm.conf" <<CONF
# Written by tools/slurm/local_cluster.sh: one node, this machine.
ClusterName=fadlora-local
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$log_dir/slurmctld.log
SlurmdLogFile=$log_dir/slurmd.log
# Short timers so a cancelled or timed-out task is gone within seconds.
KillWait=5
MinJobAge=30
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=local Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    chmod 0700 /etc/munge
    chmod 0400 /etc/munge/munge.key
    pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
    # sinfo waits for an unreachable controller, so each try has its own timeout.
    local deadline=$((SECONDS + 90))
    while [ $SECONDS -lt $deadline ]; do
        if timeout 5 sinfo --noheader --format=%t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            sinfo
            return 0
        fi
        sleep 1
    done
    echo "the local SLURM cluster did not come up; logs:" >&2
    tail -n 30 "$log_dir/slurmctld.log" "$log_dir/slurmd.log" >&2 || true
    return 1
}

stop() {
    local daemon
    for daemon in slurmd slurmctld munged; do
        pkill -x "$daemon" || true
        # A daemon saves its state before it exits: a start while it still runs would find it
        # running and start nothing.
        for _ in $(seq 60); do
            pgrep -x "$daemon" >/dev/null || break
            sleep 0.5
        done
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
