"""dvc.yaml against the code: each stage depends on exactly the `reid` modules it imports.

A module a stage imports but does not list lets `dvc repro` call stale results up to date after
that module changes; a listed module it does not import re-runs the stage for nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dvc_stages import REPO, dvc_stages, import_closure

STAGES = dvc_stages()


def covered_files(deps: tuple[str, ...], repo: Path = REPO) -> dict[str, set[Path]]:
    """Each `reid/...` dep of a stage -> the Python files it stands for (a folder: all below)."""
    files = {}
    for dep in deps:
        if dep.split("/")[0] != "reid":
            continue
        path = repo / dep
        files[dep] = set(path.rglob("*.py")) if path.is_dir() else {path}
    return files


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_depends_on_its_script(stage):
    assert stage.argv[0] in stage.deps
    assert stage.script.is_file()


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_deps_cover_every_imported_module(stage):
    imported = import_closure(stage.script)
    listed = set().union(*covered_files(stage.deps).values())
    missing = sorted(str(p.relative_to(REPO)) for p in imported - listed)
    assert not missing, f"{stage.name} imports but does not depend on: {missing}"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_deps_list_no_module_it_does_not_import(stage):
    imported = import_closure(stage.script)
    extra = {
        dep: sorted(str(p.relative_to(REPO)) for p in files - imported)
        for dep, files in covered_files(stage.deps).items() if files - imported
    }
    assert not extra, f"{stage.name} depends on code it never imports: {extra}"


def test_import_closure_follows_imports(tmp_path):
    """The closure is transitive, counts parent packages and skips TYPE_CHECKING imports."""
    pkg = tmp_path / "reid"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import inner\n")
    (pkg / "sub" / "inner.py").write_text("def f():\n    from reid import late\n")
    (pkg / "late.py").write_text("")
    (pkg / "typed.py").write_text("")
    (pkg / "unused.py").write_text("")
    script = tmp_path / "stage.py"
    script.write_text(
        "from typing import TYPE_CHECKING\nimport reid.sub\n"
        "if TYPE_CHECKING:\n    import reid.typed\n"
    )
    found = {str(p.relative_to(tmp_path)) for p in import_closure(script, tmp_path)}
    assert found == {"reid/__init__.py", "reid/sub/__init__.py", "reid/sub/inner.py",
                     "reid/late.py"}


def test_no_plot_is_declared_twice():
    """A plot declared in a stage and at the top level shows twice in `dvc plots show`."""
    import yaml

    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    top = set()
    for entry in spec.get("plots", []):
        name = entry if isinstance(entry, str) else next(iter(entry))
        top.add(name)
        if isinstance(entry, dict):
            top.update((next(iter(entry.values())) or {}).get("y", {}))
    for name, stage in spec["stages"].items():
        body = stage.get("do", stage)
        for plot in body.get("plots", []):
            path = plot if isinstance(plot, str) else next(iter(plot))
            for item in ("market1501", "cuhk03"):
                declared = path.replace("${item}", item)
                twice = [t for t in top if t == declared or t.startswith(declared + "/")]
                assert not twice, f"{name}: {declared} is also a top-level plot: {twice}"
