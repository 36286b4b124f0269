#!/usr/bin/env bash
# Installs what the tests use beside the Rust toolchain, from the project's package
# registries (PyPI, npm, Debian), when it is missing; does nothing when it is there.
# The tests that need a tool run this themselves (sapbridge_tests::provide), so
# `cargo test --workspace` works on a fresh machine; .ci/run runs it once up front.
#
#   tests/provision.sh python     the reference parsers/verifiers the tests call:
#                                 prometheus-client, standardwebhooks,
#                                 openapi-spec-validator
#   tests/provision.sh node-red   Node.js + npm, and Node-RED 4 in examples/node-red
#                                 (pinned by its package-lock.json)
#   tests/provision.sh console    Debian's chromium, and playwright-core + axe-core in
#                                 tests/console (pinned by its package-lock.json)
#   tests/provision.sh all        all of the above
#
# Test binaries run side by side: one install at a time (flock), and each check is
# repeated under the lock so a second caller finds the first one's work done.
# Installing Debian packages needs root (CI runs as root); elsewhere it says what
# to install and fails.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

exec 9>"${TMPDIR:-/tmp}/sapbridge-provision.lock"
flock 9

apt_updated=false
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "provision: $* missing; install it as root: apt-get install -y $*" >&2
        exit 1
    fi
    if ! $apt_updated; then
        apt-get update -qq
        apt_updated=true
    fi
    echo "provision: apt-get install $*" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pip_module() { # MODULE PACKAGE
    if ! python3 -c "import $1" 2>/dev/null; then
        echo "provision: pip install $2" >&2
        python3 -m pip install --quiet --disable-pip-version-check "$2"
    fi
}

npm_ci() { # FOLDER FILE-THAT-PROVES-IT
    if ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm
    fi
    if [ ! -f "$root/$1/node_modules/$2" ]; then
        echo "provision: npm ci in $1" >&2
        (cd "$root/$1" && npm ci --no-audit --no-fund --loglevel=error >&2)
    fi
}

python() {
    if ! command -v python3 >/dev/null 2>&1; then
        apt_install python3 python3-pip
    fi
    # The reference OpenMetrics parser (tests/tests/metrics.rs), the reference
    # Standard Webhooks verifier (tests/tests/webhooks.rs), the OpenAPI/Swagger
    # validator (.ci/run's connector check).
    pip_module prometheus_client prometheus-client
    pip_module standardwebhooks standardwebhooks
    pip_module openapi_spec_validator openapi-spec-validator
}

node_red() {
    npm_ci examples/node-red node-red/red.js
}

console() {
    if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
        apt_install chromium
    fi
    npm_ci tests/console playwright-core/package.json
    npm_ci tests/console axe-core/axe.min.js
}

[ $# -gt 0 ] || set -- all
for what in "$@"; do
    case "$what" in
    python) python ;;
    node-red) node_red ;;
    console) console ;;
    all) python; node_red; console ;;
    *)
        echo "provision: unknown part $what (python, node-red, console, all)" >&2
        exit 2
        ;;
    esac
done
