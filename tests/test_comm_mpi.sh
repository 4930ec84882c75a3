#!/usr/bin/env bash
# comm/ under mpirun: the collective tests with 2 and 3 ranks, and the fault
# paths: a rank that dies (CORE_DIE), stalls or is killed must end the whole
# job within seconds, with the rank named, while the others wait in an all-reduce.
. tests/lib.sh
BIN=${SSPOSE_BUILD:-build}/tests/test_comm_collectives
if ! command -v mpirun >/dev/null; then t_skip comm_mpi "no mpirun"; t_end; fi
t_mpi_program collectives "$BIN" 7 2 3

t_mpi_fault fault_die "$BIN" die 1 15 '\[rank 1\] sspose: error: injected failure'
# the stalled rank 2 is waited for by ranks 0 and 1: whichever watchdog fires first names itself
t_mpi_fault fault_stall "$BIN" stall 2 20 '\[rank [01]\] sspose: error: gradient all-reduce: the other ranks did not join within 2 s'
t_mpi_fault fault_kill "$BIN" kill 1 15 'process rank 1 .*(signal 9|Killed)'

# A fatal error in a single process (no mpirun) stays one line, exit 1.
t_bad_input singleton_die 'sspose: error: injected failure' "$BIN" die 0
t_end
