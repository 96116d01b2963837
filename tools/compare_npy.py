#!/usr/bin/env python3
"""compare_npy.py - compares two directory trees of .npy arrays written by `poolprop step`
(loss.npy, grad/<key>.npy, running/<key>.npy), file by file, by relative L2 error
||b - a|| / ||a||, and exits 1 when any file is missing, has another shape, holds a
non-finite value or differs by more than --tol.

usage: compare_npy.py REFERENCE_DIR OTHER_DIR [--tol T]   (T default 1e-4)
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
        rows.append((err, n))
        if err > a.tol:
            bad.append(f"{n}: relative L2 error {err:.3e} > {a.tol:g}")
    rows.sort(reverse=True)
    for err, n in rows[:8]:
        print(f"  {err:.3e}  {n}")
    for b in bad:
        print(f"  FAIL {b}")
    worst = rows[0][0] if rows else float("nan")
    print(f"compare_npy: {len(names)} arrays, worst relative L2 error {worst:.3e}, "
          f"{'FAILED' if bad else 'ok'} (tolerance {a.tol:g})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
