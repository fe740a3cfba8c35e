"""The local zygote's control messages (drawn in the package docstring)."""

from __future__ import annotations

import struct

KEY_SIZE = 32
SPAWN = struct.Struct(">32sB")  # session key, verbosity; the working directory follows
SPAWNED = struct.Struct(">i")  # pid of the new server, or -errno
