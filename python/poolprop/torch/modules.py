"""modules.py - the modules convert() puts in place of torch's: a pooled convolution, the
ReLU that saves a 1-bit mask, the max pool that saves 1-byte indices, and batch norm that
saves its input in bf16. Each keeps the replaced module's parameters and buffers (the same
objects, so an optimizer built before convert() still holds them) and runs libpoolprop's
kernels on the caller's tensors and current stream, saving only what it names through
ctx.save_for_backward (so saved_bytes sees it). Tensors cross in PyTorch's channels_last
memory format; a contiguous NCHW input is converted at the boundary (one copy)."""
import torch
import torch.nn.functional as F

from .._lib import POOL_MODES, PoolpropError
from . import reference
from .runtime import channels_last, pointer


class PooledConv2d(torch.nn.Module):
    """Conv2d (groups 1, dilation 1, zero padding) whose weight gradient reads the input
    pooled by `factor`; forward and input gradient exact. runtime None: the pure-PyTorch
    reference (reference.py)."""

    def __init__(self, conv, factor, mode, runtime, name):
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride, self.padding = conv.kernel_size, conv.stride[0], conv.padding[0]
        self.factor, self.mode, self.layer_name = factor, mode, name
        self.runtime = runtime

    def extra_repr(self):
        backend = self.runtime.backend if self.runtime else "reference"
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}, factor={self.factor}, mode={self.mode}, "
                f"backend={backend}")

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise PoolpropError(f"{self.layer_name}: input of shape {tuple(x.shape)}; expected (N, "
                                f"{self.in_channels}, H, W)")
        if self.runtime is None:
            return reference.pooled_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.factor,
                                           self.mode)
        self.runtime.check_tensor(x, f"{self.layer_name} input")
        self.runtime.check_tensor(self.weight, f"{self.layer_name} weight")
        return _PooledConv2dFunction.apply(x, self.weight, self.bias, self)

    def compiled_layer(self, x):
        """The library's layer for x's shape, compiled on first use."""
        n, c, h, w = x.shape
        k, _, r, s = self.weight.shape
        key = (n, c, h, w, k, r, s, self.stride, self.padding, self.factor, self.mode)
        return self.runtime.layer(key, name=self.layer_name, n=n, c=c, h=h, w=w, k=k, r=r, s=s, stride=self.stride,
                                  pad=self.padding, pool=self.factor, pool_mode=POOL_MODES[self.mode])


