#!/usr/bin/env bash
# GPU suite (make test-gpu): `sspose train` on the CUDA backend against the CPU
# backend on the same shards, and exact resume on the GPU.
#  - 3 steps on cuda and on cpu from the same initial weights (same seed) give
#    the same weights and momentum within 1e-4 relative per tensor (fp32, TF32
#    off; cuDNN and the BLAS sum in different orders, nothing more).
#  - the same with AdamW (cosine, clipping, loss.normalize = cells) within 1e-3
#    (Adam's first steps move each weight by about lr*sign(g), so a gradient
#    element near zero may flip its step between devices);
#  - 3 steps straight vs 2 + --resume + 1 on the GPU are bit-identical
#    (deterministic cuDNN algorithms, recorded in RUNDIR/cudnn_algos.txt and
#    reused on resume, and deterministic loss reductions); runs compared bit
#    for bit start from the first run's record, since separate timed searches
#    may choose differently.
#  - no host wait for the device inside any step after the first (SSPOSE_TRACE_WAITS);
#  - with two GPUs: 2 ranks with the overlapped all-reduce on and off give
#    bit-identical checkpoints, within 1e-4 per tensor of a 2-rank CPU run
#    (skipped visibly with fewer GPUs).
# Every comparison bounds each tensor on its own (tr_compare). Without a
# usable GPU it reports one visible skip.
. tests/test_train_common.bash
tr_fixture || { t_fail gpu_train_fixture "synth/data failed"; t_end; }
G=(--set train.steps=3 --set train.checkpoint_every=0 --set comm.tf32=0)

if ! tr_train "$T_TMP/gpu" "${G[@]}" --set comm.device=cuda >"$T_TMP/gpu.log" 2>&1; then
  if grep -q 'no usable GPU' "$T_TMP/gpu.log"; then
    t_skip gpu_train "skipped: no GPU ($(grep -o 'no usable GPU.*' "$T_TMP/gpu.log" | head -n 1))"
    t_end
  fi
  t_fail gpu_train_runs "exit non-zero: $(tail -n 3 "$T_TMP/gpu.log" | tr '\n' '|')"
  t_end
fi
t_ok gpu_train_runs

if tr_train "$T_TMP/cpu" "${G[@]}" --set comm.device=cpu >"$T_TMP/cpu.log" 2>&1; then
  if msg=$(tr_compare "$(tr_ckpt "$T_TMP/gpu" 3)" "$(tr_ckpt "$T_TMP/cpu" 3)" 1e-4); then
    t_ok "gpu_train_matches_cpu ($msg)"
  else
    t_fail gpu_train_matches_cpu "$msg"
  fi
else
  t_fail gpu_train_matches_cpu "cpu run failed: $(tail -n 3 "$T_TMP/cpu.log" | tr '\n' '|')"
fi

A=(--set train.optimizer=adamw --set train.lr=1e-3 --set train.weight_decay=1e-4 --set train.schedule=cosine
   --set train.clip_norm=50 --set loss.normalize=cells)
if tr_train "$T_TMP/gpu-adamw" "${G[@]}" "${A[@]}" --set comm.device=cuda >"$T_TMP/gpu-adamw.log" 2>&1 &&
   tr_train "$T_TMP/cpu-adamw" "${G[@]}" "${A[@]}" --set comm.device=cpu >"$T_TMP/cpu-adamw.log" 2>&1; then
  if msg=$(tr_compare "$(tr_ckpt "$T_TMP/gpu-adamw" 3)" "$(tr_ckpt "$T_TMP/cpu-adamw" 3)" 1e-3); then
    t_ok "gpu_train_adamw_matches_cpu ($msg)"
  else
    t_fail gpu_train_adamw_matches_cpu "$msg"
  fi
else
  t_fail gpu_train_adamw_matches_cpu "run failed: $(tail -n 3 "$T_TMP/gpu-adamw.log" "$T_TMP/cpu-adamw.log" | tr '\n' '|')"
fi

# No host wait for the device inside a step after the first (docs/gpu.md, "Host waits
# in a training step"): 8 steps, sync points every 4th, AdamW with clipping.
if SSPOSE_TRACE_WAITS=1 tr_train "$T_TMP/gpu-waits" "${G[@]}" "${A[@]}" --set comm.device=cuda --set train.steps=9 \
     --set train.log_every=4 >"$T_TMP/gpu-waits.log" 2>&1; then
  if grep -qE 'host waits for the device inside steps: [0-9]+ in the first, 0 in the 8 after it' "$T_TMP/gpu-waits.log"; then
    t_ok "gpu_train_no_host_waits ($(grep -o '[0-9]* in the first' "$T_TMP/gpu-waits.log"))"
  else
    t_fail gpu_train_no_host_waits "$(grep 'host waits' "$T_TMP/gpu-waits.log" || echo 'no trace line')"
  fi
