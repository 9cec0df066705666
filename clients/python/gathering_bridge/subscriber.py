"""BridgeSubscriber: asyncio WebSocket subscriber with reconnect (exponential backoff, full jitter),
resume from the last offset + epoch of every channel, tokens that last (``get_token``: first
connection, in-band refresh before the bridge's deadline, reconnect), terminal versus retryable
closes, and subscriptions as objects (:class:`Subscription`)."""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
import ssl as _ssl
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Iterable, List, Optional, Tuple, Union
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatusCode

from .channels import carries
from .events import CONTROL_TYPES, Event, Gap, decode_event, parse_timestamp

log = logging.getLogger("gathering_bridge")

#: Close codes after which reconnecting cannot help (docs/protocol.md "Close codes", checked
#: against the bridge's list by protocol_test): protocol errors, 4001 unauthenticated (but see
#: ``get_token``), 4003 forbidden, and the refusals sent right after the upgrade 4004 (unknown
#: namespace) and 4400 (bad channel, since, epoch or client). Every other code (1001, 1006, 4008,
#: 4429 too many connections from this address, 4503 shutting down or full, ...) is retried
#: with backoff. The bridge's reason is kept (``BridgeClosed.reason``).
TERMINAL_CLOSE_CODES = (1002, 1003, 1007, 1008, 1010, 4001, 4003, 4004, 4400)
STOP_CODES = TERMINAL_CLOSE_CODES

#: Why the bridge refuses an upgrade with each HTTP status (docs/protocol.md "Errors before and
#: right after the upgrade"): the few refusals that stay statuses (403 Origin, malformed
#: upgrades, over TLS a connection limit) and older bridges. The response body is not kept by
#: ``websockets``, so the client names the cause.
HTTP_REFUSALS = {
    400: "bad request: a channel name or ?client= identity the bridge does not accept",
    403: "forbidden: this Origin may not connect",
    404: "not found: unknown path, or a namespace that is not configured",
    426: "upgrade required",
    429: "too many connections from this address",
    431: "request header too large",
    503: "the bridge is at its connection limit or shutting down",
}

TokenSource = Callable[[], Union[str, Awaitable[str]]]


def is_terminal_http_status(status: int) -> bool:
    """4xx refusals but 408 and 429 are terminal; 429 and 5xx are retried."""
    return 400 <= status < 500 and status not in (408, 429)


