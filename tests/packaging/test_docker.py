"""docker/Dockerfile, docker/compose.yaml and .dockerignore checked against the binary: every flag
they pass exists, the ports they publish are the ones the configuration makes the bridge listen
on (by `check-config`), the configuration file they mount exists and is valid, the health check is the binary's own
and the image runs as the package's user. No container engine is needed.
Usage: test_docker.py BINARY SOURCE_DIR"""
import json
import os
import re
import shlex
import sys
import unittest

try:
    import yaml
except ImportError:
    sys.exit("test_docker.py needs python3-yaml (scripts/setup.sh --with-tests installs it)")

from common import effective_config, known_flags, run

BINARY, SOURCE = sys.argv[1:3]
DOCKER = os.path.join(SOURCE, "docker")
INSTALLED_BINARY = "/usr/bin/gathering-bridge"  # where the Debian package puts it
PACKAGE_CONFIG = "/etc/gathering-bridge/config.json"
REPO_CONFIG = os.path.join(SOURCE, "packaging", "config.json")


def dockerfile_stages(path):
    """[[(INSTRUCTION, arguments)]] per FROM, continuation lines joined, comments dropped."""
    stages, logical = [], ""
    with open(path) as f:
        lines = f.read().splitlines()
    joined = []
    for line in lines:
        if line.strip().startswith("#") and not logical:
            continue
        logical += line.rstrip()
        if logical.endswith("\\"):
            logical = logical[:-1] + " "
            continue
        if logical.strip():
            joined.append(logical.strip())
        logical = ""
    for line in joined:
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), rest.strip()))
    return stages


def exec_form(text):
    text = text.strip()
    if text.startswith("["):
        return json.loads(text)
    return None


def flags_of(argv):
    return [re.match(r"--([A-Za-z0-9_]+)", a).group(1) for a in argv if a.startswith("--")]


