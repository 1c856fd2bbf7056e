"""Smoke test of an installed octopus wheel, run by scripts/wheel-smoke.sh with the fresh
venv's interpreter from a directory outside the checkout.

Usage: python -I wheel_smoke.py CHECKOUT SCRATCH. Exits non-zero with a message at the
first thing that does not work as a pip user would expect.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHECKOUT = Path(sys.argv[1]).resolve()
SCRATCH = Path(sys.argv[2]).resolve()
BIN = Path(sys.executable).parent


def step(what: str) -> None:
    print(f"[wheel-smoke]   {what}", file=sys.stderr, flush=True)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(BIN / "octopus"), *args], capture_output=True, text=True,
                       timeout=120, env=env)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def package() -> None:
    step("the package comes from the venv, with its .pl files and py.typed")
    import octopus

    where = Path(octopus.__file__).resolve().parent
    assert not where.is_relative_to(CHECKOUT), f"imported from the checkout: {where}"
    assert where.is_relative_to(Path(sys.prefix).resolve()), where
    assert (where / "py.typed").is_file()
    for name in ("match.pl", "store.pl", "triggers.pl", "skb.pl", "device_db.pl",
                 "kaluga.pl"):
        assert (where / "prolog" / name).is_file(), name
    assert issubclass(octopus.SetupError, octopus.OctopusError)
    from importlib import metadata

    shipped = [str(f) for f in metadata.files("octopus") or []]
    assert any(f.endswith("licenses/LICENSE") for f in shipped), "no LICENSE in the wheel"
    assert not [f for f in shipped if f.startswith(("tests/", "bench/", "examples/"))]


def engine() -> None:
    step("Engine: set, get, compare-and-set, a trigger")
    import octopus

    events: list[octopus.Event] = []
    with octopus.Engine() as e:
        e.watch("r'^hw\\.pci\\.'", events.append)
        e.set("hw.pci.device.0 { vendor: 0x8086, device_id: 0x100e, class: 2 }")
        assert e.get("_ { vendor: %d }", 0x8086).name == "hw.pci.device.0"
        e.set("counter { value: 1 }")
        e.set("counter { value: 2, value == 1 }")
        assert e.get("counter")["value"] == 2
        e.flush()
        assert [ev.record.name for ev in events if ev.record] == ["hw.pci.device.0"]

        step("the knowledge base: facts, a consulted file")
        e.add_facts("likes(ann, tea).")
        kb_file = SCRATCH / "rules.pl"
        kb_file.write_text("drinks(P, D) :- likes(P, D).\n")
        e.consult(kb_file)
        assert e.prolog_once("drinks(ann, D)") == {"D": "tea"}

        step("Kaluga's driver lookup (prolog/device_db.pl, prolog/kaluga.pl)")
        from octopus.kaluga.drivers import DriverDatabase

        with e.session() as s:
            db = DriverDatabase(s)
            db.load()
            driver = db.lookup(e.get("hw.pci.device.0"))
            assert driver is not None and driver.binary == "e1000n", driver


def command_line() -> None:
    step("octopus --version, serve, get/set/exists through the installed command")
    import octopus

    r = cli("--version")
    assert (r.returncode, r.stdout) == (0, f"octopus {octopus.__version__}\n"), r
    sock = SCRATCH / "octopus.sock"
    log = SCRATCH / "serve.log"
    with log.open("wb") as err:
        server = subprocess.Popen([str(BIN / "octopus"), "serve", "--unix", str(sock)],
                                  stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while "serving on" not in log.read_text():
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        url = ["--url", f"unix://{sock}"]
        r = cli("set", *url, "hw.pci.device.0 { vendor: 0x8086, class: 'C' }")
        assert r.returncode == 0, r
        r = cli("get", *url, "_ { vendor: %d }", "0x8086")
        assert (r.returncode, r.stdout) == (0, "hw.pci.device.0 { class: 'C', vendor: 32902 }\n")
        assert cli("exists", *url, "nothing").returncode == 1
        r = cli("serve", "--unix", str(sock))
        assert r.returncode == 4 and "is in use" in r.stderr, r
        with octopus.connect(f"unix://{sock}") as client:
            assert client.get("hw.pci.device.0")["vendor"] == 0x8086
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(30)
    text = log.read_text()
    assert code == 0 and "shut down after" in text and "Traceback" not in text, text
    r = cli("get", "x", "--url", f"unix://{sock}")
    assert r.returncode == 3, r


def plain_install_messages() -> None:
    step("a plain install: --graph without matplotlib, no SWI-Prolog: clear messages")
    r = cli("demo", "--graph", str(SCRATCH / "boot.png"))
    assert r.returncode == 4 and "needs matplotlib" in r.stderr, r
    env = {"HOME": os.environ["HOME"], "PATH": str(BIN) + ":/usr/bin:/bin",
           "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"]}
    if any(Path(d, "swipl").exists() for d in ("/usr/bin", "/bin")):
        return                   # a system SWI-Prolog: nothing is missing to report
    r = cli("serve", "--port", "0", env=env)
    assert r.returncode == 4, r
    assert "pip install --force-reinstall --no-cache-dir" in r.stderr, r.stderr


def main() -> None:
    os.chdir(SCRATCH / "run")
    package()
    engine()
    command_line()
    plain_install_messages()


if __name__ == "__main__":
    main()
