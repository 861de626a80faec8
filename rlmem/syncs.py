"""Device-to-host synchronisations: counting them, and the CPU-only fast paths that may make them.

On an accelerator, reading a tensor's value on the host (``.item()``, ``bool(t)``, ``.tolist()``, ``.cpu()``,
``nonzero``, boolean-mask indexing, ...) waits for every queued kernel: one per rollout step serialises a GPU
loop (DESIGN.md, "No host syncs on hot paths"). On CPU the same calls are free, and a few code paths use them to
skip work (``TMazeVec`` skips the autoreset ops on steps where no row ended). Such a path asks
:func:`cpu_fast_path` first, so it is taken only on CPU and never inside :class:`SyncCounter`, which counts the
calls a block of code makes with a ``TorchFunctionMode``: on CPU, a cheap test that the accelerator path makes
none::

    with SyncCounter() as syncs:
        policy.step(obs, state, start)
    assert syncs.count == 0, syncs.calls
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

_strict = threading.local()


@contextmanager
def sync_free() -> Iterator[None]:
    """Inside the block :func:`cpu_fast_path` is false: code takes the paths it takes on an accelerator, which never
    branch on a tensor's value (what tracing for ``torch.export``/ONNX needs)."""
    was = getattr(_strict, "on", False)
    _strict.on = True
    try:
        yield
    finally:
        _strict.on = was


def cpu_fast_path(device: torch.device | str) -> bool:
    """True when a path that syncs with the host may be taken: on CPU, outside :class:`SyncCounter`."""
    return torch.device(device).type == "cpu" and not getattr(_strict, "on", False)


def _bool_index(args: tuple[Any, ...]) -> bool:
    """Indexing with a bool tensor (a data-dependent shape: ``nonzero`` underneath)."""
    if len(args) < 2:
        return False
    idx = args[1]
    items = idx if isinstance(idx, tuple) else (idx,)
    return any(isinstance(i, Tensor) and i.dtype == torch.bool for i in items)


# Always a sync on an accelerator.
_ALWAYS: set[Callable[..., Any]] = {
    Tensor.item, Tensor.tolist, Tensor.cpu, Tensor.numpy, Tensor.__bool__, Tensor.__int__, Tensor.__float__,
    Tensor.__index__, Tensor.nonzero, torch.nonzero, Tensor.argwhere, torch.argwhere, Tensor.masked_select,
    torch.masked_select, torch.unique, Tensor.unique, torch.unique_consecutive, Tensor.unique_consecutive,
    torch.repeat_interleave, Tensor.repeat_interleave,
}
# Syncs only when indexing with a bool tensor.
_INDEXING: set[Callable[..., Any]] = {Tensor.__getitem__, Tensor.__setitem__}


class SyncCounter(TorchFunctionMode):
    """Count host-synchronising tensor calls made inside the block (``count``, and ``calls`` by name).

    Inside the block :func:`cpu_fast_path` is false, so the code takes the path it would take on an accelerator.
    Not counted: ``.to("cpu")`` (on CPU it cannot be told from a dtype cast); syncs made inside C++ ops
    (``torch.bincount`` without ``minlength`` large enough, ``torch.equal``, ``allclose``, one-argument
    ``torch.where``, ``index_put`` with bool indices) and inside Python-level tensor methods that the mode does not
    re-enter (``np.asarray(t)``, ``f"{t}"``, ``x in t``). A zero count is evidence, not proof.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    @property
    def count(self) -> int:
        return sum(self.calls.values())

    def __enter__(self) -> SyncCounter:
        self._paths = sync_free()  # the accelerator's paths, whose syncs are counted
        self._paths.__enter__()
        super().__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        self._paths.__exit__(None, None, None)

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if func in _ALWAYS and not (func in (torch.repeat_interleave, Tensor.repeat_interleave)
                                    and (kwargs or {}).get("output_size") is not None):
            self.calls[getattr(func, "__qualname__", getattr(func, "__name__", str(func)))] += 1
        elif func in _INDEXING and _bool_index(args):
            self.calls[f"{func.__name__}[bool]"] += 1
        return func(*args, **(kwargs or {}))
