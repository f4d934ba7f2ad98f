"""reference_layers.core: the chain docs/architecture.md draws, and base's promise to old imports.

Server-free and fast: these read source files and compare objects, nothing more.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import channels.exceptions
import pytest

import reference_layers.base as base
from reference_layers.core import capacity, codec, config, errors, layer_core, loops, names
from reference_layers.core.config import reject_unknown_keys
from reference_layers.core.errors import ChannelFull, LayerConfigError
from reference_layers.inmemory import InMemoryChannelLayer

CORE = pathlib.Path(capacity.__file__).parent
# Each module may import only those before it (docs/architecture.md, "core").
CHAIN = ["errors", "names", "config", "codec", "capacity", "layer_core"]
SIDE_CHAIN = ["per_channel", "waiters"]  # a chain of its own beside the first
STANDALONE = ["loops", "statistics", "heartbeat", "stats_command"]


def core_imports(module: str) -> set[str]:
    """The core modules ``module`` imports (relative imports within the package)."""
    tree = ast.parse((CORE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [alias.name for alias in node.names])
    return found


def test_the_chain_lists_every_core_module():
    assert {path.stem for path in CORE.glob("*.py")} - {"__init__"} == set(CHAIN + SIDE_CHAIN + STANDALONE)


@pytest.mark.parametrize("chain, module", [(chain, module) for chain in (CHAIN, SIDE_CHAIN) for module in chain])
def test_a_core_module_imports_only_modules_before_it_in_the_chain(chain, module):
    before = set(chain[: chain.index(module)])
    assert core_imports(module) <= before, f"{module} imports {core_imports(module) - before} out of order"


@pytest.mark.parametrize("module", STANDALONE)
def test_a_standalone_core_module_imports_no_other_core_module(module):
    assert core_imports(module) == set()


def test_importing_the_core_package_loads_none_of_its_modules():
    """A layer importing ``core.names`` must not pull in the codec (msgpack) and the rest."""
    probe = "import sys, reference_layers.core; print(sorted(m for m in sys.modules if m.startswith('reference_layers.')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=pathlib.Path(__file__).parent.parent).stdout
    assert out.strip() == "['reference_layers.core']"


def test_base_re_exports_the_core_objects_themselves():
    """Old imports get the very same classes, so ``except base.ChannelFull`` catches core's."""
    homes = [errors, names, config, codec, capacity, layer_core, loops]
    for name in base.__all__:
        home = next((module for module in homes if name in vars(module)), None)
        assert home is not None, f"base.{name} is defined in no core module"
        assert getattr(base, name) is getattr(home, name), name


def test_channel_full_is_catchable_as_django_channels_own():
    assert issubclass(ChannelFull, channels.exceptions.ChannelFull)


def test_unknown_config_keys_are_named_with_the_keys_the_layer_takes():
    with pytest.raises(LayerConfigError) as caught:
        InMemoryChannelLayer(hosts=[], expiry=5)
    assert str(caught.value) == (
        "InMemoryChannelLayer got unknown config key(s) ['hosts']; it takes "
        "expiry, group_expiry, capacity, channel_capacity, message_size_limit")


def test_no_unknown_keys_passes():
    reject_unknown_keys("AnyLayer", {}, ["expiry"])  # must not raise
