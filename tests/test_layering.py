"""Dependencies point one way: ``unpacksim.model`` needs only the standard library."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys, pkgutil, importlib
import unpacksim.model as m
for info in pkgutil.walk_packages(m.__path__, 'unpacksim.model.'):
    importlib.import_module(info.name)
bad = sorted(n for n in ('simpy', 'hypothesis', 'networkx') if n in sys.modules)
print(','.join(bad))
"""


def test_model_imports_no_third_party_package() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"unpacksim.model imported {out}"


# Everything imported by ``unpacksim.reports.records`` beyond what the interpreter had already
# loaded: the standard library and ``unpacksim.reports`` itself, no other layer, no third party.
_RECORDS_PROBE = """
import sys
before = set(sys.modules)
import unpacksim.reports.records
new = sorted(set(sys.modules) - before)
def ok(name):
    if name == 'unpacksim' or name == 'unpacksim.reports' or name.startswith('unpacksim.reports.'):
        return True
    return name.split('.')[0] in sys.stdlib_module_names
print(','.join(n for n in new if not ok(n)))
"""


def test_report_records_import_only_the_standard_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _RECORDS_PROBE], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"unpacksim.reports.records imported {out}"
