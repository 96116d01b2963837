#!/usr/bin/env python3
"""bench_pytorch.py - poolprop against PyTorch/cuDNN on the same GPU, in one invocation.

Runs `poolprop bench MODEL --backend cuda --json ...` (or reads a JSON it wrote before),
then the same work through PyTorch with cuDNN, TF32 on and cudnn.benchmark on, as a
PyTorch user runs it:
  per conv shape: cuDNN's forward plus a separate average-pooling pass (what poolprop's
  fused forward replaces), cuDNN's input gradient, and cuDNN's weight gradient on the
  uncompressed input (what poolprop's un-pooling weight gradient replaces);
  a whole training step of the same network (torchvision's ResNets; the CIFAR ResNets of
  He et al. with 1x1-conv shortcuts, as poolprop builds them): images/s and peak memory,
  once per PyTorch mode (--pytorch-mode): plain fp32, TF32 (the per-shape comparison's
  setting and the one the targets are judged on), channels_last memory format with TF32,
  and bf16 automatic mixed precision (autocast) in NCHW or channels_last.
Prints every figure, one line per PyTorch mode (step time, images/s, peak memory and the
poolprop/PyTorch ratios), and where each target of issue 5 stands. Times are CUDA-event
medians (the step: the mean over --steps). PyTorch is not a dependency of poolprop: this
script runs where it is installed (the comparison functions below need only the standard
library).

Usage:
  bench_pytorch.py MODEL [--batch B] [--image HxW] [--policy P] [--poolprop PATH]
                   [--pytorch-mode MODE[,MODE...]|all]
  bench_pytorch.py --json POOLPROP.json [--pytorch-mode ...]
"""
import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile

# Targets (issue 5): poolprop time / PyTorch time at most these, and the training step's
# speed and peak-memory ratios.
TARGET_KERNEL_RATIO = 1.0
TARGET_STEP_SPEED = 0.8
TARGET_STEP_MEMORY = 0.70

# How PyTorch runs the training step in each mode: TF32 allowed for convolutions and matmuls,
# channels_last (NHWC) model and input, and the autocast dtype (None: no autocast). bf16
# autocast needs no loss scaling (bf16 has fp32's exponent range).
PYTORCH_MODES = {
    "fp32": {"tf32": False, "channels_last": False, "autocast": None},
    "tf32": {"tf32": True, "channels_last": False, "autocast": None},
    "channels_last_tf32": {"tf32": True, "channels_last": True, "autocast": None},
    "amp_bf16": {"tf32": True, "channels_last": False, "autocast": "bfloat16"},
    "channels_last_amp_bf16": {"tf32": True, "channels_last": True, "autocast": "bfloat16"},
}
DEFAULT_PYTORCH_MODES = "tf32,channels_last_tf32,amp_bf16,channels_last_amp_bf16"
# The mode the targets are judged on: what the per-shape comparison runs.
REFERENCE_MODE = "tf32"


def parse_pytorch_modes(text):
    """"tf32,amp_bf16" -> ["tf32", "amp_bf16"] in the order given, without repeats; "all" ->
    every mode. Raises ValueError naming an unknown mode."""
    if text.strip() == "all":
        return list(PYTORCH_MODES)
    modes = []
    for name in (part.strip() for part in text.split(",")):
        if name not in PYTORCH_MODES:
            raise ValueError(f"unknown PyTorch mode '{name}' (choose from {', '.join(PYTORCH_MODES)} or all)")
        if name not in modes:
            modes.append(name)
    return modes


def describe_mode(mode):
    """A short human description: "TF32, channels_last, bf16 autocast"."""
    m = PYTORCH_MODES[mode]
    return ", ".join(["TF32" if m["tf32"] else "fp32 (TF32 off)", "channels_last" if m["channels_last"] else "NCHW"] +
                     ([m["autocast"][:2] + "16 autocast"] if m["autocast"] else []))


def training_step(torch, model, opt, xb, labels, mode):
    """One SGD step as PyTorch runs it in mode (autocast on xb's device when the mode has it);
    model and xb must already be in the mode's memory format. Returns the loss."""
    autocast = PYTORCH_MODES[mode]["autocast"]
    opt.zero_grad(set_to_none=True)
    with (torch.autocast(device_type=xb.device.type, dtype=getattr(torch, autocast)) if autocast
          else contextlib.nullcontext()):
        loss = torch.nn.functional.cross_entropy(model(xb), labels)
    loss.backward()
    opt.step()
    return loss


