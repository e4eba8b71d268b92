"""Which library code a job runs, as one fingerprint: Snakemake reruns a job when it changes.

Snakemake's ``code`` rerun trigger watches a rule's ``script:`` file only, but the scripts are thin
adapters and all the logic lives in ``advbounds``. So each rule also receives, as a param, the
fingerprint of every ``advbounds`` module its script can import: a change to one of them re-plans
exactly the jobs that run it, and no other.

The import graph is read statically (``ast``), so the Snakefile stays torch-free and parses fast:
a script's ``import advbounds.x`` / ``from advbounds.x import y`` statements, wherever they are
(imports inside functions count), then the same for every module reached, relative imports
included. Importing a module runs its package's ``__init__`` files too, so those are part of the
closure. When ``y`` in ``from advbounds.x import y`` is a submodule, it is followed as well. A module
that imports by name at run time (``importlib.import_module``, as the lazy ``__getattr__`` of
``advbounds.report`` does) is taken to import every module of its package: a safe over-estimate.

The modules hashed are the ones the jobs will import: those of the ``advbounds`` package this
process imports (the editable install's ``src/advbounds`` in a checkout).
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

PACKAGE = "advbounds"


def package_root() -> Path:
    """The folder of the ``advbounds`` package that jobs import."""
    import advbounds

    return Path(advbounds.__file__).resolve().parent


@lru_cache(maxsize=None)
def _module_file(root: Path, dotted: str) -> Path | None:
    """The source file of module ``dotted`` (``advbounds.a.b``) under ``root``, if there is one."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(root: Path, path: Path) -> str:
    relative = path.relative_to(root).with_suffix("")
    parts = [PACKAGE, *relative.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _with_parents(dotted: str) -> list[str]:
    """``advbounds.a.b`` -> ``advbounds``, ``advbounds.a``, ``advbounds.a.b``: importing a module runs
    every enclosing package's ``__init__``."""
    parts = dotted.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imported_modules(source: str, *, module: str | None = None, is_package: bool = False) -> set[str]:
    """Dotted names of the ``advbounds`` modules (or names that may be modules) that ``source``
    imports. ``module`` is the importing module's own name, needed to resolve relative imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if module is None:
                    continue
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # ``from advbounds.x import y``: y may be a submodule (checked against the files later)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and _calls_import_module(node) and module is not None:
            package = module if is_package else module.rpartition(".")[0]
            found.add(f"{package}.*")
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


def _calls_import_module(node: ast.Call) -> bool:
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "import_module") or \
        (isinstance(func, ast.Attribute) and func.attr == "import_module")


@lru_cache(maxsize=None)
def _imports_of(path: Path, module: str | None, _stamp: tuple[int, int]) -> frozenset[str]:
    """``imported_modules`` of one file, parsed once per content stamp (mtime, size): a Snakefile
    parse asks for the same modules once per rule."""
    return frozenset(imported_modules(path.read_text(encoding="utf-8"), module=module,
                                      is_package=path.name == "__init__.py"))


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _closure(root: Path, script: Path) -> list[Path]:
    seen: dict[Path, None] = {}
    visited: set[str] = set()
    pending = list(_imports_of(script, None, _stamp(script)))
    while pending:
        name = pending.pop()
        if name in visited:
            continue
        visited.add(name)
        if name.endswith(".*"):  # every module of a package (see imported_modules)
            folder = root.joinpath(*name[:-2].split(".")[1:])
            pending.extend(_module_name(root, p) for p in sorted(folder.glob("*.py")))
            continue
        for dotted in _with_parents(name):
            path = _module_file(root, dotted)
            if path is None or path in seen:
                continue
            seen[path] = None
            pending.extend(_imports_of(path, _module_name(root, path), _stamp(path)))
    return sorted(seen)


def module_sources(script: str | Path, root: Path | None = None) -> list[Path]:
    """The source files of every ``advbounds`` module ``script`` imports, directly or not."""
    root = (root or package_root()).resolve()
    return _closure(root, Path(script).resolve())


def fingerprint(paths: Iterable[Path], root: Path) -> str:
    hasher = hashlib.blake2b(digest_size=12)
    for path in paths:
        hasher.update(path.relative_to(root).as_posix().encode())
        hasher.update(b"\0")
        hasher.update(path.read_bytes())
        hasher.update(b"\0")
    return hasher.hexdigest()


def code_fingerprint(script: str | Path, root: Path | None = None) -> str:
    """One hash of the sources of every ``advbounds`` module ``script`` imports (with their paths)."""
    root = (root or package_root()).resolve()
    return fingerprint(module_sources(script, root), root)
