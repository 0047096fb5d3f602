"""The package's layout rules, checked on its source (issue 15's "done when").

- no module over :data:`MAX_MODULE_LINES` lines (migrations aside), no class over
  :data:`MAX_CLASS_LINES`;
- the package is imported at module level only: an import inside a function would hide an
  import cycle, unless its line says why it is lazy (``# lazy import: ...``);
- every public module declares its API in ``__all__``: every name in it exists, and every
  public class or function the module defines is in it.

Which way imports point is import-linter's job (``lint-imports``; contracts in
``pyproject.toml``, described in ``docs/architecture.md``).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

import django_iron_kyc

PACKAGE = Path(django_iron_kyc.__file__).parent
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 300


def _source_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def _dotted(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_public(path: Path) -> bool:
    """Not private (no part starts with ``_``) and not a management command."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    private = any(part.startswith("_") and part != "__init__" for part in parts)
    return not private and "management" not in parts


SOURCES = [pytest.param(path, id=_dotted(path) or path.name) for path in _source_modules()]
PUBLIC = [pytest.param(_dotted(p), id=_dotted(p)) for p in _source_modules() if _is_public(p)]


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@pytest.mark.parametrize("path", SOURCES)
def test_no_module_is_over_the_size_limit(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_dotted(path)} has {lines} lines: split it by job"


@pytest.mark.parametrize("path", SOURCES)
def test_no_class_is_over_the_size_limit(path: Path) -> None:
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
            size = node.end_lineno - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"{_dotted(path)}.{node.name} has {size} lines"


def _imports_the_package(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").startswith("django_iron_kyc")
    if isinstance(node, ast.Import):
        return any(alias.name.startswith("django_iron_kyc") for alias in node.names)
    return False


@pytest.mark.parametrize("path", SOURCES)
def test_the_package_is_imported_at_module_level(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    nested = [
        f"line {node.lineno} in {func.name}()"
        for func in ast.walk(_tree(path))
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(func)
        if _imports_the_package(node) and "lazy import:" not in lines[node.lineno - 1]
    ]
    assert nested == [], f"{_dotted(path)} imports the package inside functions: {nested}"


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_module_declares_exactly_its_api(name: str) -> None:
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    assert [n for n in module.__all__ if not hasattr(module, n)] == []
    assert len(set(module.__all__)) == len(module.__all__)
    defined = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith(("_", "pytest_"))  # pytest_*: hooks of the pytest plugin
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == name
    }
    assert defined - set(module.__all__) == set(), f"{name}: public but not in __all__"


def test_the_layout_covers_the_whole_package() -> None:
    """The checks above see every module: a test that finds nothing cannot fail."""
    names = {_dotted(path) for path in _source_modules()}
    assert {"django_iron_kyc.services.state", "django_iron_kyc.webhooks.storage"} <= names
    assert len(PUBLIC) > 40


README = PACKAGE.parent / "README.md"


def _readme_api() -> dict[str, set[str]]:
    """The README's API reference table: module -> the names it lists."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## API reference", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(django_iron_kyc[\w.]*)` \| [^|]* \| (.*) \|$", section, re.M)
    return {module: set(re.findall(r"`([\w]+)`", names)) for module, names in rows}


# Named internal in the README's API reference: these packages' modules, and these modules.
INTERNAL_PACKAGES = ("services", "webhooks", "api", "views", "admin", "checks", "testing.fake")
INTERNAL_MODULES = ("apps", "checks", "enqueue", "validators", "testing.signals")
INTERNAL_MODULES += ("testing.webhook_sender",)


def _internal(name: str) -> bool:
    relative = name.removeprefix("django_iron_kyc.")
    return relative in INTERNAL_MODULES or any(
        relative.startswith(f"{package}.") for package in INTERNAL_PACKAGES
    )


def test_the_readme_lists_exactly_the_public_api() -> None:
    listed = _readme_api()
    for name, names in listed.items():
        assert names == set(importlib.import_module(name).__all__), f"README's row for {name}"
    section = README.read_text(encoding="utf-8").split("## API reference", 1)[1]
    for package in INTERNAL_PACKAGES:
        assert f"`{package}`" in section.split("\n## ", 1)[0]
    unlisted = [p.values[0] for p in PUBLIC if p.values[0] not in listed]
    assert [name for name in unlisted if not _internal(name)] == []