class _PooledConv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, module):
        layer = module.compiled_layer(x)
        rt = module.runtime
        x_cl = channels_last(x, f"{module.layer_name} input")
        w_cl = weight.detach().contiguous(memory_format=torch.channels_last)  # (K,R,S,C) in memory
        n, c = x.shape[0], x.shape[1]
        options = dict(dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
        y = torch.empty((n, module.out_channels, layer.p, layer.q), **options)
        xp = torch.empty((n, c, layer.hp, layer.wp), **options) if module.factor > 1 else None
        workspace = rt.workspace(layer.workspace_bytes, x.device)
        layer.forward(pointer(x_cl), pointer(w_cl), pointer(y), pointer(xp), pointer(workspace), rt.stream(x.device))
        if bias is not None:
            y.add_(bias.detach().view(1, -1, 1, 1))
        # What the weight gradient reads: xp, or x itself (channels last) when f = 1.
        ctx.save_for_backward(xp if xp is not None else x_cl, weight)
        ctx.module, ctx.layer, ctx.x_shape, ctx.has_bias = module, layer, tuple(x.shape), bias is not None
        return y

    @staticmethod
    def backward(ctx, dy):
        saved, weight = ctx.saved_tensors
        module, layer, rt = ctx.module, ctx.layer, ctx.module.runtime
        dy_cl = channels_last(dy, f"{module.layer_name} output gradient")
        w_cl = weight.detach().contiguous(memory_format=torch.channels_last)
        workspace = rt.workspace(layer.workspace_bytes, dy.device)
        stream = rt.stream(dy.device)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = torch.empty(ctx.x_shape, dtype=dy.dtype, device=dy.device, memory_format=torch.channels_last)
            layer.backward_data(pointer(dy_cl), pointer(w_cl), pointer(dx), pointer(workspace), stream)
        if ctx.needs_input_grad[1]:
            dw = torch.empty(weight.shape, dtype=weight.dtype, device=weight.device,
                             memory_format=torch.channels_last)
            layer.backward_weight(pointer(saved), pointer(dy_cl), pointer(dw), pointer(workspace), stream)
            if dw.stride() != weight.stride():
                # The weight's own strides, which .grad and DDP's gradient buckets expect
                # (a copy of the small weight gradient).
                dw = torch.empty_like(weight, memory_format=torch.preserve_format).copy_(dw)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy.sum(dim=(0, 2, 3))
        return dx, dw, db, None


class MaskReLU(torch.nn.Module):
    """ReLU that saves one bit per element (the sign of its output) instead of a tensor."""

    def __init__(self, inplace, runtime, name):
        super().__init__()
        self.inplace, self.runtime, self.layer_name = inplace, runtime, name

    def extra_repr(self):
        return f"inplace={self.inplace}, saves=1-bit mask"

    def forward(self, x):
        self.runtime.check_tensor(x, f"{self.layer_name} input")
        return _MaskReLUFunction.apply(x, self)


class _MaskReLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, module):
        rt = module.runtime
        count = x.numel()
        # Element-wise: any layout works as long as forward and backward agree; the
        # output keeps x's memory format.
        # The mask follows memory order, so backward must see dy in x's memory format.
        memory_format = torch.channels_last if x.dim() == 4 and x.is_contiguous(
            memory_format=torch.channels_last) and not x.is_contiguous() else torch.contiguous_format
        x_c = x.contiguous(memory_format=memory_format)
        op = rt.op(("relu", count), "relu", n=1, c=count, h=1, w=1)
        in_place = module.inplace and x_c is x  # a strided x was copied: the copy is the output
        y = x_c if in_place else torch.empty_like(x_c)
        if in_place:
            ctx.mark_dirty(x)
        mask = torch.empty(((count + 31) // 32,), dtype=torch.int32, device=x.device)
        op.call("pp_relu_forward", pointer(x_c), pointer(y), pointer(mask), rt.stream(x.device))
        ctx.save_for_backward(mask)
        ctx.op, ctx.rt, ctx.memory_format = op, rt, memory_format
        return y

    @staticmethod
    def backward(ctx, dy):
        (mask,) = ctx.saved_tensors
        dy_c = dy.contiguous(memory_format=ctx.memory_format)
        dx = torch.empty_like(dy_c, memory_format=ctx.memory_format)
        ctx.op.call("pp_relu_backward", pointer(dy_c), pointer(mask), pointer(dx), ctx.rt.stream(dy.device))
        return dx, None


class IndexMaxPool2d(torch.nn.Module):
    """MaxPool2d (floor mode, dilation 1) that saves a 1-byte window index per output."""

    def __init__(self, pool, runtime, name):
        super().__init__()
        self.window, self.stride, self.padding = pool.kernel_size, pool.stride, pool.padding
        self.runtime, self.layer_name = runtime, name

    def extra_repr(self):
        return f"kernel_size={self.window}, stride={self.stride}, padding={self.padding}, saves=1-byte indices"

    def forward(self, x):
        self.runtime.check_tensor(x, f"{self.layer_name} input")
        return _IndexMaxPoolFunction.apply(x, self)


class _IndexMaxPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, module):
        rt = module.runtime
        n, c, h, w = x.shape
        key = ("maxpool", n, c, h, w, module.window, module.stride, module.padding)
        op = rt.op(key, "maxpool", n=n, c=c, h=h, w=w, window=module.window, stride=module.stride,
                   padding=module.padding)
        x_cl = channels_last(x, f"{module.layer_name} input")
        options = dict(device=x.device, memory_format=torch.channels_last)
        y = torch.empty((n, c, op.out_h, op.out_w), dtype=x.dtype, **options)
        argmax = torch.empty((n, c, op.out_h, op.out_w), dtype=torch.uint8, **options)
        op.call("pp_maxpool_forward", pointer(x_cl), pointer(y), pointer(argmax), rt.stream(x.device))
        ctx.save_for_backward(argmax)
        ctx.op, ctx.rt, ctx.x_shape = op, rt, (n, c, h, w)
        return y

    @staticmethod
    def backward(ctx, dy):
        (argmax,) = ctx.saved_tensors
        dy_cl = channels_last(dy, "max pool output gradient")
        dx = torch.empty(ctx.x_shape, dtype=dy.dtype, device=dy.device, memory_format=torch.channels_last)
        workspace = ctx.rt.workspace(ctx.op.workspace_bytes, dy.device)
        ctx.op.call("pp_maxpool_backward", pointer(dy_cl), pointer(argmax), pointer(dx), pointer(workspace),
                    ctx.rt.stream(dy.device))
        return dx, None


class Bf16BatchNorm2d(torch.nn.Module):
    """BatchNorm2d (affine, running statistics) that saves its input in bf16 for the
    backward pass. Evaluation mode is torch's own batch norm: it saves nothing."""

    def __init__(self, bn, runtime, name):
        super().__init__()
        self.weight, self.bias = bn.weight, bn.bias
        self.register_buffer("running_mean", bn.running_mean)
        self.register_buffer("running_var", bn.running_var)
        self.register_buffer("num_batches_tracked", bn.num_batches_tracked)
        self.eps, self.momentum, self.num_features = bn.eps, bn.momentum, bn.num_features
        self.runtime, self.layer_name = runtime, name

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, saves=bf16 input"

    def forward(self, x):
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0,
                                self.eps)
        self.runtime.check_tensor(x, f"{self.layer_name} input")
        self.num_batches_tracked.add_(1)
        return _Bf16BatchNormFunction.apply(x, self.weight, self.bias, self)


