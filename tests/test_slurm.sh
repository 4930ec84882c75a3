#!/usr/bin/env bash
# A real Slurm on this machine (Debian's slurmctld, slurmd and munge; no cgroups,
# no accounting, state in this test's scratch folder, addresses on loopback):
#  - cluster/train.sbatch as shipped, only the node shape overridden, reaches its last step;
#  - `scancel --signal=USR1 --full` -> checkpoint, requeue, resume, and final parameters
#    bit-identical to the uninterrupted job;
#  - a 4-point sweep through `sspose sweep submit` (a job array of cluster/sweep.sbatch)
#    and `sspose sweep summary`.
# The daemons it starts are stopped by their PIDs. Skips visibly when they cannot start.
# Slurm holds a requeued job for AuthInfo's cred_expire (120 s by default); 5 s here.
. tests/test_train_common.bash
REPO=$(pwd)
for p in munged mungekey slurmctld slurmd sbatch srun squeue scontrol scancel sinfo; do
  command -v $p >/dev/null || { t_skip slurm "no $p (make deps installs slurmctld, slurmd, slurm-client, munge)"; t_end; }
done
[ "$(getconf _NPROCESSORS_ONLN)" -ge 2 ] || { t_skip slurm "needs 2 CPUs for a 2-rank job"; t_end; }
tr_fixture || { t_fail slurm_fixture "synth/data failed"; t_end; }

SL=$T_TMP/slurm
mkdir -p "$SL/state" "$SL/spool" "$SL/jobs" && chmod 700 "$SL"
PIDS=()
stop_daemons() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  PIDS=()
}
trap stop_daemons EXIT

mungekey -c -b 1024 -k "$SL/munge.key" && chmod 400 "$SL/munge.key" || { t_skip slurm "mungekey failed"; t_end; }
munged -F -f --socket="$SL/munge.sock" --key-file="$SL/munge.key" --pid-file="$SL/munged.pid" \
  --log-file="$SL/munged.log" --seed-file="$SL/munged.seed" 2>"$SL/munged.err" &
PIDS+=($!)
tr_wait_file "$SL/munge.sock" 10 || { t_skip slurm "munged did not start: $(tail -c 300 "$SL/munged.err" "$SL/munged.log" 2>/dev/null | tr '\n' '|')"; t_end; }

