"""The EventHandler's public signatures and the event-order table of ``events.py``."""

from __future__ import annotations

import inspect

import pytest
from drawn import drawn_tables

from easycluster.cluster import events
from easycluster.cluster.events import EventHandler

# The signatures are public API: a change here is a breaking change (ClusterShell #232,
# #358, #377). They match ClusterShell 1.10's, so its handlers port unchanged.
SIGNATURES = {
    "ev_start": ["self", "worker"],
    "ev_pickup": ["self", "worker", "node"],
    "ev_read": ["self", "worker", "node", "sname", "msg"],
    "ev_written": ["self", "worker", "node", "sname", "size"],
    "ev_hup": ["self", "worker", "node", "rc"],
    "ev_timeout": ["self", "worker"],
    "ev_close": ["self", "worker", "timedout"],
    "ev_timer": ["self", "timer"],
    "ev_port_start": ["self", "port"],
    "ev_msg": ["self", "port", "msg"],
}


def test_the_signatures_do_not_change():
    found = {
        name: list(inspect.signature(getattr(EventHandler, name)).parameters)
        for name in dir(EventHandler)
        if name.startswith("ev_")
    }
    assert found == SIGNATURES


def test_they_are_clustershells_where_it_has_them():
    cs = pytest.importorskip("ClusterShell.Event")
    for name, params in SIGNATURES.items():
        theirs = getattr(cs.EventHandler, name, None)
        if theirs is not None:
            assert list(inspect.signature(theirs).parameters) == params, name


def test_the_order_table_lists_every_event_once():
    header, rows = drawn_tables(events.__doc__ or "")[0]
    assert header == ["when", "per"]
    assert [r[0].split("(")[0] for r in rows] == list(SIGNATURES)


def test_the_defaults_do_nothing():
    h = EventHandler()
    for name, params in SIGNATURES.items():
        assert getattr(h, name)(*[None] * (len(params) - 1)) is None
