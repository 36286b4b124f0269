#!/usr/bin/env bash
# Checks the deploy files as far as this machine can without systemd or Docker
# running: the systemd units (systemd-analyze verify, and a security rating of at
# most 3.0 "OK"), the sysusers.d entry, the Kubernetes manifests and the compose
# file against their schemas. Every check runs offline (the validators bundle their
# schemas); the tools are installed when missing (Debian's systemd package, PyPI's
# kubernetes-validate and check-jsonschema). Called by .ci/run; alone:
#   bash deploy/check.sh
set -euo pipefail
cd "$(dirname "$0")"

# The highest exposure systemd-analyze may rate a unit, in tenths (30 = 3.0, "OK").
max_exposure=30
kubernetes_validate=1.37.0
check_jsonschema=0.39.0

if ! command -v systemd-analyze >/dev/null || ! command -v systemd-sysusers >/dev/null; then
    echo "== installing systemd (for systemd-analyze and systemd-sysusers)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
if ! python3 -c 'import kubernetes_validate, check_jsonschema' 2>/dev/null; then
    echo "== installing kubernetes-validate and check-jsonschema (PyPI)"
    python3 -m pip install -q --disable-pip-version-check \
        "kubernetes-validate==$kubernetes_validate" "check-jsonschema==$check_jsonschema"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Without a network namespace of its own (not root, no unshare) a check still runs,
# only not proven offline.
offline() {
    if unshare -n true 2>/dev/null; then unshare -n "$@"; else "$@"; fi
}

failed=0
fail() { echo "FAILED: $*" >&2; failed=1; }

echo "== systemd units"
# verify wants each ExecStart binary to exist: stand-ins at a temporary path.
mkdir -p "$work/bin"
for bin in sapbridge sapbridge-agent; do
    printf '#!/bin/sh\n' > "$work/bin/$bin"
    chmod +x "$work/bin/$bin"
done
for unit in sapbridge-relay.service sapbridge-agent.service; do
    sed "s|/usr/local/bin/|$work/bin/|g" "$unit" > "$work/$unit"
    out=$(systemd-analyze verify "$work/$unit" 2>&1) || fail "$unit: systemd-analyze verify: $out"
    [ -z "$out" ] || fail "$unit: systemd-analyze verify said: $out"
    rating=$(systemd-analyze security --offline=true "$unit" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: //p')
    echo "$unit: exposure $rating"
    systemd-analyze security --offline=true --threshold="$max_exposure" "$unit" >/dev/null 2>&1 \
        || fail "$unit: exposure $rating is above $((max_exposure / 10)).$((max_exposure % 10))"
    # The user the unit runs as is the one sysusers.d creates.
    user=$(sed -n 's/^User=//p' "$unit")
    [ "$user" = sapbridge ] || fail "$unit: User=$user, not the sysusers.d user sapbridge"
done

echo "== sysusers.d"
mkdir -p "$work/root/etc"
systemd-sysusers --root="$work/root" "$PWD/sapbridge.sysusers" >/dev/null 2>&1
grep -q '^sapbridge:x:[0-9]*:[0-9]*:.*:/usr/sbin/nologin$' "$work/root/etc/passwd" \
    || fail "sapbridge.sysusers created no sapbridge user: $(cat "$work/root/etc/passwd")"
grep -q '^sapbridge:x:' "$work/root/etc/group" || fail "sapbridge.sysusers created no sapbridge group"
echo "sapbridge.sysusers: $(grep '^sapbridge:' "$work/root/etc/passwd")"

echo "== Kubernetes manifests (strict: unknown fields refused)"
if offline python3 -m kubernetes_validate --strict --quiet kubernetes/*.yaml; then
    echo "kubernetes/*.yaml: valid"
else
    fail "kubernetes manifests"
fi

echo "== compose file (the Compose specification's schema)"
offline python3 -m check_jsonschema --builtin-schema vendor.compose-spec compose.yaml || fail "compose.yaml"

if [ "$failed" -ne 0 ]; then
    echo "deploy checks: FAILED" >&2
    exit 1
fi
echo "deploy checks: all passed"
