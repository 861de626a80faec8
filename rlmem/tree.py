"""Helpers for nested observations (tensor | dict | tuple), mirroring gymnasium's Dict/Tuple spaces."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar, cast, overload

from torch import Tensor

Leaf = TypeVar("Leaf")
# A tree with leaves of type Leaf: tensors here, numpy arrays when episodes are collected and written
Tree: TypeAlias = Leaf | dict[str, Any] | tuple[Any, ...]
Nested = Tree[Tensor]


@overload
def tree_map(fn: Callable[..., Any], tree: tuple[Any, ...], *rest: Tree[Any]) -> tuple[Any, ...]: ...
@overload
def tree_map(fn: Callable[..., Any], tree: dict[str, Any], *rest: Tree[Any]) -> dict[str, Any]: ...
@overload
def tree_map(fn: Callable[..., Leaf], tree: Tree[Any], *rest: Tree[Any]) -> Tree[Leaf]: ...
def tree_map(fn: Callable[..., Leaf], tree: Tree[Any], *rest: Tree[Any]) -> Tree[Leaf]:
    """Apply ``fn`` leaf-wise over one or more trees of the same structure."""
    if isinstance(tree, dict):
        same = cast("tuple[dict[str, Any], ...]", rest)  # the other trees have tree's structure
        return {k: tree_map(fn, v, *(r[k] for r in same)) for k, v in tree.items()}
    if isinstance(tree, tuple | list):
        return tuple(tree_map(fn, *leaves) for leaves in zip(tree, *rest, strict=True))
    return fn(tree, *rest)


def first_leaf(tree: Tree[Leaf]) -> Leaf:
    """Any leaf (used to read the batch size or device of an observation)."""
    while isinstance(tree, dict | tuple | list):
        tree = next(iter(tree.values())) if isinstance(tree, dict) else tree[0]
    return tree
