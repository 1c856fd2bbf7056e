#!/usr/bin/env bash
# `octopus serve` with two kinds of client: the `octopus` command and redis-cli (any
# Redis client speaks to the server: it talks RESP, the Redis protocol).
#
# Run: examples/server_redis_cli.sh   (needs `octopus` on PATH: `source .venv/bin/activate`
#      after `make setup`, or a pip install; and redis-cli from redis-tools)
set -euo pipefail

dir=$(mktemp -d "${TMPDIR:-/tmp}/octopus-example.XXXXXX")
sock=$dir/octopus.sock
octopus serve --unix "$sock" --log-level warning &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" || true; rm -rf "$dir"' EXIT
export OCTOPUS_URL=unix://$sock

# Wait until the server answers: exit status 3 means "cannot connect" (yet).
for _ in $(seq 600); do
    status=0
    octopus exists anything >/dev/null 2>&1 || status=$?
    [ "$status" -ne 3 ] && break
    sleep 0.1
done

echo "--- octopus set / redis-cli SET (parameters are typed by the placeholders)"
octopus set "hw.pci.device.0 { vendor: 0x8086, device_id: 0x100e, class: 'C' }"
redis-cli -s "$sock" SET "hw.pci.device.1 { vendor: %d, device_id: %d, class: 'C' }" \
    4332 33128

echo "--- redis-cli GET with a query, octopus get with a hexadecimal parameter"
redis-cli -s "$sock" GET "_ { vendor: %d }" 32902
octopus get "_ { vendor: %d }" 0x10ec

echo "--- names matching a regular expression"
octopus names "r'^hw\.pci\.'"

echo "--- exit statuses: 0 found, 1 not found"
octopus exists hw.pci.device.0 && echo "hw.pci.device.0: found"
octopus exists hw.pci.device.9 || echo "hw.pci.device.9: not found (exit status $?)"

echo "--- delete with redis-cli, count with INFO"
redis-cli -s "$sock" DEL hw.pci.device.0 >/dev/null
octopus info | grep '^records:'