class _Bf16BatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, module):
        rt = module.runtime
        n, c, h, w = x.shape
        op = rt.op(("batchnorm", n, c, h, w, module.eps, module.momentum), "batchnorm", n=n, c=c, h=h, w=w,
                   eps=float(module.eps), momentum=float(module.momentum), save_bf16=1)
        x_cl = channels_last(x, f"{module.layer_name} input")
        y = torch.empty_like(x_cl, memory_format=torch.channels_last)
        mean = torch.empty(c, dtype=torch.float32, device=x.device)
        invstd = torch.empty_like(mean)
        x_bf16 = torch.empty((n, c, h, w), dtype=torch.bfloat16, device=x.device, memory_format=torch.channels_last)
        workspace = rt.workspace(op.workspace_bytes, x.device)
        op.call("pp_batchnorm_forward", pointer(x_cl), pointer(weight), pointer(bias), pointer(module.running_mean),
                pointer(module.running_var), pointer(y), pointer(mean), pointer(invstd), pointer(x_bf16),
                pointer(workspace), rt.stream(x.device))
        ctx.save_for_backward(x_bf16, weight, mean, invstd)
        ctx.op, ctx.rt = op, rt
        return y

    @staticmethod
    def backward(ctx, dy):
        x_bf16, weight, mean, invstd = ctx.saved_tensors
        dy_cl = channels_last(dy, "batch norm output gradient")
        dx = torch.empty_like(dy_cl, memory_format=torch.channels_last)
        dgamma, dbeta = torch.empty_like(weight), torch.empty_like(weight)
        workspace = ctx.rt.workspace(ctx.op.workspace_bytes, dy.device)
        ctx.op.call("pp_batchnorm_backward", pointer(dy_cl), pointer(x_bf16), pointer(weight), pointer(mean),
                    pointer(invstd), pointer(dx), pointer(dgamma), pointer(dbeta), pointer(workspace),
                    ctx.rt.stream(dy.device))
        return dx, dgamma, dbeta, None
