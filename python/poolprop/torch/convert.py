"""convert.py - convert(model, policy) replaces, in place, the modules of a PyTorch model
that poolprop runs (Conv2d, ReLU, MaxPool2d, BatchNorm2d under bn=bf16) and reports what
it replaced and what it left, and why; saved_bytes(model, x) measures what autograd saves."""
import torch

from .._lib import PolicyOptions, PoolpropError
from .modules import Bf16BatchNorm2d, IndexMaxPool2d, MaskReLU, PooledConv2d
from .runtime import runtime_for


class ConvertReport:
    """What convert() did: replaced [(name, what)] and kept [(name, type, why)]."""

    def __init__(self, backend, policy):
        self.backend, self.policy = backend, policy
        self.replaced, self.kept = [], []

    def __str__(self):
        lines = [f"poolprop.torch.convert: policy {self.policy!r} on the {self.backend} backend: "
                 f"{len(self.replaced)} modules replaced, {len(self.kept)} kept"]
        lines += [f"  replaced {name}: {what}" for name, what in self.replaced]
        lines += [f"  kept     {name} ({kind}): {why}" for name, kind, why in self.kept]
        return "\n".join(lines)


def stage_of(name):
    """The policy stage of a torchvision-style module name: conv1 -> stem, layerN.* ->
    stageN, fc -> head, anything else none ("")."""
    head = name.split(".")[0]
    if name in ("conv1", "bn1"):
        return "stem"
    if head.startswith("layer") and head[5:].isdigit():
        return "stage" + head[5:]
    if head == "fc":
        return "head"
    return ""


def _conv_unsupported(conv):
    """Why poolprop cannot run this Conv2d, or None."""
    if conv.groups != 1:
        return f"groups={conv.groups} (poolprop's kernels take groups 1)"
    if tuple(conv.dilation) != (1, 1):
        return f"dilation={tuple(conv.dilation)} (poolprop's kernels take dilation 1)"
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r} (poolprop pads with zeros)"
    if isinstance(conv.padding, str):
        return f"padding={conv.padding!r} (give the padding as numbers)"
    if conv.stride[0] != conv.stride[1] or conv.padding[0] != conv.padding[1]:
        return f"stride {tuple(conv.stride)} / padding {tuple(conv.padding)} differ between height and width"
    return None


def _pool_unsupported(pool):
    if pool.ceil_mode:
        return "ceil_mode=True (poolprop's max pool is floor mode)"
    if pool.dilation not in (1, (1, 1)):
        return f"dilation={pool.dilation}"
    if pool.return_indices:
        return "return_indices=True"
    for what in ("kernel_size", "stride", "padding"):
        v = getattr(pool, what)
        if isinstance(v, tuple) and len(set(v)) != 1:
            return f"{what}={v} differs between height and width"
    window = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
    padding = pool.padding if isinstance(pool.padding, int) else pool.padding[0]
    if window > 16:
        return f"kernel_size={window} (the 1-byte index holds windows up to 16 x 16)"
    if padding > window // 2:
        return f"padding={padding} > kernel_size/2"
    return None


def _bn_unsupported(bn):
    if not bn.affine or not bn.track_running_stats:
        return "affine=False or track_running_stats=False (poolprop's BN has both)"
    if bn.momentum is None:
        return "momentum=None (cumulative averages); poolprop's BN takes a momentum"
    return None


def _square(v):
    return v if isinstance(v, int) else v[0]


