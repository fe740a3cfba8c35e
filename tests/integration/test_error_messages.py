"""What a user sees when a call fails (issue 17, item 8), over every transport.

- An argument that cannot be pickled: the error names the call, the server, the argument
  (``args[1]``, ``keyword argument 'g'``, with the path inside it), the type that failed,
  and suggests keeping the object on the server; nothing is sent.
- A return value that cannot be pickled: the same, for "the return value".
- A remote traceback starts at the user's code (our dispatch frames dropped) and shows
  the source lines of ``define_common`` blocks, ``execblock`` and ``eval``.
- ``Client(origexc=...)`` sets the client's default; a call's ``origexc=`` overrides it.

``define_common`` blocks are global to the test process, so the names here carry an
``em_`` prefix.
"""

from __future__ import annotations

import pickle
import socket
import threading

import pytest

from easycluster import RemoteException, call_multi, define_common
from easycluster.errors import UnpicklableError

define_common("""
import threading

def em_echo(*args, **kwargs):
    return args, kwargs

def em_give_lock():
    return threading.Lock()

def em_give_nested():
    return {"ok": 1, "bad": [2, threading.Lock()]}

def em_inner(x):
    doubled = x * 2
    raise ValueError("em bad value %r" % (doubled,))

def em_outer(x):
    return em_inner(x)

class EmHolder(ServerObject):
    def take(self, value):
        return value

    def give(self):
        return threading.Lock()
""")

HINT = ("ServerObject", "make_server_class")


def _gen():
    yield 1


def _assert_names(err: BaseException, *parts: str) -> None:
    text = str(err)
    for part in parts + HINT:
        assert part in text, (part, text)


# -- (a) arguments that cannot be pickled ------------------------------------------------


def test_unpicklable_positional_argument(rmt):
    lock = threading.Lock()
    with pytest.raises(UnpicklableError) as info:
        rmt.em_echo(1, lock)
    _assert_names(info.value, "em_echo", rmt.peername, "args[1]", "_thread.lock")
    # 0.22 raised pickle's own TypeError: scripts that catch it still do
    assert isinstance(info.value, TypeError) and isinstance(info.value, pickle.PicklingError)
    assert rmt.em_echo(2) == ((2,), {})  # nothing was sent; the connection goes on


def test_unpicklable_keyword_argument(rmt):
    with pytest.raises(UnpicklableError) as info:
        rmt.call("em_echo", 1, g=_gen())
    _assert_names(info.value, "em_echo", rmt.peername, "keyword argument 'g'", "generator")


def test_unpicklable_part_inside_an_argument(rmt):
    with socket.socket() as sock, pytest.raises(UnpicklableError) as info:
        rmt.em_echo("a", [1, {"s": sock}])
    _assert_names(info.value, "em_echo", "args[1][1]['s']", "socket.socket")


def test_unpicklable_argument_to_call_multi(rmt):
    (err,) = call_multi([rmt], "em_echo", threading.Lock(), return_exceptions=True)
    assert isinstance(err, UnpicklableError)
    _assert_names(err, "em_echo", rmt.peername, "args[0]", "_thread.lock")
    with pytest.raises(UnpicklableError):
        call_multi([rmt], "em_echo", x=threading.Lock())


def test_unpicklable_argument_to_a_proxy_method(rmt):
    holder = rmt.EmHolder()
    with pytest.raises(UnpicklableError) as info:
        holder.take(threading.Lock())
    _assert_names(info.value, "take()", repr(holder), rmt.peername, "args[0]", "_thread.lock")
    with pytest.raises(UnpicklableError) as info:
        holder.take(value=_gen())
    _assert_names(info.value, "take", "keyword argument 'value'", "generator")


# -- (b) return values that cannot be pickled --------------------------------------------


