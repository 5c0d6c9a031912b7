"""Self-supervised methods, registered by name with ``@register_method``.

A method is one short file: heads + loss (+ teacher), implementing :class:`Method`. Build one with
``create_method(name, encoder, **params)``; ``params`` are checked against the method's ``Config``.
"""

from __future__ import annotations

import importlib as _importlib
import pkgutil as _pkgutil

from selfsup.methods.base import (
    METHODS, Encoder, Method, StepContext, StepOutput, create_method, list_methods, register_method,
)

# Every module of this package registers its method on import: a new method is one new file.
for _module in _pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "build"):
        _importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "register_method", "create_method", "list_methods", "Method", "StepOutput", "StepContext", "Encoder"]
