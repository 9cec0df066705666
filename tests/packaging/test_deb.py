"""The Debian package (cmake/Packaging.cmake): CPack on this build tree (no rebuild: it packs the
binary the other tests use), unpacked into a scratch root with dpkg -x, its contents and control
files checked, its binary run, and its systemd unit passed through `systemd-analyze verify`
where systemd-analyze exists.
Usage: test_deb.py BINARY SOURCE_DIR BUILD_DIR CPACK VERSION"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

BINARY, SOURCE, BUILD, CPACK, VERSION = sys.argv[1:6]
UNIT = "lib/systemd/system/gathering-bridge.service"
CONFIG = "etc/gathering-bridge/config.json"


def sh(*argv, **kw):
    return subprocess.run(list(argv), capture_output=True, text=True, **kw)


class Deb(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="packaging-deb-")
        out = os.path.join(cls.tmp, "out")
        # gzip: fast; the package itself (make package) uses xz.
        r = sh(CPACK, "-G", "DEB", "-B", out, "--config", os.path.join(BUILD, "CPackConfig.cmake"),
               "-D", "CPACK_DEBIAN_COMPRESSION_TYPE=gzip", cwd=BUILD, timeout=100)
        if r.returncode != 0:
            raise AssertionError(f"cpack failed:\n{r.stdout}\n{r.stderr}")
        debs = glob.glob(os.path.join(out, "*.deb"))
        assert len(debs) == 1, f"cpack made {debs}"
        cls.deb = debs[0]
        cls.root = os.path.join(cls.tmp, "root")
        r = sh("dpkg", "-x", cls.deb, cls.root)
        assert r.returncode == 0, r.stderr
        cls.control = os.path.join(cls.tmp, "control")
        r = sh("dpkg-deb", "-e", cls.deb, cls.control)
        assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def read(self, rel):
        with open(os.path.join(self.root, rel)) as f:
            return f.read()

    def field(self, name):
        return sh("dpkg-deb", "-f", self.deb, name).stdout.strip()

    def test_name_and_file_name(self):
        self.assertEqual(self.field("Package"), "gathering-bridge")
        self.assertEqual(self.field("Version"), VERSION)
        arch = self.field("Architecture")
        self.assertEqual(os.path.basename(self.deb), f"gathering-bridge_{VERSION}_{arch}.deb")

    def test_depends_on_its_libraries_and_tools(self):
        depends = self.field("Depends")
        for dep in ("libgrpc++", "libprotobuf", "libspdlog", "libssl3", "adduser", "procps"):
            self.assertIn(dep, depends)

    def test_contents(self):
        binary = os.path.join(self.root, "usr/bin/gathering-bridge")
        self.assertTrue(os.access(binary, os.X_OK))
        r = sh(binary, "--version")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith(f"gathering-bridge {VERSION}\n"), r.stdout)
        self.assertIsNone(re.search(r"\.debug_info", sh("readelf", "-S", binary).stdout or ""),
                          "the packaged binary is stripped")
        with open(os.path.join(SOURCE, "packaging", "config.json")) as f:
            self.assertEqual(self.read(CONFIG), f.read())
        r = sh(binary, "check-config", os.path.join(self.root, CONFIG))
        self.assertEqual(r.returncode, 0, r.stderr)
        docs = os.path.join(self.root, "usr/share/doc/gathering-bridge")
        for doc in ("README.md", "operations.md", "security.md", "protocol.md"):
            self.assertTrue(os.path.isfile(os.path.join(docs, doc)), doc)
        self.assertIn("u gathering-bridge ", self.read("usr/lib/sysusers.d/gathering-bridge.conf"))
        # Nothing from the build tree or /usr/local.
        for top in os.listdir(self.root):
            self.assertIn(top, ("usr", "etc", "lib"))
        self.assertFalse(os.path.exists(os.path.join(self.root, "usr/local")))

    def test_config_file_is_a_conffile(self):
        with open(os.path.join(self.control, "conffiles")) as f:
            self.assertEqual(f.read().split(), [f"/{CONFIG}"])

    def test_maintainer_scripts(self):
        for name in ("postinst", "prerm", "postrm"):
            path = os.path.join(self.control, name)
            self.assertTrue(os.access(path, os.X_OK), f"{name} is not executable")
            r = sh("sh", "-n", path)
            self.assertEqual(r.returncode, 0, f"{name}: {r.stderr}")
        with open(os.path.join(self.control, "postinst")) as f:
            postinst = f.read()
        self.assertIn("systemd-sysusers", postinst)
        self.assertIn("adduser --system", postinst)

    def test_unit(self):
        unit = self.read(UNIT)
        for line in ("User=gathering-bridge", "Group=gathering-bridge",
                     "ExecStart=/usr/bin/gathering-bridge --config=/" + CONFIG,
                     "ExecReload=/bin/kill -HUP $MAINPID", "LimitNOFILE=1048576",
                     "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=",
                     "WantedBy=multi-user.target"):
            self.assertIn(f"\n{line}\n", unit)

    def test_unit_passes_systemd_analyze_verify(self):
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.skipTest("systemd-analyze not installed: unit not verified")
        # The scratch root has no systemd of its own (--root would miss sysinit.target): verify a
        # copy whose commands point into the scratch root instead.
        unit = self.read(UNIT).replace("/usr/bin/gathering-bridge",
                                       os.path.join(self.root, "usr/bin/gathering-bridge"))
        if not os.access("/bin/kill", os.X_OK):
            unit = unit.replace("/bin/kill", shutil.which("true") or "/bin/true")
        d = os.path.join(self.tmp, "verify")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "gathering-bridge.service")
        with open(path, "w") as f:
            f.write(unit)
        r = sh(analyze, "verify", path, timeout=60)
        out = r.stdout + r.stderr
        # verify exits 0 on unknown keys and bad values ("..., ignoring"): those fail here.
        problems = [l for l in out.splitlines() if path in l or "gathering-bridge.service:" in l]
        self.assertEqual(r.returncode, 0, out)
        self.assertEqual(problems, [], out)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
