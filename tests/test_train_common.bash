# Shared by tests/test_train_*.sh (sourced; not a test itself).
# The fixture is the real pipeline: `sspose synth` -> `sspose data` at a tiny
# input (64x64 crops, 8x8 grid), and configs/tiny.ini with two stages so
# every training run here takes seconds on a loaded 2-core machine.
. tests/lib.sh
PY=${PYTHON:-/usr/bin/python3}
# One BLAS/OpenMP thread per rank: on 2 shared cores, more threads only spin.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN="mpirun --oversubscribe --bind-to none"
SHARDS=$T_TMP/shards/train-*.h5
# lr: the loss is a sum over cells (SPEC section 4), so steps must be small.
TR_SETS=(--set model.input=64 --set model.stages=2 --set train.lr=1e-5 --set train.warmup=0 --set train.batch=2
         --set data.threads=1 --set train.log_every=5 --set comm.timeout_s=30)

tr_fixture() {
  [ -d "$T_TMP/shards" ] && return 0
  mkdir -p "$T_TMP/shards"
  "$SSPOSE" synth --out "$T_TMP/coco" --images 16 --seed 3 >/dev/null &&
  "$SSPOSE" data --config configs/tiny.ini --set model.input=64 --ann "$T_TMP/coco/annotations.json" \
    --images "$T_TMP/coco/images" --out "$T_TMP/shards/train" --threads 1 --samples-per-shard 16 >/dev/null
}

# tr_train RUNDIR [args...]: one process, no mpirun.
tr_train() {
  local out=$1; shift
  "$SSPOSE" train --config configs/tiny.ini --set data.train="$SHARDS" "${TR_SETS[@]}" --out "$out" "$@"
}

# tr_mpi NP RUNDIR [args...]
tr_mpi() {
  local np=$1 out=$2; shift 2
  $MPIRUN -np "$np" "$SSPOSE" train --config configs/tiny.ini --set data.train="$SHARDS" "${TR_SETS[@]}" \
    --out "$out" "$@"
}

# tr_mpi_bg LOG NP RUNDIR [args...]: the same in the background; TR_PID is mpirun's own pid.
tr_mpi_bg() {
  local log=$1 np=$2 out=$3; shift 3
  $MPIRUN -np "$np" "$SSPOSE" train --config configs/tiny.ini --set data.train="$SHARDS" "${TR_SETS[@]}" \
    --out "$out" "$@" >"$log" 2>&1 &
  TR_PID=$!
}

# tr_compare A.h5 B.h5 TOL: parameters and optimizer state (momentum, or Adam's
# exp_avg and exp_avg_sq) of two checkpoints, read with h5py.
# TOL 0 means bit-identical; otherwise EVERY tensor on its own must have a relative
# difference |a-b|_2 / |b|_2 <= TOL (a tensor that is zero in B must be zero in A;
# a NaN anywhere fails). No global norm: one large tensor (a last-stage bias)
# would hide a 30% error in a small one.
# Prints the tensor count, each group's worst tensor and how many exceed TOL; exit 0 when within TOL.
tr_compare() {
  "$PY" - "$1" "$2" "$3" <<'EOF'
import sys, h5py, numpy as np
a, b, tol = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r"), float(sys.argv[3])
out, ok, identical, ntens = [], True, True, 0
assert sorted(a["optim"]) == sorted(b["optim"]), (sorted(a["optim"]), sorted(b["optim"]))
for grp in ["params"] + ["optim/" + s for s in sorted(a["optim"])]:
    names = []
    a[grp].visit(lambda n: names.append(n) if isinstance(a[grp + "/" + n], h5py.Dataset) else None)
    assert names, "no tensors in " + grp
    worst, worst_name, over = 0.0, "-", []
    for n in names:
        if grp + "/" + n not in b: print("missing in", sys.argv[2] + ":", grp + "/" + n); sys.exit(1)
        x, y = a[grp + "/" + n][...], b[grp + "/" + n][...]
        if x.shape != y.shape: print("shape differs:", n); sys.exit(1)
        identical &= x.tobytes() == y.tobytes()
        x, y = x.ravel().astype(np.float64), y.ravel().astype(np.float64)
        num, den = np.linalg.norm(x - y), np.linalg.norm(y)
        d = num / den if den > 0 else (0.0 if num == 0 else np.inf)
        if not d == d: d = np.inf  # a NaN on either side
        if d > worst or worst_name == "-": worst, worst_name = d, n
        if d > tol: over.append(n)
    ok &= not over
    ntens += len(names)
    out.append(f"{grp} worst {worst:.3g} ({worst_name}), {len(over)} over {tol:g}" + (f" e.g. {over[0]}" if over else ""))
print(f"{ntens} tensors, per-tensor relative difference: " + "; ".join(out) + f"; bit-identical: {identical}")
sys.exit(0 if (identical if tol == 0 else ok) else 1)
EOF
}

# tr_wait_file PATH SECONDS: waits until PATH exists.
tr_wait_file() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do [ -e "$1" ] && return 0; sleep 0.1; done
  return 1
}

# tr_rank_pid MPIRUN_PID RANK: pid of that rank (children of mpirun carry OMPI_COMM_WORLD_RANK).
tr_rank_pid() {
  local p
  for p in $(pgrep -P "$1"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then echo "$p"; return 0; fi
  done
  return 1
}

# tr_ckpt RUNDIR STEP: the checkpoint path of a step.
tr_ckpt() { printf '%s/ckpt-%09d.h5' "$1" "$2"; }
