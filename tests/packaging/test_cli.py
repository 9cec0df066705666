"""The first minutes with the binary: --help, subcommand help, --version, the start-up log,
the healthcheck subcommand and the packaged configuration file (issue #12).
Usage: test_cli.py BINARY SOURCE_DIR VERSION BUILD_TYPE"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from common import config_flags, effective_config, flagfile_entries, helpfull_own_flags, run

BINARY, SOURCE, VERSION, BUILD_TYPE = sys.argv[1:5]
CONFIG = os.path.join(SOURCE, "packaging", "config.json")
SUBCOMMAND_ONLY = {"sub", "channels", "publish", "ttl", "admin", "url", "timeout"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The bridge on free ports; its log is kept for the assertions."""

    def __init__(self, *flags):
        self.dir = tempfile.mkdtemp(prefix="packaging-cli-")
        ready = os.path.join(self.dir, "ready.json")
        self.log_path = os.path.join(self.dir, "log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [BINARY, "--ws_port=0", "--grpc_port=0", f"--ready_file={ready}", "--io_threads=1",
             *flags], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"bridge did not start: {self.text()}")
            time.sleep(0.05)
        with open(ready) as f:
            r = json.load(f)
        self.ws_port, self.grpc_port = r["ws_port"], r["grpc_port"]

    def text(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=15)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Cli(unittest.TestCase):
    def test_help_lists_the_server_flags_by_area(self):
        r = run(BINARY, "--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("No flags matched", r.stdout + r.stderr)
        # One area per section of config.proto, each flag with its field's path.
        for area in ("listeners:", "tls:", "limits:", "auth:", "broker:", "logging:",
                     "namespaces:"):
            self.assertIn(f"\n{area} ", r.stdout)
        self.assertIn("(limits.max_frame_bytes)", r.stdout)
        flags = (helpfull_own_flags(BINARY) | config_flags(BINARY)) - SUBCOMMAND_ONLY
        self.assertGreater(len(flags), 50)
        for name in sorted(flags):
            self.assertIn(f"\n  --{name}=", r.stdout, f"--help does not list --{name}")
        for name in SUBCOMMAND_ONLY:
            self.assertNotIn(f"\n  --{name}=", r.stdout, f"--help lists token's --{name}")
        for hint in ("--config=FILE", "--flagfile", "--fromenv", "token --help",
                     "healthcheck --help", "check-config --help", "[SIGHUP]"):
            self.assertIn(hint, r.stdout)
        # -h is the same.
        self.assertEqual(run(BINARY, "-h").stdout, r.stdout)

    def test_each_subcommand_has_its_own_help(self):
        token = run(BINARY, "token", "--help")
        self.assertEqual(token.returncode, 0, token.stderr)
        self.assertTrue(token.stdout.startswith("gathering-bridge token "), token.stdout)
        for name in ("sub", "channels", "publish", "ttl", "config"):
            self.assertIn(f"--{name}=", token.stdout)
        self.assertNotIn("--ws_port", token.stdout)
        health = run(BINARY, "--help", "healthcheck")
        self.assertEqual(health.returncode, 0, health.stderr)
        self.assertIn("--url=http://127.0.0.1:8080/healthz", health.stdout)
        self.assertIn("--timeout=", health.stdout)
        self.assertNotIn("--sub=", health.stdout)
        bad = run(BINARY, "nosuchcommand")
        self.assertEqual(bad.returncode, 2)
        self.assertIn("unknown command", bad.stderr)

    def test_version(self):
        r = run(BINARY, "--version")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], f"gathering-bridge {VERSION}")
        self.assertRegex(lines[1], r"^commit ([0-9a-f]{7,}|unknown)$")
        self.assertTrue(lines[2].startswith(f"{BUILD_TYPE} build ("), lines[2])
        if BUILD_TYPE != "Debug":
            self.assertNotIn("Debug build", r.stdout)

    def test_startup_log_names_the_addresses_and_healthcheck_answers(self):
        s = Server()
        try:
            web = f"127.0.0.1:{s.ws_port}"
            log = s.text()
            for part in (f"page http://{web}/", f"ws ws://{web}/ws/<channel>",
                         f"grpc 127.0.0.1:{s.grpc_port}", f"metrics http://{web}/metrics"):
                self.assertIn(part, log)
            ok = run(BINARY, "healthcheck", f"--url=http://{web}/healthz")
            self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
            self.assertTrue(ok.stdout.startswith("healthy:"), ok.stdout)
            missing = run(BINARY, "healthcheck", f"--url=http://{web}/nope")
            self.assertEqual(missing.returncode, 1)
            self.assertRegex(missing.stdout, r"^unhealthy: .*HTTP 404.*\n$")
        finally:
            s.stop()
        closed = run(BINARY, "healthcheck", f"--url=http://127.0.0.1:{free_port()}/healthz",
                     "--timeout=2s")
        self.assertEqual(closed.returncode, 1)
        self.assertRegex(closed.stdout, r"^unhealthy: .*connect.*\n$")
        https = run(BINARY, "healthcheck", "--url=https://127.0.0.1/healthz")
        self.assertEqual(https.returncode, 1)
        self.assertIn("only http://", https.stdout)

    def test_startup_log_says_wss_and_https_with_tls(self):
        d = tempfile.mkdtemp(prefix="packaging-tls-")
        try:
            cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj",
                            "/CN=localhost", "-keyout", key, "-out", cert],
                           check=True, capture_output=True)
            s = Server(f"--ws_tls_cert_file={cert}", f"--ws_tls_key_file={key}")
            try:
                web = f"127.0.0.1:{s.ws_port}"
                log = s.text()
                self.assertIn(f"page https://{web}/", log)
                self.assertIn(f"ws wss://{web}/ws/<channel>", log)
                self.assertIn(f"metrics https://{web}/metrics", log)
            finally:
                s.stop()
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_packaged_config_is_valid_and_flag_files_still_work(self):
        config = effective_config(BINARY, [CONFIG])
        self.assertEqual(config["listeners"]["ws_port"], 8080)
        self.assertEqual(config["auth"]["mode"], "none")
        # `flagfile` prints every configuration flag, commented out with its default, and a flag
        # file is read in place, like Abseil's.
        generated = run(BINARY, "flagfile")
        self.assertEqual(generated.returncode, 0, generated.stderr)
        entries = flagfile_entries(generated.stdout)
        self.assertEqual(set(entries), config_flags(BINARY))
        self.assertEqual(entries["idle_timeout"], ("75s", True))
        d = tempfile.mkdtemp(prefix="packaging-flags-")
        try:
            path = os.path.join(d, "f.flags")
            with open(path, "w") as f:
                f.write(generated.stdout + "--ws_port=9001\n--noper_ip_exempt_loopback\n")
            c = effective_config(BINARY, [CONFIG, f"--flagfile={path}", "--grpc_port=9002"])
            self.assertEqual(c["listeners"]["ws_port"], 9001)
            self.assertEqual(c["listeners"]["grpc_port"], 9002)
            self.assertFalse(c["limits"]["per_ip_exempt_loopback"])
            env = dict(os.environ, FLAGS_ws_port="9003")
            r = subprocess.run([BINARY, "check-config", "--fromenv=ws_port"], env=env,
                               capture_output=True, text=True, timeout=20)
            self.assertEqual(json.loads(r.stdout)["listeners"]["ws_port"], 9003, r.stderr)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_check_config_refuses_with_paths_and_the_server_does_not_start(self):
        d = tempfile.mkdtemp(prefix="packaging-config-")
        try:
            bad = os.path.join(d, "bad.json")
            with open(bad, "w") as f:
                json.dump({"listeners": {"wsport": 1}, "namespaces": [{"name": "a"}, {"name": "a"}]}, f)
            r = run(BINARY, "check-config", bad)
            self.assertEqual(r.returncode, 2)
            self.assertIn("listeners.wsport: unknown field", r.stderr)
            with open(bad, "w") as f:
                json.dump({"namespaces": [{"name": "a"}, {"name": "a"}],
                           "limits": {"idle_timeout": "75s"}}, f)
            r = run(BINARY, "check-config", bad, "--max_frame_bytes=3")
            self.assertEqual(r.returncode, 2)
            self.assertIn("namespaces[1].name: 'a' is already namespaces[0]", r.stderr)
            self.assertIn("limits.max_frame_bytes (--max_frame_bytes): must be at least 125", r.stderr)
            # The server refuses the same file at start-up, with the same lines, and exit 2.
            r = run(BINARY, f"--config={bad}", "--ws_port=0", "--grpc_port=0")
            self.assertEqual(r.returncode, 2)
            self.assertIn("namespaces[1].name", r.stderr)
            self.assertNotIn("page http", r.stderr)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_config_reference_is_markdown_of_every_field(self):
        r = run(BINARY, "config-reference")
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in config_flags(BINARY) - {"namespaces"}:
            self.assertIn(f"`--{name}`", r.stdout)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
