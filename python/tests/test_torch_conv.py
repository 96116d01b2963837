"""test_torch_conv.py - poolprop.torch's pooled convolution on the host backend against
the pure-PyTorch reference (pool, nearest un-pool, conv2d_weight) evaluated in float64;
the layout boundary (channels_last and contiguous NCHW inputs give the same result); the
report of convert(); and the errors: wrong dtype, a non-CPU tensor on the host backend, a
wrong channel count, a policy naming a stage the model lacks, a missing library (the model
left untouched)."""
import copy
import os
import subprocess
import sys
import unittest

import torch

import poolprop
import poolprop.torch as pt
from poolprop.torch import reference
from common import LIB, SmallResNet, relative_error

torch.manual_seed(1)

# (C, K, R, stride, pad, H, W, factor, mode): ResNet's kinds of convolution, with heights
# and widths that the factor does not divide.
SHAPES = [(8, 16, 3, 1, 1, 9, 7, 2, "avg"), (8, 8, 3, 2, 1, 10, 10, 4, "avg"), (16, 8, 1, 2, 0, 8, 8, 2, "max"),
          (3, 8, 7, 2, 3, 16, 16, 2, "avg"), (8, 16, 3, 1, 1, 8, 8, 1, "avg")]


def pooled_conv(shape, backend):
    c, k, r, stride, pad, h, w, factor, mode = shape
    model = torch.nn.Sequential(torch.nn.Conv2d(c, k, r, stride, pad, bias=True))
    torch.nn.init.normal_(model[0].bias)
    return model


class PooledConvTest(unittest.TestCase):
    def test_matches_float64_reference(self):
        """y, dx, dw and db of the host kernels against the reference in float64: each no
        further from it than twice PyTorch's own float32 reference is, plus 1e-6 (both
        sum the same products in float32, in different orders)."""
        for shape in SHAPES:
            c, k, r, stride, pad, h, w, factor, mode = shape
            base = pooled_conv(shape, "host")
            models = {b: copy.deepcopy(base) for b in ("host", "ref32", "ref64")}
            policy = f"default={factor},mode={mode}"
            pt.convert(models["host"], policy, backend="host")
            pt.convert(models["ref32"], str(factor) if mode == "avg" else policy, backend="reference")
            pt.convert(models["ref64"], str(factor) if mode == "avg" else policy, backend="reference")
            models["ref64"].double()
            x = torch.randn(2, c, h, w)
            dy = None
            results = {}
            for name, model in models.items():
                xi = (x.double() if name == "ref64" else x.clone()).requires_grad_()
                y = model(xi)
                if dy is None:
                    dy = torch.randn(y.shape)
                y.backward(dy.double() if name == "ref64" else dy)
                results[name] = (y.detach(), xi.grad, model[0].weight.grad, model[0].bias.grad)
            for i, what in enumerate(("y", "dx", "dw", "db")):
                ours = relative_error(results["host"][i], results["ref64"][i])
                torch32 = relative_error(results["ref32"][i], results["ref64"][i])
                self.assertLessEqual(ours, 2 * torch32 + 1e-6, f"{shape} {what}: poolprop {ours:.2e} from float64, "
                                     f"torch float32 {torch32:.2e}")
            print(f"{shape}: dw {relative_error(results['host'][2], results['ref64'][2]):.1e} from float64")

    def test_pooling_changes_the_weight_gradient(self):
        """The oracle is not vacuous: f=2 and f=1 weight gradients differ by far more than
        the tolerance above, and the pooled input the kernels save is the reference's."""
        shape = SHAPES[0]
        x = torch.randn(2, 8, 9, 7)
        grads = []
        for factor in (1, 2):
            model = pooled_conv(shape, "host")
            torch.manual_seed(3)
            torch.nn.init.normal_(model[0].weight)
            pt.convert(model, str(factor), backend="host")
            model(x).square().sum().backward()
            grads.append(model[0].weight.grad)
        self.assertGreater(relative_error(grads[1], grads[0]), 1e-2)
        xp = reference.pool(x, 2)
        self.assertEqual(tuple(xp.shape), (2, 8, 5, 4))
        self.assertAlmostEqual(xp[0, 0, 4, 3].item(), x[0, 0, 8, 6].item(), places=6)  # a 1x1 corner window

    def test_channels_last_and_contiguous_agree(self):
        """A contiguous (NCHW) input is converted at the boundary: the same bits as
        channels_last input."""
        model = pooled_conv(SHAPES[0], "host")
        pt.convert(model, "2", backend="host")
        x = torch.randn(2, 8, 9, 7)
        outs = []
        for xi in (x, x.contiguous(memory_format=torch.channels_last)):
            xi = xi.clone().requires_grad_()
            model.zero_grad()
            y = model(xi)
            y.square().sum().backward()
            outs.append((y.detach().clone(), xi.grad.clone(), model[0].weight.grad.clone()))
        for a, b in zip(*outs):
            self.assertTrue(torch.equal(a, b))
        self.assertTrue(outs[0][0].is_contiguous(memory_format=torch.channels_last))

    def test_new_batch_size(self):
        """A smaller last batch is a new shape, compiled on first use."""
        model = pooled_conv(SHAPES[0], "host")
        ref = copy.deepcopy(model)
        pt.convert(model, "2", backend="host")
        pt.convert(ref, "2", backend="reference")
        for n in (3, 1):
            x = torch.randn(n, 8, 9, 7)
            self.assertLess(relative_error(model(x), ref(x)), 1e-5)

    def test_report(self):
        model = SmallResNet()
        model.extra = torch.nn.Conv2d(16, 16, 3, groups=2)
        model.dilated = torch.nn.Conv2d(16, 16, 3, dilation=2)
        report = pt.convert(model, "stem=1,default=2", backend="host")
        replaced = dict(report.replaced)
        self.assertEqual(replaced["conv1"], "Conv2d -> PooledConv2d (f=1 avg)")
        self.assertEqual(replaced["layer2.0.downsample.0"], "Conv2d -> PooledConv2d (f=2 avg)")
        kept = {name: why for name, _, why in report.kept}
        self.assertIn("groups=2", kept["extra"])
        self.assertIn("dilation=(2, 2)", kept["dilated"])
        self.assertIsInstance(model.extra, torch.nn.Conv2d)
        self.assertIn("modules replaced", str(report))

    def test_lua_policy_file(self):
        """A .lua policy file means what it means to the CLI."""
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"pt_policy_{os.getpid()}.lua")
        with open(path, "w") as f:
            f.write('return { default = 4, stages = { stem = 1 }, layers = { ["layer1.0.conv2"] = 8 } }\n')
        try:
            model = SmallResNet()
            pt.convert(model, path, backend="host")
        finally:
            os.unlink(path)
        self.assertEqual(model.conv1.factor, 1)
        self.assertEqual(model.layer1[0].conv2.factor, 8)
        self.assertEqual(model.layer3[0].conv1.factor, 4)