def memory_format(torch, mode):
    return torch.channels_last if PYTORCH_MODES[mode]["channels_last"] else torch.contiguous_format


def mode_line(mode, step_ms, batch, peak_bytes, pp_step):
    """One line per PyTorch mode, with the figures a closing note quotes and the ratios."""
    images_per_s = batch / (step_ms / 1000) if step_ms > 0 else 0.0
    cmp = step_comparison(pp_step, images_per_s, peak_bytes)
    return (f"PyTorch mode {mode:22} ({describe_mode(mode)}): step {step_ms:.2f} ms, {images_per_s:.1f} images/s, "
            f"peak {peak_bytes} bytes ({peak_bytes / 2**30:.2f} GiB); poolprop/PyTorch: speed "
            f"{cmp['speed_ratio']:.2f}, peak memory {cmp['memory_ratio']:.2f}")


def kernel_comparison(pp, pt_layers):
    """Per-layer and total ratios. pp: poolprop's JSON; pt_layers: one [fwd+pool, input grad,
    weight grad] in ms per entry of pp["layers"]. Returns (rows, totals) where totals holds,
    per kernel kind, poolprop ms, PyTorch ms (weighted by the layer counts) and the ratio."""
    rows = []
    sums = [[0.0, 0.0] for _ in range(3)]
    for layer, pt in zip(pp["layers"], pt_layers):
        ours = [layer["fwd_ms"], layer["bwd_data_ms"], layer["bwd_weight_ms"]]
        ratios = [o / p if p > 0 else float("inf") for o, p in zip(ours, pt)]
        rows.append({"name": layer["name"], "count": layer["count"], "poolprop": ours, "pytorch": pt,
                     "ratio": ratios})
        for i in range(3):
            sums[i][0] += ours[i] * layer["count"]
            sums[i][1] += pt[i] * layer["count"]
    totals = []
    for ours, theirs in sums:
        totals.append({"poolprop_ms": ours, "pytorch_ms": theirs,
                       "ratio": ours / theirs if theirs > 0 else float("inf")})
    return rows, totals


def step_comparison(pp_step, pt_images_per_s, pt_peak_bytes):
    speed = pp_step["images_per_s"] / pt_images_per_s if pt_images_per_s > 0 else 0.0
    memory = pp_step["peak_bytes"] / pt_peak_bytes if pt_peak_bytes > 0 else float("inf")
    return {"speed_ratio": speed, "memory_ratio": memory,
            "speed_met": speed >= TARGET_STEP_SPEED, "memory_met": memory <= TARGET_STEP_MEMORY}


def verdict(met):
    return "met" if met else "NOT met"


def run_poolprop(args):
    """Runs poolprop bench on the cuda backend; returns its JSON."""
    out = tempfile.NamedTemporaryFile(prefix="poolprop-bench-", suffix=".json", delete=False)
    out.close()
    cmd = [args.poolprop, "bench", args.model, "--backend", "cuda", "--batch", str(args.batch),
           "--policy", args.policy, "--repeats", str(args.repeats), "--steps", str(args.steps), "--json", out.name]
    if args.image:
        cmd += ["--image", args.image]
    print("running:", " ".join(cmd), flush=True)
    try:
        subprocess.run(cmd, check=True)
    except FileNotFoundError:
        sys.exit(f"bench_pytorch.py: cannot run {args.poolprop} (build poolprop first, or pass --poolprop PATH)")
    except subprocess.CalledProcessError as e:
        sys.exit(f"bench_pytorch.py: poolprop bench failed with exit status {e.returncode}")
    with open(out.name) as f:
        pp = json.load(f)
    os.unlink(out.name)
    return pp


