"""The master's side: ``client`` (``Client``), ``reader`` (who reads its replies),
``response`` (``Response``, a ``concurrent.futures.Future``), ``threaded``
(``ThreadedClient``), ``proxytable`` (the client's side of object references), ``spec``
(connection specs), ``local`` (``spawn_local``) and ``parallel`` (``call_multi`` & co.,
``ClientGroup``). Never imports ``remote``."""
