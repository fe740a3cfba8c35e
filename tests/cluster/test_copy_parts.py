"""The pure parts of file copy (``copy.py``) and the local side (``copyio.py``) without
processes: command text and quoting, names, headers, the pread feed, the pull sink.

The receiver and sender scripts themselves run in ``tests/integration/test_copy.py``.
"""

from __future__ import annotations

import io
import os
import shlex
import tarfile

import pytest

from easycluster.cluster.backends import Backend, ExecBackend, substitute
from easycluster.cluster.copy import (
    GUARD,
    RECEIVER,
    SENDER,
    base_name,
    parse_header,
    pull_command,
    pull_names,
    push_command,
    touch_stamp,
)
from easycluster.cluster.copyio import CACHE_CHUNKS, FileFeed, PullSink, open_push
from easycluster.cluster.feed import CHUNK
from easycluster.cluster.results import SlotResult

ODD = "a b'c\"$x`y`%h%%;\n"  # a destination no shell or template may reinterpret


def test_the_push_command_passes_every_argument_as_one_word():
    cmd = push_command(ODD, "f", 12, 0o100755, "f", True, 1_000_000_000)
    words = shlex.split(cmd)
    assert words[:4] == ["sh", "-c", RECEIVER, "easycluster-copy"]
    assert words[4:] == [ODD, "f", "12", "0755", "p", "200109090146.40", "f", GUARD]


def test_without_preserve_no_stamp_and_no_keep_flag():
    words = shlex.split(push_command("/d", "x", 0, 0o644, "d", False, 5))
    assert words[4:11] == ["/d", "x", "0", "0644", "", "", "d"]


@pytest.mark.parametrize("args", [("", "x", 1, 0, "f"), ("/d", "x", 1, 0, "z")])
def test_a_bad_push_is_refused(args):
    with pytest.raises(ValueError):
        push_command(*args, False, 0)


def test_only_a_leading_tilde_alone_or_with_a_slash_goes_to_the_node():
    for path in ("~", "~/", "~/x", "a~b", "./~root", "/~root"):
        push_command(path, "x", 1, 0, "f", False, 0)
        pull_command(path)
    for path in ("~root", "~root/x", "~x~"):
        with pytest.raises(ValueError, match=r"not expanded.*write the home directory in full"):
            push_command(path, "x", 1, 0, "f", False, 0)
        with pytest.raises(ValueError, match=rf"\./{path}"):
            pull_command(path)


def test_the_pull_command():
    assert shlex.split(pull_command(ODD)) == ["sh", "-c", SENDER, "easycluster-rcopy", ODD]
    with pytest.raises(ValueError):
        pull_command("")


def test_exec_backends_run_the_command_literally_and_through_a_template():
    cmd = push_command(ODD, "f", 1, 0o644, "f", False, 0)
    exec_backend = ExecBackend()
    assert substitute(exec_backend.literal(cmd), "n1", 3) == cmd
    assert Backend().literal(cmd) == cmd
    assert exec_backend.argv("n1", 0, exec_backend.literal(cmd)) == ["/bin/sh", "-c", cmd]
    wrapped = ExecBackend(template="docker exec -i %h sh -c %c # %n %%")
    argv = wrapped.argv("n 1", 2, "echo %h")
    words = shlex.split(argv[2], comments=True)
    assert words == ["docker", "exec", "-i", "n 1", "sh", "-c", "echo 'n 1'"]
    assert argv[2].endswith("# 2 %")


def test_a_command_keeps_percent_c_without_a_template():
    assert ExecBackend().argv("n", 0, "date +%c")[2] == "date +%c"


def test_touch_stamps_are_utc():
    assert touch_stamp(0) == "197001010000.00"
    assert touch_stamp(1_000_000_000.9) == "200109090146.40"


@pytest.mark.parametrize(
    "line, kind, mode, mtime",
    [
        (b"D", "d", None, None),
        (b"F 644 1700000000", "f", 0o644, 1700000000),
        (b"F 104755 12", "f", 0o4755, 12),
        (b"F - -", "f", None, None),
        (b"F 9 x", "f", None, None),
        (b"F 644 -304819200", "f", 0o644, -304819200),  # (before 1970: kept)
        (b"F 644 --1", "f", 0o644, None),
    ],
)
def test_headers(line, kind, mode, mtime):
    assert tuple(parse_header(line)) == (kind, mode, mtime)


