#!/usr/bin/env python3
"""bench_pytorch.py - the same work as `poolprop bench`, done by PyTorch with cuDNN on the same
GPU, and the poolprop/PyTorch ratios.

Per conv shape of the poolprop JSON: cuDNN's forward plus a separate average-pooling pass
(what poolprop's fused forward replaces), cuDNN's input gradient, and cuDNN's weight gradient
on the uncompressed input (what poolprop's un-pooling weight gradient replaces). Then a
whole training step of the same torchvision model: images/s and peak memory.
TF32 on and cudnn.benchmark on, as a PyTorch user runs. Times are CUDA-event medians.
PyTorch is not a dependency of poolprop: this script runs where it is installed.

Usage: bench_pytorch.py POOLPROP.json [--steps N] [--repeats N]
"""
import argparse
import json
import statistics
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("poolprop_json", help="output of: poolprop bench MODEL --backend cuda --json FILE")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        sys.exit("bench_pytorch.py: PyTorch is not installed here")
    if not torch.cuda.is_available():
        sys.exit("bench_pytorch.py: no CUDA device visible to PyTorch")
    with open(args.poolprop_json) as f:
        pp = json.load(f)
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

    print(f"PyTorch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name()}")
    print(f"{'layer':28} {'fwd+pool':>10} {'ratio':>6} {'in grad':>10} {'ratio':>6} {'wgt grad':>10} {'ratio':>6}")
    totals = {"pp": [0.0, 0.0, 0.0], "pt": [0.0, 0.0, 0.0]}
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

        pt = [time_ms(fwd), time_ms(bwd([True, False, False])), time_ms(bwd([False, True, False]))]
        ours = [layer["fwd_ms"], layer["bwd_data_ms"], layer["bwd_weight_ms"]]
        for i in range(3):
            totals["pp"][i] += ours[i] * layer["count"]
            totals["pt"][i] += pt[i] * layer["count"]
        print(f"{layer['name'][:28]:28} {pt[0]:9.3f}m {ours[0] / pt[0]:6.2f} {pt[1]:9.3f}m {ours[1] / pt[1]:6.2f}"
              f" {pt[2]:9.3f}m {ours[2] / pt[2]:6.2f}")
    names = ["forward (+pool)", "input gradient", "weight gradient"]
    for i in range(3):
        print(f"all layers, {names[i]}: poolprop {totals['pp'][i]:.2f} ms, PyTorch {totals['pt'][i]:.2f} ms,"
              f" ratio {totals['pp'][i] / totals['pt'][i]:.2f} (below 1: poolprop faster)")

    try:
        import torchvision
    except ImportError:
        print("torchvision is not installed: no training-step comparison")
        return
    model_name = pp["model"]
    if not hasattr(torchvision.models, model_name):
        print(f"torchvision has no {model_name}: no training-step comparison")
        return
    model = getattr(torchvision.models, model_name)(num_classes=1000).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    batch, (height, width) = pp["batch"], pp["image"]
    xb = torch.randn(batch, 3, height, width, device=dev)
    labels = torch.randint(0, 1000, (batch,), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), labels)
        loss.backward()
        opt.step()

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(args.steps):
        step()
    end.record()
    torch.cuda.synchronize()
    images_per_s = args.steps * batch / (start.elapsed_time(end) / 1000)
    peak = torch.cuda.max_memory_allocated()
    ours = pp["step"]
    print(f"training step {model_name}, batch {batch}, {height}x{width}: PyTorch {images_per_s:.1f} images/s,"
          f" peak {peak} bytes; poolprop {ours['images_per_s']:.1f} images/s, peak {ours['peak_bytes']} bytes")
    print(f"ratios poolprop/PyTorch: speed {ours['images_per_s'] / images_per_s:.2f}"
          f" (target >= 0.8), peak memory {ours['peak_bytes'] / peak:.2f} (target <= 0.70)")


if __name__ == "__main__":
    main()