def convert(model, policy="2", backend="auto", device=0, cache_dir=None):
    """Replaces, in place, model's Conv2d (pooled weight-gradient input), and where the
    library has the ops: ReLU (1-bit mask), MaxPool2d (1-byte indices) and, under
    bn=bf16, BatchNorm2d (bf16 input save). policy: text or a .lua file, as the CLI's.
    backend: "auto", "host", "cuda", or "reference" (pure PyTorch convolutions, for
    comparison; never chosen for you). Returns a ConvertReport. Every check (library,
    context, policy, shapes) happens before the first module is replaced: on an error the
    model is as it was."""
    named = list(model.named_modules())
    convs = [(n, m) for n, m in named if type(m) is torch.nn.Conv2d]
    plan, kept = [], []
    supported = []
    for name, conv in convs:
        why = _conv_unsupported(conv)
        if why:
            kept.append((name, "Conv2d", why))
        else:
            supported.append((name, conv))
    if backend == "reference":
        rt = None
        factors, options = _reference_policy(policy, [n for n, _ in supported])
        report = ConvertReport("reference", policy)
    else:
        rt = runtime_for(backend, device, cache_dir)
        names = [n for n, _ in supported]
        factors, options = rt.ctx.resolve_policy(policy, names, [stage_of(n) for n in names])
        report = ConvertReport(rt.backend, policy)
        if options.act_bf16:
            raise PoolpropError(f"policy {policy!r}: act=bf16 (bf16 activations everywhere) is not supported by "
                                "poolprop.torch; use bn=bf16, or torch.autocast for bf16 activations")
    mode = "max" if options.mode == 1 else "avg"
    for (name, conv), factor in zip(supported, factors):
        plan.append((name, PooledConv2d(conv, factor, mode, rt, name),
                     f"Conv2d -> PooledConv2d (f={factor} {mode})"))
    ops_available = rt is not None and rt.lib.has_ops
    for name, module in named:
        kind = type(module)
        if kind not in (torch.nn.ReLU, torch.nn.MaxPool2d, torch.nn.BatchNorm2d):
            continue
        label = kind.__name__
        if rt is None:
            kept.append((name, label, "the reference backend runs torch's own"))
            continue
        if not ops_available:
            kept.append((name, label, f"{rt.lib.path} has no pp_op entry points"))
            continue
        if kind is torch.nn.ReLU:
            if options.relu_mask:
                plan.append((name, MaskReLU(module.inplace, rt, name), "ReLU -> MaskReLU (1-bit mask)"))
            else:
                kept.append((name, label, "the policy keeps the full ReLU output (baseline)"))
        elif kind is torch.nn.MaxPool2d:
            why = _pool_unsupported(module)
            if why:
                kept.append((name, label, why))
            elif options.relu_mask:
                pool = IndexMaxPool2d(module, rt, name)
                pool.window, pool.stride, pool.padding = (_square(module.kernel_size), _square(module.stride),
                                                          _square(module.padding))
                plan.append((name, pool, "MaxPool2d -> IndexMaxPool2d (1-byte indices)"))
            else:
                kept.append((name, label, "the policy keeps what a framework saves (baseline)"))
        else:
            why = _bn_unsupported(module)
            if why:
                kept.append((name, label, why))
            elif options.bn_bf16:
                plan.append((name, Bf16BatchNorm2d(module, rt, name), "BatchNorm2d -> Bf16BatchNorm2d (bf16 save)"))
            else:
                kept.append((name, label, "the policy saves BN inputs in fp32 (bn=bf16 saves them in bf16)"))
    for name, replacement, what in plan:
        _set_module(model, name, replacement)
        report.replaced.append((name, what))
    report.kept = kept
    return report


def _reference_policy(policy, names):
    """The reference backend needs no library for the simplest policies (a factor); any
    other policy is resolved by the library, whose parser is the CLI's."""
    text = str(policy).strip()
    if text.isdigit():
        if int(text) not in (1, 2, 4, 8):
            raise PoolpropError(f"policy: pool factor must be 1, 2, 4 or 8, got '{text}'")

        options = PolicyOptions()
        options.relu_mask = 1
        return [int(text)] * len(names), options
    return runtime_for("none").ctx.resolve_policy(policy, names, [stage_of(n) for n in names])


def _set_module(model, name, replacement):
    parent = model
    parts = name.split(".")
    for part in parts[:-1]:
        parent = getattr(parent, part)
    setattr(parent, parts[-1], replacement)


def saved_bytes(model, *inputs, **kwargs):
    """Bytes autograd saves for backward during one forward of model(*inputs): each storage
    counted once (an in-place ReLU's output that the next convolution saves too is one
    storage), parameters and buffers left out (they are resident anyway)."""
    resident = {_storage_key(t) for t in list(model.parameters()) + list(model.buffers())}
    seen = {}

    def pack(t):
        key = _storage_key(t)
        if key[0] and key not in resident and key not in seen:
            seen[key] = _storage_bytes(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        output = model(*inputs, **kwargs)
    total = sum(seen.values())
    del output
    return total


def _storage_key(t):
    storage = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
    return (storage.data_ptr(), str(t.device))


def _storage_bytes(t):
    storage = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
    return storage.nbytes()
