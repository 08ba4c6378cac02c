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
# loaded: it must be the standard library or the reports records' own standard-library modules.
_RECORDS_PROBE = """
import sys
before = set(sys.modules)
import unpacksim.reports.records
new = sorted(set(sys.modules) - before)
own = {'unpacksim', 'unpacksim.reports', 'unpacksim.reports.records', 'unpacksim.reports.jsonform'}
bad = [n for n in new if n not in own and n.split('.')[0] not in sys.stdlib_module_names]
print(','.join(bad))
"""


def test_report_records_import_only_the_standard_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _RECORDS_PROBE], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"unpacksim.reports.records imported {out}"
