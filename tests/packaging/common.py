"""Shared helpers of the packaging tests: run the binary, read its flags and configuration."""
import json
import re
import subprocess


def run(binary, *args, timeout=20):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout)


def helpfull_flags(binary):
    """Every flag name --helpfull lists (the libraries' included)."""
    out = run(binary, "--helpfull").stdout
    return set(re.findall(r"^\s+--([A-Za-z0-9_]+) \(", out, re.M))


def helpfull_own_flags(binary):
    """The flags --helpfull lists under "Flags from src/app/main.cc"."""
    out = run(binary, "--helpfull").stdout
    section = re.search(r"Flags from src/app/main\.cc:\n(.*?)(?:\n  Flags from |\Z)", out, re.S)
    assert section, "--helpfull has no 'Flags from src/app/main.cc' section"
    return set(re.findall(r"^\s+--([A-Za-z0-9_]+) \(", section.group(1), re.M))


def flagfile_entries(text):
    """{name: (value, commented)} of a flag file's --name=value lines, commented ('# --x=') or not."""
    entries = {}
    for line in text.splitlines():
        s = line.strip()
        commented = s.startswith("#")
        body = s.lstrip("#").strip() if commented else s
        m = re.fullmatch(r"--([A-Za-z0-9_]+)(?:=(.*))?", body)
        if m:
            entries[m.group(1)] = (m.group(2) or "", commented)
        elif s and not commented:
            raise AssertionError(f"flag file line is neither a comment nor --flag=value: {line!r}")
    return entries


def config_flags(binary):
    """The configuration's flags (config.proto's fields), from the `flagfile` subcommand."""
    out = run(binary, "flagfile").stdout
    return set(flagfile_entries(out))


def known_flags(binary):
    """Every flag the binary takes: Abseil's (--helpfull) and the configuration's."""
    return helpfull_flags(binary) | config_flags(binary)


def effective_config(binary, args):
    """The effective configuration `args` give (check-config), as a dict; fails on problems."""
    r = run(binary, "check-config", *args)
    assert r.returncode == 0, f"check-config {args}: {r.stderr}"
    return json.loads(r.stdout)
