"""Read an official UWM `models.pt` safely, without the official code installed.

The official `train.py` saves `torch.save({"model", "optimizer", "scheduler", "scaler",
"action_normalizer", "lowdim_normalizer", "step"})`. Besides tensors, that pickle names
`datasets.utils.normalizer.{LinearNormalizer, NestedDictLinearNormalizer}` (the official
normaliser classes), numpy arrays, and, in the optimizer's param groups, omegaconf
`ListConfig`/`DictConfig` objects (train.py passes `**config.optimizer`, so `betas` is a
ListConfig whose parent is the whole optimizer config).

`torch.load(weights_only=True)` refuses those, and `weights_only=False` would run whatever the
file names. Here the pickle goes through `SafeUnpickler`, whose `find_class` resolves only an
allow-list (see `_allowed_globals`): torch's tensor-rebuild functions and dtypes (storages are
resolved by torch.load itself), numpy's array/dtype/scalar reconstruction, a few builtin
containers, `collections.OrderedDict`/`defaultdict`, `_codecs.encode` restricted to latin-1
(protocol-2 bytes), and inert stand-ins for the official normaliser and omegaconf classes,
which are converted to our `LinearNormalizer` and plain lists/dicts after loading. Any other
global (`os.system`, `builtins.eval`, `subprocess.Popen`, ...) stops the load with an error
that names it, before anything is called.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import collections
import pickle
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import CheckpointError
from .normalizer import IdentityNormalizer, LinearNormalizer, NormalizerError, NormalizerSet


class RefusedGlobalError(pickle.UnpicklingError):
    """The pickle names a class or function that is not on the allow-list."""


# ---- inert stand-ins for the classes the official pickle names --------------------------------
class _Stub:
    """Built by pickle's NEWOBJ + BUILD; only stores its state, never runs foreign code."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def state(self) -> dict:
        s = self.__dict__.get("_state")
        if isinstance(s, tuple) and len(s) == 2:  # (dict state, slot state)
            merged = dict(s[0] or {})
            merged.update(s[1] or {})
            return merged
        return s if isinstance(s, dict) else {}


class OfficialLinearNormalizer(_Stub):
    """Stand-in for `datasets.utils.normalizer.LinearNormalizer` (state: numpy `scale`, `offset`)."""


class OfficialNestedNormalizer(dict):
    """Stand-in for `datasets.utils.normalizer.NestedDictLinearNormalizer` (a dict of normalisers)."""


class OmegaListConfig(_Stub):
    """Stand-in for omegaconf `ListConfig`; `_content` holds its nodes."""


class OmegaDictConfig(_Stub):
    """Stand-in for omegaconf `DictConfig`; `_content` maps keys to nodes."""


class OmegaValueNode(_Stub):
    """Stand-in for omegaconf value nodes (`AnyNode`, `FloatNode`, ...); `_val` is the value."""


class OmegaMetadata(_Stub):
    """Stand-in for omegaconf `Metadata`/`ContainerMetadata` (dropped on conversion)."""


_TYPING_ANY = object()  # what `typing.Any` becomes (it only appears inside omegaconf metadata)


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles store bytes as _codecs.encode(str, "latin1"); allow nothing else.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise RefusedGlobalError(f"refusing _codecs.encode with encoding {encoding!r} (only latin1 is allowed)")
    return text.encode("latin1")


