#!/usr/bin/env bash
# Install the Debian packages the mail-server tests need (Dovecot, Postfix), and node/npm.
#
#   scripts/install-test-deps.sh
#
# Idempotent: installs only what `dpkg-query` reports missing and runs
# `apt-get update` only then. The packaged system services are kept from
# starting during the install (policy-rc.d) and Postfix is installed with
# "No configuration", so /etc/postfix is left without a main.cf: the tests run
# their own instances from deploy/ and never use the system ones.
# Not root and something missing: prints how to enable the tests and exits 0
# (the tests that need the servers then skip).
set -euo pipefail

# chromium renders sanitized mail in the hardening suite and runs the web client in
# tests/browser (driven by Playwright, which cannot download its own browser here);
# wrk is the hardening load generator.
PACKAGES=(dovecot-imapd dovecot-lmtpd dovecot-pop3d postfix chromium wrk)
POLICY_RC=/usr/sbin/policy-rc.d

missing=()
for pkg in "${PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
# node and npm run the TypeScript client generator (tests/e2e/test_generated_clients.py);
# checked by command, as a machine may have them from another nodejs package.
command -v npm >/dev/null || missing+=(nodejs npm)

if [ ${#missing[@]} -eq 0 ]; then
  echo "test dependencies present: ${PACKAGES[*]}"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  cat <<MSG
missing Debian packages: ${missing[*]}
The Dovecot/Postfix tests will be skipped. To enable them, run as root:
  sudo scripts/install-test-deps.sh
MSG
  exit 0
fi

# Keep invoke-rc.d from starting the system services while we install, unless
# a policy is already in place (containers usually ship one that denies all).
own_policy=no
if [ ! -e "$POLICY_RC" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$POLICY_RC"
  chmod 755 "$POLICY_RC"
  own_policy=yes
fi
cleanup() { if [ "$own_policy" = yes ]; then rm -f "$POLICY_RC"; fi; }
trap cleanup EXIT

# Postfix: do not configure the system instance (no /etc/postfix/main.cf).
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "installed: ${missing[*]}"
