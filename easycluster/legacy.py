"""EasyCluster 0.22's module constants, for scripts that name them.

Our protocol is not 0.22's (``protocol``'s docstring draws it): these name 0.22's message
types and limits, and nothing here sends or reads them. ``HMAC_MOD`` and ``HMAC_SIZE``
describe the MAC our frames really carry (HMAC-SHA256, 32 bytes), not 0.22's MD5.
"""

from __future__ import annotations

import hashlib

MIN_SERVER_VERSION = "1.0.0"  # the oldest server this client talks to (0.22 said '0.09')
PYTHON3 = True
HMAC_MOD = hashlib.sha256
HMAC_SIZE = 32

# 0.22's message types and its compression flag
ERROR = 0
CHALLENGE = 1
CHALLENGE_RESPONSE = 2
KEEPALIVE = 3
REQUEST = 4
RESPONSE = 5
INIT = 6
MSG_COMPRESSED = 0x80
