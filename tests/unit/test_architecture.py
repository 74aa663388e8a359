"""Rules of the house that code review alone would let slip: typed manifests, thin facade, backends in one table."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from aztrain.service import facade as service
from aztrain.service.backends import BACKENDS
from aztrain.service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
#: Only these may read a manifest as a dict: the model itself and the storage mappers.
MANIFEST_DICT_READERS = {"aztrain/domain/manifest.py", "aztrain/adapters/storage/tables.py"}
#: `manifest["compute"]`, `compute.get("nodes")`, `policy["debounce"]`, `x["retrain"]` and the like.
_DICT_READ = re.compile(
    r"""\b(manifest|compute|retrain|policy|registry)\s*(\[\s*["']|\.get\(\s*["'])"""
    r"""|\[\s*["'](apiVersion|compute|retrain|registry|trainer)["']\s*\]"""
)


def _core_sources() -> list[Path]:
    return [p for folder in ("aztrain", "functions") for p in sorted((ROOT / folder).rglob("*.py"))]


def test_no_module_reads_manifest_dicts_by_string_key() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _core_sources()
        if path.relative_to(ROOT).as_posix() not in MANIFEST_DICT_READERS
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _DICT_READ.search(line)
    ]
    assert offenders == [], "read the typed JobManifest instead:\n" + "\n".join(offenders)


def test_the_rule_catches_a_dict_read() -> None:
    assert _DICT_READ.search('nodes = run.manifest["compute"]["nodes"]')
    assert _DICT_READ.search('retrain = manifest.get("retrain") or {}')
    assert _DICT_READ.search('debounce = policy["debounce"]')
    assert not _DICT_READ.search("nodes = run.manifest.compute.nodes")


def test_the_control_plane_is_a_facade_of_delegations() -> None:
    """Each public method is one statement that hands over to a use-case module."""
    tree = ast.parse(inspect.getsource(service.ControlPlane))
    methods = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    assert methods
    for method in methods:
        body = [n for n in method.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        assert len(body) <= 3, f"ControlPlane.{method.name} does work itself; move it to a use case"


def test_core_modules_over_300_lines_say_why() -> None:
    for path in _core_sources():
        if len(path.read_text().splitlines()) > 300:
            docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert "300 lines" in docstring, f"{path.relative_to(ROOT)} is long; split it or say why in its docstring"


def test_every_registered_backend_is_importable_and_settings_accept_exactly_those() -> None:
    for name, target in BACKENDS.items():
        module, _, cls = target.partition(":")
        assert hasattr(__import__(module, fromlist=[cls]), cls), f"backend {name}: {target} does not exist"
        assert Settings.from_env({"AZTRAIN_BACKEND": name}).backend == name
