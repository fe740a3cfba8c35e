"""``acall``, the awaitable call, for ``Client`` (a mixin): the call is sent as a
non-blocking one, and its Future (``response.py``) is awaited through asyncio."""

from __future__ import annotations

from ..objects.proxy import split_opts
from .outcome import timeout_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

# What this module imports on first need yet needs at run time: a payload that carries
# it carries these too (``launch/payload.py`` reads this)
LOADED_LATER = (".response",)


class AsyncCalls:
    """``Client.acall``."""

    # (set by Client; declared here for the type checker)
    call_timeout: Optional[float]
    send_request: Callable[..., Any]

    async def acall(self, _func: str, *args: Any, **kwargs: Any) -> Any:
        """``await client.acall('func', ...)``: the call without blocking the event loop.

        Takes the same keywords as ``call`` (``nonblocking``/``oncomplete`` excepted).
        """
        import asyncio

        from .response import plain_mirror  # (loaded by the Response just made)

        opts = split_opts(kwargs)
        timeout = opts.pop("timeout", None)
        if timeout is None:
            timeout = self.call_timeout
        if opts.pop("nonblocking", None) or "oncomplete" in opts or "onerror" in opts:
            raise TypeError("acall takes no nonblocking/oncomplete/onerror: it is awaited")
        resp = self.send_request(0, "call", (_func, args, kwargs), nonblocking=True, **opts)
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(plain_mirror(resp))), timeout)
        except asyncio.TimeoutError:
            resp.reader.forget(resp.request_id)
            raise timeout_error(self, resp.request_id, _func, timeout, resp.thread) from None
        return resp.wait(0)
