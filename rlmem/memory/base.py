"""The memory contract (DESIGN.md, "The memory contract") and the registry of memories.

Every memory is a ``torch.nn.Module`` with

    output_size: int
    initial_state(batch_size, device=None) -> dict[str, Tensor]      # batch-first tensors
    forward(x[B,T,D], state, episode_start[B,T] bool, *, need_state=True)
        -> (y[B,T,output_size], new_state | None)

* ``episode_start[b, t]`` means the state used at step ``t`` of row ``b`` is exactly
  ``initial_state`` for that row, within the same call.
* Any split of a sequence into calls (step-wise, whole, chunked) gives the same outputs and state.
* Rows never influence each other. A state handed back never changes in anything its future depends on
  (``essential``): a memory may write into a state's tensors only where that state never reads (ELMUR's step, on
  CPU in inference mode, writes position ``t mod K`` of its segment caches in place when nothing else refers to
  them), else it copies.
* ``need_state=False`` lets a memory skip computing the final state (it then returns ``None``), like
  ``need_weights`` in ``nn.MultiheadAttention``: training on stored chunk states never uses it.

Two optional hooks, no-ops by default, let a memory learn from outside gradient descent (SAT's Adaptive Memory
Allocator): trainers call ``feedback(score)`` after every update (higher is better: PPO passes the rollout's mean
episode return, the offline trainer minus its loss) and log what it returns under ``memory/``, and call
``on_train_end()`` before the final checkpoint.

``tests/test_memory_contract.py`` checks all of this for every registered memory.
"""

from __future__ import annotations

import abc
import difflib
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

State = dict[str, Tensor]

MEMORIES: dict[str, type[Memory]] = {}


class Memory(nn.Module, abc.ABC):
    """Base class of every memory; subclasses set ``output_size`` in ``__init__``."""

    output_size: int

    @abc.abstractmethod
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The state every episode starts from, as batch-first tensors."""

    @abc.abstractmethod
    def forward(
        self, x: Tensor, state: State, episode_start: Tensor, *, need_state: bool = True
    ) -> tuple[Tensor, State | None]:
        """``x [B, T, D]``, ``episode_start [B, T]`` bool -> ``y [B, T, output_size]``, new state."""

    def essential(self, state: State) -> State:
        """The part of ``state`` its future depends on (all of it by default): what stays unchanged in a state
        handed back (the contract suite compares it). A memory whose steps reuse buffers in place blanks the parts
        the state never reads."""
        return state

    def feedback(self, score: float) -> dict[str, float]:
        """Called by trainers after each update with a score of it (higher is better); returns diagnostics."""
        return {}

    def on_train_end(self) -> None:  # noqa: B027 - optional hook
        """Called by trainers before the final checkpoint."""

    def _factory(self, device: torch.device | str | None) -> dict[str, Any]:
        """dtype/device of this module's parameters, for building state tensors."""
        p = next(self.parameters(), None)
        dtype = p.dtype if p is not None else torch.get_default_dtype()
        if device is None:
            device = p.device if p is not None else "cpu"
        return {"dtype": dtype, "device": device}


def register(name: str) -> Callable[[type[Memory]], type[Memory]]:
    """Class decorator adding a memory to ``MEMORIES`` under ``name``."""

    def deco(cls: type[Memory]) -> type[Memory]:
        if name in MEMORIES:
            raise ValueError(f"memory {name!r} is already registered ({MEMORIES[name].__qualname__})")
        MEMORIES[name] = cls
        return cls

    return deco


def build(name: str, input_size: int, **cfg: Any) -> Memory:
    """Build the memory registered as ``name`` with inputs of width ``input_size``.

    Raises ``KeyError`` for an unknown name and ``TypeError`` for an argument the memory does not take,
    naming the close matches and the accepted arguments.
    """
    if name not in MEMORIES:
        close = difflib.get_close_matches(name, list(MEMORIES), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise KeyError(f"unknown memory {name!r}; registered: {sorted(MEMORIES)}.{hint}")
    cls = MEMORIES[name]
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p not in ("self", "input_size")]
    unknown = [k for k in cfg if k not in accepted]
    if unknown:
        raise TypeError(f"memory {name!r} got unknown argument(s) {unknown}; it accepts {accepted}")
    return cls(input_size, **cfg)
