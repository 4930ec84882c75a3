# sspose build: one binary, bin/sspose, plus test and benchmark programs.
# Dependencies are found by probing (pkg-config, mpicc, nvcc), never by asking dpkg.
#   make            build bin/sspose (GPU backend included when CUDA is found)
#   make deps       install the Debian/PyPI packages everything needs (idempotent)
#   make test       build and run every test; ends with "N passed, N failed"
#   make test SANITIZE=1   the same under AddressSanitizer + UBSan (+ leak check)
#   make test-gpu   the GPU suite (needs a GPU)
#   make test-gpu-memcheck   the GPU suite's programs under compute-sanitizer memcheck
#   make bench      build the benchmark programs under bench/
#   make demo       the main job on built-in defaults: synth -> data -> train (2 ranks) -> infer -> eval
#   make CUDA=0     force a CPU-only build
#   make DNNL=0     CPU convolutions through im2col + OpenBLAS only (no oneDNN)

CC      ?= gcc
NVCC    ?= $(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard /usr/local/cuda/bin/nvcc))
BUILD   ?= build
PYTHON  ?= /usr/bin/python3

MODULES := core model loss dataio eval comm trainer report sweep

# OpenBLAS: prefer its OpenMP build, so that sgemm and our OpenMP loops share one thread
# pool (the pthread build's threads and libgomp's spin-waiting workers fight over the cores).
BLAS_OMP_DIR := $(firstword $(wildcard /usr/lib/*/openblas-openmp))
ifneq ($(BLAS_OMP_DIR),)
  BLAS_CFLAGS := $(shell PKG_CONFIG_PATH=$(BLAS_OMP_DIR)/pkgconfig pkg-config --cflags openblas 2>/dev/null)
  BLAS_LIBS   := -L$(BLAS_OMP_DIR) -Wl,-rpath,$(BLAS_OMP_DIR) -lopenblas
else
  BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
  BLAS_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null)
endif
# oneDNN (Debian's libdnnl-dev, OpenMP runtime) for CPU convolutions: pkg-config when it
# ships a .pc, else the header and library files; DNNL=0 builds without it.
DNNL ?= 1
ifeq ($(DNNL),1)
  ifneq ($(shell pkg-config --exists dnnl 2>/dev/null && echo y),)
    DNNL_CFLAGS := -DSSPOSE_DNNL=1 $(shell pkg-config --cflags dnnl)
    DNNL_LIBS   := $(shell pkg-config --libs dnnl)
  else ifneq ($(and $(wildcard /usr/include/oneapi/dnnl/dnnl.h),$(wildcard /usr/lib/*/libdnnl.so /usr/lib/libdnnl.so)),)
    DNNL_CFLAGS := -DSSPOSE_DNNL=1
    DNNL_LIBS   := -ldnnl
  endif
endif
PKGS := hdf5-serial libcjson cairo libjpeg libpng zlib
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(BLAS_CFLAGS) $(DNNL_CFLAGS)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) $(BLAS_LIBS) $(DNNL_LIBS)
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null || pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS   := $(shell mpicc --showme:link 2>/dev/null || pkg-config --libs ompi-c 2>/dev/null)

# 'make deps' must work on a bare machine, so the library checks skip it.
ifeq ($(filter deps clean,$(MAKECMDGOALS)),)
ifeq ($(strip $(PKG_LIBS)),)
  $(error missing libraries (pkg-config found none of: $(PKGS)); run 'make deps')
endif
ifeq ($(strip $(MPI_LIBS)),)
  $(error MPI not found (no mpicc, no pkg-config ompi-c); run 'make deps')
endif
endif

