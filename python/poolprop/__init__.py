"""poolprop: pooled saved activations for CNN training, over libpoolprop (ctypes).

The library is found, in order: the path in $POOLPROP_LIB; libpoolprop.so next to this
package; the library folder of a `cmake --install` that put this package in
<prefix>/<libdir>/poolprop/python; the install prefixes (sys.prefix, /usr/local, /usr). poolprop.torch is the
PyTorch layer (import poolprop.torch as pt; pt.convert(model, policy="2")).
"""
from ._lib import Library, PoolpropError, LibraryNotFoundError, load_library

__all__ = ["Library", "PoolpropError", "LibraryNotFoundError", "load_library"]
__version__ = "0.1.0"
