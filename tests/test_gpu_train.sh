#!/usr/bin/env bash
# GPU suite (make test-gpu): `sspose train` on the CUDA backend against the CPU
# backend on the same shards, and exact resume on the GPU.
#  - 3 steps on cuda and on cpu from the same initial weights (same seed) give
#    the same weights and momentum within 1e-4 relative (fp32 both sides, TF32
#    off; cuDNN and the BLAS sum in different orders, nothing more).
#  - the same with AdamW (cosine, clipping, loss.normalize = cells) within 1e-3
#    (Adam's first steps move each weight by about lr*sign(g), so a gradient
#    element near zero may flip its step between devices);
#  - 3 steps straight vs 2 + --resume + 1 on the GPU are bit-identical
#    (deterministic cuDNN algorithms and loss reductions).
# Without a usable GPU it reports one visible skip.
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

# Exact resume on the GPU: stop after 2 steps (its final checkpoint), resume to 3.
if tr_train "$T_TMP/res" "${G[@]}" --set comm.device=cuda --set train.steps=2 >"$T_TMP/res1.log" 2>&1 &&
   tr_train "$T_TMP/res" "${G[@]}" --set comm.device=cuda --resume >"$T_TMP/res2.log" 2>&1; then
  if msg=$(tr_compare "$(tr_ckpt "$T_TMP/res" 3)" "$(tr_ckpt "$T_TMP/gpu" 3)" 0); then
    t_ok "gpu_train_resume_bit_identical ($msg)"
  else
    t_fail gpu_train_resume_bit_identical "$msg"
  fi
else
  t_fail gpu_train_resume_bit_identical "run failed: $(tail -n 3 "$T_TMP/res2.log" "$T_TMP/res1.log" | tr '\n' '|')"
fi
t_end
