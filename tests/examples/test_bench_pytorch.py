#!/usr/bin/env python3
"""test_bench_pytorch.py - the parts of examples/bench_pytorch.py that need no GPU: the
poolprop/PyTorch ratios and target verdicts on figures worked out by hand, the PyTorch
modes (--pytorch-mode: parsing, the per-mode line), a clear exit where PyTorch or a GPU is
missing, and, where PyTorch is installed, one training step of every mode on the CPU.
Prints what it compared."""
import importlib.util
import math
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

# PyTorch modes: parsing (order kept, repeats dropped, "all"), and the line a note quotes.
check(bp.parse_pytorch_modes(bp.DEFAULT_PYTORCH_MODES) ==
      ["tf32", "channels_last_tf32", "amp_bf16", "channels_last_amp_bf16"],
      f"default modes {bp.DEFAULT_PYTORCH_MODES}")
check(bp.parse_pytorch_modes("amp_bf16, tf32,amp_bf16") == ["amp_bf16", "tf32"], "order kept, repeats dropped")
check(bp.parse_pytorch_modes("all") == list(bp.PYTORCH_MODES) and "fp32" in bp.PYTORCH_MODES, "all = every mode")
try:
    bp.parse_pytorch_modes("tf32,fp16")
    check(False, "unknown mode fp16 rejected")
except ValueError as e:
    check("unknown PyTorch mode 'fp16'" in str(e), f"unknown mode rejected: {e}")
check(bp.PYTORCH_MODES[bp.REFERENCE_MODE] == {"tf32": True, "channels_last": False, "autocast": None},
      "the targets are judged on TF32 in NCHW, as the per-shape comparison runs")
check(bp.PYTORCH_MODES["channels_last_amp_bf16"] == {"tf32": True, "channels_last": True, "autocast": "bfloat16"},
      "channels_last_amp_bf16 is channels_last with bf16 autocast")
check(bp.describe_mode("channels_last_amp_bf16") == "TF32, channels_last, bf16 autocast"
      and bp.describe_mode("fp32") == "fp32 (TF32 off), NCHW", f"descriptions: {bp.describe_mode('channels_last_amp_bf16')}")
# batch 64 in 80 ms = 800 images/s; poolprop 640 images/s -> speed 0.80; peaks 690 / 1000 -> 0.69
line = bp.mode_line("amp_bf16", 80.0, 64, 1000, {"images_per_s": 640.0, "peak_bytes": 690})
check(line.startswith("PyTorch mode amp_bf16 ") and "step 80.00 ms, 800.0 images/s, peak 1000 bytes" in line
      and "speed 0.80, peak memory 0.69" in line, f"mode line: {line}")

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
r = subprocess.run([sys.executable, SCRIPT, "resnet50", "--pytorch-mode", "tf32,bogus", "--poolprop",
                    "/nonexistent/poolprop"], capture_output=True, text=True, env=env)
check(r.returncode != 0 and "unknown PyTorch mode 'bogus'" in r.stderr and "cannot run" not in r.stderr,
      f"bad --pytorch-mode rejected before poolprop runs: exit {r.returncode}, '{r.stderr.strip()[-80:]}'")
if have_torch:
    # Every mode's training step on the CPU (autocast on the CPU for the AMP modes): a finite
    # loss, and the model and input in the mode's memory format.
    torch.manual_seed(0)
    for mode in bp.PYTORCH_MODES:
        model = bp.cifar_resnet(torch, 8, 10)
        fmt = bp.memory_format(torch, mode)
        model = model.to(memory_format=fmt)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        xb = torch.randn(2, 3, 8, 8).contiguous(memory_format=fmt)
        labels = torch.tensor([1, 7])
        losses = [float(bp.training_step(torch, model, opt, xb, labels, mode)) for _ in range(2)]
        conv_weight = next(p for p in model.parameters() if p.dim() == 4)
        check(all(math.isfinite(x) for x in losses) and conv_weight.is_contiguous(memory_format=fmt),
              f"{mode} on the CPU: losses {losses}, conv weight in the mode's memory format")
if have_torch and not torch.cuda.is_available():
    import json
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"layers": [], "model": "resnet50"}, f)
    r = subprocess.run([sys.executable, SCRIPT, "--json", f.name], capture_output=True, text=True, env=env)
    os.unlink(f.name)
    check(r.returncode != 0 and "no CUDA device visible" in r.stderr,
          f"without a GPU: exit {r.returncode}, '{r.stderr.strip()}'")
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
