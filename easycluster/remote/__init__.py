"""The server end of a connection: ``connection`` (dispatch, server threads, replies) with
its reader ``handoff`` (a drawn state object), ``verbs`` (what object 0 does),
``objtable`` (objects held for the client's proxies), ``process`` (how a server process
runs and ends), ``stage1`` (the ssh bootstrap, remote side) and ``zygote`` (forks local
servers). Shipped to remote servers; never imports ``client``."""
