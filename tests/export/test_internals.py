"""The export side's few uses of Keras and TensorFlow internals: each one listed here with its
reason, present in the installed releases, and those releases inside pyproject's bounds. A new
internal import without an entry fails, and so does an upgrade that moves one."""

import importlib
import re
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from tests.helpers import REPO

INTERNALS = {
    ("tensorflow.python.framework.convert_to_constants", "_FunctionConverterDataInEager"): (
        "TF2 has no public graph freezing; convert_variables_to_constants_v2's own first steps "
        "(without rebuilding a concrete function the export never runs: export/convert)"
    ),
    ("tensorflow.python.framework.convert_to_constants", "_replace_variables_by_constants"): (
        "as above"
    ),
    ("keras.src.legacy.saving", "saving_options"): (
        "legacy HDF5 configurations rebuilt by Keras' own loader (export/keras/repair.py)"
    ),
    ("keras.src.legacy.saving", "saving_utils"): "as above: model_from_config for legacy .h5",
    ("keras.src.saving", "serialization_lib"): (
        "SafeModeScope: a scoped safe mode (the public switch is process-wide and one-way)"
    ),
}
#: Module paths used as data: Keras writes them into model configurations.
DATA_MODULES = {"keras.src.ops", "keras.src.applications."}

IMPORT = re.compile(r"^\s*from ((?:keras|tensorflow)\.(?:src|python)[\w.]*) import \(?\s*([\w, ]+)")


def _used() -> set[tuple[str, str]]:
    found = set()
    for path in (REPO / "portanet").rglob("*.py"):
        text = path.read_text()
        # a parenthesized import on one line, every name of it
        joined = re.sub(r"import \(([^)]*)\)", lambda m: "import " + " ".join(m[1].split()), text)
        for line in joined.splitlines():
            hit = IMPORT.match(line)
            if hit:
                for name in hit.group(2).replace(")", "").split(","):
                    if name.strip():
                        found.add((hit.group(1), name.strip()))
    return found


def test_every_internal_import_has_a_reason():
    assert _used() == set(INTERNALS)


def test_internal_module_paths_appear_only_as_listed_data():
    strings = set()
    for path in (REPO / "portanet").rglob("*.py"):
        strings |= set(
            re.findall(r"[\"']((?:keras|tensorflow)\.(?:src|python)[\w.]*)[\"']", path.read_text())
        )
    assert strings <= DATA_MODULES, strings - DATA_MODULES


@pytest.mark.parametrize(("module", "name"), sorted(INTERNALS), ids=lambda v: v)
def test_the_internal_exists_in_the_installed_release(module, name):
    pytest.importorskip("tensorflow")
    assert hasattr(importlib.import_module(module), name)


@pytest.mark.parametrize("package", ["keras", "tensorflow"])
def test_the_installed_release_is_inside_the_pinned_bounds(package):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [
        Requirement(r)
        for r in project["optional-dependencies"]["export"]
        if Requirement(r).name == package
    ]
    assert len(wanted) == 1 and any(s.operator == "<" for s in wanted[0].specifier), wanted
    try:
        installed = metadata.version(package)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{package} is not installed (the export extra)")
    assert wanted[0].specifier.contains(installed), (package, installed, str(wanted[0]))
