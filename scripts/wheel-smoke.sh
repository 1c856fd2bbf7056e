#!/usr/bin/env bash
# What users install is what we test: build the octopus wheel from a clean copy of this
# tree, install it (not editable) into a fresh virtual environment outside the checkout,
# and run scripts/wheel_smoke.py with it from a directory outside the checkout, in an
# environment like a pip user's: SWI-Prolog found through `swipl` on PATH, nothing
# recorded by scripts/setup.sh.
#
# janus-swi must be built against our SWI-Prolog (as scripts/setup.sh does); that build
# is the slow part, so its wheel is cached in ~/.cache/octopus/wheels/, keyed by the
# Python tag, the janus-swi version and the SWI-Prolog version and home.
#
# Needs `make setup` first (its .venv provides the interpreter and pip). KEEP=1 keeps the
# temporary directory for a look after a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { printf "[wheel-smoke] %3ss %s\n" "$SECONDS" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

SECONDS=0
VPY=$ROOT/.venv/bin/python
[ -x "$VPY" ] || die "no .venv: run make setup first"
pip_() { "$VPY" -m pip --disable-pip-version-check -q "$@"; }

swipl=$(scripts/provision-swipl.sh 2>/dev/null) || die "no SWI-Prolog (run make setup)"
vars=$("$swipl" --dump-runtime-variables)
plbase=$(sed -n 's/^PLBASE="\(.*\)";$/\1/p' <<<"$vars")
plversion=$(sed -n 's/^PLVERSION="\(.*\)";$/\1/p' <<<"$vars")
base_python=$("$VPY" -c 'import sys; print(sys._base_executable)')
pytag=$("$VPY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
janus_version=$("$VPY" -c 'import importlib.metadata as m; print(m.version("janus-swi"))')

tmp=$(mktemp -d "${TMPDIR:-/tmp}/octopus-wheel-smoke.XXXXXX")
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then say "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# 1. janus-swi built against our SWI-Prolog, once per (python, janus, swipl) triple.
home_hash=$(printf '%s' "$plbase" | sha256sum | cut -c1-12)
jdir="${XDG_CACHE_HOME:-$HOME/.cache}/octopus/wheels/janus-swi-$janus_version-$pytag-swipl$plversion-$home_hash"
if ! ls "$jdir"/janus_swi-*.whl >/dev/null 2>&1; then
    say "building janus-swi $janus_version against SWI-Prolog $plversion (cached in $jdir)"
    mkdir -p "$tmp/janus"
    # --no-binary: a prebuilt janus-swi wheel is linked against some other libswipl.
    # --no-cache-dir: pip's own cache could hand back a build against another one.
    PATH="$(dirname "$swipl"):$PATH" pip_ wheel --no-deps --no-cache-dir \
        --no-binary janus-swi "janus-swi==$janus_version" -w "$tmp/janus" >&2
    mkdir -p "$(dirname "$jdir")"
    rm -rf "$jdir.tmp.$$" && mv "$tmp/janus" "$jdir.tmp.$$"
    mv -T "$jdir.tmp.$$" "$jdir" 2>/dev/null || rm -rf "$jdir.tmp.$$"  # lost a race: fine
fi
janus_wheel=$(ls "$jdir"/janus_swi-*.whl | head -n1)

# 2. The octopus wheel, built from a copy of the tree: nothing left over in build/ or
#    *.egg-info/ can leak into it, and the checkout stays clean.
mkdir -p "$tmp/src" "$tmp/dist" "$tmp/run"
tar -C "$ROOT" --exclude=./.git --exclude=./.venv --exclude=./build --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=./bench/out --exclude=.pytest_cache \
    --exclude=.ruff_cache --exclude=.hypothesis -cf - . | tar -C "$tmp/src" -xf -
say "building the wheel"
pip_ wheel --no-deps -w "$tmp/dist" "$tmp/src" >&2
wheel=$(ls "$tmp/dist"/octopus-*.whl)

# 3. A fresh venv outside the checkout with the wheel installed as a user would.
say "installing $(basename "$wheel") into a fresh venv"
"$base_python" -m venv --without-pip "$tmp/venv"
pip_ --python "$tmp/venv/bin/python" install "$janus_wheel" "$wheel" >&2

# 4. The smoke test, from outside the checkout, as a pip user runs it: swipl on PATH, no
#    octopus cache, no PYTHONPATH (-I: neither the script's directory nor the
#    environment's variables reach sys.path).
cp scripts/wheel_smoke.py "$tmp/wheel_smoke.py"
cd "$tmp/run"
say "running the smoke test from $tmp/run"
env -i HOME="$HOME" LANG=C.UTF-8 XDG_CACHE_HOME="$tmp/empty-cache" \
    PATH="$tmp/venv/bin:$(dirname "$swipl"):/usr/local/bin:/usr/bin:/bin" \
    "$tmp/venv/bin/python" -I "$tmp/wheel_smoke.py" "$ROOT" "$tmp" \
    || die "the installed wheel does not work (KEEP=1 to keep $tmp)"
say "ok"
