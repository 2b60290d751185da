#!/usr/bin/env bash
# SSO benchmark: latency idbridge adds to a login (IdP excluded) and code exchanges per
# second at /oauth2/token on SQLite, next to the npm oidc-provider's own token endpoint in
# the same run. Release builds; needs Node.js (tests/oidc is installed with npm ci).
# Usage: bench/sso.sh [LOGINS=300] [CODES=5000]. Reported, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/peers.sh
ensure_oidc_peers
cargo build --release --quiet -p idbridge-server --bin idbridge
cargo build --release --quiet -p idbridge-e2e --example sso_bench
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); $(date -u +%Y-%m-%dT%H:%MZ)"
IDBRIDGE_BIN="$PWD/target/release/idbridge" target/release/examples/sso_bench "${1:-300}" "${2:-5000}"
