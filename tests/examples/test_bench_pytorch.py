#!/usr/bin/env python3
"""test_bench_pytorch.py - the parts of examples/bench_pytorch.py that need no GPU: the
poolprop/PyTorch ratios and target verdicts on figures worked out by hand, and a clear
exit where PyTorch or a GPU is missing. Prints what it compared."""
import importlib.util
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "examples", "bench_pytorch.py")
spec = importlib.util.spec_from_file_location("bench_pytorch", SCRIPT)
bp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bp)

failures = 0


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures += 1


pp = {"layers": [
    {"name": "a", "count": 2, "fwd_ms": 1.0, "bwd_data_ms": 2.0, "bwd_weight_ms": 3.0},
    {"name": "b", "count": 1, "fwd_ms": 4.0, "bwd_data_ms": 1.0, "bwd_weight_ms": 1.0},
]}
pt = [[2.0, 2.0, 1.5], [2.0, 4.0, 1.0]]
rows, totals = bp.kernel_comparison(pp, pt)
check(rows[0]["ratio"] == [0.5, 1.0, 2.0], f"per-layer ratios {rows[0]['ratio']} == [0.5, 1.0, 2.0]")
# weighted by count: poolprop fwd 2*1+4 = 6, PyTorch 2*2+2 = 6; data 5 vs 8; weight 7 vs 4
check([t["poolprop_ms"] for t in totals] == [6.0, 5.0, 7.0], f"poolprop totals {[t['poolprop_ms'] for t in totals]}")
check([t["pytorch_ms"] for t in totals] == [6.0, 8.0, 4.0], f"PyTorch totals {[t['pytorch_ms'] for t in totals]}")
check([t["ratio"] for t in totals] == [1.0, 0.625, 1.75], f"total ratios {[t['ratio'] for t in totals]}")
s = bp.step_comparison({"images_per_s": 800.0, "peak_bytes": 690}, 1000.0, 1000)
check(s["speed_ratio"] == 0.8 and s["speed_met"], f"speed ratio {s['speed_ratio']} meets >= 0.8")
check(s["memory_ratio"] == 0.69 and s["memory_met"], f"memory ratio {s['memory_ratio']} meets <= 0.70")
s = bp.step_comparison({"images_per_s": 790.0, "peak_bytes": 710}, 1000.0, 1000)
check(not s["speed_met"] and not s["memory_met"], f"0.79 and 0.71 miss the targets ({s})")

env = dict(os.environ, PYTHONPATH="")
r = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, env=env)
check(r.returncode != 0 and "MODEL" in r.stderr, f"no arguments: exit {r.returncode}, '{r.stderr.strip()[-60:]}'")
try:
    import torch  # noqa: F401
    have_torch = True
except ImportError:
    have_torch = False
r = subprocess.run([sys.executable, SCRIPT, "resnet50", "--poolprop", "/nonexistent/poolprop"], capture_output=True,
                   text=True, env=env)
check(r.returncode != 0 and "cannot run /nonexistent/poolprop" in r.stderr and "Traceback" not in r.stderr,
      f"poolprop missing: exit {r.returncode}, '{r.stderr.strip()[-80:]}'")
if not have_torch:
    import json
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"layers": [], "model": "resnet50"}, f)
    r = subprocess.run([sys.executable, SCRIPT, "--json", f.name], capture_output=True, text=True, env=env)
    os.unlink(f.name)
    check(r.returncode != 0 and "PyTorch is not installed" in r.stderr,
          f"without PyTorch: exit {r.returncode}, '{r.stderr.strip()}'")
print(f"{failures} failure(s)")
sys.exit(1 if failures else 0)
