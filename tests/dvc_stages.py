"""dvc.yaml as the tests see it: each stage expanded per dataset (or pair of datasets), its
script, deps, params and outs.

Also the `reid` import closure of a script, computed from the code's own import statements, so
that a test can compare what a stage runs with what dvc.yaml says it depends on.
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Stage:
    name: str  # e.g. "train_resnet50@market1501", "cross_eval@market1501-cuhk03"
    argv: tuple[str, ...]  # the command without "python"
    deps: tuple[str, ...]
    params: tuple[str, ...]
    outs: tuple[str, ...]

    @property
    def script(self) -> Path:
        return REPO / self.argv[0]


def _substitute(value: str, item: dict[str, str]) -> str:
    """`item` maps each placeholder (`${item}`, `${item.train}`) to its value."""
    for placeholder, replacement in item.items():
        value = value.replace(placeholder, replacement)
    return value


def _resolve(value: object, params: dict) -> list:
    """A `foreach`/`matrix` list: `${key}` names a params list, else the literal list."""
    if isinstance(value, str):
        return params[value.removeprefix("${").removesuffix("}")]
    return list(value)


def _items(stage: dict, params: dict) -> list[tuple[str | None, dict[str, str]]]:
    """(name suffix, placeholders) of each item: DVC names `foreach` items `stage@value` and
    `matrix` items `stage@value1-value2` (in the order of the matrix keys)."""
    if "foreach" in stage:
        return [(str(v), {"${item}": str(v)}) for v in _resolve(stage["foreach"], params)]
    if "matrix" in stage:
        axes = {key: _resolve(values, params) for key, values in stage["matrix"].items()}
        return [
            ("-".join(map(str, combo)),
             {f"${{item.{key}}}": str(v) for key, v in zip(axes, combo, strict=True)})
            for combo in itertools.product(*axes.values())
        ]
    return [(None, {})]


def _names(entries: list) -> list[str]:
    """dvc.yaml list entries are strings or one-key mappings (`path: {cache: false}`)."""
    return [e if isinstance(e, str) else next(iter(e)) for e in entries or []]


def dvc_stages(repo: Path = REPO) -> list[Stage]:
    """Every stage of `repo/dvc.yaml`, `foreach` and `matrix` stages expanded over their
    items."""
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    params = yaml.safe_load((repo / "params.yaml").read_text())
    stages = []
    for name, stage in spec["stages"].items():
        body = stage.get("do", stage)
        for suffix, item in _items(stage, params):
            cmd = _substitute(body["cmd"], item).split()
            assert cmd[0] == "python", f"{name}: expected a `python stages/...` command"
            stages.append(Stage(
                name=f"{name}@{suffix}" if suffix is not None else name,
                argv=tuple(cmd[1:]),
                deps=tuple(_substitute(d, item) for d in _names(body.get("deps"))),
                params=tuple(_substitute(p, item) for p in _names(body.get("params"))),
                outs=tuple(_substitute(o, item) for o in _names(body.get("outs"))),
            ))
    return stages


def _module_file(module: str, repo: Path) -> Path | None:
    base = repo.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_lazy_attribute(node: ast.AST, tree: ast.Module) -> bool:
    """A module-level `def __getattr__` (PEP 562): it runs only when code outside asks for a
    missing attribute (`reid.load_model`), which no stage does."""
    return isinstance(node, ast.FunctionDef) and node.name == "__getattr__" and node in tree.body


def imported_modules(path: Path, package: str, *, lazy: bool = False) -> set[str]:
    """Names of the modules `path` imports when it runs, inside functions too (`if
    TYPE_CHECKING:` blocks skipped; a module's lazy `__getattr__` too unless `lazy`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = {
        id(n) for block in ast.walk(tree)
        if (isinstance(block, ast.If) and _is_type_checking(block))
        or (not lazy and _is_lazy_attribute(block, tree))
        for stmt in block.body for n in ast.walk(stmt)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            # `from reid.data import manifest` imports the submodule reid.data.manifest
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_closure(script: Path, repo: Path = REPO) -> set[Path]:
    """The files of the `reid` package that running `script` imports, transitively.

    A module counts with every package above it (importing `reid.data.manifest` runs
    `reid/__init__.py` and `reid/data/__init__.py` first).
    """
    seen: set[Path] = set()
    todo = [(script, "")]
    while todo:
        path, package = todo.pop()
        for name in imported_modules(path, package):
            if name != "reid" and not name.startswith("reid."):
                continue
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                module = ".".join(parts[:depth])
                found = _module_file(module, repo)
                if found is None or found in seen:
                    continue
                seen.add(found)
                is_package = found.name == "__init__.py"
                todo.append((found, module if is_package else ".".join(parts[: depth - 1])))
    return seen