# two free TCP ports on loopback
read -r PORT1 PORT2 < <("$PY" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
HOST=$(hostname -s)
NODE=ssposetest
cat >"$SL/slurm.conf" <<EOF
ClusterName=ssposetest
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
SlurmctldPort=$PORT1
SlurmdPort=$PORT2
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SL/munge.sock,cred_expire=5
StateSaveLocation=$SL/state
SlurmdSpoolDir=$SL/spool
SlurmctldPidFile=$SL/slurmctld.pid
SlurmdPidFile=$SL/slurmd.pid
SlurmctldLogFile=$SL/slurmctld.log
SlurmdLogFile=$SL/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
GresTypes=gpu
KillWait=10
NodeName=$NODE NodeHostname=$(hostname) NodeAddr=127.0.0.1 CPUs=2 Sockets=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$SL/slurm.conf
slurmctld -D -f "$SL/slurm.conf" >"$SL/slurmctld.err" 2>&1 &
PIDS+=($!)
slurmd -D -N "$NODE" -f "$SL/slurm.conf" >"$SL/slurmd.err" 2>&1 &
PIDS+=($!)
up=0
for _ in $(seq 60); do
  if sinfo -h -N -o '%t' 2>/dev/null | grep -qx idle; then up=1; break; fi
  sleep 0.5
done
if [ $up -eq 0 ]; then
  t_skip slurm "slurmctld/slurmd did not come up: $(tail -n 3 "$SL/slurmctld.log" "$SL/slurmd.log" "$SL/slurmctld.err" "$SL/slurmd.err" 2>/dev/null | tr '\n' '|' | tail -c 400)"
  t_end
fi
t_ok "slurm_daemons_up (slurmctld, slurmd, munged on ports $PORT1/$PORT2)"

case $SSPOSE in /*) ;; *) SSPOSE=$REPO/$SSPOSE ;; esac
export SSPOSE
SHAPE=(--nodes=1 --ntasks-per-node=2 --gpus-per-node=0 --cpus-per-task=1)
SETS=(--set data.train="$SHARDS" "${TR_SETS[@]}" --set train.steps=24 --set train.checkpoint_every=3 --set train.keep=20)

# wait_job ID SECONDS: until the job leaves the queue
wait_job() {
  local i
  for ((i = 0; i < $2 * 2; i++)); do
    [ -z "$(squeue -h -j "$1" -o %T 2>/dev/null)" ] && return 0
    sleep 0.5
  done
  return 1
}

cd "$SL/jobs" || exit 1
# 1. the uninterrupted job
jid=$(sbatch --parsable "${SHAPE[@]}" "$REPO/cluster/train.sbatch" "$REPO/configs/tiny.ini" "$T_TMP/full" "${SETS[@]}")
if [ -z "$jid" ]; then t_fail slurm_train_sbatch "sbatch refused the job"
elif ! wait_job "$jid" 300; then scancel "$jid"; t_fail slurm_train_sbatch "job $jid still queued after 300 s"
else
  out=sspose-train-$jid.out
  if [ -e "$(tr_ckpt "$T_TMP/full" 24)" ] && grep -q 'srun exited with 0' "$out" && grep -q 'finished: .* reached step 24' "$out"; then
    t_ok "slurm_train_sbatch (job $jid: $(grep -o 'srun --mpi=[a-z0-9_]*' "$out" | head -n 1), step 24)"
  else t_fail slurm_train_sbatch "$(tail -n 6 "$out" | tr '\n' '|')"; fi
fi

# 2. USR1 to the batch shell and every step: checkpoint, requeue, resume, same weights
jid=$(sbatch --parsable "${SHAPE[@]}" "$REPO/cluster/train.sbatch" "$REPO/configs/tiny.ini" "$T_TMP/pre" "${SETS[@]}")
if tr_wait_file "$(tr_ckpt "$T_TMP/pre" 3)" 240; then
  scancel --signal=USR1 --full "$jid"
  t0=$SECONDS
  if wait_job "$jid" 150; then
    out=sspose-train-$jid.out
    if ! grep -q 'stop requested (signal 10' "$out" || ! grep -q "requeueing job $jid" "$out"; then
      t_fail slurm_usr1_requeue "no checkpointed stop and requeue: $(grep -v '^\[rank 0\] step' "$out" | tail -n 8 | tr '\n' '|')"
    elif ! grep -q 'resuming from' "$out" || ! grep -q 'reached step 24' "$out"; then
      t_fail slurm_usr1_requeue "did not resume to step 24: $(tail -n 5 "$out" | tr '\n' '|')"
    else
      t_ok "slurm_usr1_requeue (stopped at step $(grep -o 'stopped at step [0-9]*' "$out" | head -n 1 | grep -o '[0-9]*$'), requeued, resumed, done $((SECONDS - t0)) s after the signal)"
      if msg=$(tr_compare "$(tr_ckpt "$T_TMP/pre" 24)" "$(tr_ckpt "$T_TMP/full" 24)" 0); then t_ok "slurm_usr1_resume_exact ($msg)"
      else t_fail slurm_usr1_resume_exact "$msg"; fi
    fi
  else
    scancel "$jid"; t_fail slurm_usr1_requeue "job $jid still queued 150 s after USR1: $(squeue -h -j "$jid" -o '%T %r')"
  fi
else
  scancel "$jid"; t_fail slurm_usr1_requeue "no checkpoint at step 3 within 240 s"
fi

# 3. a 4-point sweep as one job array
D=$T_TMP/sweep
"$SSPOSE" sweep plan --config "$REPO/configs/tiny.ini" --out "$D" --grid loss.alpha=0,10 --grid loss.gamma=5,9 \
  --set data.train="$SHARDS" "${TR_SETS[@]}" --set train.steps=6 --set train.checkpoint_every=3 >/dev/null
if sub=$("$SSPOSE" sweep submit "$D" --max-running 2 -- "${SHAPE[@]}" 2>&1); then
  jid=$(echo "$sub" | grep -o 'job array [0-9]*' | grep -o '[0-9]*$')
  st=$("$SSPOSE" sweep status "$D")
  if echo "$sub" | grep -q '4 runs, at most 2 at a time' && echo "$st" | grep -q 'slurm: \(PENDING\|RUNNING\)'; then
    t_ok "slurm_sweep_submit (array $jid; status: $(echo "$st" | grep -c 'slurm:') runs queued)"
  else t_fail slurm_sweep_submit "$(echo "$sub" "$st" | tr '\n' '|')"; fi
  if wait_job "$jid" 300; then
    st=$("$SSPOSE" sweep status "$D")
    if echo "$st" | grep -q '^4 runs: 4 done'; then t_ok slurm_sweep_done; else t_fail slurm_sweep_done "$(echo "$st" | tr '\n' '|')"; fi
    if msg=$("$SSPOSE" sweep summary "$D" --json - | "$PY" -c '
import json, sys
rows = json.load(sys.stdin)
assert len(rows) == 4 and all(r["status"] == "done" and r["step"] == 6 and r["final_loss"] > 0 for r in rows), rows
assert sorted((r["loss.alpha"], r["loss.gamma"]) for r in rows) == [(0, 5), (0, 9), (10, 5), (10, 9)]
print("4 runs done")' 2>&1); then t_ok "slurm_sweep_summary ($msg)"; else t_fail slurm_sweep_summary "$msg"; fi
    if "$SSPOSE" sweep submit "$D" | grep -q 'nothing to submit'; then t_ok slurm_sweep_resubmit_noop
    else t_fail slurm_sweep_resubmit_noop "a done sweep was submitted again"; fi
  else
    scancel "$jid"; t_fail slurm_sweep_done "array $jid still queued after 300 s: $("$SSPOSE" sweep status "$D" | tr '\n' '|')"
  fi
else
  t_fail slurm_sweep_submit "$sub"
fi
cd "$REPO" || exit 1
stop_daemons
left=0
for f in "$SL"/slurmctld.pid "$SL"/slurmd.pid; do [ -e "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && left=1; done
if [ $left -eq 0 ]; then t_ok slurm_daemons_stopped; else t_fail slurm_daemons_stopped "a daemon is still running"; fi
t_end