@pytest.mark.parametrize("line", [b"", b"X", b"F 644", b"D extra", b"hello world again"])
def test_what_is_not_a_header(line):
    with pytest.raises(ValueError, match="not a copy header"):
        parse_header(line)


def test_base_names():
    assert base_name("/a/b/") == "b" and base_name("c") == "c"
    for bad in ("/", "", "a/..", "."):
        with pytest.raises(ValueError, match="no base name"):
            base_name(bad)


def test_pull_names_one_per_slot():
    keys = ["n1", "n2", "n1#2", "a/b", "n1~2", "n1#3"]
    hosts = ["n1", "n2", "n1", "a/b", "n1~2", "n1"]
    assert pull_names("log", keys, hosts) == {
        "n1": "log.n1",
        "n2": "log.n2",
        "n1#2": "log.n1~2",
        "a/b": "log.a_b",
        "n1~2": "log.n1~2~2",  # a node literally named n1~2: its name was taken
        "n1#3": "log.n1~3",
    }


def test_names_count_listings_within_one_rcopy():
    # slot keys count over the whole run; names count within this rcopy's slots
    assert pull_names("f", ["n1#3", "n1#4"], ["n1", "n1"]) == {"n1#3": "f.n1", "n1#4": "f.n1~2"}


# -- the local side -------------------------------------------------------------------


def test_a_file_feed_reads_any_offset_and_keeps_few_chunks(tmp_path):
    data = os.urandom(CHUNK * (CACHE_CHUNKS + 3) + 17)
    path = tmp_path / "f"
    path.write_bytes(data)
    feed = FileFeed(open(path, "rb"), len(data))
    assert feed.eof and feed.total == len(data)
    for pos in (0, 5, CHUNK - 1, CHUNK, len(data) - 1, 3 * CHUNK + 2, 1):
        piece = bytes(feed.view(pos))
        assert piece and data[pos : pos + len(piece)] == piece
        assert pos + len(piece) == min(len(data), (pos // CHUNK + 1) * CHUNK)
    for pos in range(0, len(data), CHUNK):
        feed.view(pos)
    assert len(feed.cache) <= CACHE_CHUNKS
    assert bytes(feed.view(len(data))) == b""
    feed.close()
    feed.close()  # (twice is fine)
    assert bytes(feed.view(0)) == b""


def test_a_file_that_shrank_ends_the_stream_early(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * (CHUNK + 10))
    feed = FileFeed(open(path, "rb"), CHUNK + 10)
    path.write_bytes(b"y" * 100)  # truncated while being sent
    assert bytes(feed.view(0)) == b"y" * 100 and feed.total == 100
    assert bytes(feed.view(100)) == b""
    feed.close()


def test_open_push_of_a_file_and_a_directory(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "x").write_bytes(b"x")
    (tmp_path / "f").write_bytes(b"12345")
    f = open_push(str(tmp_path / "f"))
    assert (f.name, f.kind, f.feed.total) == ("f", "f", 5)
    f.feed.close()
    d = open_push(str(tmp_path / "d") + "/")
    assert d.name == "d" and d.kind == "d"
    stream = bytes(d.feed.view(0))
    while len(stream) < d.feed.total:
        stream += bytes(d.feed.view(len(stream)))
    d.feed.close()
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"d", "d/sub", "d/sub/x"}
    assert all(m.uid == 0 and m.uname == "" for m in members.values())


def test_open_push_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or directory") as e:
        open_push(str(tmp_path / "missing"))
    assert e.value.filename == str(tmp_path / "missing")
    with pytest.raises(ValueError, match="neither a regular file nor a directory"):
        open_push("/dev/null")
    with pytest.raises(ValueError, match="no base name"):
        open_push("/")


def slot(key: str = "n1") -> SlotResult:
    s = SlotResult(key, key, 0)
    return s


def listing(path) -> list:
    return sorted(p.name for p in path.iterdir())


def test_a_pulled_file_is_renamed_only_on_commit(tmp_path):
    sink = PullSink(str(tmp_path), {"n1": "f.n1"}, preserve=True)
    s = slot()
    for piece in (b"F 6", b"40 1000000000\nhel", b"lo"):  # the header split anywhere
        sink.write(s, piece)
    assert [n for n in listing(tmp_path) if ".f.n1.ectmp." in n]
    assert sink.commit(s) == 0
    assert listing(tmp_path) == ["f.n1"]
    st = os.stat(tmp_path / "f.n1")
    assert (tmp_path / "f.n1").read_bytes() == b"hello"
    assert st.st_mode & 0o7777 == 0o640 and st.st_mtime == 1_000_000_000


def test_without_preserve_the_umask_applies_and_the_time_is_now(tmp_path):
    sink = PullSink(str(tmp_path), {"n1": "f.n1"}, preserve=False)
    sink.umask = 0o027
    s = slot()
    sink.write(s, b"F 777 1000\nx")
    assert sink.commit(s) == 0
    st = os.stat(tmp_path / "f.n1")
    assert st.st_mode & 0o7777 == 0o750 and st.st_mtime > 1000


def test_a_discarded_pull_leaves_nothing(tmp_path):
    sink = PullSink(str(tmp_path), {"n1": "f.n1"}, preserve=False)
    s = slot()
    sink.write(s, b"F 644 1\npartial")
    sink.discard(s)
    sink.discard(s)  # (nothing left to discard)
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "pieces, reason",
    [
        ([], b"the node sent no data"),
        ([b"x" * 300], b"the node sent no copy header"),
        ([b"garbage\n"], b"not a copy header"),
    ],
)
def test_a_pull_that_cannot_commit_fails_with_its_reason(tmp_path, pieces, reason):
    sink = PullSink(str(tmp_path), {"n1": "f.n1"}, preserve=False)
    s = slot()
    for p in pieces:
        sink.write(s, p)
    assert sink.commit(s) == 1
    assert s.stderr.startswith(b"easycluster rcopy: n1: ") and reason in s.stderr
    assert listing(tmp_path) == []


