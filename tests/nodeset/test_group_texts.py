"""How a group's text is read: whitespace in values (YAML, flat files, upcalls), and
"every node of a source" as the union of its groups (audit 49, F2 and F3)."""

from __future__ import annotations

import pytest

from easycluster.nodeset import GroupResolver, GroupSource, NodeSet
from easycluster.nodeset.words import join_words, split_words

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def resolver(groups_cfg):
    return GroupResolver.from_file(str(groups_cfg))


WORDS = [
    ("n1 n2", ["n1", "n2"]),
    ("  n[1-2]\n n5\t", ["n[1-2]", "n5"]),
    ("", []),
    (" \n ", []),
    ("n1, n2", ["n1,n2"]),  # whitespace next to an operator separates nothing
    ("n[1-3] !n2", ["n[1-3]!n2"]),
    ("n1 & n[1-2] ^ n3", ["n1&n[1-2]^n3"]),
    ("n[ 1-2] m", ["n[1-2]", "m"]),  # nor inside brackets
    ("n[1-2 ,4 ]", ["n[1-2,4]"]),
    ("n\u00a01 m\u20031", ["n\u00a01", "m\u20031"]),  # only ASCII whitespace separates
]


@pytest.mark.parametrize("text,words", WORDS)
def test_split_words(text, words):
    assert split_words(text) == words
    assert join_words(text) == ",".join(words)


YAML_VALUES = [
    ("@ws:a", "n[1-2]"),  # 'n1 n2': two nodes, as ClusterShell reads it
    ("@ws:b", "n[1-2,5]"),  # "n[1-2]\n n5"
    ("@ws:c", "n[1-2]"),
    ("@ws:d", "n[1,3]"),
    ("@ws:e", "42"),
    ("@ws:f", "m[1-4]"),  # a list whose items hold several node sets
    ("@local:gpu", "n[3-4,7]"),  # flat file: unchanged
    ("@ext:mixed", "db01,web[1-2],x[1-2]-[3-4]"),  # upcall lines: unchanged
]


@pytest.mark.parametrize("text,folded", YAML_VALUES)
def test_whitespace_in_group_values_separates_node_sets(text, folded, resolver):
    assert str(NodeSet(text, resolver=resolver)) == folded


def test_a_yaml_value_with_spaces_does_not_break_the_source(resolver):
    # walking the whole source (regroup) used to trip over 'n1 n2'
    assert NodeSet("n[1-2]", resolver=resolver).regroup("ws") == "@ws:a"


EVERY_NODE = [
    # cpu has no 'all' group, and hsw's text is '@roles:compute!@ivy': the '!' must
    # not take ivy's nodes away from "every node"
    ("@cpu:*", "example[32-159]"),
    ("@ws:*", "42,m[1-4],n[1-3,5]"),  # ws:d is 'n[1-3] !n2', ws:a holds n2
    ("@up:*", "n[1-4,6-10]"),  # upcall list + map: @up:a is n[1-4,6-10], @up:b n[1,3]
    ("@ext:*", "db[01-03],web[1-4],x[1-2]-[3-4]"),  # the all upcall
    ("@local:*", "example[0,4-6],login[1-2],n[1-10],node[001-010]"),  # the all group
]


@pytest.mark.parametrize("text,folded", EVERY_NODE)
def test_every_node_is_the_union_of_the_groups(text, folded, resolver):
    assert str(NodeSet(text, resolver=resolver)) == folded
    source = text[1:-2]
    assert str(NodeSet.fromall(source, resolver=resolver)) == folded


def test_fromall_reads_the_texts_in_their_own_source(resolver):
    # '@ivy' in cpu's texts is cpu's group even when the default source is another
    assert resolver.default == "local"
    assert str(NodeSet.fromall("cpu", resolver=resolver)) == "example[32-159]"
    assert str(NodeSet.fromall(resolver=resolver.with_default("cpu"))) == "example[32-159]"


def test_a_source_answers_every_node_in_parts():
    src = GroupSource("s", {"a": "n[1-5]", "b": "n[1-9]!n[1-5]", "c": ""})
    assert src.all_parts() == ["n[1-5]", "n[1-9]!n[1-5]"]
    assert src.all_nodes() is None  # no single text is the union
    resolver = GroupResolver(src)
    assert resolver.all_nodes() == ["n[1-5]", "n[1-9]!n[1-5]"]
    assert str(NodeSet("@*", resolver=resolver)) == "n[1-9]"
    assert GroupSource("s", {"all": "n1"}).all_nodes() == "n1"
    assert GroupSource("s", {"a": "n1"}, allgroups="n[1-2]").resolv_all() == "n[1-2]"
