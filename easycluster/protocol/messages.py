"""Message bodies inside frames (drawn in the package docstring): requests, replies,
releases, and the thread ids a request can name."""

from __future__ import annotations

import struct

DEFAULT_PORT = 11998  # the standalone server's TCP port (EasyCluster's, on Python 3)

SINGLE = -1  # thread id: run this request on a thread of its own (new, or idle and reused)
CONTROL = -2  # thread id: run inline on the server's reading thread (stop a thread, ping)

REQUEST_HEAD = struct.Struct(">Qq")  # request id, thread id; the pickle follows
REPLY_HEAD = struct.Struct(">QB")  # request id, status; the pickle follows
RELEASE_ITEM = struct.Struct(">QQ")  # object id, references received

STATUS_VALUE = 0
STATUS_EXCEPTION = 1
