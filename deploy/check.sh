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
dockerfile_utils=0.16.3
check_jsonschema=0.39.0

if ! command -v systemd-analyze >/dev/null || ! command -v systemd-sysusers >/dev/null; then
    echo "== installing systemd (for systemd-analyze and systemd-sysusers)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
if ! python3 -c 'import kubernetes_validate, check_jsonschema' 2>/dev/null; then
    echo "== installing kubernetes-validate and check-jsonschema (PyPI)"
    python3 -m pip --version >/dev/null 2>&1 \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null; }
    packages=("kubernetes-validate==$kubernetes_validate" "check-jsonschema==$check_jsonschema")
    # Debian's own Python refuses installs beside its packages unless told.
    python3 -m pip install -q --disable-pip-version-check "${packages[@]}" 2>/dev/null \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages "${packages[@]}"
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

echo "== Dockerfile (dockerfile-utils lint: instructions, flags, arguments)"
if ! command -v npm >/dev/null; then
    echo "== installing npm (Debian)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
fi
if (cd "$work" && npm install --silent --no-audit --no-fund --no-save \
        "dockerfile-utils@$dockerfile_utils" >/dev/null 2>&1); then
    if offline "$work/node_modules/.bin/dockerfile-utils" lint Dockerfile; then
        echo "Dockerfile: valid"
    else
        fail "Dockerfile"
    fi
else
    fail "cannot install dockerfile-utils from npm"
fi
# The build context is the repository: target/ (gigabytes) must stay out of it.
grep -qx 'target/' ../.dockerignore || fail ".dockerignore does not exclude target/"

echo "== TLS proxy examples (nginx -t, caddy validate)"
# The packages' binaries, unpacked into the work folder: installing them would
# start their servers.
proxy_tool() { # name package path-in-package
    if command -v "$1" >/dev/null; then command -v "$1"; return; fi
    if [ ! -x "$work/pkg$3" ]; then
        (cd "$work" && { apt-get download -qq "$2" 2>/dev/null \
            || { apt-get update -qq && apt-get download -qq "$2"; }; } >/dev/null 2>&1) \
            || { echo "cannot download Debian's $2" >&2; return 1; }
        dpkg -x "$work"/"$2"_*.deb "$work/pkg"
    fi
    echo "$work/pkg$3"
}
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
nginx=$(proxy_tool nginx nginx /usr/sbin/nginx) || fail "no nginx to check nginx.conf with"
if [ -n "${nginx:-}" ]; then
    # The example with a throw-away certificate in place of Let's Encrypt's.
    mkdir -p "$work/nginx"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=relay.example.com \
        -keyout "$work/nginx/key.pem" -out "$work/nginx/cert.pem" 2>/dev/null
    sed -e "s|/etc/letsencrypt/live/relay.example.com/fullchain.pem|$work/nginx/cert.pem|" \
        -e "s|/etc/letsencrypt/live/relay.example.com/privkey.pem|$work/nginx/key.pem|" \
        nginx.conf > "$work/nginx/site.conf"
    {
        echo "error_log stderr; pid $work/nginx/nginx.pid; events {}"
        echo "http { access_log off;"
        for t in client_body proxy fastcgi uwsgi scgi; do echo "${t}_temp_path $work/nginx/$t;"; done
        echo "include $work/nginx/site.conf; }"
    } > "$work/nginx/nginx.conf"
    if offline "$nginx" -t -q -p "$work/nginx" -e stderr -c "$work/nginx/nginx.conf"; then
        echo "nginx.conf: valid ($("$nginx" -v 2>&1))"
    else
        fail "nginx.conf"
    fi
fi
caddy=$(proxy_tool caddy caddy /usr/bin/caddy) || fail "no caddy to check the Caddyfile with"
if [ -n "${caddy:-}" ]; then
    if HOME="$work" XDG_DATA_HOME="$work" XDG_CONFIG_HOME="$work" \
        offline "$caddy" validate --adapter caddyfile --config Caddyfile >/dev/null 2>"$work/caddy.log"; then
        echo "Caddyfile: valid (caddy $("$caddy" version | cut -d' ' -f1))"
    else
        cat "$work/caddy.log" >&2
        fail "Caddyfile"
    fi
fi

if [ "$failed" -ne 0 ]; then
    echo "deploy checks: FAILED" >&2
    exit 1
fi
echo "deploy checks: all passed"
