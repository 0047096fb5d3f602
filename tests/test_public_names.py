"""Each module of the rules and the client declares its public names in ``__all__``."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

from django_iron_kyc import checks, client, conf, exceptions, signing, validators


@pytest.mark.parametrize(
    "module", [checks, client, conf, exceptions, signing, validators], ids=lambda m: m.__name__
)
def test_all_lists_every_public_class_and_function_the_module_defines(module: ModuleType):
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    }
    assert defined <= set(module.__all__)
    assert [name for name in module.__all__ if not hasattr(module, name)] == []
    assert len(set(module.__all__)) == len(module.__all__)