def test_unpicklable_return_value(rmt, capfd):
    with pytest.raises(UnpicklableError) as info:
        rmt.em_give_lock()
    _assert_names(info.value, "the return value", "em_give_lock", rmt.peername, "_thread.lock")
    assert isinstance(info.value, TypeError)  # 0.22: pickle's own error came back
    err = capfd.readouterr().err
    assert "serialize.py" not in err and "connection.py" not in err  # no frames of ours
    assert rmt.em_echo(3) == ((3,), {})


def test_unpicklable_part_of_a_return_value(rmt):
    with pytest.raises(RemoteException) as info:
        rmt.em_give_nested(origexc=False)
    orig = info.value.orig
    assert isinstance(orig, UnpicklableError)
    _assert_names(
        orig, "the return value", "its part at ['bad'][1]", "em_give_nested", rmt.peername
    )


def test_unpicklable_return_value_of_a_proxy_method(rmt):
    holder = rmt.EmHolder()
    with pytest.raises(UnpicklableError) as info:
        holder.give(origexc="quiet")
    _assert_names(info.value, "the return value", "EmHolder.give", rmt.peername)


# -- (c) remote tracebacks ---------------------------------------------------------------


def test_traceback_starts_at_user_code_with_define_common_source(rmt):
    with pytest.raises(RemoteException) as info:
        rmt.em_outer(3, origexc=False)
    text = "".join(info.value.text)
    frames = [line for line in info.value.text if line.startswith("  File ")]
    assert frames and "<define_common" in frames[0] and "in em_outer" in frames[0], text
    assert "return em_inner(x)" in text  # the source lines are shown
    assert 'raise ValueError("em bad value %r" % (doubled,))' in text
    assert "easycluster/remote" not in text and "verb_call" not in text


def test_execblock_and_eval_tracebacks_show_their_source(rmt):
    with pytest.raises(RemoteException) as info:
        rmt.execblock("em_x = 1\nraise KeyError('em eb')\n", origexc=False)
    text = "".join(info.value.text)
    frames = [line for line in info.value.text if line.startswith("  File ")]
    assert frames and "execblock" in frames[0], text
    assert "raise KeyError('em eb')" in text
    assert "easycluster/remote" not in text
    with pytest.raises(RemoteException) as info:
        rmt.eval("1 + em_outer(1)", origexc=False)
    text = "".join(info.value.text)
    assert "1 + em_outer(1)" in text and "return em_inner(x)" in text
    assert "easycluster/remote" not in text


def test_error_raised_by_dispatch_itself_has_no_dispatch_frames(rmt):
    """A name that does not exist there: our frames are all there is; none are shown."""
    with pytest.raises(RemoteException) as info:
        rmt.em_no_such_function(origexc=False)
    text = "".join(info.value.text)
    assert "em_no_such_function" in text and "easycluster/remote" not in text


# -- (d) origexc per client, overridden per call -----------------------------------------


def test_client_origexc_default_and_per_call_override(make_client, capfd):
    c = make_client(origexc=False)
    with pytest.raises(RemoteException) as info:
        c.em_outer(1)
    assert isinstance(info.value.orig, ValueError)
    with pytest.raises(RemoteException):
        c.em_outer(1, nonblocking=True).wait()
    assert "Remote traceback" not in capfd.readouterr().err
    with pytest.raises(ValueError, match="em bad value"):
        c.em_outer(1, origexc=True)  # the call's own choice wins, and prints
    assert "Remote traceback" in capfd.readouterr().err
    with pytest.raises(ValueError):
        c.em_outer(1, nonblocking=True).wait(origexc="quiet")
    (slot,) = call_multi([c], "em_outer", 1, return_exceptions=True)
    assert isinstance(slot, RemoteException)  # the client's default, in its slot

    quiet = make_client(origexc="quiet")
    with pytest.raises(ValueError):
        quiet.em_outer(1)
    assert "Remote traceback" not in capfd.readouterr().err


def test_client_origexc_rejects_other_values(make_client):
    with pytest.raises(ValueError, match="origexc"):
        make_client(origexc="loud")
