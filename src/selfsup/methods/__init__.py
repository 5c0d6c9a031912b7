"""Self-supervised methods, registered by name with ``@register_method``.

A method is one short file: heads + loss (+ teacher), implementing :class:`Method`. Build one with
``create_method(name, encoder, **params)``; ``params`` are checked against the method's ``Config``.
"""

from __future__ import annotations

from typing import Any

from selfsup.methods.base import Encoder, Method, StepOutput
from selfsup.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")
register_method = METHODS.register


def create_method(name: str, encoder: Encoder, **params: Any) -> Method:
    from selfsup.config import build_dataclass

    cls = METHODS.get(name)
    config = build_dataclass(cls.Config, params, where=f"method {name!r}")
    return cls(encoder, config)


def list_methods() -> list[str]:
    return METHODS.names()


import importlib as _importlib  # noqa: E402
import pkgutil as _pkgutil  # noqa: E402

# Every module of this package registers its method on import: a new method is one new file.
for _module in _pkgutil.iter_modules(__path__):
    if _module.name != "base":
        _importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "register_method", "create_method", "list_methods", "Method", "StepOutput", "Encoder"]
