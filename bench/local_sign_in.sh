#!/usr/bin/env bash
# Local sign-in benchmark: the cost of one Argon2id verification at the default
# parameters, and whole local sign-ins per second beside SSO sign-ins (through the npm
# oidc-provider) in the same run, on SQLite. Release builds; needs Node.js (tests/oidc)
# and aiosmtpd (.venv), both installed by scripts/peers.sh.
# Usage: bench/local_sign_in.sh [ACCOUNTS=64] [SIGN_INS=400]. Reported, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/peers.sh
ensure_oidc_peers
ensure_scim2_tester
cargo build --release --quiet -p idbridge-server --bin idbridge
cargo build --release --quiet -p idbridge-e2e --example local_sign_in_bench
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD)"
IDBRIDGE_BIN="$PWD/target/release/idbridge" target/release/examples/local_sign_in_bench "${1:-64}" "${2:-400}"
