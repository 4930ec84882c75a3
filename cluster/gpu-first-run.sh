#!/usr/bin/env bash
# The first run of sspose on a lent GPU (about 9 minutes on one H100), from the repository root:
#   bash cluster/gpu-first-run.sh      (logs go to $OUT, a fresh temporary folder unless set)
# Ordered by value, so a cut-short run still says the most important things first.
# (This is ../shared/gpu/first-run.sh updated for bench/gpu_step's flags: one algorithm
# policy, so no --deterministic; alternating rounds instead of --iters.)
set -u
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.sm,memory.total,driver_version --format=csv
{ command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH; make -j16 all bench build/tests/test_gpu_ops build/tests/test_gpu_loss build/tests/test_gpu_model >"$OUT/build.log" 2>&1; } || { echo BUILD FAILED; tail -20 "$OUT/build.log"; }
bin/sspose --version

# 1. GPU-vs-CPU suites: ops (conv shapes incl. the paper's at batch 10, tf32 bounds, algorithm
#    record/reuse, misaligned, upload ordering), loss, model (+ 1-rank NCCL with stream snapshots),
#    train + resume (+ two GPUs when present). Run directly, each under its own timeout.
for t in ops loss model; do
  timeout 200 build/tests/test_gpu_$t >"$OUT/test_gpu_$t.log" 2>&1
  echo "test_gpu_$t rc=$? $(grep -c '^ok - ' "$OUT/test_gpu_$t.log") ok"; grep -E '^(FAIL|skip) - ' "$OUT/test_gpu_$t.log"
done
SSPOSE_BIN=$PWD/bin/sspose PYTHON=/usr/bin/python3 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  timeout 200 bash tests/test_gpu_train.sh >"$OUT/test_gpu_train.log" 2>&1
echo "test_gpu_train rc=$?"; grep -E '^(ok|FAIL|skip) - ' "$OUT/test_gpu_train.log"

# 2. step benchmark, paper net, batch 10 at 368, training's algorithm policy: TF32 vs fp32
export SSPOSE_CUDNN_LOG=1
for tf in 1 0; do
  timeout 150 build/bench/gpu_step --no-torch --no-train --batch 10 --tf32 $tf --warmup 3 --rounds 3 --round-s 1 \
    >"$OUT/bench_tf${tf}.log" 2>&1
  echo "tf32=$tf rc=$?: $(grep -E '^sspose:|error' "$OUT/bench_tf${tf}.log")"
done
grep -h 'cudnn ' "$OUT"/bench_tf1.log | sort | uniq -c | sort -rn | head -60 >"$OUT/algos_tf1.txt"
unset SSPOSE_CUDNN_LOG

# 3. the PyTorch peer (bf16 autocast, channels_last) beside sspose (TF32), alternating rounds, and the
#    trainer's own samples/s; only if a CUDA build of torch is installed (the device has no network)
if /usr/bin/python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  timeout 200 build/bench/gpu_step --tf32 1 --torch-precision bf16 --warmup 3 --rounds 5 --round-s 1 \
    >"$OUT/bench_torch.log" 2>&1
  echo "bench vs torch rc=$?"; grep -E '^(sspose|pytorch|ratio|warning)|error' "$OUT/bench_torch.log"
else
  echo "no CUDA PyTorch: peer not run"
fi

# 4. end-to-end trainer throughput on synthetic 368x368 shards (SGD, loader, checkpoint), and the
#    host waits inside steps (must be 0 after the first: docs/gpu.md, "Host waits in a training step")
T=$(mktemp -d)
bin/sspose synth --out "$T/coco" --images 24 --seed 3 >/dev/null &&
bin/sspose data --config configs/paper.ini --ann "$T/coco/annotations.json" --images "$T/coco/images" \
  --out "$T/train" --threads 8 >/dev/null &&
for tf in 1 0; do
  SSPOSE_TRACE_WAITS=1 timeout 150 bin/sspose train --config configs/paper.ini --out "$T/run$tf" \
    --set data.train="$T/train-*.h5" --set comm.device=cuda --set comm.tf32=$tf --set train.steps=20 \
    --set train.log_every=5 --set train.checkpoint_every=0 --set data.threads=8 2>&1 |
    grep -E 'step 20/|step 15/|error|host waits' | tail -3
  echo "tf32=$tf: $(grep -c ' algo=' "$T/run$tf/cudnn_algos.txt" 2>/dev/null) cuDNN choices recorded in cudnn_algos.txt"
done
nvidia-smi --query-gpu=clocks.sm,temperature.gpu,power.draw --format=csv

# 5. memcheck on the smallest GPU program, if time is left
timeout 120 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 99 \
  build/tests/test_gpu_loss 2>&1 | tail -4
