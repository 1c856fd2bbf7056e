#!/usr/bin/env bash
# Set up everything `make test` and `make demo` need, idempotently:
#   1. an SWI-Prolog >= 9.1.12 (scripts/provision-swipl.sh finds, installs or builds one);
#   2. .venv/ with octopus installed editable plus its test extras, janus-swi built
#      against that SWI-Prolog;
#   3. a record of which SWI-Prolog home the venv belongs to (.venv/octopus-swipl.env),
#      read by octopus._prolog at import time, so nothing is needed on PATH or
#      LD_LIBRARY_PATH at run time;
#   4. a check that `import janus_swi` works from a clean environment.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*" >&2; }

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.octopus-setup

swipl=$(scripts/provision-swipl.sh)
home=$("$swipl" --dump-runtime-variables | sed -n 's/^PLBASE="\(.*\)";$/\1/p')
[ -n "$home" ] || { say "cannot read PLBASE from $swipl"; exit 1; }

# pci.ids names the PCI devices `octopus kaluga --sysfs` shows. Optional: installed when
# apt can (as root), skipped quietly otherwise (the command then shows class codes).
if [ ! -f /usr/share/misc/pci.ids ] && command -v apt-get >/dev/null 2>&1 \
        && [ "$(id -u)" = 0 ]; then
    say "installing pci.ids (PCI device names for octopus kaluga)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -q pci.ids >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q pci.ids >/dev/null 2>&1; }; } \
        || say "could not install pci.ids; device names will be class codes"
fi

# redis-cli, redis-benchmark and redis-server: the server's tests use redis-cli as an
# outside client (they skip without it) and bench/server.py compares with a real Redis.
# Installed when apt can (as root), skipped with a note otherwise.
if ! command -v redis-cli >/dev/null 2>&1 || ! command -v redis-server >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        say "installing redis-tools and redis-server (outside clients and the benchmark baseline)"
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y -q redis-tools redis-server >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 \
                 && apt-get install -y -q redis-tools redis-server >/dev/null 2>&1; }; } \
            || say "could not install redis-tools/redis-server; redis-cli tests will skip"
    else
        say "redis-cli not found and apt is not usable here; redis-cli tests will skip"
    fi
fi

# etcd (Debian's etcd-server, 3.4 on bookworm): the cluster's tests start real 3-member
# etcd clusters on loopback (tests/cluster/, `make cluster-demo`, bench/cluster.py). Those
# tests fail rather than skip without it, so it is installed wherever apt can; elsewhere
# set OCTOPUS_ETCD=/path/to/etcd.
if ! command -v etcd >/dev/null 2>&1 && [ -z "${OCTOPUS_ETCD:-}" ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        say "installing etcd-server (the cluster's replicated log, for tests/cluster)"
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y -q etcd-server >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 \
                 && apt-get install -y -q etcd-server >/dev/null 2>&1; }; } \
            || say "could not install etcd-server; tests/cluster will fail (set OCTOPUS_ETCD)"
    else
        say "etcd not found and apt is not usable here; install etcd-server or set OCTOPUS_ETCD"
    fi
fi

want="$swipl|$(sha256sum pyproject.toml | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
    say "venv is up to date ($VENV, SWI-Prolog at $home)"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
say "installing octopus (editable) and its test, demo, bench and docs extras into $VENV"
# janus-swi's build asks the first `swipl` on PATH where SWI-Prolog lives: put ours first.
# --no-binary: a prebuilt janus-swi wheel would be linked against some other libswipl.
PATH="$(dirname "$swipl"):$PATH" "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    --no-binary janus-swi -e ".[test,demo,bench,docs]" >&2
printf 'SWI_HOME_DIR=%s\nSWIPL=%s\n' "$home" "$swipl" >"$VENV/octopus-swipl.env"

say "checking that janus_swi imports from a clean environment"
env -i HOME="$HOME" "$VENV/bin/python" -c 'import octopus._prolog as p; p.runtime().check()' >&2
printf '%s' "$want" >"$STAMP"
say "ready: $VENV (SWI-Prolog $("$swipl" --version | awk '{print $3}'))"
say "the octopus command: $VENV/bin/octopus (or \`source $VENV/bin/activate\`, then octopus)"
