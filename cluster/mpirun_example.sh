#!/usr/bin/env bash
# Data-parallel training with plain Open MPI, outside SLURM.
#
#   cluster/mpirun_example.sh NP CONFIG RUNDIR [--set k=v ...]
#   HOSTFILE=hosts cluster/mpirun_example.sh 16 configs/paper.ini runs/paper
#
# One rank per GPU (each rank takes GPU local_rank % GPUs, local rank from a
# shared-memory split of MPI_COMM_WORLD), or one rank per CPU socket for the
# CPU backend. To preempt cleanly, send SIGUSR1 to mpirun (it forwards it to
# every rank): all ranks finish the step, a checkpoint is written, exit 0.
# (SIGTERM to mpirun makes Open MPI kill the ranks after a short grace time;
# send SIGTERM to the ranks themselves, as SLURM does, or use SIGUSR1.)
# Rerun the same command to continue: --resume starts fresh when RUNDIR has
# no checkpoint yet.
set -euo pipefail
NP=${1:?usage: $0 NP CONFIG RUNDIR [--set k=v ...]}
CONFIG=${2:?usage: $0 NP CONFIG RUNDIR [--set k=v ...]}
RUNDIR=${3:?usage: $0 NP CONFIG RUNDIR [--set k=v ...]}
shift 3
SSPOSE=${SSPOSE:-$(cd "$(dirname "$0")/.." && pwd)/bin/sspose}
ARGS=(-np "$NP" --bind-to none)
[ -n "${HOSTFILE:-}" ] && ARGS+=(--hostfile "$HOSTFILE")
# Threads per rank: sspose splits a node's cores among its ranks unless
# OMP_NUM_THREADS is set; pass it (and NCCL_DEBUG) on when set here.
[ -n "${OMP_NUM_THREADS:-}" ] && ARGS+=(-x OMP_NUM_THREADS)
[ -n "${NCCL_DEBUG:-}" ] && ARGS+=(-x NCCL_DEBUG)
exec mpirun "${ARGS[@]}" "$SSPOSE" train --config "$CONFIG" --out "$RUNDIR" --resume "$@"
