"""objects/sources.py: texts of code compiled from strings reach linecache however late
it is imported, and a process that formats no traceback never imports it.

Each case runs in a fresh interpreter, since the point is what happens before and at the
first import of ``linecache`` (pytest itself has imported it long ago).
"""

from __future__ import annotations

import pytest
from helpers import run_fresh

PRELUDE = """
    import sys
    assert "linecache" not in sys.modules, "this interpreter loaded linecache at start"
    from easycluster.objects import sources
    SOURCE = "def boom():\\n    raise ValueError('from a string')\\n"
    def compiled(filename):
        space = {}
        exec(compile(SOURCE, filename, "exec"), space)
        return space["boom"]
"""


def test_a_text_remembered_before_linecache_shows_in_a_later_traceback():
    out = run_fresh(
        PRELUDE
        + """
    boom = compiled("<early>")
    sources.remember("<early>", SOURCE)
    assert "linecache" not in sys.modules  # remembering alone does not load it
    import traceback  # loads linecache: the finder fills its cache
    try:
        boom()
    except ValueError:
        print(traceback.format_exc())
    print("finder left:", not any(f is sources._Finder for f in sys.meta_path))
    """
    )
    assert "    raise ValueError('from a string')\n" in out
    assert "finder left: True" in out


def test_a_lookup_that_loads_nothing_keeps_the_finder_and_the_module_keeps_its_loader():
    out = run_fresh(
        PRELUDE
        + """
    import importlib.util
    sources.remember("<looked>", SOURCE)
    assert importlib.util.find_spec("linecache") is not None  # found, not loaded
    assert "linecache" not in sys.modules
    print("finder kept:", any(f is sources._Finder for f in sys.meta_path))
    import linecache
    print(linecache.getline("<looked>", 2), end="")
    print("finder left:", not any(f is sources._Finder for f in sys.meta_path))
    print("loader:", type(linecache.__loader__).__name__, type(linecache.__spec__.loader).__name__)
    """
    )
    assert out.splitlines() == [
        "finder kept: True",
        "    raise ValueError('from a string')",
        "finder left: True",
        "loader: SourceFileLoader SourceFileLoader",
    ]


def test_a_text_remembered_after_linecache_goes_straight_to_its_cache():
    out = run_fresh(
        PRELUDE
        + """
    import linecache
    sources.remember("<late>", SOURCE)
    print(linecache.getline("<late>", 2), end="")
    print("finder added:", any(f is sources._Finder for f in sys.meta_path))
    sources.forget("<late>")
    print("after forget:", repr(linecache.getline("<late>", 2)))
    """
    )
    assert out.splitlines() == [
        "    raise ValueError('from a string')",
        "finder added: False",
        "after forget: ''",
    ]


def test_a_forgotten_text_never_reaches_linecache():
    out = run_fresh(
        PRELUDE
        + """
    sources.remember("<gone>", SOURCE)
    sources.remember("<kept>", SOURCE)
    sources.forget("<gone>")
    import linecache
    print(sorted(k for k in linecache.cache if k in ("<gone>", "<kept>")))
    """
    )
    assert out.strip() == "['<kept>']"


def test_define_common_on_the_master_loads_no_linecache_yet_tracebacks_show_lines():
    out = run_fresh(
        """
    import sys
    import easycluster
    easycluster.define_common("def fails():\\n    return 1 / 0\\n")
    print("linecache loaded:", "linecache" in sys.modules)
    import traceback
    try:
        easycluster.remote_code.fails()
    except ZeroDivisionError:
        print(traceback.format_exc())
    """
    )
    assert "linecache loaded: False" in out
    assert "    return 1 / 0\n" in out


@pytest.mark.parametrize("module", ["pickle", "linecache", "tokenize"])
def test_a_client_call_round_leaves_these_modules_unloaded_on_the_master(module):
    # the master's side of a plain call: connect to a local server, call, close (the
    # pure-Python pickle module imports re and enum; linecache imports tokenize)
    out = run_fresh(
        f"""
    import sys
    import easycluster
    from easycluster.server import spawn_local
    easycluster.define_common("def add(a, b):\\n    return a + b\\n")
    c = spawn_local()
    assert c.add(1, 2) == 3
    c.close()
    print({module!r} in sys.modules)
    """
    )
    assert out.strip() == "False"
