#!/usr/bin/env bash
# CPU suite: proves the CUDA backend's objects were compiled (for sm_80 and
# sm_90) and linked into bin/sspose, that the GPU suite builds and skips
# visibly on a machine without a GPU, and that the GPU benchmark and its
# PyTorch peer stop with one clear line there. The ops themselves are checked
# against the CPU backend by tests/test_gpu_*.c under `make test-gpu`.
. tests/lib.sh
BUILD=${SSPOSE_BUILD:-build}
PY=${PYTHON:-/usr/bin/python3}

# The PyTorch peer of bench/gpu_step needs no CUDA build to be checked.
if "$PY" -c 'import sys, torch; sys.exit(0 if not torch.cuda.is_available() else 1)' 2>/dev/null; then
  t_bad_input gpu_step_torch_without_gpu_one_line 'gpu_step_torch: error: .*sees no CUDA device' \
    "$PY" bench/gpu_step_torch.py --batch 1 --input 64
else
  t_skip gpu_step_torch_without_gpu_one_line "PyTorch is missing or sees a GPU"
fi

if [ ! -f "$BUILD/core/cuda_backend.o" ]; then
  for t in cuda_version_lists_cuda cuda_objects_have_sm80_sm90 cuda_libraries_linked gpu_suite_skips_without_gpu \
           gpu_step_without_gpu_one_line; do
    t_skip "$t" "sspose was built without CUDA (no nvcc, or make CUDA=0)"
  done
  t_end
fi

out=$("$SSPOSE" --version 2>&1)
if echo "$out" | grep -qE '^backends: .*\bcuda\b'; then t_ok cuda_version_lists_cuda
else t_fail cuda_version_lists_cuda "--version printed: $(echo "$out" | tr '\n' '|')"; fi

# Each .cu object carries a fatbin with SASS for both architectures we target,
# and the kernels and cuDNN calls ended up in the library.
missing=""
for o in "$BUILD"/core/cuda_*.o "$BUILD"/loss/kernels_cuda.o; do
  [ -f "$o" ] || { missing="$missing $(basename "$o"):absent"; continue; }
  for a in sm_80 sm_90; do strings -a "$o" | grep -q "$a" || missing="$missing $(basename "$o"):$a"; done
done
syms=$(nm "$BUILD/libsspose.a" 2>/dev/null)
for s in ' T core_cuda_backend_create' ' T core_cuda_set_math' ' [DR] loss_kernels_cuda' 'k_pool_fwd' \
         'k_mask_bias_partial' 'k_sumsq_partial' 'k_loss_kl' ' U cudnnConvolutionBackwardFilter' \
         ' U cudnnFindConvolutionForwardAlgorithmEx' ' U cudnnFindConvolutionBackwardDataAlgorithmEx' \
         ' U cudnnGetConvolutionBackwardFilterAlgorithmMaxCount' ' U cudaMallocAsync'; do
  echo "$syms" | grep -q -- "$s" || missing="$missing symbol:'$s'"
done
if [ -z "$missing" ]; then t_ok cuda_objects_have_sm80_sm90
else t_fail cuda_objects_have_sm80_sm90 "missing:$missing"; fi

# The backend uses cuDNN and the runtime (NCCL and cuBLAS are linked as
# needed by their users, so --as-needed may drop them here).
libs=$(ldd "$SSPOSE" 2>/dev/null)
nolib=""
for l in libcudnn libcudart; do echo "$libs" | grep -q "$l\.so" || nolib="$nolib $l"; done
if [ -z "$nolib" ]; then t_ok cuda_libraries_linked
else t_fail cuda_libraries_linked "bin/sspose does not link:$nolib"; fi

# The GPU suite programs: on a GPU-less machine every test must report
# "skipped: no GPU" and each program must exit 0 (so make test-gpu is honest
# about what it did not run).
have_gpu=0
bad=""
for g in "$BUILD"/tests/test_gpu_*; do
  [ -x "$g" ] || continue
  log=$T_TMP/$(basename "$g").log
  "$g" >"$log" 2>&1; rc=$?
  n_skip=$(grep -c '^skip - .*: skipped: no GPU$' "$log")
  n_other=$(grep -cE '^(ok|FAIL) - ' "$log")
  if [ "$n_other" -gt 0 ] && [ "$n_skip" -eq 0 ]; then have_gpu=1
  elif ! { [ $rc -eq 0 ] && [ "$n_skip" -ge 1 ] && [ "$n_other" -eq 0 ]; }; then
    bad="$bad $(basename "$g"): rc=$rc, $n_skip skips, $n_other ok/FAIL: $(head -c 200 "$log" | tr '\n' '|');"
  fi
done
if [ ! -x "$BUILD/tests/test_gpu_ops" ]; then t_fail gpu_suite_skips_without_gpu "$BUILD/tests/test_gpu_ops was not built"
elif [ $have_gpu = 1 ]; then t_skip gpu_suite_skips_without_gpu "a GPU is present: run 'make test-gpu' for the real checks"
elif [ -n "$bad" ]; then t_fail gpu_suite_skips_without_gpu "$bad"
else t_ok gpu_suite_skips_without_gpu; fi

# The benchmark exists once `make bench` has run (it needs the model).
if [ ! -x "$BUILD/bench/gpu_step" ]; then
  t_skip gpu_step_without_gpu_one_line "$BUILD/bench/gpu_step not built (make bench)"
elif [ $have_gpu = 1 ]; then
  t_skip gpu_step_without_gpu_one_line "a GPU is present"
else
  t_bad_input gpu_step_without_gpu_one_line 'sspose: error: gpu_step: no GPU visible' "$BUILD/bench/gpu_step"
fi
# Flags are checked before the GPU is looked for.
if [ -x "$BUILD/bench/gpu_step" ]; then
  t_bad_input gpu_step_bad_precision_one_line 'sspose: error: gpu_step: --torch-precision must be bf16, tf32 or fp32' \
    "$BUILD/bench/gpu_step" --torch-precision fp16
fi
t_end
