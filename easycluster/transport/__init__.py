"""The only socket and pipe I/O of a connection: ``channel`` (``Channel``: authenticated
frames over a socket, with its ``outbox``), ``handshake`` (the blocking handshakes),
``tcp`` (connecting, socket pairs) and ``pipes`` (``PipeSocket``: a socket over two
pipes, for ssh). Shipped to remote servers."""