def test_a_full_disk_fails_the_pull_and_removes_the_temporary(tmp_path):
    # /dev/full is a real ENOSPC on demand (a real full file system is not)
    sink = PullSink(str(tmp_path), {"n1": "f.n1"}, preserve=False)
    s = slot()
    sink.write(s, b"F 644 1\n")
    inc = sink.incoming["n1"]
    assert inc.file is not None
    inc.file.close()
    inc.file = open("/dev/full", "wb", buffering=0)
    sink.write(s, b"data")
    sink.write(s, b"more")  # (ignored after the error)
    assert sink.commit(s) == 1
    assert b"No space left on device" in s.stderr
    assert listing(tmp_path) == []


def test_a_file_never_replaces_a_directory(tmp_path):
    (tmp_path / "f.n1").mkdir()
    sink = PullSink(str(tmp_path), {"n1": "f.n1"}, preserve=False)
    s = slot()
    sink.write(s, b"F 644 1\nx")
    assert sink.commit(s) == 1 and b"is a directory" in s.stderr
    assert listing(tmp_path) == ["f.n1"]


def tar_bytes(entries, top=".") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(top)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1000
        tar.addfile(info)
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, 2000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_pulled_directory_replaces_one_as_a_whole(tmp_path):
    (tmp_path / "d.n1").mkdir()
    (tmp_path / "d.n1" / "stale").write_bytes(b"old")
    sink = PullSink(str(tmp_path), {"n1": "d.n1"}, preserve=True)
    s = slot()
    sink.write(s, b"D\n" + tar_bytes([("./a", b"A"), ("./sub/b", b"B")]))
    assert sink.commit(s) == 0, s.stderr
    assert listing(tmp_path) == ["d.n1"]
    assert listing(tmp_path / "d.n1") == ["a", "sub"]
    assert (tmp_path / "d.n1" / "sub" / "b").read_bytes() == b"B"
    assert os.stat(tmp_path / "d.n1" / "a").st_mtime == 2000


def test_a_pulled_directory_never_escapes_the_destination(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    sink = PullSink(str(dest), {"n1": "d.n1"}, preserve=False)
    s = slot()
    sink.write(s, b"D\n" + tar_bytes([("../evil", b"x")]))
    assert sink.commit(s) == 1 and b"easycluster rcopy: n1:" in s.stderr
    assert listing(dest) == [] and not (tmp_path / "evil").exists()


def test_a_directory_never_replaces_a_file(tmp_path):
    (tmp_path / "d.n1").write_bytes(b"file")
    sink = PullSink(str(tmp_path), {"n1": "d.n1"}, preserve=False)
    s = slot()
    sink.write(s, b"D\n" + tar_bytes([("./a", b"A")]))
    assert sink.commit(s) == 1 and b"not a directory" in s.stderr
    assert listing(tmp_path) == ["d.n1"]
