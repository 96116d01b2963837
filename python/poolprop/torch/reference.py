"""reference.py - the pooled convolution in plain PyTorch: the oracle poolprop.torch's tests
compare the library's kernels against, and a backend of its own (convert(...,
backend="reference")), chosen only by name, never as a fallback.

    y  = conv2d(x, w, b, stride, padding)                       exact
    xp = pool(x): f x f windows at stride f, ceil mode, the mean (or max) of the elements
         that exist (DESIGN.md section 1)
    dx = conv2d_input(x.shape, w, dy)                           exact
    dw = conv2d_weight(unpool(xp), w.shape, dy)                 unpool: nearest, cut to H x W
"""
import torch
import torch.nn.functional as F


def pool(x, factor, mode="avg"):
    """x (N,C,H,W) -> (N,C,ceil(H/f),ceil(W/f))."""
    if factor == 1:
        return x
    if mode == "max":
        return F.max_pool2d(x, factor, factor, ceil_mode=True)
    # With padding 0 and ceil mode, a window cut by the border divides by the elements
    # that exist, as DESIGN.md's pooling does.
    return F.avg_pool2d(x, factor, factor, ceil_mode=True, count_include_pad=False)


def unpool(xp, factor, height, width):
    """Nearest-neighbour: xu[n,c,h,w] = xp[n,c,h//f,w//f], (N,C,height,width)."""
    if factor == 1:
        return xp
    return xp.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)[:, :, :height, :width]


class PooledConv2dFunction(torch.autograd.Function):
    """The reference pooled convolution as an autograd function: it saves pool(x), not x."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, factor, mode):
        y = F.conv2d(x, weight, bias, stride, padding)
        ctx.save_for_backward(pool(x, factor, mode), weight)
        ctx.geometry = (tuple(x.shape), stride, padding, factor, bias is not None)
        return y

    @staticmethod
    def backward(ctx, dy):
        saved, weight = ctx.saved_tensors
        x_shape, stride, padding, factor, has_bias = ctx.geometry
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = torch.nn.grad.conv2d_input(x_shape, weight, dy, stride, padding)
        if ctx.needs_input_grad[1]:
            xu = unpool(saved, factor, x_shape[2], x_shape[3])
            dw = torch.nn.grad.conv2d_weight(xu, weight.shape, dy, stride, padding)
        if has_bias and ctx.needs_input_grad[2]:
            db = dy.sum(dim=(0, 2, 3))
        return dx, dw, db, None, None, None, None


def pooled_conv2d(x, weight, bias=None, stride=1, padding=0, factor=1, mode="avg"):
    """The reference pooled convolution of x (N,C,H,W) with weight (K,C,R,S)."""
    return PooledConv2dFunction.apply(x, weight, bias, stride, padding, factor, mode)
