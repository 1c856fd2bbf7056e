#!/usr/bin/env bash
# Find or provision an SWI-Prolog that janus-swi can use (>= 9.1.12).
#
# Prints progress on stderr and, on success, the absolute path of the chosen `swipl`
# binary as the only line on stdout. Idempotent: a second run finds what the first one
# installed and returns at once.
#
# Order of preference:
#   1. $SWIPL, or `swipl` on PATH, when new enough;
#      a build this script made earlier (in the per-user cache) counts as well;
#   2. apt's candidate for swi-prolog-nox, when new enough (Debian 13, newer Ubuntu);
#   3. SWI-Prolog built from the Debian source package of the next release (trixie),
#      fetched through a temporary deb-src entry derived from this machine's own apt
#      configuration, installed into ~/.cache/octopus/swipl-<version>;
#   4. otherwise stop and name the manual routes.
set -euo pipefail

MIN_VERSION=90112            # PLVERSION encoding of 9.1.12
MIN_VERSION_TEXT=9.1.12
SOURCE_SUITE=trixie
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/octopus"
BUILD_DEPS=(cmake ninja-build gcc g++ libgmp-dev libpcre2-dev zlib1g-dev python3-dev)

say() { printf '[swipl] %s\n' "$*" >&2; }
die() { printf '[swipl] error: %s\n' "$*" >&2; exit 1; }

# Echo PLVERSION (e.g. 90209) of the given swipl, or nothing if it does not run.
plversion() {
    "$1" --dump-runtime-variables 2>/dev/null | sed -n 's/^PLVERSION="\([0-9]*\)";$/\1/p'
}

# Succeed when $1 is an executable swipl new enough for janus, and print its version.
usable() {
    local bin=$1 version
    [ -n "$bin" ] && [ -x "$bin" ] || return 1
    version=$(plversion "$bin")
    [ -n "$version" ] || return 1
    if [ "$version" -ge "$MIN_VERSION" ]; then
        return 0
    fi
    say "$bin is version $version, older than $MIN_VERSION_TEXT; not using it"
    return 1
}

found() {
    local bin
    bin=$(readlink -f "$1")
    say "using $bin (PLVERSION $(plversion "$bin"))"
    printf '%s\n' "$bin"
    exit 0
}

run_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        return 1
    fi
}

# apt-get install, refreshing the package lists first if the install fails on stale ones.
apt_install() {
    run_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 \
        || { run_as_root apt-get update -q >&2 \
             && run_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; }
}

# ---- 1. what is already here ----------------------------------------------------------
if [ -n "${SWIPL:-}" ]; then
    usable "$SWIPL" && found "$SWIPL"
    say "\$SWIPL=$SWIPL is not usable; looking further"
fi
if command -v swipl >/dev/null 2>&1 && usable "$(command -v swipl)"; then
    found "$(command -v swipl)"
fi
for bin in $(ls -d "$CACHE_ROOT"/swipl-*/bin/swipl 2>/dev/null | sort -rV); do
    usable "$bin" && found "$bin"
done

# ---- 2. the distribution's package, when new enough --------------------------------
if command -v apt-cache >/dev/null 2>&1; then
    candidate=$(apt-cache policy swi-prolog-nox 2>/dev/null | sed -n 's/^ *Candidate: *//p')
    if [ -n "$candidate" ] && [ "$candidate" != "(none)" ] \
        && dpkg --compare-versions "$candidate" ge "$MIN_VERSION_TEXT"; then
        say "apt offers swi-prolog-nox $candidate; installing it"
        if apt_install swi-prolog-nox; then
            usable /usr/bin/swipl && found /usr/bin/swipl
        fi
        say "installing swi-prolog-nox failed; trying a source build"
    else
        say "apt's swi-prolog-nox candidate is ${candidate:-none}, older than $MIN_VERSION_TEXT"
    fi
fi

manual_routes() {
    cat >&2 <<EOF
[swipl] Could not provision SWI-Prolog >= $MIN_VERSION_TEXT automatically: $1
[swipl] Install it by hand, then run this again (or set SWIPL=/path/to/swipl):
[swipl]   - macOS:   brew install swi-prolog
[swipl]   - Ubuntu:  sudo add-apt-repository ppa:swi-prolog/stable && sudo apt-get install swi-prolog-nox
[swipl]   - others:  https://www.swi-prolog.org/download/stable (build from source with cmake)
EOF
    exit 1
}

# ---- 3. build from the next Debian release's source package -----------------------
command -v apt-get >/dev/null 2>&1 || manual_routes "no apt-get on this machine"
[ -r /etc/os-release ] || manual_routes "no /etc/os-release"
codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
[ -n "$codename" ] || manual_routes "cannot tell this system's release codename"