else
  t_fail gpu_train_no_host_waits "run failed: $(tail -n 3 "$T_TMP/gpu-waits.log" | tr '\n' '|')"
fi

# Exact resume on the GPU: stop after 2 steps (its final checkpoint), resume to 3.
# Separate runs time their cuDNN algorithms separately and may choose others;
# the first run's record, copied in, pins the same choices.
mkdir -p "$T_TMP/res" && cp "$T_TMP/gpu/cudnn_algos.txt" "$T_TMP/res/" 2>/dev/null
if tr_train "$T_TMP/res" "${G[@]}" --set comm.device=cuda --set train.steps=2 >"$T_TMP/res1.log" 2>&1 &&
   tr_train "$T_TMP/res" "${G[@]}" --set comm.device=cuda --resume >"$T_TMP/res2.log" 2>&1; then
  if msg=$(tr_compare "$(tr_ckpt "$T_TMP/res" 3)" "$(tr_ckpt "$T_TMP/gpu" 3)" 0); then
    t_ok "gpu_train_resume_bit_identical ($msg)"
  else
    t_fail gpu_train_resume_bit_identical "$msg"
  fi
  # The algorithm record: written by the first run, loaded (not searched again) by the resume.
  n=$(grep -c ' algo=' "$T_TMP/res/cudnn_algos.txt" 2>/dev/null)
  if [ "${n:-0}" -ge 3 ] && grep -q "cuDNN algorithms: $n recorded choice(s)" "$T_TMP/res2.log" &&
     cmp -s "$T_TMP/res/cudnn_algos.txt" "$T_TMP/gpu/cudnn_algos.txt"; then
    t_ok "gpu_train_algorithms_recorded_and_reused ($n choices)"
  else
    t_fail gpu_train_algorithms_recorded_and_reused "record: ${n:-none} lines; resume log: $(grep -i cudnn "$T_TMP/res2.log" | head -n 2 | tr '\n' '|')"
  fi
else
  t_fail gpu_train_resume_bit_identical "run failed: $(tail -n 3 "$T_TMP/res2.log" "$T_TMP/res1.log" | tr '\n' '|')"
fi

# GPUs this process may use: CUDA_VISIBLE_DEVICES narrows what nvidia-smi lists.
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
if [ -n "${CUDA_VISIBLE_DEVICES+x}" ]; then
  nvis=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .)
  [ "$nvis" -lt "$ngpu" ] && ngpu=$nvis
fi
if [ "$ngpu" -lt 2 ]; then
  t_skip gpu_train_two_gpus "skipped: $ngpu GPU(s) visible, the two-rank NCCL test needs 2"
  t_end
fi
for ov in 1 0; do
  mkdir -p "$T_TMP/g2_$ov" && cp "$T_TMP/gpu/cudnn_algos.txt" "$T_TMP/g2_$ov/" 2>/dev/null
  tr_mpi 2 "$T_TMP/g2_$ov" "${G[@]}" --set comm.device=cuda --set comm.overlap=$ov >"$T_TMP/g2_$ov.log" 2>&1 ||
    { t_fail gpu_train_two_gpus "2-rank GPU run (overlap $ov) failed: $(tail -n 3 "$T_TMP/g2_$ov.log" | tr '\n' '|')"; t_end; }
done
if msg=$(tr_compare "$(tr_ckpt "$T_TMP/g2_1" 3)" "$(tr_ckpt "$T_TMP/g2_0" 3)" 0); then
  t_ok "gpu_train_two_gpus_overlap_bit_identical ($msg)"
else
  t_fail gpu_train_two_gpus_overlap_bit_identical "$msg"
fi
if tr_mpi 2 "$T_TMP/c2" "${G[@]}" --set comm.device=cpu >"$T_TMP/c2.log" 2>&1; then
  if msg=$(tr_compare "$(tr_ckpt "$T_TMP/g2_1" 3)" "$(tr_ckpt "$T_TMP/c2" 3)" 1e-4); then
    t_ok "gpu_train_two_gpus_match_mpi_cpu ($msg)"
  else
    t_fail gpu_train_two_gpus_match_mpi_cpu "$msg"
  fi
else
  t_fail gpu_train_two_gpus_match_mpi_cpu "2-rank CPU run failed: $(tail -n 3 "$T_TMP/c2.log" | tr '\n' '|')"
fi
t_end
