"""Every node-set test starts with an empty standard group resolver, so the groups.conf
files of the machine (``/etc/clustershell``, the virtualenv's) never leak in; a test
that wants one sets it."""

from __future__ import annotations

import pytest

from easycluster.nodeset import GroupResolver, set_std_group_resolver


@pytest.fixture(autouse=True)
def empty_std_resolver():
    set_std_group_resolver(GroupResolver())
    yield
    set_std_group_resolver(None)