class BadInputTest(unittest.TestCase):
    def setUp(self):
        self.model = pooled_conv(SHAPES[0], "host")
        pt.convert(self.model, "2", backend="host")

    def test_wrong_dtype(self):
        with self.assertRaisesRegex(poolprop.PoolpropError, "dtype torch.float64"):
            self.model(torch.randn(2, 8, 9, 7, dtype=torch.float64))

    def test_not_a_cpu_tensor(self):
        # No GPU here: a meta tensor stands for any tensor that is not on the CPU.
        with self.assertRaisesRegex(poolprop.PoolpropError, "meta tensor on the host backend"):
            self.model(torch.empty(2, 8, 9, 7, device="meta"))

    def test_wrong_channels_and_rank(self):
        with self.assertRaisesRegex(poolprop.PoolpropError, r"expected \(N, 8, H, W\)"):
            self.model(torch.randn(2, 7, 9, 7))
        with self.assertRaisesRegex(poolprop.PoolpropError, r"expected \(N, 8, H, W\)"):
            self.model(torch.randn(8, 9, 7))

    def test_bad_policy_leaves_model(self):
        model = SmallResNet()
        before = [type(m) for m in model.modules()]
        with self.assertRaisesRegex(poolprop.PoolpropError, "stage 'stage7'"):
            pt.convert(model, "stage7=2", backend="host")
        with self.assertRaisesRegex(poolprop.PoolpropError, "act=bf16"):
            pt.convert(model, "default=2,act=bf16", backend="host")
        self.assertEqual(before, [type(m) for m in model.modules()])

    def test_missing_library(self):
        """In a fresh interpreter, POOLPROP_LIB naming nothing: a clear error naming the
        path, and no module replaced."""
        code = ("import torch, poolprop, poolprop.torch as pt\n"
                "m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())\n"
                "try:\n    pt.convert(m, '2', backend='host')\n"
                "except poolprop.LibraryNotFoundError as e:\n    print('ERROR', e)\n"
                "print('TYPES', [type(x).__name__ for x in m])\n")
        env = dict(os.environ, POOLPROP_LIB="/nonexistent/libpoolprop.so")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("ERROR libpoolprop could not be loaded", out.stdout)
        self.assertIn("/nonexistent/libpoolprop.so: no such file", out.stdout)
        self.assertIn("TYPES ['Conv2d', 'ReLU']", out.stdout)


if __name__ == "__main__":
    if not LIB:
        sys.exit("POOLPROP_LIB is not set (CTest sets it)")
    unittest.main(verbosity=2)
