"""EasyCluster 0.22's module constants, with 0.22's values, for scripts that name them.

Every name here describes EasyCluster 0.22's wire protocol: its message types and
compression flag, its MAC (HMAC-MD5, 16 bytes) and the oldest server version its client
accepted. Our protocol is not 0.22's (``protocol``'s docstring draws it: HMAC-SHA256 with
32-byte tags, versions negotiated in the handshake), and nothing in the package sends,
reads or checks anything by these values. They exist so that a 0.22 script that prints,
compares or stores them keeps running.
"""

from __future__ import annotations

import hashlib

MIN_SERVER_VERSION = "0.09"  # 0.22's floor for servers; our handshake checks versions itself
PYTHON3 = True
HMAC_MOD = hashlib.md5  # 0.22's MAC hash (ours: protocol.mac, HMAC-SHA256)
HMAC_SIZE = 16  # 0.22's MAC size in bytes (ours: protocol.mac.DIGEST_SIZE, 32)

# 0.22's message types and its compression flag
ERROR = 0
CHALLENGE = 1
CHALLENGE_RESPONSE = 2
KEEPALIVE = 3
REQUEST = 4
RESPONSE = 5
INIT = 6
MSG_COMPRESSED = 0x80
