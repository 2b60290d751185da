# Test peers: sourced by scripts/test. Each `ensure_*` makes one peer available on a fresh
# machine (installing Debian packages when it is missing and we may) or explains what to do.

have() { command -v "$1" >/dev/null 2>&1; }

# Installs packages without starting the services they bring (policy-rc.d answers 101):
# the tests run their own servers.
apt_install_without_starting() {
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    local policy=/usr/sbin/policy-rc.d created=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod +x "$policy"
        created=1
    fi
    apt_install "$@"
    if [ -n "$created" ]; then $sudo rm -f "$policy"; fi
}

apt_install() {
    if ! have apt-get; then
        echo "scripts/test: need Debian packages $* but apt-get is not available" >&2
        return 1
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    if [ -z "${APT_UPDATED:-}" ]; then
        $sudo apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# PostgreSQL on 127.0.0.1:5432 with trust auth for the contract suite and e2e tests.
# Set IDBRIDGE_TEST_POSTGRES_URL to use another server, or IDBRIDGE_TEST_SKIP_POSTGRES=1
# to run without it (CI never does).
ensure_postgres() {
    if [ "${IDBRIDGE_TEST_SKIP_POSTGRES:-}" = 1 ]; then
        echo "scripts/test: PostgreSQL tests skipped (IDBRIDGE_TEST_SKIP_POSTGRES=1)" >&2
        return 0
    fi
    have psql || apt_install postgresql-client
    if [ -n "${IDBRIDGE_TEST_POSTGRES_URL:-}" ] || port_open 127.0.0.1 5432; then
        return 0
    fi
    echo "scripts/test: no PostgreSQL on 127.0.0.1:5432; installing and starting one" >&2
    have pg_ctlcluster || apt_install postgresql
    local version
    version=$(ls /etc/postgresql | sort -V | tail -1)
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! grep -q "idbridge-tests" "$hba"; then
        # Loopback-only trust, as on the project's machines.
        printf '# idbridge-tests\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' | cat - "$hba" >"$hba.new"
        mv "$hba.new" "$hba"
        chown postgres:postgres "$hba" 2>/dev/null || true
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main restart
    for _ in $(seq 1 50); do port_open 127.0.0.1 5432 && return 0; sleep 0.2; done
    echo "scripts/test: PostgreSQL did not start" >&2
    return 1
}

# scim2-tester (PyPI), the independent SCIM compliance checker, with its CLI, and
# scim2-server, the SCIM service provider the outbound connector's tests push to (and the
# benchmarks' peer), and aiosmtpd, the SMTP server the local sign-in tests receive mail with, in .venv.
ensure_scim2_tester() {
    if [ -x .venv/bin/scim2 ] && [ -x .venv/bin/scim2-server ] && .venv/bin/python -c "import scim2_tester, aiosmtpd" 2>/dev/null; then
        return 0
    fi
    python3 -m venv .venv 2>/dev/null || { apt_install python3-venv && python3 -m venv .venv; }
    .venv/bin/pip install --quiet --disable-pip-version-check "scim2-tester==0.5.2" "scim2-cli==0.6.0" "scim2-server==0.8.3" "aiosmtpd==1.4.6"
}

# OpenLDAP's slapd and the ldap-utils, for the LDAP sync tests: each test starts its own
# slapd on a free loopback port with its own configuration and data directory. The
# package's own service is kept from starting (it would listen on every interface).
ensure_slapd() {
    # The TLS test makes its own CA with openssl.
    have openssl || apt_install openssl
    if have slapd || [ -x /usr/sbin/slapd ]; then
        have ldapadd && return 0
    fi
    apt_install_without_starting slapd ldap-utils
}

# Samba's Active Directory domain controller for the AD tests (tests/src/samba.rs runs
# it, LDAP only, on a loopback address of its own: port 389 and `ip addr add` need root).
ensure_samba() {
    have ip || apt_install iproute2
    if have samba-tool && [ -x /usr/sbin/samba ] && dpkg -s samba-dsdb-modules >/dev/null 2>&1; then
        return 0
    fi
    apt_install_without_starting samba samba-dsdb-modules
}

# The SSO tests' peers from npm (tests/oidc/package-lock.json): oidc-provider as the
# customer's IdP, openid-client as a portal, playwright-core to drive the browser.
ensure_oidc_peers() {
    have node || apt_install nodejs npm
    if [ ! -d tests/oidc/node_modules/oidc-provider ] || [ ! -d tests/oidc/node_modules/playwright-core ] \
        || [ ! -d tests/oidc/node_modules/openid-client ] || [ ! -d tests/oidc/node_modules/jose ]; then
        (cd tests/oidc && npm ci --no-audit --no-fund --silent)
    fi
}

# Debian's Chromium for the browser test (playwright-core launches /usr/bin/chromium).
ensure_chromium() {
    [ -x /usr/bin/chromium ] || apt_install chromium
}
