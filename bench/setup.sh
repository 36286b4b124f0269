#!/usr/bin/env bash
# Installs what the benchmarks need, skipping whatever is already there (idempotent):
#   - nginx-light (the backend and the replicas' load balancer) and postgresql-client
#     (psql) from Debian packages
#   - rathole, bore and oha with `cargo install` into ~/.cargo/bin
#   - a venv under bench/.venv with matplotlib (chart) and websockets (idle agents)
# Prints nothing but progress; exits non-zero if something required is missing after.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$cargo_bin:$PATH"

step() { printf '[setup] %s\n' "$*" >&2; }

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  step "installing nginx-light (Debian)"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq nginx-light >/dev/null
fi

if ! command -v psql >/dev/null; then
  step "installing postgresql-client (Debian): psql creates and drops the bench databases"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq postgresql-client >/dev/null
fi

install_crate() { # binary, cargo install arguments...
  local bin="$1"; shift
  if ! command -v "$bin" >/dev/null; then
    step "cargo install $* (takes a few minutes, once)"
    cargo install "$@"
  fi
}
install_crate bore --locked bore-cli
install_crate oha --locked oha
# rathole's lock file pins crates that no longer build with a current toolchain.
install_crate rathole rathole

if [ ! -x "$here/.venv/bin/python" ]; then
  step "creating $here/.venv"
  python3 -m venv "$here/.venv"
fi
if ! "$here/.venv/bin/python" -c 'import matplotlib, websockets' 2>/dev/null; then
  step "installing matplotlib and websockets into the venv"
  "$here/.venv/bin/pip" install -q -r "$here/requirements.txt"
fi

for tool in bore oha rathole; do command -v "$tool" >/dev/null || { step "missing: $tool"; exit 1; }; done
step "tools ready"
