"""One registry mechanism for everything looked up by name.

Algorithms, augmenters, confidence policies, chat backends, baselines and routing strategies each
have a :class:`Registry`, filled by its decorator where the class is defined::

    ALGORITHMS: Registry[SSLAlgorithm] = Registry("algorithm", modules=("guardmatch.algorithms",))

    @ALGORITHMS.register("fixmatch")
    class FixMatch(SSLAlgorithm): ...

``modules`` are imported on the first lookup, so a registry whose classes live in other (possibly
heavy) modules costs nothing until it is used.
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterable, TypeVar

from guardmatch.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> class. ``register(name)`` also sets the class's ``name`` attribute to ``name``."""

    def __init__(self, kind: str, modules: Iterable[str] = ()) -> None:
        self.kind = kind
        self._modules = tuple(modules)
        self._loaded = not self._modules
        self._items: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: register the class under ``name``."""

        def decorator(cls: type[T]) -> type[T]:
            known = self._items.get(name)
            if known is not None and known is not cls:
                raise ValueError(f"{self.kind} {name!r} is already registered to {known.__name__}")
            cls.name = name  # type: ignore[attr-defined]
            self._items[name] = cls
            return cls

        return decorator

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; :class:`UnknownNameError` lists the available names."""
        self._load()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items
