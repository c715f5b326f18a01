#!/usr/bin/env bash
# A single-node SLURM cluster from Debian's packages (slurmctld, slurmd, munge), for tests, as root.
#   tests/slurm/cluster.sh start STATE_DIR    writes /etc/slurm/slurm.conf + gres.conf, starts munged/slurmctld/slurmd
#   tests/slurm/cluster.sh stop STATE_DIR     stops them and restores any previous /etc/slurm config
# The config must live at the default path: the executor's job steps drop SLURM_CONF.
set -euo pipefail
cmd=$1
state=$(readlink -f "$2")
host=$(hostname)

stop() {
  for pidfile in "$state"/slurmd.pid "$state"/slurmctld.pid "$state"/munged.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 1
  for f in slurm.conf gres.conf; do
    if [ -f "$state/backup.$f" ]; then mv "$state/backup.$f" "/etc/slurm/$f"; else rm -f "/etc/slurm/$f"; fi
  done
}

if [ "$cmd" = stop ]; then stop; exit 0; fi

mkdir -p "$state/spool" "$state/ctld" /etc/slurm /run/munge
for f in slurm.conf gres.conf; do
  [ -f "/etc/slurm/$f" ] && [ ! -f "$state/backup.$f" ] && cp "/etc/slurm/$f" "$state/backup.$f"
done
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
cpus=$(nproc)
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=unlearnable-ci
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=900
GresTypes=gpu
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=cpu Nodes=${host} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=${host} MaxTime=INFINITE State=UP
CONF
echo "NodeName=${host} Name=gpu Count=1" > /etc/slurm/gres.conf

[ -f "$state/munge.key" ] || mungekey -c -k "$state/munge.key"
chmod 600 "$state/munge.key"
munged -f --key-file="$state/munge.key" --pid-file="$state/munged.pid" --socket=/run/munge/munge.socket.2 \
  --log-file="$state/munged.log"
slurmctld -c -f /etc/slurm/slurm.conf
sleep 1
slurmd -f /etc/slurm/slurm.conf
for _ in $(seq 60); do
  if sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then break; fi
  sleep 1
done
# a count-only fake GPU: declared on the running node (declared in slurm.conf, slurmd reports 0 and the node goes INVAL)
scontrol update NodeName="$host" Gres=gpu:1 >/dev/null 2>&1 || true
sinfo -h -N -o '%N %T %G'
