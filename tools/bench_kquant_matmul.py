"""Time x @ W.T for one 7B-sized K-quant matrix: dequantize-then-multiply against kmatmul, in one run.

    python tools/bench_kquant_matmul.py [--rows 14336 --cols 4096 --T 1 --repeats 9]

W is random valid super-blocks (Q4_K and Q6_K). "dequantize" is the bit-exact path (kquants'
dequantizer on a block of rows, then the product); "kmatmul" unpacks integers and applies the scales
after the product. The two alternate, so a busy machine slows both alike; min and median are printed,
with GB/s of packed bytes read.
"""
import argparse
import os
import statistics
import time

import numpy as np

from mistral_np import kmatmul
from mistral_np.bf16 import blocked_matmul_t
from mistral_np.quants import GGMLTensor, random_blocks


def dequantize_matmul_t(t, x):
    """GGMLTensor.matmul_t without the kmatmul shortcut."""
    def widen(r0, r1, buf):
        return t._rows(t.raw[r0:r1], buf.view(np.float32).reshape(r1 - r0, -1))
    return blocked_matmul_t(x, t.shape, widen)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=14336)
    p.add_argument("--cols", type=int, default=4096)
    p.add_argument("--T", type=int, nargs="*", default=[1], help="rows of x")
    p.add_argument("--repeats", type=int, default=9)
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    for type_id in kmatmul.KERNELS:
        raw = random_blocks(type_id, a.rows * a.cols // 256, rng).reshape(-1)
        t = GGMLTensor(raw, type_id, (a.rows, a.cols))
        for T in a.T:
            x = rng.standard_normal((T, a.cols)).astype(np.float32)
            ways = {"dequantize": lambda: dequantize_matmul_t(t, x),
                    "kmatmul": lambda: kmatmul.matmul_t(t.raw, type_id, x)}
            times = {k: [] for k in ways}
            for _ in range(a.repeats):
                for k, f in ways.items():
                    t0 = time.perf_counter()
                    f()
                    times[k].append(time.perf_counter() - t0)
            for k, v in times.items():
                print(f"{t.dtype} {a.rows}x{a.cols} T={T} {k:10s}: min {min(v) * 1e3:6.1f} ms, median "
                      f"{statistics.median(v) * 1e3:6.1f} ms ({raw.nbytes / min(v) / 1e9:.2f} GB/s packed at best)")
            print(f"  speed-up (min, median): {min(times['dequantize']) / min(times['kmatmul']):.2f}x, "
                  f"{statistics.median(times['dequantize']) / statistics.median(times['kmatmul']):.2f}x")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