class Docker(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.known = known_flags(BINARY)
        stages = dockerfile_stages(os.path.join(DOCKER, "Dockerfile"))
        cls.build_stage, cls.runtime = stages[0], stages[-1]
        with open(os.path.join(DOCKER, "compose.yaml")) as f:
            cls.compose = yaml.safe_load(f)
        cls.service = cls.compose["services"]["bridge"]

    def instruction(self, name):
        found = [rest for ins, rest in self.runtime if ins == name]
        self.assertEqual(len(found), 1, f"runtime stage needs exactly one {name}")
        return found[0]

    def assert_flags_exist(self, argv, where):
        for name in flags_of(argv):
            self.assertIn(name, self.known, f"{where} passes --{name}, which the binary lacks")

    def image_command(self):
        entrypoint = exec_form(self.instruction("ENTRYPOINT"))
        cmd = exec_form(self.instruction("CMD"))
        self.assertIsNotNone(entrypoint, "ENTRYPOINT must be the exec (JSON) form")
        self.assertIsNotNone(cmd, "CMD must be the exec (JSON) form")
        return entrypoint, cmd

    def test_build_stage_uses_the_cmake_target_and_cpack(self):
        runs = " ".join(rest for ins, rest in self.build_stage if ins == "RUN")
        self.assertIn("scripts/setup.sh", runs)
        self.assertIn("--target gathering-bridge", runs)
        self.assertIn("cpack -G DEB", runs)
        copies = [rest for ins, rest in self.runtime if ins == "COPY"]
        self.assertTrue(any("--from=" in c for c in copies), "runtime stage copies the package")

    def test_runtime_runs_as_the_packaged_non_root_user(self):
        user = self.instruction("USER")
        self.assertNotIn(user.split(":")[0], ("root", "0"))
        with open(os.path.join(SOURCE, "packaging", "gathering-bridge.service")) as f:
            self.assertIn(f"User={user}\n", f.read(), "the image and the unit use one user")

    def test_entrypoint_and_cmd_flags_exist_and_parse(self):
        entrypoint, cmd = self.image_command()
        self.assertEqual(entrypoint[0], INSTALLED_BINARY)
        self.assert_flags_exist(entrypoint[1:] + cmd, "the Dockerfile")
        self.effective(entrypoint[1:] + cmd)  # check-config accepts them

    def effective(self, argv):
        """{host, ws_port, grpc_port} the image's command line gives, by the binary's own
        check-config, with the files of the image (the package's, or compose's mounts) mapped
        to their sources here."""
        mounts = {PACKAGE_CONFIG: REPO_CONFIG}
        for v in self.service.get("volumes", []):
            source, target = v.split(":")[:2]
            mounts[target] = os.path.normpath(os.path.join(DOCKER, source))
        local = []
        for a in argv:
            m = re.fullmatch(r"--config=(.*)", a)
            if m:
                self.assertIn(m.group(1), mounts, f"--config={m.group(1)}: not in the image")
                a = f"--config={mounts[m.group(1)]}"
            local.append(a)
        listeners = effective_config(BINARY, local)["listeners"]
        return {"host": listeners["host"], "ws_port": str(listeners["ws_port"]),
                "grpc_port": str(listeners["grpc_port"])}

    def test_exposed_ports_are_the_listening_ports(self):
        entrypoint, cmd = self.image_command()
        values = self.effective(entrypoint[1:] + cmd)
        exposed = set(self.instruction("EXPOSE").split())
        self.assertEqual(exposed, {values["ws_port"], values["grpc_port"]})
        self.assertEqual(values.get("host"), "0.0.0.0", "the container must listen beyond loopback")

    def check_healthcheck(self, argv, ws_port, where):
        self.assertEqual(argv[0], INSTALLED_BINARY, f"{where}: the health check is the binary")
        self.assertEqual(argv[1], "healthcheck")
        self.assert_flags_exist(argv[2:], where)
        url = next((a.split("=", 1)[1] for a in argv if a.startswith("--url=")),
                   "http://127.0.0.1:8080/healthz")
        self.assertRegex(url, rf"^http://(127\.0\.0\.1|localhost):{ws_port}/healthz$",
                         f"{where}: the health check must ask the WebSocket port {ws_port}")

    def test_dockerfile_healthcheck_is_the_binary(self):
        hc = self.instruction("HEALTHCHECK")
        self.assertNotIn("CMD-SHELL", hc)
        m = re.search(r"\bCMD\s+(\[.*\])\s*$", hc)
        self.assertTrue(m, f"HEALTHCHECK must be 'CMD [exec form]': {hc}")
        entrypoint, cmd = self.image_command()
        self.check_healthcheck(json.loads(m.group(1)), self.effective(entrypoint[1:] + cmd)["ws_port"],
                               "Dockerfile HEALTHCHECK")

    def test_compose_service(self):
        s = self.service
        context = os.path.normpath(os.path.join(DOCKER, s["build"]["context"]))
        self.assertTrue(os.path.isfile(os.path.join(context, s["build"]["dockerfile"])))
        entrypoint, _ = self.image_command()
        command = s["command"] if isinstance(s["command"], list) else shlex.split(s["command"])
        self.assert_flags_exist(command, "compose command")
        values = self.effective(entrypoint[1:] + command)
        # The configuration file named on the command line is the one mounted, and it is valid.
        configs = [a.split("=", 1)[1] for a in command if a.startswith("--config=")]
        self.assertEqual(len(configs), 1, "compose passes one --config")
        mounted = {v.split(":")[1]: v.split(":")[0] for v in s["volumes"]}
        self.assertIn(configs[0], mounted, "the --config path is a mounted volume")
        source = os.path.normpath(os.path.join(DOCKER, mounted[configs[0]]))
        self.assertTrue(os.path.isfile(source), f"{source} (mounted configuration) is missing")
        r = run(BINARY, "check-config", source)
        self.assertEqual(r.returncode, 0, r.stderr)
        # Published container ports are the listening ones.
        published = {p.rsplit(":", 1)[1] for p in s["ports"]}
        self.assertEqual(published, {values["ws_port"], values["grpc_port"]})
        test = s["healthcheck"]["test"]
        self.assertEqual(test[0], "CMD", "compose health check: exec form, no shell in the image")
        self.check_healthcheck(test[1:], values["ws_port"], "compose healthcheck")

    def test_dockerignore_keeps_build_trees_out(self):
        with open(os.path.join(SOURCE, ".dockerignore")) as f:
            patterns = {l.strip() for l in f if l.strip() and not l.startswith("#")}
        for p in ("build/", "**/node_modules/", ".git/"):
            self.assertIn(p, patterns)
        # What the build needs is not ignored.
        for needed in ("src", "proto", "scripts", "packaging", "CMakeLists.txt", "cmake"):
            self.assertNotIn(needed, patterns)
            self.assertNotIn(needed + "/", patterns)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