def _numpy_multiarray() -> types.ModuleType:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {}
    # torch: tensor rebuilding (storages come through torch.load's own find_class) and dtypes.
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter"):
        if hasattr(torch._utils, name):
            allowed[("torch._utils", name)] = getattr(torch._utils, name)
    for name in dir(torch):
        if isinstance(getattr(torch, name, None), torch.dtype):
            allowed[("torch", name)] = getattr(torch, name)
    allowed[("torch", "device")] = torch.device
    allowed[("torch", "Size")] = torch.Size
    # numpy: array, dtype and scalar reconstruction, under both the 1.x and 2.x module names.
    ma = _numpy_multiarray()
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = ma._reconstruct
        allowed[(mod, "scalar")] = ma.scalar
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for name in dir(getattr(np, "dtypes", None) or ()):  # numpy >= 1.25 pickles some dtypes by class
        cls = getattr(np.dtypes, name)
        if isinstance(cls, type) and issubclass(cls, np.dtype):
            allowed[("numpy.dtypes", name)] = cls
    # plain containers and scalars
    for name in ("set", "frozenset", "list", "dict", "tuple", "int", "float", "complex", "bool", "str", "bytes", "bytearray", "slice"):
        allowed[("builtins", name)] = getattr(builtins, name)
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    allowed[("collections", "defaultdict")] = collections.defaultdict
    allowed[("_codecs", "encode")] = _latin1_encode
    allowed[("typing", "Any")] = _TYPING_ANY
    # the official normaliser classes and omegaconf's containers -> inert stand-ins
    allowed[("datasets.utils.normalizer", "LinearNormalizer")] = OfficialLinearNormalizer
    allowed[("datasets.utils.normalizer", "NestedDictLinearNormalizer")] = OfficialNestedNormalizer
    allowed[("omegaconf.listconfig", "ListConfig")] = OmegaListConfig
    allowed[("omegaconf.dictconfig", "DictConfig")] = OmegaDictConfig
    allowed[("omegaconf.base", "Metadata")] = OmegaMetadata
    allowed[("omegaconf.base", "ContainerMetadata")] = OmegaMetadata
    for node in ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "BytesNode", "PathNode"):
        allowed[("omegaconf.nodes", node)] = OmegaValueNode
    return allowed


_ALLOWED = _allowed_globals()


class SafeUnpickler(pickle.Unpickler):
    """A pickle.Unpickler whose `find_class` resolves only `_ALLOWED` (usable on plain pickles too)."""

    def find_class(self, module: str, name: str) -> Any:
        module, name = _python3_name(module, name)
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobalError(
                f"refusing to load {module}.{name}: it is not on the allow-list of classes an official "
                "UWM checkpoint needs (tensors, numpy arrays, containers, normalizers, omegaconf lists)"
            ) from None


def _python3_name(module: str, name: str) -> tuple[str, str]:
    # Protocol-2 pickles (torch.save's default) spell some globals the Python 2 way
    # (`__builtin__.long`, `commands.Popen`); translate as the stdlib unpickler does.
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def safe_loads(data: bytes) -> Any:
    """Unpickle bytes with the allow-list (for plain pickles; checkpoints go through `read_official`)."""
    import io

    return SafeUnpickler(io.BytesIO(data)).load()


# What torch.load gets as `pickle_module`: it subclasses `.Unpickler` (keeping our find_class).
safe_pickle = types.ModuleType("uwm_robot_safe_pickle")
safe_pickle.Unpickler = SafeUnpickler
safe_pickle.UnpicklingError = pickle.UnpicklingError
safe_pickle.loads = safe_loads
safe_pickle.load = lambda f, **kw: SafeUnpickler(f, **kw).load()


# ---- after loading: stand-ins -> plain data ---------------------------------------------------
def to_plain(obj: Any) -> Any:
    """Stand-ins -> lists/dicts/values; defaultdicts -> dicts; tensors and arrays unchanged."""
    if isinstance(obj, OmegaListConfig):
        content = obj.state().get("_content")
        return [to_plain(v) for v in content] if isinstance(content, list) else content
    if isinstance(obj, OmegaDictConfig):
        content = obj.state().get("_content")
        return {k: to_plain(v) for k, v in content.items()} if isinstance(content, dict) else content
    if isinstance(obj, OmegaValueNode):
        return to_plain(obj.state().get("_val"))
    if isinstance(obj, OmegaMetadata) or obj is _TYPING_ANY:
        return None
    if isinstance(obj, OfficialLinearNormalizer):
        return _to_linear_normalizer(obj)
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, to_plain(v)) for k, v in obj.items())
    if isinstance(obj, dict):  # includes defaultdict and OfficialNestedNormalizer
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_plain(v) for v in obj)
    return obj


