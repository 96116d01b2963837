#!/usr/bin/env python3
"""compare_npy.py - compares two directory trees of .npy arrays written by `poolprop step`
(loss.npy, grad/<key>.npy, running/<key>.npy), file by file, by relative L2 error
||b - a|| / ||a||, and exits 1 when any file is missing, has another shape, holds a
non-finite value or differs by more than its bound.

usage: compare_npy.py REFERENCE_DIR OTHER_DIR [--tol T] [--baseline DIR --factor F]
The bound is T (default 1e-4). With --baseline it is F * e_base + T per file, e_base being
the baseline's own error against the reference: for reduced precision (TF32), whose
rounding of every layer's inputs turns the last-bit differences of another summation order
into differences of its own size (and BN on small batches amplifies them), so that two
correct TF32 runs of one network differ by about as much as either differs from fp32. The
reference is then the fp32 run, the baseline the host's TF32 run and OTHER the GPU's.
Prints the worst files first, then one verdict line."""
import argparse
import os
import sys

import numpy as np


def arrays(root):
    """Relative paths of every .npy file under root."""
    found = []
    for d, _, files in os.walk(root):
        found += [os.path.relpath(os.path.join(d, f), root) for f in files if f.endswith(".npy")]
    return sorted(found)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("reference")
    ap.add_argument("other")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--baseline")
    ap.add_argument("--factor", type=float, default=3.0)
    a = ap.parse_args()
    names = arrays(a.reference)
    if not names:
        print(f"compare_npy: no .npy files under {a.reference}")
        return 1
    rows, bad = [], []
    for n in names:
        p = os.path.join(a.other, n)
        if not os.path.exists(p):
            bad.append(f"{n}: missing in {a.other}")
            continue
        x = np.load(os.path.join(a.reference, n)).astype(np.float64)
        y = np.load(p).astype(np.float64)
        if x.shape != y.shape:
            bad.append(f"{n}: shape {y.shape} against {x.shape}")
            continue
        if not np.all(np.isfinite(y)):
            bad.append(f"{n}: non-finite values")
            continue
        ref = np.linalg.norm(x)
        err = np.linalg.norm(y - x) / (ref if ref > 0 else 1.0)
        bound = a.tol
        if a.baseline:
            p = os.path.join(a.baseline, n)
            if not os.path.exists(p):
                bad.append(f"{n}: missing in {a.baseline}")
                continue
            z = np.load(p).astype(np.float64)
            if z.shape != x.shape:
                bad.append(f"{n}: baseline shape {z.shape} against {x.shape}")
                continue
            bound += a.factor * np.linalg.norm(z - x) / (ref if ref > 0 else 1.0)
        rows.append((err, n))
        if not err <= bound:
            bad.append(f"{n}: relative L2 error {err:.3e} > {bound:.3e}")
    rows.sort(reverse=True)
    for err, n in rows[:8]:
        print(f"  {err:.3e}  {n}")
    for b in bad:
        print(f"  FAIL {b}")
    worst = rows[0][0] if rows else float("nan")
    print(f"compare_npy: {len(names)} arrays, worst relative L2 error {worst:.3e}, "
          f"{'FAILED' if bad else 'ok'} (tolerance {a.tol:g}"
          f"{f' + {a.factor:g} x the baseline' if a.baseline else ''})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
