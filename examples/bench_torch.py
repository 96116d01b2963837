#!/usr/bin/env python3
"""bench_torch.py - a torchvision ResNet converted by poolprop.torch against the same model
unconverted: training-step time (median of --steps after one warm-up step), what autograd
saves (poolprop.torch.saved_bytes) and, on a GPU, the peak of torch.cuda.max_memory_allocated.
On the host backend the converted model runs poolprop's kernels in the CPU emulation and the
unconverted one PyTorch's CPU kernels: the time ratio there says how slow the emulator is,
not how fast poolprop is.

    POOLPROP_LIB=build/runtime/libpoolprop.so PYTHONPATH=python \\
        /usr/bin/python3 examples/bench_torch.py --model resnet18 --batch 8 --image 64 --backend host
"""
import argparse
import copy
import statistics
import sys
import time

import torch
import torchvision

import poolprop.torch as pt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--image", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--policy", default="2")
    ap.add_argument("--backend", default="host", choices=("host", "cuda", "auto"))
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    device = torch.device("cuda" if args.backend != "host" and torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    base = getattr(torchvision.models, args.model)(num_classes=args.classes).to(device)
    x = torch.randn(args.batch, 3, args.image, args.image, device=device).contiguous(
        memory_format=torch.channels_last)
    labels = torch.randint(0, args.classes, (args.batch,), device=device)
    converted = copy.deepcopy(base)
    report = pt.convert(converted, args.policy, backend=args.backend)
    print(f"{args.model}, batch {args.batch}, {args.image}x{args.image}, policy {args.policy!r}, "
          f"{report.backend} backend, torch {torch.__version__} on {device}: "
          f"{len(report.replaced)} modules replaced, {len(report.kept)} kept")
    for label, model in (("unconverted", base), ("poolprop", converted)):
        saved = pt.saved_bytes(model, x)
        times = []
        for i in range(args.steps + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            model.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), labels).backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i > 0:  # the first step compiles poolprop's kernels
                times.append(time.perf_counter() - start)
        peak = f", peak {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB" if device.type == "cuda" else ""
        print(f"  {label:12s} step {1e3 * statistics.median(times):9.1f} ms (median of {args.steps}), "
              f"saved {saved / 2**20:8.2f} MiB{peak}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
