#!/usr/bin/env bash
# CPU suite: proves the CUDA backend's objects were compiled (for sm_80 and
# sm_90) and linked into bin/sspose, and that the GPU suite builds and skips
# visibly on a machine without a GPU. The ops themselves are checked against
# the CPU backend by tests/test_gpu_ops.c under `make test-gpu`.
. tests/lib.sh
BUILD=${SSPOSE_BUILD:-build}

if [ ! -f "$BUILD/core/cuda_backend.o" ]; then
  for t in cuda_version_lists_cuda cuda_objects_have_sm80_sm90 cuda_libraries_linked gpu_suite_skips_without_gpu; do
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
for o in "$BUILD"/core/cuda_*.o; do
  for a in sm_80 sm_90; do strings -a "$o" | grep -q "$a" || missing="$missing $(basename "$o"):$a"; done
done
syms=$(nm "$BUILD/libsspose.a" 2>/dev/null)
for s in ' T core_cuda_backend_create' ' T core_cuda_set_math' 'k_pool_fwd' 'k_mask_bias_partial' 'k_sumsq_partial' \
         ' U cudnnConvolutionBackwardFilter' ' U cudnnFindConvolutionForwardAlgorithm'; do
  echo "$syms" | grep -q -- "$s" || missing="$missing symbol:'$s'"
done
if [ -z "$missing" ]; then t_ok cuda_objects_have_sm80_sm90
else t_fail cuda_objects_have_sm80_sm90 "missing:$missing"; fi

libs=$(ldd "$SSPOSE" 2>/dev/null)
nolib=""
for l in libcudnn libcudart; do echo "$libs" | grep -q "$l\.so" || nolib="$nolib $l"; done
if [ -z "$nolib" ]; then t_ok cuda_libraries_linked
else t_fail cuda_libraries_linked "bin/sspose does not link:$nolib"; fi

# The GPU suite program: on a GPU-less machine every test must report
# "skipped: no GPU" and the program must exit 0 (so make test-gpu is honest
# about what it did not run).
gpu_test="$BUILD/tests/test_gpu_ops"
if [ ! -x "$gpu_test" ]; then
  t_fail gpu_suite_skips_without_gpu "$gpu_test was not built"
else
  log=$T_TMP/gpu_ops.log
  "$gpu_test" >"$log" 2>&1; rc=$?
  n_skip=$(grep -c '^skip - .*: skipped: no GPU$' "$log")
  n_other=$(grep -cE '^(ok|FAIL) - ' "$log")
  if [ "$n_other" -gt 0 ] && [ "$n_skip" -eq 0 ]; then
    t_skip gpu_suite_skips_without_gpu "a GPU is present: run 'make test-gpu' for the real checks"
  elif [ $rc -eq 0 ] && [ "$n_skip" -ge 10 ] && [ "$n_other" -eq 0 ]; then
    t_ok gpu_suite_skips_without_gpu
  else
    t_fail gpu_suite_skips_without_gpu "rc=$rc, $n_skip skip lines, $n_other ok/FAIL lines: $(head -c 300 "$log" | tr '\n' '|')"
  fi
fi
t_end
