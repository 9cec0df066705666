"""SIGHUP against the real binary (issue #12): a configuration file is read again; the fields that
may change apply at once (token keys, allowed origins, log level), the others are logged as
needing a restart, and a bad file is refused while the bridge keeps serving.
Usage: test_reload.py BINARY"""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import websockets

BINARY = sys.argv[1]


def mint(secret_file, sub="alice"):
    r = subprocess.run([BINARY, "token", f"--auth_hs256_secret_file={secret_file}", f"--sub={sub}",
                        "--channels=circles/*", "--ttl=10m"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


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
        ready = os.path.join(self.dir, "ready.json")
        self.log_path = os.path.join(self.dir, "log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [BINARY, f"--config={self.config}", "--ws_port=0", "--grpc_port=0",
             f"--ready_file={ready}", "--io_threads=1"], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"bridge did not start: {self.text()}")
            time.sleep(0.05)
        with open(ready) as f:
            self.ws_port = json.load(f)["ws_port"]

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

    def write_config(self, secret, origins, level, limits=None):
        config = {"auth": {"mode": "token", "hs256_secret_file": secret,
                           "allowed_origins": origins},
                  "logging": {"level": level}}
        if limits is not None:
            config["limits"] = limits
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
                          limits={"max_channels": 5000})
        log = self.hup_and_wait("SIGHUP: reloaded")
        self.assertIn("auth.hs256_secret_file is now", log)
        self.assertIn("auth.allowed_origins is now 'http://two.example'", log)
        self.assertIn("limits.max_channels changed ('1000000' -> '5000') but needs a restart", log)
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
