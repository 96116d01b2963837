"""_lib.py - libpoolprop through ctypes: finding and loading the library, the structs of
poolprop.h that Python fills, contexts, convolution layers, ops and policies. Only the
public header's API is used. Pointers cross as integers (device addresses on cuda, host
addresses on the host backend); this module knows nothing of torch."""
import ctypes
import ctypes.util
import os
import sys
import threading

PP_OK = 0
BACKENDS = {"none": 0, "host": 1, "cuda": 2, "auto": 3}
BACKEND_NAMES = {v: k for k, v in BACKENDS.items()}
POOL_MODES = {"avg": 0, "max": 1}
OP_KINDS = {"relu": 0, "maxpool": 1, "batchnorm": 2}


class PoolpropError(RuntimeError):
    """A libpoolprop call failed; the message is the library's (pp_last_error)."""


class LibraryNotFoundError(PoolpropError, OSError):
    """libpoolprop could not be loaded from any of the places searched (listed)."""


class _ContextOptions(ctypes.Structure):  # pp_context_options
    _fields_ = [("backend", ctypes.c_int), ("cuda_device", ctypes.c_int), ("arch", ctypes.c_int),
                ("cache_dir", ctypes.c_char_p), ("disable_cache", ctypes.c_int), ("host_schedule", ctypes.c_int),
                ("host_seed", ctypes.c_uint32), ("host_threads", ctypes.c_int), ("log", ctypes.c_void_p),
                ("log_user", ctypes.c_void_p), ("tuning_dir", ctypes.c_char_p), ("ignore_tuning", ctypes.c_int),
                ("memory_limit", ctypes.c_size_t)]


class LayerDesc(ctypes.Structure):  # pp_layer_desc
    _fields_ = [("name", ctypes.c_char_p)] + [(f, ctypes.c_int) for f in (
        "n", "c", "h", "w", "k", "r", "s", "stride", "pad", "pool", "pool_mode", "storage",
        "variant_fwd", "variant_bwd_data", "variant_bwd_weight")]


class LayerShape(ctypes.Structure):  # pp_layer_shape
    _fields_ = [("p", ctypes.c_int), ("q", ctypes.c_int), ("hp", ctypes.c_int), ("wp", ctypes.c_int),
                ("x_elems", ctypes.c_size_t), ("w_elems", ctypes.c_size_t), ("y_elems", ctypes.c_size_t),
                ("xp_elems", ctypes.c_size_t)]


class PolicyOptions(ctypes.Structure):  # pp_policy_options
    _fields_ = [("mode", ctypes.c_int), ("bn_bf16", ctypes.c_int), ("act_bf16", ctypes.c_int),
                ("relu_mask", ctypes.c_int), ("math", ctypes.c_char * 8)]


class OpDesc(ctypes.Structure):  # pp_op_desc
    _fields_ = [("kind", ctypes.c_int), ("n", ctypes.c_int), ("c", ctypes.c_int), ("h", ctypes.c_int),
                ("w", ctypes.c_int), ("window", ctypes.c_int), ("stride", ctypes.c_int), ("padding", ctypes.c_int),
                ("eps", ctypes.c_double), ("momentum", ctypes.c_double), ("save_bf16", ctypes.c_int)]


_P = ctypes.c_void_p
_SIGNATURES = {
    # name: (restype, argtypes)
    "pp_status_string": (ctypes.c_char_p, [ctypes.c_int]),
    "pp_context_options_init": (None, [ctypes.POINTER(_ContextOptions)]),
    "pp_context_create": (ctypes.c_int, [ctypes.POINTER(_ContextOptions), ctypes.POINTER(_P)]),
    "pp_context_destroy": (None, [_P]),
    "pp_last_error": (ctypes.c_char_p, [_P]),
    "pp_context_backend": (ctypes.c_int, [_P]),
    "pp_context_backend_reason": (ctypes.c_char_p, [_P]),
    "pp_context_device_name": (ctypes.c_char_p, [_P]),
    "pp_layer_desc_init": (None, [ctypes.POINTER(LayerDesc)]),
    "pp_layer_create": (ctypes.c_int, [_P, ctypes.POINTER(LayerDesc), ctypes.POINTER(_P)]),
    "pp_layer_shape_get": (ctypes.c_int, [_P, ctypes.POINTER(LayerShape)]),
    "pp_layer_workspace_size": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_size_t)]),
    "pp_layer_forward": (ctypes.c_int, [_P, _P, _P, _P, _P, _P, _P]),
    "pp_layer_backward_data": (ctypes.c_int, [_P, _P, _P, _P, _P, _P]),
    "pp_layer_backward_weight": (ctypes.c_int, [_P, _P, _P, _P, _P, _P]),
    "pp_layer_destroy": (None, [_P]),
    "pp_policy_resolve": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p),
                                         ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_int),
                                         ctypes.POINTER(PolicyOptions)]),
}
# The ops beside the convolutions (pp_op_*); bound where the library has them.
_OP_SIGNATURES = {
    "pp_op_desc_init": (None, [ctypes.POINTER(OpDesc), ctypes.c_int]),
    "pp_op_create": (ctypes.c_int, [_P, ctypes.POINTER(OpDesc), ctypes.POINTER(_P)]),
    "pp_op_output_size": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]),
    "pp_op_workspace_size": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_size_t)]),
    "pp_op_destroy": (None, [_P]),
    "pp_relu_forward": (ctypes.c_int, [_P, _P, _P, _P, _P]),
    "pp_relu_backward": (ctypes.c_int, [_P, _P, _P, _P, _P]),
    "pp_maxpool_forward": (ctypes.c_int, [_P, _P, _P, _P, _P]),
    "pp_maxpool_backward": (ctypes.c_int, [_P, _P, _P, _P, _P, _P]),
    "pp_batchnorm_forward": (ctypes.c_int, [_P] * 12),
    "pp_batchnorm_backward": (ctypes.c_int, [_P] * 11),
}


