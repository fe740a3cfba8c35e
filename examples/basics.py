"""The README's first example: define functions once, call them on a server.

Run: .venv/bin/python examples/basics.py
"""

from easycluster import define_common
from easycluster.server import spawn_local

define_common("""
def addvals(a, b):
    return a + b

def subvals(a, b):
    return a - b
""")

# A local server process; a Client(read_key_file('secret.key'), 'host') works the same.
rmt = spawn_local()
print("addvals(3, 4) =", rmt.addvals(3, 4))
print("subvals(15, 4) =", rmt.subvals(15, 4))
print("remote os.getpid() =", rmt.os.getpid())

# The definitions also exist here, so they can be used locally as well.
from easycluster.remote_code import addvals  # noqa: E402

print("local addvals(1, 2) =", addvals(1, 2))

# Non-blocking calls return futures.
r1 = rmt.addvals(5, 8, nonblocking=True)
r2 = rmt.subvals(14, 18, nonblocking=True)
print("non-blocking:", r1.wait(), r2.result(timeout=10))

# Exceptions come back; origexc=False wraps them with the remote traceback text.
try:
    rmt.subvals("a", 1, origexc="quiet")
except TypeError as e:
    print("remote TypeError:", e)
rmt.close()
