"""test_torch_gpu.py - poolprop.torch on the cuda backend (exits 77, CTest's skip, where
torch sees no GPU or the library finds none):
  - tensors from PyTorch's allocator (the CUDA runtime API, the device's primary context)
    are accepted by the library's kernels, which run on PyTorch's current stream: a pooled
    convolution on a side stream against the float64 reference, with the bound of
    test_torch_conv.py (twice PyTorch's own float32 error plus 1e-6);
  - torchvision ResNet-50 at batch 64, 224x224: peak memory (torch.cuda.max_memory_allocated)
    and step time of the unconverted model, the converted one at f=2 (and f=2 with bn=bf16),
    and torch.utils.checkpoint per stage; the converted peak must be below the unconverted.
Figures are printed (tools/gpu_check.sh keeps them)."""
import copy
import sys
import time
import unittest

import torch

from common import LIB, relative_error

if not torch.cuda.is_available():
    print("test_torch_gpu: skipped: torch sees no CUDA device")
    sys.exit(77)

import poolprop  # noqa: E402
import poolprop.torch as pt  # noqa: E402
from poolprop.torch import runtime as pt_runtime  # noqa: E402

try:
    if pt_runtime.runtime_for("cuda", 0).backend != "cuda":
        raise poolprop.PoolpropError("no cuda backend")
except poolprop.PoolpropError as e:
    print(f"test_torch_gpu: skipped: {e}")
    sys.exit(77)

DEVICE = torch.device("cuda", 0)


def train_step(model, x, labels):
    loss = torch.nn.functional.cross_entropy(model(x), labels)
    loss.backward()
    return loss


def measure(model, x, labels, steps=3):
    """(peak bytes, ms per step) of training steps after one warm-up step."""
    train_step(model, x, labels)
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, x, labels)
        model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated(), 1e3 * (time.perf_counter() - start) / steps


class CheckpointedResNet(torch.nn.Module):
    """torchvision ResNet with torch.utils.checkpoint around each stage."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        for stage in (n.layer1, n.layer2, n.layer3, n.layer4):
            x = torch.utils.checkpoint.checkpoint(stage, x, use_reentrant=False)
        return n.fc(torch.flatten(n.avgpool(x), 1))


class GpuTest(unittest.TestCase):
    def test_runtime_pointers_on_current_stream(self):
        torch.manual_seed(0)
        base = torch.nn.Sequential(torch.nn.Conv2d(32, 64, 3, 1, 1, bias=False)).to(DEVICE)
        ours, ref32, ref64 = copy.deepcopy(base), copy.deepcopy(base), copy.deepcopy(base).double()
        pt.convert(ours, "2", backend="cuda")
        pt.convert(ref32, "2", backend="reference")
        pt.convert(ref64, "2", backend="reference")
        x = torch.randn(4, 32, 17, 15, device=DEVICE).contiguous(memory_format=torch.channels_last)
        side = torch.cuda.Stream(DEVICE)
        side.wait_stream(torch.cuda.current_stream(DEVICE))
        with torch.cuda.stream(side):
            xi = x.clone().requires_grad_()
            y = ours(xi)
            y.square().sum().backward()
        torch.cuda.current_stream(DEVICE).wait_stream(side)
        results = []
        for model, dtype in ((ref32, torch.float32), (ref64, torch.float64)):
            xr = x.to(dtype).contiguous().requires_grad_()
            yr = model(xr)
            yr.square().sum().backward()
            results.append((yr.detach(), xr.grad, model[0].weight.grad))
        for i, (a, what) in enumerate(zip((y.detach(), xi.grad, ours[0].weight.grad), ("y", "dx", "dw"))):
            e, e32 = relative_error(a, results[1][i]), relative_error(results[0][i], results[1][i])
            self.assertLessEqual(e, 2 * e32 + 1e-6, f"{what}: {e:.2e} from float64, torch float32 {e32:.2e}")

    def test_resnet50_memory_and_time(self):
        import torchvision
        torch.manual_seed(0)
        x = torch.randn(64, 3, 224, 224, device=DEVICE)
        labels = torch.randint(0, 1000, (64,), device=DEVICE)
        base = torchvision.models.resnet50().to(DEVICE)
        rows = []
        plain_peak = None
        for label, make in (("unconverted", lambda m: m), ("poolprop f=2", lambda m: (pt.convert(m, "2", "cuda"), m)[1]),
                            ("poolprop f=2 bn=bf16", lambda m: (pt.convert(m, "default=2,bn=bf16", "cuda"), m)[1]),
                            ("checkpoint per stage", CheckpointedResNet)):
            model = make(copy.deepcopy(base))
            peak, ms = measure(model, x, labels)
            rows.append((label, peak, ms))
            if plain_peak is None:
                plain_peak = peak
            del model
            torch.cuda.empty_cache()
        print(f"\nResNet-50, batch 64, 224x224, {torch.cuda.get_device_name(DEVICE)}:")
        for label, peak, ms in rows:
            print(f"  {label:24s} peak {peak / 2**30:7.2f} GiB ({100 * (1 - peak / plain_peak):5.1f}% less)  "
                  f"{ms:8.1f} ms/step")
        self.assertLess(rows[1][1], plain_peak)


if __name__ == "__main__":
    if not LIB:
        sys.exit("POOLPROP_LIB is not set (CTest sets it)")
    unittest.main(verbosity=2)