def _candidate_paths():
    """Where the library is looked for, in order (see the package docstring)."""
    explicit = os.environ.get("POOLPROP_LIB")
    if explicit:
        return [explicit]
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.join(here, "libpoolprop.so"), os.path.join(here, "libpoolprop.so.0"),
             # cmake --install: <prefix>/<libdir>/poolprop/python/poolprop
             os.path.normpath(os.path.join(here, "..", "..", "..", "libpoolprop.so.0"))]
    prefixes = []
    for prefix in (sys.prefix, "/usr/local", "/usr"):
        if prefix not in prefixes:
            prefixes.append(prefix)
    for prefix in prefixes:
        for libdir in ("lib", "lib64", "lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu"):
            paths.append(os.path.join(prefix, libdir, "libpoolprop.so.0"))
    found = ctypes.util.find_library("poolprop")
    if found:
        paths.append(found)
    return paths


class Library:
    """libpoolprop, loaded once per path."""

    def __init__(self, path):
        self.path = path
        self.dll = ctypes.CDLL(path)
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(self.dll, name)
            fn.restype, fn.argtypes = restype, argtypes
        self.has_ops = all(hasattr(self.dll, name) for name in _OP_SIGNATURES)
        if self.has_ops:
            for name, (restype, argtypes) in _OP_SIGNATURES.items():
                fn = getattr(self.dll, name)
                fn.restype, fn.argtypes = restype, argtypes

    def context(self, backend="auto", device=0, cache_dir=None, host_threads=0):
        return Context(self, backend, device, cache_dir, host_threads)


_loaded = {}
_load_lock = threading.Lock()


def load_library():
    """The library from the first place that has one; LibraryNotFoundError lists every place
    tried and why each failed."""
    with _load_lock:
        tried = []
        for path in _candidate_paths():
            if path in _loaded:
                return _loaded[path]
            # A bare soname (from find_library) is left to the loader's search path.
            if os.path.sep in path and not os.path.exists(path):
                tried.append(f"{path}: no such file")
                continue
            try:
                lib = Library(path)
            except (OSError, AttributeError) as e:
                tried.append(f"{path}: {e}")
                continue
            _loaded[path] = lib
            return lib
        raise LibraryNotFoundError("libpoolprop could not be loaded; looked in:\n  " + "\n  ".join(tried) +
                                   "\nBuild it (cmake --build build) and set POOLPROP_LIB=build/runtime/libpoolprop.so,"
                                   " or install it (cmake --install build).")


