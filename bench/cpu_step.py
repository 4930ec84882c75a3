"""bench/cpu_step: forward+backward time of the network on the CPU, sspose against PyTorch
(the same network, tests/torch_ref/net_ref.py, same threads, same machine, same run).

    /usr/bin/python3 bench/cpu_step.py [--threads N] [--iters K] [--full-iters K]

Prints one line per case and the ratio sspose/PyTorch (below 1: sspose is faster)."""
import argparse
import json
import os
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
    times = []
    for it in range(iters + 1):
        t0 = time.perf_counter()
        outs = net(x)
        obj = sum((t * 1e-3).sum() for o in outs for t in o.values())
        net.zero_grad(set_to_none=False)
        obj.backward()
        times.append((time.perf_counter() - t0) * 1e3)
    t = sorted(times[1:])
    return t[len(t) // 2]


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
    a = ap.parse_args()
    cases = [("configs/tiny.ini", 128, 1, a.iters), ("configs/paper.ini", 368, 1, a.full_iters)]
    print(f"# cpu_step: forward+backward, batch 1, {a.threads} threads, median of iterations after one warm-up")
    for cfg, size, batch, iters in cases:
        out = subprocess.run([os.path.join(BUILD, "bench", "cpu_step"), cfg, str(size), str(batch), str(a.threads),
                              str(iters)], check=True, capture_output=True, text=True).stdout
        ours = json.loads(out)["ms"]
        peer = torch_step_ms(resolved_config(cfg), size, batch, a.threads, iters)
        print(f"{cfg:20s} {size}x{size}  sspose {ours:9.1f} ms   pytorch {peer:9.1f} ms   ratio {ours / peer:5.2f}")


if __name__ == "__main__":
    main()
