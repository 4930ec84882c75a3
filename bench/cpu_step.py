"""bench/cpu_step: forward+backward time of the network on the CPU, sspose against PyTorch
(the same network, tests/torch_ref/net_ref.py, same threads, same machine, same run).

    /usr/bin/python3 bench/cpu_step.py [--threads N] [--iters K] [--full-iters K] [--rounds R]
                                       [--conv auto,gemm,dnnl] [--cases tiny,paper]

Each case alternates sspose and PyTorch R times; a round's ratio compares neighbouring
measurements, so a change in machine load hits both sides. Printed per case: the medians over
rounds of the wall time per step and of the per-round ratios sspose/PyTorch (below 1: sspose is
faster), and the same for process CPU time (all threads), which stays meaningful when other
jobs share the cores (run with OMP_WAIT_POLICY=passive so that waiting threads sleep instead of
spinning). --conv runs sspose once per listed SSPOSE_CPU_CONV mode. Both sides inherit the
environment."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import torch  # noqa: E402
from torch_ref.net_ref import Net, read_config  # noqa: E402

BUILD = os.environ.get("SSPOSE_BUILD", "build")


def torch_step_ms(cfg_text, input_size, batch, threads, iters):
    torch.set_num_threads(threads)
    net = Net(read_config(cfg_text))
    x = torch.rand(batch, 3, input_size, input_size) - 0.5
    times, cpu = [], []
    for it in range(iters + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        outs = net(x)
        obj = sum((t * 1e-3).sum() for o in outs for t in o.values())
        net.zero_grad(set_to_none=False)
        obj.backward()
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return sorted(times[1:])[iters // 2], sorted(cpu[1:])[iters // 2]


def sspose_step_ms(cfg, size, batch, threads, iters, conv):
    env = dict(os.environ, SSPOSE_CPU_CONV=conv)
    out = subprocess.run([os.path.join(BUILD, "bench", "cpu_step"), cfg, str(size), str(batch), str(threads),
                          str(iters)], check=True, capture_output=True, text=True, env=env).stdout
    r = json.loads(out)
    return r["ms"], r["cpu_ms"]


def resolved_config(path):
    with tempfile.TemporaryDirectory() as d:
        ck = os.path.join(d, "ck.h5")
        subprocess.run(["bin/sspose", "init", "--config", path, "--out", ck], check=True, capture_output=True)
        import h5py
        with h5py.File(ck, "r") as f:
            return f.attrs["config"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--full-iters", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--conv", default="auto", help="comma-separated SSPOSE_CPU_CONV modes for sspose")
    ap.add_argument("--cases", default="tiny,paper", help="comma-separated subset of tiny,paper")
    a = ap.parse_args()
    modes = a.conv.split(",")
    cases = [c for c in (("configs/tiny.ini", 128, 1, a.iters), ("configs/paper.ini", 368, 1, a.full_iters))
             if os.path.basename(c[0])[:-4] in a.cases.split(",")]
    print(f"# cpu_step: forward+backward, batch 1, {a.threads} threads, median of iterations after one warm-up, "
          f"median over {a.rounds} alternating rounds; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')}; "
          f"load average {os.getloadavg()[0]:.2f}")
    for cfg, size, batch, iters in cases:
        text = resolved_config(cfg)
        ours = {m: [] for m in modes}
        peer = []
        for _ in range(a.rounds):
            for m in modes:
                ours[m].append(sspose_step_ms(cfg, size, batch, a.threads, iters, m))
            peer.append(torch_step_ms(text, size, batch, a.threads, iters))
        med = statistics.median
        for m in modes:
            wall = [o[0] / p[0] for o, p in zip(ours[m], peer)]
            cpu = [o[1] / p[1] for o, p in zip(ours[m], peer)]
            print(f"{cfg:18s} {size}x{size} sspose[{m}] {med(o[0] for o in ours[m]):8.1f} ms  pytorch "
                  f"{med(p[0] for p in peer):8.1f} ms  ratio {med(wall):5.2f}   cpu time: sspose "
                  f"{med(o[1] for o in ours[m]):8.1f} ms  pytorch {med(p[1] for p in peer):8.1f} ms  ratio "
                  f"{med(cpu):5.2f}   (per-round wall ratios {', '.join(f'{v:.2f}' for v in wall)})")
    print(f"# load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
