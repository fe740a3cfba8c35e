"""Node sets: ``node[1-100]``-style notation (pure code) and the group sources behind
``@group`` names.

``nodeset`` (``NodeSet``, ``expand``, ``fold``, ``count``), ``rangeset`` (``RangeSet``),
``rangesetnd`` (``RangeSetND``), ``pattern`` (parsing and folding node names), ``groups``
(group files, group commands, ``GroupResolver``). The names below are re-exported here.
"""

from __future__ import annotations

from .groups import GroupResolver
from .nodeset import NodeSet, count, expand, fold
from .rangeset import RangeSet
from .rangesetnd import RangeSetND

__all__ = ["NodeSet", "RangeSet", "RangeSetND", "GroupResolver", "expand", "fold", "count"]