CFLAGS  := -std=c11 -O2 -g -fopenmp -D_GNU_SOURCE -I. -MMD -MP \
           -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
           $(PKG_CFLAGS) $(MPI_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := -fopenmp $(EXTRA_LDFLAGS)
LDLIBS  := $(PKG_LIBS) $(MPI_LIBS) -lm -lpthread

ifeq ($(SANITIZE),1)
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
  BUILD   := build-san
endif

# CUDA: compiled in when nvcc is found (CUDA=0 forces CPU-only).
CUDA ?= $(if $(NVCC),1,0)
ifeq ($(CUDA),1)
  CUDA_HOME   := $(patsubst %/bin/nvcc,%,$(NVCC))
  CU_SRC      := $(foreach m,$(MODULES),$(wildcard $(m)/*.cu))
  CU_OBJ      := $(CU_SRC:%.cu=$(BUILD)/%.o)
  NVCCFLAGS   ?= -O2 -g -std=c++17 -I. -I$(CUDA_HOME)/include $(MPI_CFLAGS) \
                 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
                 -gencode arch=compute_90,code=compute_90 \
                 -Xcompiler -fPIC,-Wall -MMD -MP
  CFLAGS      += -DSSPOSE_CUDA=1 -I$(CUDA_HOME)/include
  LDLIBS      += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudnn -lnccl -lcudart -lcublas -lstdc++
else
  CU_OBJ :=
endif

LIB_SRC := $(foreach m,$(MODULES),$(wildcard $(m)/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CU_OBJ)
LIB     := $(BUILD)/libsspose.a
CLI_SRC := $(wildcard launch/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)

TEST_SRC := $(wildcard tests/test_*.c) $(wildcard tests/tool_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

BIN := bin/sspose$(if $(filter 1,$(SANITIZE)),-san)

.PHONY: all deps test test-gpu test-gpu-memcheck bench clean
all: $(BIN)

$(BIN): $(CLI_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

# Test-only headers (tests/*.h) are tracked through the programs' .d files, included below.
$(BUILD)/tests/%: tests/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

bench: $(BIN) $(BENCH_BIN)

# The suite also checks the benchmark programs' bad-input paths, so it builds them.
test: $(BIN) $(TEST_BIN) $(BENCH_BIN)
	@SSPOSE_BIN=$(abspath $(BIN)) SSPOSE_BUILD=$(abspath $(BUILD)) PYTHON=$(PYTHON) \
	  SANITIZE=$(SANITIZE) bash tests/run_tests.sh

test-gpu: $(BIN) $(TEST_BIN)
	@SSPOSE_BIN=$(abspath $(BIN)) SSPOSE_BUILD=$(abspath $(BUILD)) PYTHON=$(PYTHON) \
	  SSPOSE_GPU_TESTS=1 bash tests/run_tests.sh gpu

# Every GPU test program under compute-sanitizer memcheck. API-call errors are
# not reported (every call is checked in the code, and cuDNN's search expects
# some of its own allocations to fail); child processes the tests spawn to
# provoke fatal errors run unchecked. Leak checking is opt-in
# (MEMCHECK_FLAGS="--leak-check full") since cuDNN may keep allocations of its own.
SANITIZER ?= $(firstword $(shell command -v compute-sanitizer 2>/dev/null) \
               $(wildcard $(CUDA_HOME)/bin/compute-sanitizer $(CUDA_HOME)/compute-sanitizer/compute-sanitizer))
MEMCHECK_FLAGS ?=
test-gpu-memcheck: $(BIN) $(TEST_BIN)
	@test -n "$(SANITIZER)" || { echo "make: compute-sanitizer not found (install the CUDA toolkit's sanitizer or set SANITIZER=)" >&2; exit 1; }
	@set -e; for t in $(filter $(BUILD)/tests/test_gpu_%,$(TEST_BIN)); do \
	  echo "== memcheck $$t"; \
	  $(SANITIZER) --tool memcheck --report-api-errors no --target-processes application-only \
	    --error-exitcode 99 $(MEMCHECK_FLAGS) $$t; \
	done

demo: $(BIN)
	bash cluster/demo.sh

deps:
	bash cluster/install_deps.sh

clean:
	rm -rf build build-san bin

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:=.d) $(BENCH_BIN:=.d)
