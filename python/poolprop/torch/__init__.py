"""poolprop.torch: pooled saved activations in a PyTorch model, through ctypes (nothing is
built against torch).

    import poolprop.torch as pt
    report = pt.convert(model, policy="stem=1,default=2")   # in place; print(report)
    pt.saved_bytes(model, x)                                # what autograd saves

reference.pooled_conv2d is the pure-PyTorch oracle (convert(..., backend="reference"))."""
from .convert import ConvertReport, convert, saved_bytes, stage_of
from .modules import Bf16BatchNorm2d, IndexMaxPool2d, MaskReLU, PooledConv2d
from . import reference

__all__ = ["convert", "saved_bytes", "ConvertReport", "stage_of", "PooledConv2d", "MaskReLU", "IndexMaxPool2d",
           "Bf16BatchNorm2d", "reference"]
