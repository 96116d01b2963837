"""runtime.py - what poolprop.torch's modules share: the libpoolprop context of each
(backend, device), compiled layers and ops cached by shape, the caller-side memory (tensor
pointers, workspaces from torch's allocator, the current CUDA stream) and the checks at the
boundary between torch tensors and the kernels' layout."""
import threading

import torch

from .._lib import PoolpropError, load_library

_runtimes = {}
_runtimes_lock = threading.Lock()


class Runtime:
    """One libpoolprop context, its backend fixed ("host" or "cuda"), with the layers and
    ops it compiled, one per shape (a new batch size is a new shape)."""

    def __init__(self, backend, device, cache_dir):
        self.lib = load_library()
        self.ctx = self.lib.context(backend, device, cache_dir)
        self.backend = self.ctx.backend
        self.device_index = device
        self._layers, self._ops = {}, {}
        self._lock = threading.Lock()

    def layer(self, key, **fields):
        with self._lock:
            if key not in self._layers:
                self._layers[key] = self.ctx.layer(**fields)
            return self._layers[key]

    def op(self, key, kind, **fields):
        with self._lock:
            if key not in self._ops:
                self._ops[key] = self.ctx.op(kind, **fields)
            return self._ops[key]

    def check_tensor(self, t, what, dtype=torch.float32):
        """A tensor the kernels may read: on this runtime's device, of dtype."""
        if self.backend == "host" and t.device.type != "cpu":
            raise PoolpropError(f"{what}: a {t.device} tensor on the host backend, which runs on CPU tensors "
                                f"(convert with backend='cuda' for GPU tensors)")
        if self.backend == "cuda":
            if t.device.type != "cuda":
                raise PoolpropError(f"{what}: a {t.device} tensor on the cuda backend, which runs on CUDA tensors")
            if t.device.index != self.device_index:
                raise PoolpropError(f"{what}: a tensor on cuda:{t.device.index}, but this model's poolprop "
                                    f"context runs on cuda:{self.device_index}")
        if t.dtype != dtype:
            raise PoolpropError(f"{what}: dtype {t.dtype}; poolprop.torch takes {dtype} here")

    def stream(self, device):
        """The caller's current stream (a CUstream as an integer); None on the host."""
        if self.backend != "cuda":
            return None
        return torch.cuda.current_stream(device).cuda_stream

    @staticmethod
    def workspace(nbytes, device):
        """Scratch from torch's allocator, so that the framework accounts for it."""
        if nbytes == 0:
            return None
        return torch.empty(nbytes, dtype=torch.uint8, device=device)


def runtime_for(backend, device=0, cache_dir=None):
    """The shared runtime of (backend, device); backend "auto" is resolved by the library
    (cuda where a usable GPU and driver are found, else host)."""
    key = (backend, device, cache_dir)
    with _runtimes_lock:
        if key not in _runtimes:
            _runtimes[key] = Runtime(backend, device, cache_dir)
        return _runtimes[key]


def pointer(t):
    """The address of a tensor's first element, or None."""
    return None if t is None else t.data_ptr()


def channels_last(t, what):
    """t (N,C,H,W) with NHWC memory: itself when it has it already (PyTorch's
    channels_last, the fast path), else a copy (the cost of a contiguous NCHW tensor)."""
    if t.dim() != 4:
        raise PoolpropError(f"{what}: a {t.dim()}-D tensor; poolprop.torch takes (N,C,H,W)")
    if t.is_contiguous(memory_format=torch.channels_last):
        return t
    return t.contiguous(memory_format=torch.channels_last)