def _to_linear_normalizer(obj: OfficialLinearNormalizer) -> LinearNormalizer:
    state = obj.state()
    try:
        scale = np.asarray(state["scale"], dtype=np.float64).reshape(-1)
        offset = np.asarray(state["offset"], dtype=np.float64).reshape(-1)
        return LinearNormalizer(scale, offset)
    except KeyError as e:
        raise CheckpointError(f"official LinearNormalizer lacks {e}; it has {sorted(state)}") from None
    except (NormalizerError, ValueError, TypeError) as e:
        raise CheckpointError(f"official LinearNormalizer is malformed: {e}") from None


def _flatten_normalizers(tree: Any, prefix: str = "") -> dict[str, LinearNormalizer]:
    out: dict[str, LinearNormalizer] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten_normalizers(v, f"{prefix}{k}."))
        elif isinstance(v, LinearNormalizer):
            out[f"{prefix}{k}"] = v
        else:
            raise CheckpointError(f"lowdim_normalizer[{prefix}{k}] is a {type(v).__name__}, not a LinearNormalizer")
    return out


# ---- reading ----------------------------------------------------------------------------------
@dataclass
class OfficialCheckpoint:
    """The parts of an official `models.pt` we use, as plain objects."""

    state_dict: dict[str, torch.Tensor]
    action_normalizer: LinearNormalizer | None  # None: actions were not normalised (LIBERO)
    lowdim_normalizers: dict[str, LinearNormalizer]
    step: int | None
    other: dict[str, Any] = field(default_factory=dict)  # optimizer/scheduler/scaler as plain data

    def normalizers(self, action_dim: int) -> NormalizerSet:
        action = self.action_normalizer if self.action_normalizer is not None else IdentityNormalizer(action_dim)
        if action.dim is not None and action.dim != action_dim:
            raise CheckpointError(f"action normalizer has {action.dim} dims but the model's action_dim is {action_dim}")
        return NormalizerSet(action, dict(self.lowdim_normalizers))


def read_official(path: str | Path, map_location: str | torch.device = "cpu") -> OfficialCheckpoint:
    """Load an official `models.pt` through the allow-listed unpickler; CheckpointError if anything is off."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: not a torch zip checkpoint (the file is truncated, or a legacy/non-torch format; "
            f"size {path.stat().st_size} bytes)"
        )
    try:
        raw = torch.load(path, map_location=map_location, pickle_module=safe_pickle, weights_only=False, mmap=False)
    except RefusedGlobalError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except Exception as e:  # torch reports zip/record/pickle damage with assorted types
        raise CheckpointError(f"{path}: cannot read the torch checkpoint ({type(e).__name__}: {e}); it may be truncated or corrupt") from None
    if not isinstance(raw, dict) or "model" not in raw:
        keys = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"{path}: expected the official dict with a 'model' entry, found {keys}")

    state_dict = raw["model"]
    if not isinstance(state_dict, dict) or not state_dict:
        raise CheckpointError(f"{path}: 'model' is not a non-empty state dict ({type(state_dict).__name__})")
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: 'model' has {len(bad)} non-tensor entries, e.g. {bad[:5]}")

    action = to_plain(raw.get("action_normalizer"))
    if action is not None and not isinstance(action, LinearNormalizer):
        raise CheckpointError(f"{path}: action_normalizer is a {type(action).__name__}, not a LinearNormalizer")
    lowdim = to_plain(raw.get("lowdim_normalizer")) or {}
    if not isinstance(lowdim, dict):
        raise CheckpointError(f"{path}: lowdim_normalizer is a {type(lowdim).__name__}, not a dict")
    step = raw.get("step")
    other = {k: to_plain(v) for k, v in raw.items() if k not in ("model", "action_normalizer", "lowdim_normalizer", "step")}
    return OfficialCheckpoint(
        state_dict=dict(state_dict),
        action_normalizer=action,
        lowdim_normalizers=_flatten_normalizers(lowdim),
        step=int(step) if isinstance(step, int) else None,
        other=other,
    )
