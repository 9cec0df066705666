"""BridgeSubscriber: asyncio WebSocket subscriber with reconnect (exponential backoff, full jitter)
and resume from the last offset + epoch of every channel."""
from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl as _ssl
from typing import Any, AsyncIterator, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatusCode

from .events import CONTROL_TYPES, Event, Gap, decode_event

log = logging.getLogger("gathering_bridge")

STOP_CODES = (4001, 4003)


class BridgeClosed(Exception):
    """The subscriber stopped for good (closed, a 4001/4003 close, refused upgrade, max_attempts)."""

    def __init__(self, message: str, code: Optional[int] = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class _ChannelState:
    __slots__ = ("epoch", "offset", "asked_since", "acked", "expect_gap")

    def __init__(self) -> None:
        self.epoch: Optional[str] = None
        self.offset = 0
        self.asked_since = False
        self.acked = False
        # After `recovered:false` in the same epoch, the next event's offset shows the gap; other
        # offset jumps are this socket's own messages (they take offsets but are not echoed).
        self.expect_gap = False


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
        rng: Callable[[], float] = random.random,
    ) -> None:
        parts = urlsplit(url)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        path = parts.path.rstrip("/")
        names: List[str] = []
        if path.startswith("/ws/"):
            names.append(path[len("/ws/"):])
        names.extend(channels)
        #: ``ws://host:port``: reconnections go here (tests may point it elsewhere).
        self.base_url = urlunsplit((scheme, parts.netloc, "", "", ""))
        self._channels: Dict[str, _ChannelState] = {}
        for name in names:
            self._channels.setdefault(name, _ChannelState())
        for name, (epoch, offset) in (resume_from or {}).items():
            st = self._channels.get(name)
            if st is not None:
                st.epoch, st.offset = epoch, offset
        if token_transport not in ("query", "frame"):
            raise ValueError("token_transport must be 'query' or 'frame'")
        self.token = token
        self.token_transport = token_transport
        self.client_id = client_id
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

    async def subscribe(self, channel: str, since: Optional[Tuple[str, int]] = None) -> None:
        if channel in self._channels:
            return
        st = self._channels[channel] = _ChannelState()
        if since is not None:
            st.epoch, st.offset = since
        if self._ws is not None:
            await self._send_subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        if self._channels.pop(channel, None) is not None and self._ws is not None:
            await self._send_raw({"type": "unsubscribe", "channel": channel})

    async def send(self, message: Dict[str, Any], channel: Optional[str] = None) -> None:
        """Sends a client message. With several channels on the socket, name one."""
        frame = dict(message)
        if channel is not None:
            frame["channel"] = channel
        elif "channel" not in frame and len(self._channels) > 1:
            raise ValueError("several channels on this socket: send(message, channel=...)")
        if not await self._send_raw(frame):
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

    async def _send_subscribe(self, channel: str) -> None:
        st = self._channels[channel]
        frame: Dict[str, Any] = {"type": "subscribe", "channel": channel}
        if st.epoch is not None:
            frame.update(since=st.offset, epoch=st.epoch)
            st.asked_since = True
        await self._send_raw(frame)

    def _fatal(self, message: str, code: Optional[int] = None, reason: str = "") -> None:
        self.error = BridgeClosed(message, code, reason)
        self._set_state("closed")
        self._put_nowait(_END)

    async def _run(self) -> None:
        first = True
        while not self._closed:
            self._set_state("connecting" if first else "reconnecting")
            code: Optional[int] = None
            reason = ""
            url = self._url()
            tls: Dict[str, Any] = {"ssl": self.ssl} if self.ssl is not None and url.startswith("wss:") else {}
            try:
                async with websockets.connect(url, open_timeout=self.open_timeout, max_size=None, **tls) as ws:
                    self._ws = ws
                    if self.token is not None and self.token_transport == "frame":
                        await self._send_raw({"type": "auth", "token": self.token})
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
            except InvalidStatusCode as exc:
                # The upgrade was refused (400 bad channel, 404, 401...): retrying cannot help
                # for 4xx; 5xx (503 too many connections, draining) is worth retrying.
                if 400 <= exc.status_code < 500:
                    self._ws = None
                    self._fatal(f"upgrade refused with HTTP {exc.status_code}", exc.status_code)
                    return
                code = 1006
            except _ssl.SSLCertVerificationError as exc:
                # The bridge's certificate does not verify against the trusted CAs (or does not
                # name the host): retrying cannot help. 1015 is WebSocket's "TLS handshake failure".
                self._ws = None
                self.close_codes.append(1015)
                self._fatal(f"TLS certificate verification failed for {urlsplit(url).netloc}: "
                            f"{exc.verify_message or exc}", 1015)
                return
            except (OSError, asyncio.TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                log.debug("bridge connection failed: %r", exc)
                code = 1006
            finally:
                self._ws = None
                self._ready.clear()
            if self._closed:
                return
            self.close_codes.append(code)
            if not self.reconnect or code in self.stop_codes or (
                self.max_attempts is not None and self._attempts >= self.max_attempts
            ):
                self._fatal(f"bridge connection closed with {code}{f' ({reason})' if reason else ''}", code, reason)
                return
            bound = min(self.max_delay, self.min_delay * self.factor ** self._attempts)
            delay = self._rng() * bound
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
        if type_ == "ping":
            if self.auto_pong:
                await self._send_raw({"type": "pong"})
            return
        if type_ == "subscribed":
            self._handle_subscribed(frame)
            return
        if type_ == "gap":  # events the bridge dropped from this socket's queue (drop_oldest)
            st = self._channels.get(frame.get("channel") or "")
            first, last = frame.get("from"), frame.get("to")
            if st is not None and isinstance(last, int) and last > st.offset:
                st.offset = last
            self._gap(Gap(frame.get("channel") or "", first if isinstance(first, int) else 0,
                          last if isinstance(last, int) else None, False))
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
                    self._gap(Gap(channel, st.offset + 1, offset - 1, False))
            st.offset = offset
        try:
            event = decode_event(frame)
        except Exception as exc:  # malformed data for a known type
            log.warning("cannot decode %s frame: %s", type_, exc)
            return
        await self._queue.put(event)

    def _gap(self, gap: Gap) -> None:
        self.gaps.append(gap)
        if self.on_gap:
            self.on_gap(gap)

    def _handle_subscribed(self, frame: Dict[str, Any]) -> None:
        st = self._channels.get(frame.get("channel") or "")
        if st is not None:
            epoch = str(frame.get("epoch", ""))
            latest = frame.get("offset") if isinstance(frame.get("offset"), int) else 0
            recovered = bool(frame.get("recovered"))
            if st.asked_since and st.epoch is not None:
                if st.epoch != epoch:
                    self._gap(Gap(frame["channel"], st.offset + 1, None, True))
                    st.offset = 0 if recovered else latest
                elif not recovered:
                    # Same epoch, not recovered: what is still retained follows anyway.
                    st.expect_gap = True
            elif st.epoch is None or st.epoch != epoch:
                st.offset = latest
            st.epoch = epoch
            st.acked = True
            st.asked_since = False
            self._attempts = 0
        if self.on_subscribed:
            self.on_subscribed(frame)
        self._check_ready()


def _close_info(ws: Any) -> Tuple[Optional[int], str]:
    rcvd = getattr(ws, "close_rcvd", None)
    if rcvd is not None:
        return rcvd.code, rcvd.reason
    code = getattr(ws, "close_code", None)
    return (code if code is not None else 1006), getattr(ws, "close_reason", "") or ""
