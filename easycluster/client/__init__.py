"""The master's side: ``client`` (``Client``; connecting in ``connect``, 0.22's low-level
methods in ``legacy022``, root-object verbs in ``verbs``), ``reader`` (who reads its replies),
``response`` (``Response``, a ``concurrent.futures.Future``), ``threaded``
(``ThreadedClient``), ``proxytable`` (the client's side of object references), ``spec``
(connection specs), ``local`` (``spawn_local``) and ``parallel`` (``call_multi`` & co.,
``ClientGroup``). Never imports ``remote``."""
