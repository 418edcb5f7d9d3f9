"""The operator's commands against a throwaway slapd of 20,000 users, each beside its baseline.

Prints, in one run:
- ``dirbridge check-config`` (bind, the bounded users and groups searches, the attribute
  check) beside OpenLDAP's own ``ldapsearch`` C client counting every user, and beside the
  bare process start (``dirbridge --version``);
- how long an unreachable source takes to be reported: a refused port and a host that
  does not resolve, by dirbridge's connect (each URL tried in turn) beside ldap3's server
  pool, which dirbridge used before (it waits its pooling loop before giving up);
- ``dirbridge sync --full`` in a pseudo-terminal with the live progress beside the same
  command piped (no progress): what drawing the progress costs.

    .venv/bin/python bench/operator_bench.py [--users 20000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ldap3

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ldap_sync_bench import start_directory  # noqa: E402

from bridge.config import load_config_data  # noqa: E402
from bridge.ldap.connection import check_bind  # noqa: E402
from tests.fixtures.net import free_port  # noqa: E402
from tests.fixtures.slapd import ADMIN_DN, ADMIN_PASSWORD, GROUPS_BASE, USERS_BASE  # noqa: E402
from tests.fixtures.terminal import Terminal  # noqa: E402

DIRBRIDGE = Path(sys.executable).parent / "dirbridge"


def timed(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=1800)
    return time.perf_counter() - start, done


def config_text(url: str) -> str:
    return (f'data_dir = "data"\n[logging]\nlevel = "warning"\n[[ldap.sources]]\nname = "bench"\nurl = "{url}"\n'
            f'bind_dn = "{ADMIN_DN}"\nbind_password = "{ADMIN_PASSWORD}"\nusers_base = "{USERS_BASE}"\n'
            f'groups_base = "{GROUPS_BASE}"\ntls = {{ mode = "none" }}\npage_size = 1000\n'
            '[ldap.sources.deletion_guard]\nmax_percent = 100\nmax_count = 1000000\n')


def unreachable(urls: list[str]) -> tuple[float, float]:
    """Seconds until the source is reported unreachable: dirbridge's connect, ldap3's pool."""
    source = load_config_data({"ldap": {"sources": [{
        "name": "gone", "url": urls, "users_base": USERS_BASE, "tls": {"mode": "none"}}]}}).ldap.sources[0]
    start = time.perf_counter()
    ok, _ = check_bind(source)
    ours = time.perf_counter() - start
    assert not ok
    pool = ldap3.ServerPool([ldap3.Server(u, get_info=ldap3.NONE, connect_timeout=source.connect_timeout)
                             for u in urls], ldap3.FIRST, active=1, exhaust=60)
    start = time.perf_counter()
    try:
        ldap3.Connection(pool, auto_bind=True, raise_exceptions=True)
    except ldap3.core.exceptions.LDAPException:
        pass
    return ours, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="dirbridge-opbench-"))
    process = None
    try:
        t0 = time.perf_counter()
        process = start_directory(workdir, args.users, max(1, args.users // 100))
        print(f"loaded {args.users} users into slapd in {time.perf_counter() - t0:.1f} s")
        (workdir / "dirbridge.toml").write_text(config_text(process.url))

        version, _ = timed([str(DIRBRIDGE), "--version"], workdir)
        print(f"dirbridge --version (process start): {version:.2f} s  [floor]")
        ldapsearch = shutil.which("ldapsearch")
        if ldapsearch:
            took, done = timed([ldapsearch, "-x", "-LLL", "-H", process.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD,
                                "-E", "pr=1000/noprompt", "-b", USERS_BASE, "(objectClass=inetOrgPerson)", "1.1"],
                               workdir)
            count = done.stdout.count("dn: ")
            print(f"ldapsearch (C client) counting all users: {count} in {took:.2f} s  [baseline]")
        took, done = timed([str(DIRBRIDGE), "check-config", "--config", "dirbridge.toml"], workdir)
        assert done.returncode == 0, done.stdout + done.stderr
        print(f"dirbridge check-config (bind, 1000 users and groups sampled, attributes checked): {took:.2f} s")

        refused, nowhere = f"ldap://127.0.0.1:{free_port()}", "ldap://no-such-host.invalid:389"
        for label, urls in (("a refused port", [refused]), ("a host that does not resolve", [nowhere]),
                            ("both, in one source", [refused, nowhere])):
            ours, pool = unreachable(urls)
            print(f"unreachable source, {label}: dirbridge {ours:.2f} s, ldap3 server pool {pool:.2f} s  [before]")

        env = {**os.environ, "TERM": "xterm-256color"}
        sync = [str(DIRBRIDGE), "sync", "bench", "--full", "--config", "dirbridge.toml"]
        first, done = timed(sync, workdir)
        assert done.returncode == 0, done.stderr
        print(f"dirbridge sync --full into the empty store, piped: {first:.2f} s")
        piped, done = timed(sync, workdir)  # nothing changed: the same work as the terminal's run below
        assert done.returncode == 0, done.stderr
        print(f"dirbridge sync --full, nothing changed, piped (no progress): {piped:.2f} s")
        start = time.perf_counter()
        term = Terminal(["sync", "bench", "--full", "--config", "dirbridge.toml"], cwd=workdir, env=env)
        term.expect(r"full sync ok", timeout=1800)
        assert term.wait(60) == 0
        shown = time.perf_counter() - start
        redraws = term.output.count("\x1b[2K")
        print(f"dirbridge sync --full, nothing changed, in a terminal (live progress, {redraws} redraws): "
              f"{shown:.2f} s ({(shown - piped) / piped * 100:+.1f} % against piped)")
    finally:
        if process is not None:
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
