"""SIGHUP against the real binary (issue #12): a configuration file is read again; the fields that
may change apply at once (token keys, allowed origins, log level, connection, channel and gRPC
stream limits, namespace policies), the others are logged as needing a restart, and a bad file is
refused while the bridge keeps serving.
Usage: test_reload.py BINARY"""
import asyncio
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc
import websockets

BINARY = sys.argv[1]
SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# The gRPC stubs, generated from proto/ with the Python client's script into a scratch directory.
GEN_DIR = tempfile.mkdtemp(prefix="reload-gen-")
subprocess.run([os.path.join(SOURCE, "clients", "python", "generate.sh"), GEN_DIR], check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
sys.path.insert(0, GEN_DIR)
from gathering.bridge.v1 import events_pb2 as pb  # noqa: E402
from gathering.bridge.v1 import events_pb2_grpc as pb_grpc  # noqa: E402


def mint(secret_file, sub="alice", publish=None):
    args = [BINARY, "token", f"--auth_hs256_secret_file={secret_file}", f"--sub={sub}",
            "--channels=circles/*,rooms/*", "--ttl=10m"]
    if publish:
        args.append(f"--publish={publish}")
    r = subprocess.run(args, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


class BackendStream:
    """A gRPC Subscribe stream read on its own thread: its messages in a queue, then its end."""

    def __init__(self, channel, token, patterns):
        stub = pb_grpc.EventServiceStub(channel)
        self.call = stub.Subscribe(pb.SubscribeRequest(channels=patterns),
                                   metadata=[("authorization", f"Bearer {token}")])
        self.messages = queue.Queue()
        self.error = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for m in self.call:
                self.messages.put(m)
        except grpc.RpcError as e:
            self.error = e
        self.messages.put(None)

    def next(self, timeout=10):
        try:
            m = self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message on the Subscribe stream within {timeout} s")
        if m is None:
            raise AssertionError(f"the Subscribe stream ended: {self.error}")
        return m

    def ended(self, timeout=10):
        """The status code the stream ended with (bounded wait)."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"the Subscribe stream did not end within {timeout} s")
        return self.error.code() if self.error else grpc.StatusCode.OK

    def cancel(self):
        self.call.cancel()
        self.thread.join(10)


async def first_frame(url, origin=None):
    """('frame', type) for the first JSON frame, ('close', code) or ('http', status)."""
    try:
        async with websockets.connect(url, origin=origin, open_timeout=10) as ws:
            try:
                msg = await asyncio.wait_for(ws.recv(), 10)
                return ("frame", json.loads(msg)["type"])
            except websockets.ConnectionClosed as e:
                return ("close", e.rcvd.code if e.rcvd else None)
    except websockets.exceptions.InvalidStatusCode as e:  # websockets 10 (Debian 12)
        return ("http", e.status_code)


class Reload(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="reload-")
        self.secret_a = self.path("a.secret", "a" * 40)
        self.secret_b = self.path("b.secret", "b" * 40)
        self.config = os.path.join(self.dir, "config.json")
        self.write_config(self.secret_a, ["http://one.example"], "info")
        self.log_path = os.path.join(self.dir, "log")
        self.log = open(self.log_path, "w")
        self.start()

    def start(self):
        ready = os.path.join(self.dir, "ready.json")
        if os.path.exists(ready):
            os.remove(ready)
        self.proc = subprocess.Popen(
            [BINARY, f"--config={self.config}", "--ws_port=0", "--grpc_port=0",
             f"--ready_file={ready}", "--io_threads=1"], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"bridge did not start: {self.text()}")
            time.sleep(0.05)
        with open(ready) as f:
            ports = json.load(f)
        self.ws_port = ports["ws_port"]
        self.grpc_port = ports["grpc_port"]

    def restart(self):
        self.proc.terminate()
        self.proc.wait(timeout=15)
        self.start()

    def tearDown(self):
        self.proc.terminate()
        self.proc.wait(timeout=15)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name, text):
        p = os.path.join(self.dir, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def write_config(self, secret, origins, level, limits=None, namespaces=None):
        config = {"auth": {"mode": "token", "hs256_secret_file": secret,
                           "allowed_origins": origins},
                  "logging": {"level": level}}
        if limits is not None:
            config["limits"] = limits
        if namespaces is not None:
            config["namespaces"] = namespaces
        with open(self.config + ".tmp", "w") as f:
            json.dump(config, f)
        os.replace(self.config + ".tmp", self.config)

    def text(self):
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def hup_and_wait(self, needle):
        """SIGHUP, then a bounded wait for `needle` in the log after it."""
        start = len(self.text())
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while needle not in self.text()[start:]:
            if time.time() > deadline:
                raise AssertionError(f"no {needle!r} after SIGHUP: {self.text()[start:]}")
            time.sleep(0.05)
        return self.text()[start:]

    def connect(self, token, origin):
        url = f"ws://127.0.0.1:{self.ws_port}/ws/circles/dev?token={token}"
        return asyncio.run(first_frame(url, origin))

    def test_keys_and_origins_change_live_and_the_rest_waits_for_a_restart(self):
        token_a, token_b = mint(self.secret_a), mint(self.secret_b)
        self.assertEqual(self.connect(token_a, "http://one.example"), ("frame", "authenticated"))
        self.assertEqual(self.connect(token_b, "http://one.example"), ("close", 4001))
        self.assertEqual(self.connect(token_a, "http://two.example"), ("http", 403))

        self.write_config(self.secret_b, ["http://two.example"], "debug",
                          limits={"grpc_max_message_bytes": 65536})
        log = self.hup_and_wait("SIGHUP: reloaded")
        self.assertIn("auth.hs256_secret_file is now", log)
        self.assertIn("auth.allowed_origins is now 'http://two.example'", log)
        self.assertIn("limits.grpc_max_message_bytes changed ('4194304' -> '65536') but needs a "
                      "restart", log)
        self.assertIn("logging.level is now 'debug'", log)
        self.assertEqual(self.connect(token_b, "http://two.example"), ("frame", "authenticated"))
        self.assertEqual(self.connect(token_a, "http://two.example"), ("close", 4001))
        self.assertEqual(self.connect(token_b, "http://one.example"), ("http", 403))

        # A key file rewritten in place is read again, though its name did not change.
        with open(self.secret_b, "w") as f:
            f.write("c" * 40)
        self.hup_and_wait("SIGHUP: reloaded")
        self.assertEqual(self.connect(token_b, "http://two.example"), ("close", 4001))
        self.assertEqual(self.connect(mint(self.secret_b), "http://two.example"),
                         ("frame", "authenticated"))

    def test_connection_limits_apply_to_new_connections_and_open_ones_keep_theirs(self):
        token = mint(self.secret_a)
        url = f"ws://127.0.0.1:{self.ws_port}/ws/circles/dev?token={token}"

        async def answer(ws, channel):
            await ws.send(json.dumps({"type": "subscribe", "channel": channel, "id": channel}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame.get("id") == channel:
                    return frame["type"] if frame["type"] != "error" else frame["data"]["code"]

        async def scenario():
            origin = "http://one.example"
            async with websockets.connect(url, origin=origin, open_timeout=10) as before:
                self.assertEqual(json.loads(await before.recv())["type"], "authenticated")
                self.write_config(self.secret_a, [origin], "info",
                                  limits={"max_channels_per_connection": 1,
                                          "max_frame_bytes": 200})
                log = await asyncio.get_running_loop().run_in_executor(
                    None, self.hup_and_wait, "SIGHUP: reloaded")
                self.assertIn("limits.max_channels_per_connection is now '1' (was '64')", log)
                self.assertIn("limits.max_frame_bytes is now '200' (was '65536')", log)
                self.assertNotIn("needs a restart", log)
                async with websockets.connect(url, origin=origin, open_timeout=10) as after:
                    self.assertEqual(json.loads(await after.recv())["type"], "authenticated")
                    # Accepted under 64 channels and 64 KiB frames, the first connection keeps
                    # them; the new one has one channel (its path's) and 200-byte frames.
                    self.assertEqual(await answer(before, "circles/second"), "subscribed")
                    self.assertEqual(await answer(after, "circles/second"), "too_many_channels")
                    big = json.dumps({"type": "message", "channel": "circles/dev",
                                      "payload": "x" * 300})
                    await before.send(big)
                    self.assertEqual(await answer(before, "circles/third"), "subscribed")
                    await after.send(big)
                    with self.assertRaises(websockets.ConnectionClosed) as closed:
                        while True:
                            await asyncio.wait_for(after.recv(), 10)
                    self.assertEqual(closed.exception.rcvd.code, 1009)

        asyncio.run(scenario())

    def test_lowered_backend_stream_limits_refuse_new_streams_and_keep_the_open_ones(self):
        origin = "http://one.example"
        backend = mint(self.secret_a, sub="backend")
        client = mint(self.secret_a, publish="circles/*")
        url = f"ws://127.0.0.1:{self.ws_port}/ws/circles/dev?token={client}"

        async def send_async(text):
            async with websockets.connect(url, origin=origin, open_timeout=10) as ws:
                self.assertEqual(json.loads(await ws.recv())["type"], "authenticated")
                await ws.send(json.dumps({"type": "note", "text": text, "id": text}))
                # Answered (the ack) once the hub took it: it is then in every backend stream's
                # queue.
                while json.loads(await asyncio.wait_for(ws.recv(), 10)).get("id") != text:
                    pass

        def send(text):
            asyncio.run(send_async(text))

        def delivered(stream, text):
            while True:
                m = stream.next()
                if m.kind == pb.ClientMessage.MESSAGE and json.loads(m.json)["text"] == text:
                    return

        def registered(stream):
            """Waits until the stream gets client messages: nothing says when a Subscribe stream
            is registered, so probes are sent until one arrives (each is queued before its ack)."""
            for i in range(20):
                send(f"probe-{i}")
                try:
                    m = stream.messages.get(timeout=0.5)
                except queue.Empty:
                    continue
                if m is None:
                    raise AssertionError(f"the Subscribe stream ended: {stream.error}")
                return
            raise AssertionError("the Subscribe stream got no client message in 20 probes")

        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            first = BackendStream(channel, backend, ["circles/*"])
            registered(first)

            self.write_config(self.secret_a, [origin], "info",
                              limits={"max_backend_streams": 1})
            log = self.hup_and_wait("SIGHUP: reloaded")
            self.assertIn("limits.max_backend_streams is now '1' (was '1024')", log)
            self.assertNotIn("needs a restart", log)

            second = BackendStream(channel, mint(self.secret_a, sub="other"), ["circles/*"])
            self.assertEqual(second.ended(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("the bridge has too many Subscribe streams (at most 1)",
                          second.error.details())
            # The open one keeps working.
            send("after")
            delivered(first, "after")

            # The per-identity bound, lowered to the open stream's count, refuses that identity's
            # next stream.
            self.write_config(self.secret_a, [origin], "info",
                              limits={"max_backend_streams_per_identity": 1})
            log = self.hup_and_wait("SIGHUP: reloaded")
            self.assertIn("limits.max_backend_streams_per_identity is now '1' (was '64')", log)
            self.assertIn("limits.max_backend_streams is now '1024' (was '1')", log)
            same = BackendStream(channel, backend, ["circles/*"])
            self.assertEqual(same.ended(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("too many Subscribe streams for this identity", same.error.details())
            send("last")
            delivered(first, "last")
            first.cancel()

    def test_a_lowered_channel_limit_refuses_new_channels(self):
        origin = "http://one.example"
        token = mint(self.secret_a)
        url = f"ws://127.0.0.1:{self.ws_port}/ws/circles/dev?token={token}"

        async def answer(ws, channel):
            await ws.send(json.dumps({"type": "subscribe", "channel": channel, "id": channel}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame.get("id") == channel:
                    return frame["type"] if frame["type"] != "error" else frame["data"]["code"]

        async def scenario():
            async with websockets.connect(url, origin=origin, open_timeout=10) as ws:
                self.assertEqual(json.loads(await ws.recv())["type"], "authenticated")
                self.assertEqual(await answer(ws, "circles/second"), "subscribed")
                self.write_config(self.secret_a, [origin], "info", limits={"max_channels": 2})
                log = await asyncio.get_running_loop().run_in_executor(
                    None, self.hup_and_wait, "SIGHUP: reloaded")
                self.assertIn("limits.max_channels is now '2' (was '1000000')", log)
                self.assertNotIn("needs a restart", log)
                # circles/dev and circles/second are held: a third channel is refused, the two
                # keep working.
                self.assertEqual(await answer(ws, "circles/third"), "too_many_channels")
                self.assertEqual(await answer(ws, "circles/second"), "subscribed")

        asyncio.run(scenario())

    def test_a_changed_namespace_policy_applies_to_clients_from_then_on(self):
        origin = "http://one.example"
        rooms = {"name": "rooms", "client_messages": "BROADCAST", "history_size": 0}
        circles = {"name": "circles"}
        self.write_config(self.secret_a, [origin], "info", namespaces=[circles, rooms])
        self.restart()  # other names than the defaults: a restart
        token = mint(self.secret_a, publish="rooms/*")
        url = f"ws://127.0.0.1:{self.ws_port}/ws/rooms/r?token={token}"

        async def history(ws):
            await ws.send(json.dumps({"type": "history", "channel": "rooms/r", "id": "h"}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame.get("id") == "h":
                    return frame

        async def relay(sender, receiver, text):
            await sender.send(json.dumps({"type": "note", "channel": "rooms/r", "text": text}))
            while True:
                frame = json.loads(await asyncio.wait_for(receiver.recv(), 10))
                if frame.get("text") == text:
                    return frame

        async def scenario():
            async with websockets.connect(url, origin=origin, open_timeout=10) as a, \
                    websockets.connect(url, origin=origin, open_timeout=10) as b:
                for ws in (a, b):
                    self.assertEqual(json.loads(await ws.recv())["type"], "authenticated")
                await relay(a, b, "one")
                self.assertEqual((await history(b))["messages"], [])

                rooms["history_size"] = 10
                rooms["history_ttl"] = "5m"
                self.write_config(self.secret_a, [origin], "info", namespaces=[circles, rooms])
                log = await asyncio.get_running_loop().run_in_executor(
                    None, self.hup_and_wait, "SIGHUP: reloaded")
                self.assertIn("namespaces[1].history_size (namespace 'rooms') is now '10' "
                              "(was '0')", log)
                self.assertIn("namespaces[1].history_ttl (namespace 'rooms') is now '5m'", log)
                self.assertNotIn("needs a restart", log)
                # Open connections, same channel: what is published from now on is retained.
                await relay(a, b, "two")
                messages = (await history(b))["messages"]
                self.assertEqual([m["text"] for m in messages], ["two"])

        asyncio.run(scenario())

    def test_adding_a_namespace_needs_a_restart_and_the_bridge_keeps_its_set(self):
        origin = "http://one.example"
        token = mint(self.secret_a)
        self.write_config(self.secret_a, [origin], "info",
                          namespaces=[{"name": "circles", "history_size": 7,
                                       "history_ttl": "1m"},
                                      {"name": "workspace"}, {"name": "agents"},
                                      {"name": "rooms"}])
        log = self.hup_and_wait("SIGHUP: reloaded")
        self.assertIn("SIGHUP: namespaces changed (names 'circles,workspace,agents' -> "
                      "'circles,workspace,agents,rooms') but adding, removing, renaming or "
                      "reordering a namespace needs a restart", log)
        self.assertNotIn("history_size (namespace", log)  # no policy of the new list applied
        rooms = f"ws://127.0.0.1:{self.ws_port}/ws/rooms/r?token={token}"
        # An unknown namespace: the upgrade is refused with 4004 (docs/protocol.md).
        self.assertEqual(asyncio.run(first_frame(rooms, origin)), ("close", 4004))
        self.assertEqual(self.connect(token, origin), ("frame", "authenticated"))

    def test_a_namespace_policy_that_could_not_start_the_bridge_refuses_the_file(self):
        token_a = mint(self.secret_a)
        # events.proto types workspace channels without custom events: a broadcasting workspace
        # would not start, so it is not reloaded either, nor anything else of the file.
        self.write_config(self.secret_a, ["http://two.example"], "info",
                          namespaces=[{"name": "circles"},
                                      {"name": "workspace", "client_messages": "BROADCAST"},
                                      {"name": "agents"}])
        log = self.hup_and_wait("the running configuration is kept")
        self.assertIn("namespace 'workspace' broadcasts client messages", log)
        self.assertNotIn("SIGHUP: reloaded", log)
        self.assertNotIn("is now", log)
        self.assertEqual(self.connect(token_a, "http://one.example"), ("frame", "authenticated"))
        self.assertEqual(self.connect(token_a, "http://two.example"), ("http", 403))

    def test_a_bad_file_is_refused_whole_and_the_bridge_keeps_serving(self):
        token_a = mint(self.secret_a)
        with open(self.config, "w") as f:
            json.dump({"auth": {"mode": "token", "hs256_secret_file": self.secret_a,
                                "allowed_origins": ["http://two.example"]},
                       "limits": {"idle_timeout": "soon"}}, f)
        log = self.hup_and_wait("the running configuration is kept")
        self.assertIn("limits.idle_timeout (--idle_timeout): 'soon' is not a duration", log)
        self.assertNotIn("SIGHUP: reloaded", log)
        # Nothing of the bad file applied: the old origin still works, the new one does not.
        self.assertEqual(self.connect(token_a, "http://one.example"), ("frame", "authenticated"))
        self.assertEqual(self.connect(token_a, "http://two.example"), ("http", 403))
        self.assertIsNone(self.proc.poll())


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