def cifar_resnet(torch, depth, classes):
    """The CIFAR ResNet poolprop builds (generator/poolprop/network.lua): 3x3 stem of 16
    channels, three stages of (depth-2)/6 basic blocks with 16/32/64 channels, 1x1-conv
    shortcuts where the shape changes, global average pooling, a linear classifier."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + (self.downsample(x) if self.downsample is not None else x))

    n = (depth - 2) // 6
    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for stage, planes in enumerate([16, 32, 64]):
        for b in range(n):
            layers.append(Block(cin, planes, 2 if (b == 0 and stage > 0) else 1))
            cin = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes)]
    return nn.Sequential(*layers)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", help="poolprop model name (resnet50, cifar_resnet56, ...)")
    ap.add_argument("--json", help="read this poolprop bench JSON instead of running poolprop")
    ap.add_argument("--poolprop", default=os.path.join(os.path.dirname(__file__), "..", "build", "poolprop"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--image", help="HxW (default: the model's)")
    ap.add_argument("--policy", default="2,math=tf32")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--pytorch-mode", default=DEFAULT_PYTORCH_MODES,
                    help="how PyTorch runs the training step: a comma-separated list of " + ", ".join(PYTORCH_MODES) +
                    f", or all (default: {DEFAULT_PYTORCH_MODES})")
    args = ap.parse_args()
    # Every line reaches the log at once: a stage killed by its time limit keeps what it printed.
    sys.stdout.reconfigure(line_buffering=True)
    if not args.json and not args.model:
        ap.error("give a MODEL to run poolprop on, or --json FILE")
    try:
        modes = parse_pytorch_modes(args.pytorch_mode)
    except ValueError as e:
        ap.error(f"--pytorch-mode: {e}")
    # poolprop first: its table is printed even where PyTorch turns out to be missing.
    if args.json:
        with open(args.json) as f:
            pp = json.load(f)
    else:
        pp = run_poolprop(args)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        sys.exit("bench_pytorch.py: PyTorch is not installed here")
    if not torch.cuda.is_available():
        sys.exit("bench_pytorch.py: no CUDA device visible to PyTorch")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")

    def time_ms(fn):
        for _ in range(3):
            fn()
        times = []
        for _ in range(args.repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)

    print(f"PyTorch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name()}; "
          f"poolprop on {pp['device']}, policy {pp['policy']} (math {pp.get('math', 'fp32')})")
    pt_layers = []
    for layer in pp["layers"]:
        n, c, h, w, k = layer["n"], layer["c"], layer["h"], layer["w"], layer["k"]
        r, s, stride, pad, f = layer["r"], layer["s"], layer["stride"], layer["pad"], layer["pool"]
        x = torch.randn(n, c, h, w, device=dev)
        wt = torch.randn(k, c, r, s, device=dev)
        y = F.conv2d(x, wt, stride=stride, padding=pad)
        dy = torch.randn_like(y)

        def fwd():
            F.conv2d(x, wt, stride=stride, padding=pad)
            if f > 1:
                F.avg_pool2d(x, f, stride=f, ceil_mode=True, count_include_pad=False)

        def bwd(mask):
            return lambda: torch.ops.aten.convolution_backward(
                dy, x, wt, None, [stride, stride], [pad, pad], [1, 1], False, [0, 0], 1, mask)

        pt_layers.append([time_ms(fwd), time_ms(bwd([True, False, False])), time_ms(bwd([False, True, False]))])
        del x, wt, y, dy
    rows, totals = kernel_comparison(pp, pt_layers)
    print(f"{'layer':28} {'n':>3} | {'poolprop ms: fwd+pool':>21} {'in grad':>8} {'wgt grad':>8} | "
          f"{'PyTorch ms: fwd+pool':>20} {'in grad':>8} {'wgt grad':>8} | ratios")
    for row in rows:
        o, p, q = row["poolprop"], row["pytorch"], row["ratio"]
        print(f"{row['name'][:28]:28} {row['count']:3d} | {o[0]:21.3f} {o[1]:8.3f} {o[2]:8.3f} | "
              f"{p[0]:20.3f} {p[1]:8.3f} {p[2]:8.3f} | {q[0]:.2f} {q[1]:.2f} {q[2]:.2f}")
    names = ["fused forward + pool-save vs cuDNN forward + avg_pool2d",
             "input gradient vs cuDNN",
             "weight gradient with un-pool vs cuDNN on the uncompressed input"]
    for name, t in zip(names, totals):
        target = "" if name.startswith("input") else \
            f" (target <= {TARGET_KERNEL_RATIO:.2f}: {verdict(t['ratio'] <= TARGET_KERNEL_RATIO)})"
        print(f"all layers, {name}: poolprop {t['poolprop_ms']:.2f} ms, PyTorch {t['pytorch_ms']:.2f} ms, "
              f"ratio {t['ratio']:.2f}{target}")

    model_name = pp["model"]
    if not model_name.startswith("cifar_resnet"):
        try:
            import torchvision
        except ImportError:
            print("torchvision is not installed: no training-step comparison")
            return

    def build_model():
        if model_name.startswith("cifar_resnet"):
            return cifar_resnet(torch, int(model_name[len("cifar_resnet"):]), 10), 10
        return getattr(torchvision.models, model_name)(num_classes=1000), 1000

    batch, (height, width) = pp["batch"], pp["image"]
    ours = pp["step"]

    def time_step(mode):
        """Mean ms per training step and peak bytes allocated, on a fresh model and optimizer
        (the previous mode's are freed first, so every peak stands alone)."""
        torch.backends.cuda.matmul.allow_tf32 = PYTORCH_MODES[mode]["tf32"]
        torch.backends.cudnn.allow_tf32 = PYTORCH_MODES[mode]["tf32"]
        fmt = memory_format(torch, mode)
        model, classes = build_model()
        model = model.to(dev, memory_format=fmt)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        xb = torch.randn(batch, 3, height, width, device=dev).contiguous(memory_format=fmt)
        labels = torch.randint(0, classes, (batch,), device=dev)
        for _ in range(2):  # cudnn.benchmark's search, the momentum buffers
            training_step(torch, model, opt, xb, labels, mode)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(args.steps):
            training_step(torch, model, opt, xb, labels, mode)
        end.record()
        torch.cuda.synchronize()
        result = start.elapsed_time(end) / args.steps, torch.cuda.max_memory_allocated()
        del model, opt, xb, labels
        torch.cuda.empty_cache()
        return result

    print(f"training step {model_name}, batch {batch}, {height}x{width}: poolprop {ours['images_per_s']:.1f} images/s "
          f"({batch / ours['images_per_s'] * 1000 if ours['images_per_s'] > 0 else 0:.2f} ms/step, of which the "
          f"batch's upload from the host {ours.get('batch_upload_ms', float('nan')):.2f} ms; PyTorch's batch is already "
          f"on the GPU), peak {ours['peak_bytes']} bytes ({ours['peak_bytes'] / 2**30:.2f} GiB)", flush=True)
    results = {}
    for mode in modes:
        try:
            results[mode] = time_step(mode)
        except RuntimeError as e:  # out of memory, or a mode this GPU or PyTorch lacks
            print(f"PyTorch mode {mode:22} ({describe_mode(mode)}): failed: {str(e).splitlines()[0]}", flush=True)
            torch.cuda.empty_cache()
            continue
        print(mode_line(mode, results[mode][0], batch, results[mode][1], ours), flush=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if REFERENCE_MODE in results:
        step_ms, peak = results[REFERENCE_MODE]
        images_per_s = batch / (step_ms / 1000)
        cmp = step_comparison(ours, images_per_s, peak)
        print(f"training step {model_name}, batch {batch}, {height}x{width}: PyTorch ({REFERENCE_MODE}) "
              f"{images_per_s:.1f} images/s, peak {peak} bytes; poolprop {ours['images_per_s']:.1f} images/s, "
              f"peak {ours['peak_bytes']} bytes")
        print(f"ratios poolprop/PyTorch ({REFERENCE_MODE}): speed {cmp['speed_ratio']:.2f} (target >= "
              f"{TARGET_STEP_SPEED}: {verdict(cmp['speed_met'])}), peak memory {cmp['memory_ratio']:.2f} (target <= "
              f"{TARGET_STEP_MEMORY}: {verdict(cmp['memory_met'])})")
    if results:
        fastest = min(results, key=lambda k: results[k][0])
        smallest = min(results, key=lambda k: results[k][1])
        print(f"fastest PyTorch mode: {fastest} ({results[fastest][0]:.2f} ms/step); smallest peak: {smallest} "
              f"({results[smallest][1]} bytes)")


if __name__ == "__main__":
    main()
