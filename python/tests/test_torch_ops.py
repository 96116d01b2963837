"""test_torch_ops.py - the lean modules poolprop.torch puts in place of torch's, on the host
backend, against torch's own modules: MaskReLU (1-bit mask; in place and not, with
channels_last and contiguous inputs and output gradients in either layout), IndexMaxPool2d
(1-byte indices, ResNet's 3x3/2 pad 1 and 2x2/2), Bf16BatchNorm2d (forward and running
statistics as torch's; backward as the float64 formula evaluated on the bf16-rounded input;
evaluation mode), and what each saves."""
import copy
import sys
import unittest

import torch

import poolprop.torch as pt
from common import LIB, relative_error

torch.manual_seed(2)
FORMATS = (torch.contiguous_format, torch.channels_last)


def run(model, x, dy):
    """Output and input gradient; the input passes through an identity first, so that an
    in-place module never writes to a leaf."""
    x = x.clone().requires_grad_()
    y = model(x * 1.0)
    y.backward(dy)
    return y.detach(), x.grad


class OpsTest(unittest.TestCase):
    def check_against_torch(self, module, shape, tolerance=0.0):
        """The converted module gives torch's output and input gradient, for every pairing
        of input and output-gradient layouts."""
        for x_format in FORMATS:
            for dy_format in FORMATS:
                plain = torch.nn.Sequential(copy.deepcopy(module))
                ours = copy.deepcopy(plain)
                report = pt.convert(ours, "2", backend="host")
                self.assertEqual(len(report.replaced), 1, str(report))
                x = torch.randn(shape).contiguous(memory_format=x_format)
                x[0, 0, 0, :3] = 0.0  # ties and zeros
                x_ref = x.clone().requires_grad_()
                y_ref = plain(x_ref * 1.0)
                dy = torch.randn(y_ref.shape).contiguous(memory_format=dy_format)
                y_ref.backward(dy)
                y, dx = run(ours, x, dy)
                self.assertLessEqual(relative_error(y, y_ref.detach()), tolerance, f"{module} y ({x_format})")
                self.assertLessEqual(relative_error(dx, x_ref.grad), tolerance,
                                     f"{module} dx ({x_format}, dy {dy_format})")

    def test_relu(self):
        self.check_against_torch(torch.nn.ReLU(), (2, 5, 7, 3))
        self.check_against_torch(torch.nn.ReLU(inplace=True), (3, 8, 4, 4))

    def test_maxpool(self):
        # dx sums up to 4 gradients where 3x3/2 windows overlap, in another order than
        # torch's scatter: float32 rounding of one addition (1e-7) at most.
        self.check_against_torch(torch.nn.MaxPool2d(3, 2, 1), (2, 4, 9, 8), tolerance=1e-7)
        self.check_against_torch(torch.nn.MaxPool2d(2, 2), (2, 4, 7, 6))

    def test_relu_and_maxpool_save_little(self):
        x = torch.randn(2, 8, 16, 16)
        for module, lean in ((torch.nn.ReLU(), 2 * 8 * 16 * 16 // 8), (torch.nn.MaxPool2d(3, 2, 1), 2 * 8 * 8 * 8)):
            model = torch.nn.Sequential(copy.deepcopy(module))
            pt.convert(model, "2", backend="host")
            self.assertEqual(pt.saved_bytes(model, x.clone().requires_grad_()), lean, str(module))

    def test_batchnorm_bf16(self):
        for x_format in FORMATS:
            bn = torch.nn.BatchNorm2d(6, momentum=0.2)
            torch.nn.init.normal_(bn.weight)
            torch.nn.init.normal_(bn.bias)
            plain, ours = torch.nn.Sequential(copy.deepcopy(bn)), torch.nn.Sequential(copy.deepcopy(bn))
            report = pt.convert(ours, "default=2,bn=bf16", backend="host")
            self.assertEqual(report.replaced[0][1], "BatchNorm2d -> Bf16BatchNorm2d (bf16 save)")
            x = (3.0 + torch.randn(4, 6, 5, 7)).contiguous(memory_format=x_format)
            dy = torch.randn(4, 6, 5, 7)
            for _ in range(2):  # running statistics move twice
                y_ref = plain(x)
                xo = x.clone().requires_grad_()
                y = ours(xo)
            # Forward and running statistics: torch's, to float32 rounding.
            self.assertLess(relative_error(y.detach(), y_ref.detach()), 1e-6)
            self.assertLess(relative_error(ours[0].running_mean, plain[0].running_mean), 1e-6)
            self.assertLess(relative_error(ours[0].running_var, plain[0].running_var), 1e-6)
            self.assertEqual(ours[0].num_batches_tracked.item(), 2)
            y.backward(dy)
            # Backward: the float64 formula on the bf16-rounded input, with the forward's
            # statistics (of the exact input).
            xd, dyd = x.double(), dy.double()
            mean = xd.mean(dim=(0, 2, 3), keepdim=True)
            invstd = 1.0 / (xd.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + bn.eps).sqrt()
            xhat = (x.bfloat16().double() - mean) * invstd
            count = x.numel() / 6
            dbeta = dyd.sum(dim=(0, 2, 3))
            dgamma = (dyd * xhat).sum(dim=(0, 2, 3))
            gamma = bn.weight.detach().double().view(1, -1, 1, 1)
            dx = gamma * invstd / count * (count * dyd - dbeta.view(1, -1, 1, 1) - xhat * dgamma.view(1, -1, 1, 1))
            # Float32 sums of 140 products per channel, and bf16 input (which the formula
            # shares): 1e-5 relative.
            self.assertLess(relative_error(ours[0].bias.grad, dbeta), 1e-5)
            self.assertLess(relative_error(ours[0].weight.grad, dgamma), 1e-5)
            self.assertLess(relative_error(xo.grad, dx), 1e-5)
            # And the bf16 save is felt: the exact-input gradient is further away.
            xhat_exact = (xd - mean) * invstd
            self.assertGreater(relative_error((dyd * xhat_exact).sum(dim=(0, 2, 3)), dgamma), 1e-4)

    def test_batchnorm_eval_and_saved(self):
        bn = torch.nn.BatchNorm2d(4)
        ours = torch.nn.Sequential(copy.deepcopy(bn))
        pt.convert(ours, "default=2,bn=bf16", backend="host")
        x = torch.randn(2, 4, 8, 8)
        # Training: the bf16 copy (2 bytes per element) and mean, invstd (C floats each).
        self.assertEqual(pt.saved_bytes(ours, x.clone().requires_grad_()), 2 * x.numel() + 2 * 4 * 4)
        ours.eval()
        bn.load_state_dict(ours[0].state_dict())  # the running statistics training moved
        bn.eval()
        self.assertTrue(torch.equal(ours(x), bn(x)))

    def test_bad_input(self):
        model = torch.nn.Sequential(torch.nn.ReLU())
        pt.convert(model, "2", backend="host")
        with self.assertRaisesRegex(Exception, "dtype torch.float64"):
            model(torch.randn(3, 3, dtype=torch.float64))
        pool = torch.nn.Sequential(torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True), torch.nn.MaxPool2d(2, dilation=2))
        report = pt.convert(pool, "2", backend="host")
        kept = {name: why for name, _, why in report.kept}
        self.assertIn("ceil_mode", kept["0"])
        self.assertIn("dilation", kept["1"])


if __name__ == "__main__":
    if not LIB:
        sys.exit("POOLPROP_LIB is not set (CTest sets it)")
    unittest.main(verbosity=2)
