# SPDX-License-Identifier: Apache-2.0
"""Copy the public names of an evloader module into a compat module."""
import importlib


def reexport(namespace: dict, module_name: str) -> None:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        namespace[name] = getattr(module, name)
