"""Tree options: what a run and a tree of sessions carry to their gateways."""

from __future__ import annotations

import pytest

from easycluster.cluster import treeopts


@pytest.mark.parametrize("silence", [0, 0.5, treeopts.HEARTBEAT])
def test_a_silence_not_above_the_heartbeat_is_refused_by_both_option_sets(silence):
    with pytest.raises(ValueError, match="silence must be more than 1 s"):
        treeopts.options(silence=silence)
    with pytest.raises(ValueError, match=r"\(the heartbeat\)"):
        treeopts.gateway_options(("-F", "cfg"), None, None, None, 10, silence, 8)


def test_options_are_plain_data():
    run = treeopts.options(ssh_options=("-F", "cfg"), silence=3, spool=True)
    assert run["ssh_options"] == ["-F", "cfg"] and run["silence"] == 3.0
    assert run["stdin"] is True and run["spool"] is True  # a spooled copy reads a stream
    gw = treeopts.gateway_options(("-F", "cfg"), "me", "python3", None, 5, 2.5, 8)
    assert gw == {
        "ssh_options": ["-F", "cfg"],
        "user": "me",
        "rpython": "python3",
        "gateway_python": None,
        "connect_timeout": 5.0,
        "silence": 2.5,
        "fanout": 8,
    }
