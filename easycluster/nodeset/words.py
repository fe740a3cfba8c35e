"""Node set text split into words: group values, upcall output, command operands.

ClusterShell reads a group's value (a YAML string, a flat-file line, an upcall's
output) as node sets separated by whitespace and newlines, and its command splits
operands the same way. ``split_words`` does that, with two rules of ours:

* only ASCII whitespace separates: a no-break space or another Unicode space is
  part of a word (and the parser then names it), never a silent split;
* whitespace that cannot separate two node sets is dropped rather than read as a
  separator: next to an operator (``n1, n2``, ``n[1-3] !n2``) or inside brackets
  (``n[ 1-2]``). ClusterShell's command accepts those too; in a group's value it
  gives a parse error instead, so we only accept more.

``join_words`` gives one group's text: its words joined by ``,`` (union), which is
what ClusterShell does with the tokens of a group.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List

__all__ = ["split_words", "join_words"]

_ASCII_SPACE = re.compile(r"[ \t\n\r\f\v]+")
_OPERATORS = ",!&^"


def _glued(previous: str, word: str) -> bool:
    """True when the whitespace between ``previous`` and ``word`` separates nothing."""
    return (
        previous[-1] in _OPERATORS
        or word[0] in _OPERATORS
        or previous.rfind("[") > previous.rfind("]")  # a bracket still open
    )


def split_words(text: str) -> List[str]:
    """The node sets of ``text``, split on ASCII whitespace (see the module docstring).

    Never returns an empty word; an empty or blank ``text`` gives ``[]``.
    """
    words: List[str] = []
    for word in _ASCII_SPACE.split(text):
        if not word:
            continue
        if words and _glued(words[-1], word):
            words[-1] += word
        else:
            words.append(word)
    return words


def join_words(text: str) -> str:
    """``text`` as one node set expression: its words joined by ``,``."""
    return ",".join(split_words(text))
