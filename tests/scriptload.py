"""Load one of the project's scripts (bench/, scripts/) as a module, for a test.

The scripts are not a package; each is loaded from its file under a name of
its own, registered in `sys.modules` while it runs (dataclasses look their
module up while defining).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str, name: str) -> ModuleType:
    """The script at `relative` (to the project's root), loaded as module `name`."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
