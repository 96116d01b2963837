"""test_torch_resnet.py - a converted torchvision ResNet-18 (batch 2, 64x64 images, 10
classes) on the host backend, at f=1 and f=2, against float64 runs of the same model:
  - f=1 against plain (unconverted) PyTorch in float64, f=2 against the pure-PyTorch
    reference (reference.py) in float64;
  - the loss within 1e-5 relative (the forward is exact in meaning: only float32 rounding
    differs; about 60 float32 ops deep with unit roundoff 6e-8 each, measured 1.8e-6),
    every parameter gradient within 1e-4 relative L2. Why 1e-4: float32 sums of
    up to 4608 products per output (forward) and 2048 per weight (batch 2 at 64x64 reaches
    32x32 after the stem) through 20 convolutions and BNs give about 1e-5 (measured worst
    1.2e-5); f=2 moves a gradient by about 1e-2 from f=1, so the bound still tells a wrong
    pooling apart. At 32x32 the batch norms of layer4 normalise 2 values per channel and
    amplify float32 rounding to 1e-3 (for PyTorch as for poolprop), hence 64x64;
  - saved_bytes of the converted model at f=2 against the unconverted one, and against
    what `poolprop plan resnet18` predicts for the same batch and image size.
PyTorch's own float32 errors are printed beside poolprop's for comparison, not tested
against: they vary with PyTorch's CPU algorithms (the issue measured Debian's PyTorch 1.13
about 1e-1 from float64 with channels_last inputs, 1e-5 with contiguous ones), so every
float64 run here takes contiguous inputs."""
import copy
import json
import subprocess
import sys
import unittest

import torch
import torchvision

import poolprop.torch as pt
from common import CLI, LIB, relative_error

BATCH, SIZE, CLASSES = 2, 64, 10
LOSS_TOLERANCE, GRADIENT_TOLERANCE = 1e-5, 1e-4


def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=CLASSES)


def step(model, x, labels):
    """Loss and gradients of one training-mode forward and backward."""
    model.train()
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), labels)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


class ResNet18Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(5)
        cls.x = torch.randn(BATCH, 3, SIZE, SIZE)
        cls.labels = torch.tensor([3, 8])

    def compare(self, factor):
        base = resnet18()
        ours, torch32, torch64 = copy.deepcopy(base), copy.deepcopy(base), copy.deepcopy(base)
        report = pt.convert(ours, str(factor), backend="host")
        self.assertEqual(sum(1 for _, what in report.replaced if what.startswith("Conv2d")), 20)
        if factor > 1:  # the pure-PyTorch reference; at f=1 plain PyTorch is the reference
            pt.convert(torch32, str(factor), backend="reference")
            pt.convert(torch64, str(factor), backend="reference")
        torch64.double()
        loss, grads = step(ours, self.x, self.labels)
        loss32, grads32 = step(torch32, self.x, self.labels)
        loss64, grads64 = step(torch64, self.x.double(), self.labels)
        self.assertLessEqual(abs(loss - loss64), LOSS_TOLERANCE * abs(loss64), f"f={factor}: loss {loss}, float64 "
                             f"{loss64}")
        worst, worst32 = 0.0, 0.0
        for name, g64 in grads64.items():
            e, e32 = relative_error(grads[name], g64), relative_error(grads32[name], g64)
            self.assertLessEqual(e, GRADIENT_TOLERANCE, f"f={factor} {name}: {e:.2e} from float64")
            worst, worst32 = max(worst, e), max(worst32, e32)
        print(f"\nResNet-18 f={factor}: loss {loss:.7f} (float64 {loss64:.7f}, torch float32 {loss32:.7f}); "
              f"largest gradient error from float64 {worst:.2e} (torch float32 {worst32:.2e})")
        return ours

    def test_f1_matches_plain_pytorch(self):
        self.compare(1)

    def test_f2_matches_reference(self):
        self.compare(2)

    def test_saved_bytes_against_plan(self):
        """What autograd saves for the converted model at f=2 against the unconverted one,
        and the conv-input part against the plan."""
        plain, ours = resnet18(), resnet18()
        pt.convert(ours, "2", backend="host")
        before = pt.saved_bytes(plain, self.x)
        after = pt.saved_bytes(ours, self.x)
        print(f"\nsaved_bytes ResNet-18 batch {BATCH} {SIZE}x{SIZE}: unconverted {before} B, f=2 {after} B "
              f"({100.0 * (before - after) / before:.1f}% less)")
        self.assertLess(after, before)
        if not CLI:
            self.skipTest("POOLPROP_CLI not set")
        out = subprocess.run([CLI, "plan", "resnet18", "--batch", str(BATCH), "--image", f"{SIZE}x{SIZE}",
                              "--classes", str(CLASSES), "--policy", "2", "--json"], capture_output=True, text=True,
                             timeout=300)
        self.assertEqual(out.returncode, 0, out.stderr)
        plan = json.loads(out.stdout)
        planned, planned_baseline = plan["policy_report"]["saved"], plan["baseline_report"]["saved"]
        print(f"plan: saved {planned} B at f=2, {planned_baseline} B baseline; autograd {after} B and {before} B")
        # The plan pools a tensor that two convolutions read (a block's input, for conv1 and
        # the downsample) once; each PooledConv2d pools its own input, so autograd holds the
        # downsample convolutions' pooled inputs twice (57 KB here). Beyond such sharing the
        # two count the same tensors: within 5% either way.
        self.assertLessEqual(abs(after - planned), 0.05 * planned)
        self.assertLessEqual(abs(before - planned_baseline), 0.05 * planned_baseline)

if __name__ == "__main__":
    if not LIB:
        sys.exit("POOLPROP_LIB is not set (CTest sets it)")
    unittest.main(verbosity=2)
