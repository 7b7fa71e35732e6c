#!/usr/bin/env bash
# The full test suite, with nothing skipped: what the README tells you to run and what .ci/run calls.
#
#   scripts/test.sh            # fmt, clippy, docs, every test against a real Samba AD DC + the lab
#
# It installs what the tests need on a fresh Debian machine (Samba AD + ldap-utils via apt-get,
# pywinrm via pip), starts a throwaway Samba AD domain on 127.0.0.1 (target/samba-ad, wiped),
# runs everything, and stops Samba again. Needs root for apt-get and for Samba's ports 389/636.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
t0=$(date +%s)
step() { printf '\n=== [%4ds] %s\n' $(( $(date +%s) - t0 )) "$*"; }

AD_DIR=${EXCH_REVOKE_AD_DIR:-$root/target/samba-ad}
step "starting Samba AD in $AD_DIR"
scripts/samba-ad.sh start "$AD_DIR"
trap 'scripts/samba-ad.sh stop "$AD_DIR" || true' EXIT
export EXCH_REVOKE_AD_ENV=$AD_DIR/ad.env
# Suites that need Samba or pywinrm fail instead of skipping: nothing is skipped here.
export EXCH_REVOKE_REQUIRE_SAMBA=1

step "installing pywinrm (independent WinRM client for the lab's conformance check)"
if ! python3 -c 'import winrm' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check pywinrm
fi
export EXCH_REVOKE_REQUIRE_PYWINRM=1

step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
step "cargo test (unit, integration, Samba AD, lab, doctests)"
cargo test --workspace --all-targets
cargo test --workspace --doc
step "done in $(( $(date +%s) - t0 )) s"