class BridgeClosed(Exception):
    """The subscriber stopped for good (closed, a terminal close code, a refused upgrade or token,
    max_attempts). ``code`` is the close code (or the HTTP status of a refused upgrade)."""

    def __init__(self, message: str, code: Optional[int] = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class BridgeError(Exception):
    """An error frame from the bridge (``code`` e.g. ``forbidden``), matched to the request it
    answers when possible (``request``: subscribe, unsubscribe, auth, message; ``channel``)."""

    def __init__(self, code: str, message: str, channel: Optional[str] = None,
                 request: Optional[str] = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.channel = channel
        self.request = request


class Subscription:
    """One channel of a :class:`BridgeSubscriber`.

    ``state`` is ``subscribing``, ``subscribed`` or ``unsubscribed``; ``await sub.wait()``
    returns the bridge's first ``subscribed`` frame or raises the :class:`BridgeError` refusing
    it. ``recovered`` tells whether the last resubscription with ``since`` was fully covered;
    ``gaps`` lists what was missed on this channel."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.state = "subscribing"
        self.error: Optional[BridgeError] = None
        self.epoch: Optional[str] = None
        self.offset = 0
        self.asked_since = False
        self.acked = False
        # After `recovered:false` in the same epoch, the next event's offset shows the gap; other
        # offset jumps are this socket's own messages (they take offsets but are not echoed).
        self.expect_gap = False
        self.recovered: Optional[bool] = None
        self.gaps: List[Gap] = []
        self.on_state: Optional[Callable[[str], None]] = None
        self.on_recovered: Optional[Callable[[Dict[str, Any]], None]] = None
        self.on_gap: Optional[Callable[[Gap], None]] = None
        self._ready: Optional[asyncio.Future] = None
        self._dropped: set = set()  # types dropped for not being the channel's, each logged once

    def _future(self) -> asyncio.Future:
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
        return self._ready

    async def wait(self, timeout: Optional[float] = 10.0) -> Dict[str, Any]:
        """The first ``subscribed`` frame, or raises the refusal (:class:`BridgeError`)."""
        return await asyncio.wait_for(asyncio.shield(self._future()), timeout)

    @property
    def position(self) -> Optional[Tuple[str, int]]:
        return None if self.epoch is None else (self.epoch, self.offset)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.on_state:
                self.on_state(state)

    def _subscribed(self, frame: Dict[str, Any]) -> None:
        self.acked = True
        self._set_state("subscribed")
        fut = self._future()
        if not fut.done():
            fut.set_result(frame)
        if "recovered" in frame:
            self.recovered = bool(frame["recovered"])
            if self.recovered and self.on_recovered:
                self.on_recovered(frame)

    def _ended(self, error: Optional[BaseException]) -> None:
        if isinstance(error, BridgeError) and self.state != "unsubscribed":
            self.error = error
        self.acked = False
        self._set_state("unsubscribed")
        fut = self._future()
        if not fut.done():
            fut.set_exception(error or BridgeError("unsubscribed", "unsubscribed before the bridge answered",
                                                   self.channel, "subscribe"))
            fut.exception()  # retrieved: no "exception never retrieved" warning when nobody waits

    def __repr__(self) -> str:
        return f"Subscription({self.channel!r}, state={self.state!r}, position={self.position})"


# Error codes each request can be refused with (docs/protocol.md), to match an error frame
# without an ``id`` to the request it answers (the bridge answers frames in order).
_ERRORS_OF = {
    "subscribe": {"invalid_channel", "invalid_since", "forbidden", "too_many_channels", "rate_limited"},
    "unsubscribe": {"invalid_channel", "not_subscribed", "rate_limited"},
    "auth": {"unauthenticated"},
    "message": {"invalid_channel", "not_subscribed", "forbidden", "reserved_type", "rate_limited",
                "too_many_channels", "invalid_json", "not_an_object", "invalid_type", "invalid_utf8"},
}

_ChannelState = Subscription  # the old name


_END = object()


class BridgeSubscriber:
    """Subscribes to one channel (``ws://host:port/ws/circles/x``) or several (``channels=[...]``
    on ``ws://host:port``, multiplexed on ``/ws``) and yields :class:`Event` objects::

        async with BridgeSubscriber("ws://127.0.0.1:8080/ws/circles/dev-team") as sub:
            async for event in sub:
                print(event.type, event.offset, event.data)

    Reconnects after a lost connection with a delay uniform in
    ``[0, min(max_delay, min_delay * factor**attempt)]`` and resumes each channel with
    ``since``/``epoch``; stops on close codes 4001/4003 (iteration raises :class:`BridgeClosed`).

    ``wss://`` (or ``https://``) URLs connect over TLS. ``ssl`` is the :class:`ssl.SSLContext`
    to use for them, e.g. one that trusts a private CA::

        ctx = ssl.create_default_context(cafile="ca.pem")
        sub = BridgeSubscriber("wss://bridge.internal:8443/ws/circles/dev-team", ssl=ctx)

    ``None`` (the default) verifies the bridge's certificate against the system trust store, as
    :func:`websockets.connect` does; ``ssl`` is not used for ``ws://`` URLs. A certificate that
    does not verify stops the subscriber (:class:`BridgeClosed` with ``code`` 1015, the
    verification error in the message) instead of being retried.
    """

    def __init__(
        self,
        url: str,
        *,
        channels: Iterable[str] = (),
        token: Optional[str] = None,
        get_token: Optional[TokenSource] = None,
        refresh_margin: Optional[float] = None,
        token_transport: str = "query",
        client_id: Optional[str] = None,
        multiplex: bool = False,
        reconnect: bool = True,
        min_delay: float = 0.5,
        max_delay: float = 30.0,
        factor: float = 2.0,
        max_attempts: Optional[int] = None,
        stop_codes: Iterable[int] = STOP_CODES,
        resume_from: Optional[Dict[str, Tuple[str, int]]] = None,
        auto_pong: bool = True,
        queue_size: int = 10_000,
        open_timeout: float = 10.0,
        ssl: Optional[_ssl.SSLContext] = None,
        on_state: Optional[Callable[[str], None]] = None,
        on_subscribed: Optional[Callable[[Dict[str, Any]], None]] = None,
        on_gap: Optional[Callable[[Gap], None]] = None,
        on_error: Optional[Callable[[BaseException], None]] = None,
        on_control: Optional[Callable[[Dict[str, Any]], None]] = None,
        on_going_away: Optional[Callable[[str, Dict[str, Tuple[str, int]]], None]] = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        parts = urlsplit(url)
        query_in_url = parse_qs(parts.query)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        path = parts.path.rstrip("/")
        names: List[str] = []
        if path.startswith("/ws/"):
            names.append(path[len("/ws/"):])
        names.extend(channels)
        #: ``ws://host:port``: reconnections go here (tests may point it elsewhere).
        self.base_url = urlunsplit((scheme, parts.netloc, "", "", ""))
        self._channels: Dict[str, Subscription] = {}
        for name in names:
            self._channels.setdefault(name, Subscription(name))
        for name, (epoch, offset) in (resume_from or {}).items():
            st = self._channels.get(name)
            if st is not None:
                st.epoch, st.offset = epoch, offset
        if token_transport not in ("query", "frame"):
            raise ValueError("token_transport must be 'query' or 'frame'")
        # `?client=` and `?token=` in the URL are kept (explicit arguments win).
        self.token = token if token is not None else (query_in_url.get("token") or [None])[0]
        self.get_token = get_token
        #: Seconds before the bridge's deadline to refresh (default: a fifth of what is left, 1-60 s).
        self.refresh_margin = refresh_margin
        self.token_transport = token_transport
        self.client_id = client_id if client_id is not None else (query_in_url.get("client") or [None])[0]
        self.multiplex = multiplex
        self.reconnect = reconnect
        self.min_delay, self.max_delay, self.factor = min_delay, max_delay, factor
        self.max_attempts = max_attempts
        self.stop_codes = tuple(stop_codes)
        self.auto_pong = auto_pong
        self.open_timeout = open_timeout
        #: TLS settings for ``wss://`` connections (None: the system trust store).
        self.ssl = ssl
        self.on_state, self.on_subscribed, self.on_gap = on_state, on_subscribed, on_gap
        self.on_error, self.on_control = on_error, on_control
        #: ``on_going_away(reason, positions)``: the bridge's ``reconnect`` frame (see
        #: :attr:`going_away`).
        self.on_going_away = on_going_away
        self._rng = rng
        self._queue: "asyncio.Queue[Any]" = asyncio.Queue(maxsize=queue_size)
        self._ws: Any = None
        self._path_channel: Optional[str] = None
        self._task: Optional[asyncio.Task] = None
        self._ready = asyncio.Event()
        self._closed = False
        self._attempts = 0
        #: "idle" | "connecting" | "open" | "reconnecting" | "closed"
        self.state = "idle"
        #: Reconnection attempts made so far.
        self.reconnects = 0
        #: Close codes seen, most recent last.
        self.close_codes: List[Optional[int]] = []
        self.gaps: List[Gap] = []
        self.error: Optional[BridgeClosed] = None
        #: The reason of the bridge's last ``reconnect`` frame (it is shutting down; the close
        #: 1001 follows and the subscriber reconnects with its usual backoff), None until one came.
        #: Its positions are set as where each channel resumes (``positions()``).
        self.going_away: Optional[str] = None
        #: Error frames and token failures seen (BridgeError), most recent last.
        self.errors: List[BaseException] = []
        #: When the bridge closes this connection 4001 (``authenticated.expires_at``).
        self.expires_at: Optional[datetime] = None
        #: The identity the bridge authenticated.
        self.identity: Optional[str] = None
        #: How many times ``get_token`` was called.
        self.token_requests = 0
        self._token_accepted = False
        self._pending: List[Tuple[str, Optional[str], Optional[asyncio.Future]]] = []
        # history/presence requests, answered by id (the bridge echoes it), so in any order.
        self._asks: Dict[str, Tuple[str, asyncio.Future]] = {}
        self._next_ask = 0
        self._refresh_task: Optional[asyncio.Task] = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> "BridgeSubscriber":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def start(self, timeout: Optional[float] = 10.0) -> None:
        """Connects; returns once every channel is subscribed (raises on timeout or fatal close)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="bridge-subscriber")
        await self.wait_ready(timeout)

    async def wait_ready(self, timeout: Optional[float] = 10.0) -> None:
        """Waits until the socket is open and every channel acknowledged."""
        waiter = asyncio.ensure_future(self._ready.wait())
        done_task = self._task
        try:
            done, _ = await asyncio.wait(
                [waiter] + ([done_task] if done_task else []), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        if self._ready.is_set():
            return
        if self.error is not None:
            raise self.error
        if not done:
            raise TimeoutError(f"bridge subscriber not ready within {timeout} s (state {self.state})")
        raise BridgeClosed("bridge subscriber stopped")

    async def close(self) -> None:
        """Closes for good (no more reconnects); iteration ends."""
        self._closed = True
        if self._ws is not None:
            try:
                await self._ws.close(1000, "client closed")
            except Exception:  # pragma: no cover
                pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._set_state("closed")
        self._put_nowait(_END)

    # -- channels and sending ----------------------------------------------------------------

    @property
    def channels(self) -> List[str]:
        return list(self._channels)

    def positions(self) -> Dict[str, Tuple[str, int]]:
        """``{channel: (epoch, last offset)}``, for ``resume_from``."""
        return {n: (s.epoch, s.offset) for n, s in self._channels.items() if s.epoch is not None}

    def resume(self, channel: str, epoch: str, offset: int) -> None:
        """Sets where ``channel`` resumes on the next connection (``since=offset&epoch=epoch``)."""
        st = self._channels[channel]
        st.epoch, st.offset = epoch, offset

    def subscription(self, channel: str) -> Optional[Subscription]:
        """The :class:`Subscription` of a channel of this subscriber."""
        return self._channels.get(channel)

    async def subscribe(self, channel: str, since: Union[None, int, Tuple[str, int]] = None) -> Subscription:
        """Adds a channel (subscribing now when connected) and returns its :class:`Subscription`
        (the existing one if the channel is there). ``since``: an offset (replay what followed in
        the current epoch) or ``(epoch, offset)``. ``await sub.wait()`` for the bridge's answer."""
        have = self._channels.get(channel)
        if have is not None:
            return have
        st = self._channels[channel] = Subscription(channel)
        if isinstance(since, int):
            st.epoch, st.offset = "", since
        elif since is not None:
            st.epoch, st.offset = since
        if self._closed or self.error is not None:
            st._ended(BridgeError("closed", "the subscriber is closed", channel, "subscribe"))
        elif self._ws is not None and self.state == "open":
            await self._send_subscribe(channel)
        return st

    async def unsubscribe(self, channel: str) -> None:
        st = self._channels.pop(channel, None)
        if st is None:
            return
        st._ended(None)
        if self._ws is not None:
            await self._request({"type": "unsubscribe", "channel": channel}, "unsubscribe", channel)

    async def send(self, message: Dict[str, Any], channel: Optional[str] = None) -> None:
        """Sends a client message. With several channels on the socket, name one."""
        frame = dict(message)
        if channel is not None:
            frame["channel"] = channel
        elif "channel" not in frame and len(self._channels) > 1:
            raise ValueError("several channels on this socket: send(message, channel=...)")
        ch = frame.get("channel") or (next(iter(self._channels)) if len(self._channels) == 1 else None)
        if not await self._request(frame, "message", ch):
            raise ConnectionError("bridge subscriber is not connected")

    # -- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        item = await self._queue.get()
        if item is _END:
            self._put_nowait(_END)  # later iterations end too
            if self.error is not None and not self._closed:
                raise self.error
            raise StopAsyncIteration
        return item

    async def next_event(self, timeout: float = 5.0) -> Event:
        """The next event, or TimeoutError after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no event within {timeout} s (state {self.state})") from None

    # -- internals ---------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.on_state:
                self.on_state(state)

    def _put_nowait(self, item: Any) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:  # pragma: no cover
            pass

    def _url(self) -> str:
        names = list(self._channels)
        self._token_accepted = False
        self._pending = []
        self._fail_asks(ConnectionError("bridge-client: the connection closed before the answer"))
        token_in_frame = self.token is not None and self.token_transport == "frame"
        use_path = not self.multiplex and not token_in_frame and len(names) == 1
        query: Dict[str, str] = {}
        if self.token is not None and not token_in_frame:
            query["token"] = self.token
        if self.client_id is not None:
            query["client"] = self.client_id
        for st in self._channels.values():
            st.acked = st.asked_since = st.expect_gap = False
        self._path_channel = names[0] if use_path else None
        if use_path:
            st = self._channels[names[0]]
            if st.epoch is not None:
                query["since"] = str(st.offset)
                if st.epoch:
                    query["epoch"] = st.epoch
                st.asked_since = True
            # Ask for the `subscribed` frame (epoch + offset) a path subscription sends on request.
            query["ack"] = "1"
        path = "/ws/" + quote(names[0], safe="/:@") if use_path else "/ws"
        return self.base_url + path + ("?" + urlencode(query) if query else "")

    async def _send_raw(self, frame: Dict[str, Any]) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(json.dumps(frame, separators=(",", ":")))
            return True
        except ConnectionClosed:
            return False

    async def history(self, channel: str, since: Optional[int] = None, limit: Optional[int] = None,
                      timeout: float = 10.0) -> Dict[str, Any]:
        """The channel's retained events after ``since``, read over this socket.

        Returns the bridge's ``history`` frame (``epoch``, ``offset``, ``complete``, ``messages``:
        the event frames as delivered). Any channel the connection may read; raises BridgeError
        with the refusal (``forbidden``, ``invalid_channel``, ...).
        """
        frame: Dict[str, Any] = {"type": "history", "channel": channel}
        if since is not None:
            frame["since"] = since
        if limit is not None:
            frame["limit"] = limit
        return await self._ask(frame, timeout)

    async def presence(self, channel: str, timeout: float = 10.0) -> Dict[str, Any]:
        """The channel's members (presence namespaces): the bridge's ``presence`` frame."""
        return await self._ask({"type": "presence", "channel": channel}, timeout)

    async def _ask(self, frame: Dict[str, Any], timeout: float) -> Dict[str, Any]:
        self._next_ask += 1
        ask_id = f"q{self._next_ask}"
        frame["id"] = ask_id
        fut = asyncio.get_running_loop().create_future()
        self._asks[ask_id] = (frame["type"], fut)
        try:
            if not await self._send_raw(frame):
                raise ConnectionError("bridge-client: not connected")
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._asks.pop(ask_id, None)

    def _fail_asks(self, err: BaseException) -> None:
        for _kind, fut in self._asks.values():
            if not fut.done():
                fut.set_exception(err)
        self._asks.clear()

    async def _send_subscribe(self, channel: str) -> None:
        st = self._channels[channel]
        frame: Dict[str, Any] = {"type": "subscribe", "channel": channel}
        if st.epoch is not None:
            frame["since"] = st.offset
            if st.epoch:
                frame["epoch"] = st.epoch
            st.asked_since = True
        await self._request(frame, "subscribe", channel)

    async def _request(self, frame: Dict[str, Any], kind: str, channel: Optional[str]) -> bool:
        """Sends a frame the bridge may answer, queued to match its answer (in order)."""
        entry = (kind, channel, None)
        self._pending.append(entry)
        if await self._send_raw(frame):
            return True
        if entry in self._pending:
            self._pending.remove(entry)
        return False

    def _report(self, err: BaseException) -> None:
        self.errors.append(err)
        if self.on_error:
            try:
                self.on_error(err)
            except Exception:  # pragma: no cover
                log.exception("on_error raised")

    def _fatal(self, message: str, code: Optional[int] = None, reason: str = "") -> None:
        if self.error is not None:
            return
        self.error = BridgeClosed(message, code, reason)
        self._report(self.error)
        for st in self._channels.values():
            st._ended(self.error)
        self._set_state("closed")
        self._put_nowait(_END)

    async def _fetch_token(self) -> str:
        self.token_requests += 1
        got = self.get_token()  # type: ignore[misc]
        if inspect.isawaitable(got):
            got = await got
        return str(got)

    async def _run(self) -> None:
        first = True
        while not self._closed:
            self._set_state("connecting" if first else "reconnecting")
            code: Optional[int] = None
            reason = ""
            if self.get_token is not None:
                try:
                    self.token = await self._fetch_token()
                except Exception as exc:  # the token service failed: a failed attempt, retried
                    self._report(BridgeError("token_error", f"get_token failed: {exc}"))
                    self.token = None
                    code, reason = 1006, "get_token failed"
            url = self._url() if code is None else ""
            accepted = False
            tls: Dict[str, Any] = {"ssl": self.ssl} if self.ssl is not None and url.startswith("wss:") else {}
            try:
                if code is not None:
                    raise _SkipAttempt()
                async with websockets.connect(url, open_timeout=self.open_timeout, max_size=None, **tls) as ws:
                    self._ws = ws
                    if self.token is not None and self.token_transport == "frame":
                        await self._request({"type": "auth", "token": self.token}, "auth", None)
                    for name in list(self._channels):
                        if name != self._path_channel:
                            await self._send_subscribe(name)
                    self._set_state("open")
                    self._check_ready()
                    try:
                        async for text in ws:
                            if isinstance(text, str):
                                try:
                                    await self._handle(text)
                                except Exception:  # a callback raised: keep the connection
                                    log.exception("error handling a bridge frame")
                    except ConnectionClosed:
                        pass
                    code, reason = _close_info(ws)
                    accepted = self._token_accepted
            except _SkipAttempt:
                pass
            except InvalidStatusCode as exc:
                # The upgrade was refused (400 bad channel, 404 unknown namespace, 403 Origin):
                # retrying cannot help for 4xx but 408/429; 429 and 5xx are retried.
                status = exc.status_code
                why = HTTP_REFUSALS.get(status, "")
                if is_terminal_http_status(status):
                    self._ws = None
                    self.close_codes.append(status)
                    self._fatal(f"upgrade refused with HTTP {status}{f' ({why})' if why else ''}", status, why)
                    return
                code, reason = 1006, f"HTTP {status}{f' ({why})' if why else ''}"
            except _ssl.SSLCertVerificationError as exc:
                # The bridge's certificate does not verify against the trusted CAs (or does not
                # name the host): retrying cannot help. 1015 is WebSocket's "TLS handshake failure".
                self._ws = None
                self.close_codes.append(1015)
                self._fatal(f"TLS certificate verification failed for {urlsplit(url).netloc}: "
                            f"{exc.verify_message or exc}", 1015)
                return
            except ConnectionClosed as exc:
                # Closed while the client was still sending its first frames (a refusal right
                # after the upgrade): the bridge's code and reason, not a bare 1006.
                log.debug("bridge connection closed: %r", exc)
                code, reason = _close_info(self._ws) if self._ws is not None else (1006, "")
            except (OSError, asyncio.TimeoutError, InvalidHandshake) as exc:
                log.debug("bridge connection failed: %r", exc)
                code = 1006
            finally:
                self._ws = None
                self._ready.clear()
                self._cancel_refresh()
                for st in self._channels.values():
                    st.acked = False
                    if st.state == "subscribed":
                        st._set_state("subscribing")
            if self._closed or self.error is not None:
                return
            self.close_codes.append(code)
            # A token that expired on an open connection is not a refusal: get another one.
            expired = code == 4001 and accepted and self.get_token is not None
            if (code in self.stop_codes and not expired) or not self.reconnect or (
                self.max_attempts is not None and self._attempts >= self.max_attempts
            ):
                self._fatal(f"bridge connection closed with {code}{f' ({reason})' if reason else ''}", code, reason)
                return
            bound = min(self.max_delay, self.min_delay * self.factor ** self._attempts)
            delay = 0.0 if expired and self._attempts == 0 else self._rng() * bound
            self._attempts += 1
            first = False
            self._set_state("reconnecting")
            await asyncio.sleep(delay)
            self.reconnects += 1

    def _check_ready(self) -> None:
        if self.state == "open" and all(s.acked for s in self._channels.values()):
            self._ready.set()

    async def _handle(self, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            return
        type_ = frame["type"]
        control = type_ in CONTROL_TYPES or (type_ == "error" and not isinstance(frame.get("offset"), int))
        if control and self.on_control:
            self.on_control(frame)
        if type_ == "ping":
            if self.auto_pong:
                await self._send_raw({"type": "pong"})
            return
        if type_ == "subscribed":
            self._answer(lambda k, c: k == "subscribe" and c == frame.get("channel"))
            self._handle_subscribed(frame)
            return
        if type_ == "unsubscribed":
            self._answer(lambda k, c: k == "unsubscribe" and c == frame.get("channel"))
            return
        if type_ == "authenticated":
            self._answer(lambda k, c: k == "auth")
            self._handle_authenticated(frame)
            return
        ask = self._asks.get(frame.get("id")) if isinstance(frame.get("id"), str) else None
        if ask is not None and type_ in ("history", "presence", "error") and control:
            kind, fut = ask
            if not fut.done():
                if type_ == "error":
                    data = frame.get("data") if isinstance(frame.get("data"), dict) else {}
                    fut.set_exception(BridgeError(str(data.get("code") or "error"),
                                                  str(data.get("message") or ""),
                                                  frame.get("channel"), kind))
                else:
                    fut.set_result(frame)
            return
        if type_ == "error" and control:
            await self._handle_error(frame)
            return
        if type_ == "gap":  # events the bridge dropped from this socket's queue (drop_oldest)
            st = self._channels.get(frame.get("channel") or "")
            first, last = frame.get("from"), frame.get("to")
            if st is not None and isinstance(last, int) and last > st.offset:
                st.offset = last
            self._gap(Gap(frame.get("channel") or "", first if isinstance(first, int) else 0,
                          last if isinstance(last, int) else None, False), st)
            return
        if type_ == "reconnect":
            self._handle_reconnect(frame)
            return
        if type_ in CONTROL_TYPES:
            return
        channel = frame.get("channel") or ""
        st = self._channels.get(channel)
        offset = frame.get("offset")
        if st is not None and isinstance(offset, int):
            if offset <= st.offset:
                return  # seen already (replay overlap)
            if st.expect_gap:
                st.expect_gap = False
                if offset > st.offset + 1:
                    self._gap(Gap(channel, st.offset + 1, offset - 1, False), st)
            st.offset = offset
        try:
            event = decode_event(frame)
        except Exception as exc:  # malformed data for a known type
            log.warning("cannot decode %s frame: %s", type_, exc)
            return
        if st is not None and not carries(channel, event.type, event.custom):
            # Only a bridge built from another events.proto sends these: keep the typed
            # channels' promise (gathering_bridge.channels) rather than hand them on.
            if type_ not in st._dropped:
                st._dropped.add(type_)
                log.warning("dropped a %s event on %s, a type its namespace does not carry", type_, channel)
            return
        await self._queue.put(event)

    def _handle_reconnect(self, frame: Dict[str, Any]) -> None:
        """The bridge shuts down: its position of each channel is exact for this socket (it counts
        the offsets of this client's own messages, never echoed), so it replaces the
        subscriber's for every channel the bridge had acknowledged."""
        positions = frame.get("positions")
        applied: Dict[str, Tuple[str, int]] = {}
        for name, pos in (positions.items() if isinstance(positions, dict) else ()):
            st = self._channels.get(name)
            if st is None or not st.acked or not isinstance(pos, dict):
                continue
            epoch, offset = pos.get("epoch"), pos.get("offset")
            if not isinstance(epoch, str) or isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                continue
            st.epoch, st.offset = epoch, offset
            applied[name] = (epoch, offset)
        reason = frame.get("reason")
        self.going_away = reason if isinstance(reason, str) else ""
        if self.on_going_away:
            self.on_going_away(self.going_away, applied)

    def _gap(self, gap: Gap, st: Optional[Subscription] = None) -> None:
        self.gaps.append(gap)
        if st is not None:
            st.gaps.append(gap)
            if st.on_gap:
                st.on_gap(gap)
        if self.on_gap:
            self.on_gap(gap)

    def _answer(self, match: Callable[[str, Optional[str]], bool]) -> Optional[Tuple[str, Optional[str], Any]]:
        """Removes the pending request an answer is for; messages sent before it were accepted."""
        for i, (kind, ch, fut) in enumerate(self._pending):
            if match(kind, ch):
                del self._pending[: i + 1]
                return kind, ch, fut
        return None

    async def _handle_error(self, frame: Dict[str, Any]) -> None:
        data = frame.get("data") if isinstance(frame.get("data"), dict) else {}
        code = str(data.get("code") or "error")
        message = str(data.get("message") or "")
        found = None
        for i, (kind, ch, _fut) in enumerate(self._pending):
            if code in _ERRORS_OF.get(kind, ()):
                found = (kind, ch)
                # Messages before it cannot have had this error: they were accepted.
                self._pending = [p for p in self._pending[:i] if p[0] != "message"] + self._pending[i + 1:]
                break
        kind, channel = found if found else (None, frame.get("channel"))
        err = BridgeError(code, message, channel, kind)
        if kind == "auth":
            # A refreshed (or frame-transported first) token refused: terminal, reported once.
            self._fatal(f"token refused: {code}: {message}", 4001, message)
            if self._ws is not None:
                try:
                    await self._ws.close(1000, "token refused")
                except Exception:  # pragma: no cover
                    pass
            return
        self._report(err)
        if kind == "subscribe" and channel in self._channels:
            st = self._channels.pop(channel)
            st._ended(err)
            self._check_ready()

    def _handle_authenticated(self, frame: Dict[str, Any]) -> None:
        self._token_accepted = True
        self.identity = frame.get("identity")
        ts = parse_timestamp(frame.get("expires_at"))
        self.expires_at = ts
        self._cancel_refresh()
        if self.get_token is not None and ts is not None:
            self._refresh_task = asyncio.get_running_loop().create_task(self._refresh(ts, self._ws))

    def _cancel_refresh(self) -> None:
        if self._refresh_task is not None and self._refresh_task is not asyncio.current_task():
            self._refresh_task.cancel()
        self._refresh_task = None

    async def _refresh(self, deadline: datetime, ws: Any) -> None:
        """Before the bridge's deadline, gets a new token and sends it in an auth frame."""
        while True:
            left = (deadline - datetime.now(timezone.utc)).total_seconds()
            margin = self.refresh_margin if self.refresh_margin is not None else min(60.0, max(1.0, left / 5))
            await asyncio.sleep(max(0.0, left - margin))
            if self._ws is not ws or ws is None:
                return
            try:
                token = await self._fetch_token()
            except Exception as exc:
                self._report(BridgeError("token_error", f"get_token failed: {exc}", None, "auth"))
                rest = (deadline - datetime.now(timezone.utc)).total_seconds()
                if rest <= 2:
                    return  # the bridge closes 4001 at the deadline; the reconnection gets a token
                self.refresh_margin = rest / 2
                continue
            if self._ws is not ws:
                return
            self.token = token
            await self._request({"type": "auth", "token": token}, "auth", None)
            return

    def _handle_subscribed(self, frame: Dict[str, Any]) -> None:
        st = self._channels.get(frame.get("channel") or "")
        if st is not None:
            epoch = str(frame.get("epoch", ""))
            latest = frame.get("offset") if isinstance(frame.get("offset"), int) else 0
            recovered = bool(frame.get("recovered"))
            if st.asked_since and st.epoch == "":
                if not recovered:  # `since` alone: replay in the current epoch follows
                    st.expect_gap = True
            elif st.asked_since and st.epoch is not None:
                if st.epoch != epoch:
                    self._gap(Gap(frame["channel"], st.offset + 1, None, True), st)
                    st.offset = 0 if recovered else latest
                elif not recovered:
                    # Same epoch, not recovered: what is still retained follows anyway.
                    st.expect_gap = True
            elif st.epoch is None or st.epoch != epoch:
                st.offset = latest
            st.epoch = epoch
            st.asked_since = False
            self._attempts = 0
            st._subscribed(frame)
        if self.on_subscribed:
            self.on_subscribed(frame)
        self._check_ready()


class _SkipAttempt(Exception):
    """No connection this time (get_token failed); the attempt counts as failed."""


def _close_info(ws: Any) -> Tuple[Optional[int], str]:
    rcvd = getattr(ws, "close_rcvd", None)
    if rcvd is not None:
        return rcvd.code, rcvd.reason
    code = getattr(ws, "close_code", None)
    return (code if code is not None else 1006), getattr(ws, "close_reason", "") or ""
