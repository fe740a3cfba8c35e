"""The protocol, sans-IO: every byte layout that crosses a process boundary, drawn here.

Bytes in, events out; no sockets, threads or clocks (a test checks the imports). The
modules: ``handshake`` (the fixed-size handshake and session keys), ``frames`` (framing,
MACs, batches, out-of-band buffers), ``mac`` (HMAC-SHA256 with precomputed pads: with
``handshake``, the only code computing MACs), ``messages`` (request, reply and release
bodies, thread ids), ``boot`` (the ssh bootstrap's stage-0 command and greeting) and
``control`` (the local zygote's control messages). The standalone server listens on
``messages.DEFAULT_PORT`` (11998, EasyCluster's).

Handshake (fixed sizes, so nothing of variable length is read before authentication)
------------------------------------------------------------------------------------

The server speaks first::

    SERVER_HELLO, 48 bytes, server -> client
      offset size  field
      0      8     magic b"EZCLSTR\\x00"
      8      2     lowest protocol version the server speaks (u16, big-endian)
      10     2     highest protocol version the server speaks (u16)
      12     4     reserved, zero
      16     32    server nonce (fresh random bytes)

    CLIENT_HELLO, 88 bytes, client -> server
      0      8     magic
      8      2     chosen protocol version (u16)
      10     2     options (u16): bit 0 = zlib compression wanted
      12     4     reserved, zero
      16     8     largest frame payload the client accepts (u64)
      24     32    client nonce
      56     32    client proof = HMAC-SHA256(key, "easycluster client proof"
                                              || SERVER_HELLO || CLIENT_HELLO[0:56])

    SERVER_ACCEPT, 48 bytes, server -> client
      0      1     status: 0 accepted, 1 bad proof (wrong key), 2 version or magic refused
      1      1     options agreed (bit 0 = zlib compression on)
      2      2     protocol version in force (u16)
      4      4     reserved, zero
      8      8     largest frame payload the server accepts (u64)
      16     32    server proof = HMAC-SHA256(key, "easycluster server proof"
                                              || SERVER_HELLO || CLIENT_HELLO || ACCEPT[0:16])

Each side proves the key over both nonces, the whole transcript (so version and options
are authenticated) and its own role label, so neither a replayed handshake (the other
side's nonce is fresh) nor a reflected proof (the role label differs) passes. The server
proves nothing until the client has. Session keys come from the shared key and both
nonces, one per direction::

    k = HMAC(key, "easycluster session" || server nonce || client nonce)
    k_c2s = HMAC(k, "client to server"),  k_s2c = HMAC(k, "server to client")

Frames (after the handshake)
----------------------------

::

    FRAME, 68 bytes + payload (protocol version 2)
      offset size  field
      0      1     direction: 1 = client to server, 2 = server to client
      1      1     frame type (meaning chosen by the layers above; see the FT_* constants)
      2      2     flags (u16): bit 0 = payload is zlib-compressed, bit 1 = out-of-band buffers
      4      8     sequence number (u64), counting from 0 in each direction
      12     8     payload length in bytes (u64), checked against the limit before allocating
      20     16    header tag: HMAC-SHA256(direction key, bytes 0 .. 20), first 16 bytes
      36     n     payload
      36+n   32    HMAC-SHA256(direction key, bytes 0 .. 36+n), i.e. header, tag and payload

The MAC trails the payload so the receiver can check header and payload where they lie,
without copying them together first, and so both ends can hash a large payload a chunk at
a time while it travels (``Session.pack_chunks``; the reader hashes a large frame's bytes
as they arrive), instead of before sending and after receiving it.

The header tag lets the receiver trust the length before the payload is there: the
fields are checked as soon as their 20 bytes arrive (direction, sequence, limit), and a
frame that is not complete in the receive buffer is waited for (or given a buffer of its
own) only once its tag checks out. A flipped length bit or a header misread after bytes
were lost is an error at once, with nothing allocated; a frame that arrives whole needs
only its MAC, which covers the tag. (Version 1 had no tag: a corrupted length made the
receiver wait, holding a buffer of the announced size.) The sender computes the tag and
the MAC from one hash state of the header.

A frame of type FT_BATCH carries several small frames' bodies, each as
``u8 type || u32 size || body``, under the one header and MAC; the receiver unpacks them in
order after the MAC checked out.

With bit 1 set, the (decompressed) payload is ``u32 n || n * u64 sizes || main || buf1 ..
bufn``: the buffers are pickle protocol 5 out-of-band buffers, sent without copying.

The receiver checks direction, sequence and length from the header (and the tag, unless
the frame is already whole), reads payload and MAC, and compares tag and MAC in constant
time (``mac.compare_digest``) before handing anything on; nothing is unpickled here at all. A
compressed payload is inflated a step at a time and refused as soon as it passes the
limit. Any failure raises an ``IntegrityError`` or ``FrameTooLarge`` and
the connection must be closed: a reader that raised is dead.

Bytes lost at the end of what a peer sends leave the receiver waiting for the rest of a
frame with no error to find. The client's end of a connection therefore pings while a
read waits in silence (``transport.channel.KeepAlive``), the server echoes each ping's
body in a pong, and unanswered pings grow (up to the bytes a frame begun still lacks):
the next bytes fill the hole and fail the MAC, in either direction.

Messages (frame bodies; ``messages.py``)
----------------------------------------

::

    REQUEST (FT_REQUEST), client -> server
      0      8     request id (u64), chosen by the client, unique per connection
      8      8     thread id (i64): 0.. a server thread (created on first use),
                   -1 SINGLE (a one-off thread), -2 CONTROL (run on the reading thread)
      16     n     pickle of (object id, method, args, kwargs)

    REPLY (FT_RESPONSE), server -> client
      0      8     request id (u64) of the request answered
      8      1     status: 0 value, 1 exception (a RemoteException)
      9      n     pickle of (value,)

    RELEASE (FT_RELEASE), client -> server, repeated 16-byte items
      0      8     object id (u64) whose last proxy died on the client
      8      8     how many references to it the client received (u64)

    OUTPUT (FT_OUTPUT), server -> client, when the client's hello asked for it
      0      1     stream: 1 stdout, 2 stderr
      1      n     utf-8 text remote code wrote to sys.stdout/sys.stderr (whole lines,
                   or a partial line flushed before a reply)

The ids stay readable when a pickle cannot be loaded, so that failure is reported
against the right call. Pickles travel only inside authenticated frames.

The ssh bootstrap (``boot.py``)
-------------------------------

Before the handshake, over ssh, the remote ``python3 -c STAGE0`` writes one line to its
stdout, ``EASYCLUSTER-BOOT <major>.<minor>.<micro>\n`` (anything before it is shell
noise, skipped), then reads from its stdin the zlib-compressed stage-1 script (its size
is in the command line) and runs it. Stage 1 (``remote/stage1.py`` draws its bytes) reads
the modules, compiled for the client's Python or as source, then a 32-byte random
session key, and answers one line, ``EASYCLUSTER-STAGE1 ready\n``, or
``EASYCLUSTER-STAGE1 source\n`` to have the source sent (a Python of another bytecode
version). The handshake above then runs over the two pipes.

Local servers (``control.py``)
------------------------------

``spawn_local`` asks a zygote over a SOCK_SEQPACKET control socket::

    SPAWN, master -> zygote, with one socket fd attached (SCM_RIGHTS)
      0      32    session key (random, for this one server)
      32     32    server nonce (chosen by the master)
      64     88    client hello (as above, made for the server hello of that nonce)
      152    1     verbosity (u8)
      153    n     working directory (utf-8, surrogateescape)

    SPAWNED, zygote -> master
      0      4     pid of the new server (i32), or -errno if the fork failed

The master runs both halves of the handshake in memory (the server's accept included);
the server runs its half on the request's nonce and hello and serves the socket at once:
nothing but frames crosses it. A server started as a fresh interpreter instead gets
``--fd N`` on its command line and the session key as one line of hex on its stdin, and
the handshake runs over the socket.
"""