class Context:
    """A pp_context: one backend and device; its calls are serialised by a lock (a context
    runs one call at a time)."""

    def __init__(self, lib, backend, device, cache_dir, host_threads):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.lib = lib
        self.lock = threading.RLock()
        options = _ContextOptions()
        lib.dll.pp_context_options_init(ctypes.byref(options))
        options.backend = BACKENDS[backend]
        options.cuda_device = int(device)
        options.host_threads = int(host_threads)
        if cache_dir:
            self._cache_dir = os.fsencode(cache_dir)
            options.cache_dir = self._cache_dir
        handle = _P()
        status = lib.dll.pp_context_create(ctypes.byref(options), ctypes.byref(handle))
        self.handle = handle
        if status != PP_OK:
            message = self.last_error()
            self.close()
            raise PoolpropError(f"poolprop context ({backend}): {message}")
        self.backend = BACKEND_NAMES[lib.dll.pp_context_backend(handle)]
        self.backend_reason = (lib.dll.pp_context_backend_reason(handle) or b"").decode()
        self.device_name = (lib.dll.pp_context_device_name(handle) or b"").decode()

    def last_error(self):
        return (self.lib.dll.pp_last_error(self.handle) or b"").decode(errors="replace")

    def check(self, status, what):
        if status != PP_OK:
            name = (self.lib.dll.pp_status_string(status) or b"").decode()
            raise PoolpropError(f"{what}: {self.last_error()} ({name})")

    def close(self):
        if getattr(self, "handle", None):
            self.lib.dll.pp_context_destroy(self.handle)
            self.handle = None

    def __del__(self):
        self.close()

    def resolve_policy(self, policy, names, stages):
        """Factors for the named convolutions, and the policy's options (PolicyOptions)."""
        count = len(names)
        c_names = (ctypes.c_char_p * max(count, 1))(*[n.encode() for n in names])
        c_stages = (ctypes.c_char_p * max(count, 1))(*[s.encode() for s in stages])
        factors = (ctypes.c_int * max(count, 1))()
        options = PolicyOptions()
        with self.lock:
            self.check(self.lib.dll.pp_policy_resolve(self.handle, os.fsencode(str(policy)), count, c_names,
                                                      c_stages, factors, ctypes.byref(options)),
                       f"policy {policy!r}")
        return list(factors)[:count], options

    def layer(self, **fields):
        return Layer(self, fields)

    def op(self, kind, **fields):
        if not self.lib.has_ops:
            raise PoolpropError(f"{self.lib.path} has no pp_op_* entry points (an older libpoolprop)")
        return Op(self, kind, fields)


class Layer:
    """A pp_layer: one convolution shape's compiled kernels."""

    def __init__(self, ctx, fields):
        self.ctx = ctx
        dll = ctx.lib.dll
        desc = LayerDesc()
        dll.pp_layer_desc_init(ctypes.byref(desc))
        self._name = fields.pop("name", "").encode()
        desc.name = self._name or None
        for key, value in fields.items():
            setattr(desc, key, int(value))
        self.desc = desc
        handle = _P()
        with ctx.lock:
            ctx.check(dll.pp_layer_create(ctx.handle, ctypes.byref(desc), ctypes.byref(handle)),
                      f"compiling convolution {self._name.decode() or '(unnamed)'}")
        self.handle = handle
        shape, workspace = LayerShape(), ctypes.c_size_t()
        ctx.check(dll.pp_layer_shape_get(handle, ctypes.byref(shape)), "layer shape")
        ctx.check(dll.pp_layer_workspace_size(handle, ctypes.byref(workspace)), "layer workspace")
        self.p, self.q, self.hp, self.wp = shape.p, shape.q, shape.hp, shape.wp
        self.workspace_bytes = workspace.value

    def forward(self, x, w, y, xp, workspace, stream):
        with self.ctx.lock:
            self.ctx.check(self.ctx.lib.dll.pp_layer_forward(self.handle, x, w, y, xp, workspace, stream),
                           "pp_layer_forward")

    def backward_data(self, dy, w, dx, workspace, stream):
        with self.ctx.lock:
            self.ctx.check(self.ctx.lib.dll.pp_layer_backward_data(self.handle, dy, w, dx, workspace, stream),
                           "pp_layer_backward_data")

    def backward_weight(self, saved, dy, dw, workspace, stream):
        with self.ctx.lock:
            self.ctx.check(self.ctx.lib.dll.pp_layer_backward_weight(self.handle, saved, dy, dw, workspace, stream),
                           "pp_layer_backward_weight")

    def __del__(self):
        if getattr(self, "handle", None) and self.ctx.handle:
            self.ctx.lib.dll.pp_layer_destroy(self.handle)
            self.handle = None


class Op:
    """A pp_op: a ReLU, max pool or batch norm of one shape, compiled."""

    def __init__(self, ctx, kind, fields):
        self.ctx = ctx
        self.kind = kind
        dll = ctx.lib.dll
        desc = OpDesc()
        dll.pp_op_desc_init(ctypes.byref(desc), OP_KINDS[kind])
        for key, value in fields.items():
            setattr(desc, key, value)
        handle = _P()
        with ctx.lock:
            ctx.check(dll.pp_op_create(ctx.handle, ctypes.byref(desc), ctypes.byref(handle)), f"compiling {kind}")
        self.handle = handle
        height, width, workspace = ctypes.c_int(), ctypes.c_int(), ctypes.c_size_t()
        ctx.check(dll.pp_op_output_size(handle, ctypes.byref(height), ctypes.byref(width)), f"{kind} output size")
        ctx.check(dll.pp_op_workspace_size(handle, ctypes.byref(workspace)), f"{kind} workspace")
        self.out_h, self.out_w, self.workspace_bytes = height.value, width.value, workspace.value

    def call(self, name, *pointers):
        with self.ctx.lock:
            self.ctx.check(getattr(self.ctx.lib.dll, name)(self.handle, *pointers), name)

    def __del__(self):
        if getattr(self, "handle", None) and self.ctx.handle:
            self.ctx.lib.dll.pp_op_destroy(self.handle)
            self.handle = None