# Print "URIS<TAB>SIGNED_BY" for every apt entry of the release's main suite
# (deb822 *.sources files and one-line *.list files alike).
apt_main_entries() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v suite="$codename" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") \
                    && enabled != "no" && uris != "")
                    printf "%s\t%s\n", uris, signed
                types = ""; suites = ""; uris = ""; signed = ""; enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                key = tolower($1); sub(/:$/, "", key)
                val = $0; sub(/^[^:]*:[ \t]*/, "", val)
                if (key == "types") types = val
                else if (key == "suites") suites = val
                else if (key == "uris") uris = val
                else if (key == "signed-by") signed = val
                else if (key == "enabled") enabled = tolower(val)
            }
            END { flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk -v suite="$codename" '
            $1 == "deb" {
                i = 2; opts = ""
                if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) { opts = opts " " $i; i++ }; opts = opts " " $i; i++ }
                if ($(i + 1) == suite) {
                    signed = ""
                    if (match(opts, /signed-by=[^] ]*/)) signed = substr(opts, RSTART + 10, RLENGTH - 10)
                    printf "%s\t%s\n", $i, signed
                }
            }' "$f"
    done
}

entries=$(apt_main_entries | sort -u)
[ -n "$entries" ] || manual_routes "no apt entry for suite '$codename' to derive a deb-src entry from"

missing=()
for pkg in "${BUILD_DEPS[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing build dependencies: ${missing[*]}"
    apt_install "${missing[@]}" \
        || manual_routes "could not install build dependencies (${missing[*]})"
fi

mkdir -p "$CACHE_ROOT"
work=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sources.list.d" "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
{
    while IFS=$'\t' read -r uris signed; do
        printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\n' "$uris" "$SOURCE_SUITE"
        [ -n "$signed" ] && printf 'Signed-By: %s\n' "$signed"
        printf '\n'
    done <<<"$entries"
} >"$work/sources.list.d/octopus-src.sources"
say "temporary apt source entry (derived from this machine's apt configuration):"
sed 's/^/[swipl]   /' "$work/sources.list.d/octopus-src.sources" >&2

apt_opts=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$work/sources.list.d"
    -o "Dir::State::Lists=$work/lists"
    -o "Dir::Cache=$work/cache"
    -o "Debug::NoLocking=1"
)
[ "$(id -u)" -eq 0 ] && apt_opts+=(-o "APT::Sandbox::User=root")

say "fetching the $SOURCE_SUITE source index"
apt-get "${apt_opts[@]}" -q update >&2 || say "apt-get update reported errors; continuing"
say "downloading the swi-prolog source package from $SOURCE_SUITE"
# The .dsc may answer 404 while the upstream tarball arrives: judge by the tarball.
(cd "$work/src" && apt-get "${apt_opts[@]}" -q source --download-only swi-prolog >&2) \
    || say "apt-get source reported errors; checking for the tarball anyway"
tarball=$(ls "$work"/src/swi-prolog_*.orig.tar.* 2>/dev/null | head -n 1 || true)
[ -n "$tarball" ] || manual_routes "the $SOURCE_SUITE swi-prolog source tarball could not be downloaded"

version=$(basename "$tarball" | sed -n 's/^swi-prolog_\([0-9][0-9.]*\).*/\1/p')
[ -n "$version" ] || die "cannot read a version from $(basename "$tarball")"
prefix="$CACHE_ROOT/swipl-$version"
say "building SWI-Prolog $version from $(basename "$tarball") into $prefix (takes a few minutes)"

mkdir -p "$work/tree"
tar -xf "$tarball" -C "$work/tree"
srcdir=$(find "$work/tree" -mindepth 1 -maxdepth 1 -type d | head -n 1)
[ -f "$srcdir/CMakeLists.txt" ] || die "unexpected source layout in $(basename "$tarball")"

cmake -S "$srcdir" -B "$work/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DSWIPL_PACKAGE_LIST="clib;pcre;swipy;plunit" \
    -DINSTALL_DOCUMENTATION=OFF \
    -DBUILD_TESTING=OFF \
    -DUSE_TCMALLOC=OFF >&2
ninja -C "$work/build" >&2
# Stage the install and move it into place, so an interrupted build never leaves a
# half-installed prefix behind for the next run to pick up.
DESTDIR="$work/stage" ninja -C "$work/build" install >&2
rm -rf "$prefix"
mv "$work/stage$prefix" "$prefix"

usable "$prefix/bin/swipl" || die "the freshly built $prefix/bin/swipl does not run"
found "$prefix/bin/swipl"
