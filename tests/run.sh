#!/usr/bin/env bash
# The README's test command. On Debian or Ubuntu, installs what the end-to-end tests drive
# and is missing (only that; apt-get needs root, or sudo), then runs the whole suite.
# The tests themselves need root: they create local users, add sudoers drop-ins for
# them and mount a small tmpfs to fill a disk. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    openssh-server openssh-client  # the upstream sshd and the ssh/scp/sftp clients
    rsync tmux vim-tiny            # clients and terminals the scenarios drive
    asciinema                      # proves recordings play
    sudo passwd util-linux         # a real sudo prompt, useradd/chpasswd, mount
    curl                           # admin API calls from a chosen source address
    tzdata                         # time zones of activation_hours (Europe/Berlin in the tests)
    putty-tools python3-paramiko   # SFTP clients with their own SFTP code (the file audit)
    git ansible-core               # tools admins drive over ssh, proven through the bastion
    postgresql-15 openssl          # a real PostgreSQL (and certificates for its TLS) for the shared state store's tests
    chromium chromium-driver fonts-dejavu-core  # the web console tests
    rsyslog rsyslog-gnutls         # a real syslog receiver (TCP and TLS) for audit forwarding
)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "tests/run.sh: installing ${missing[*]}" >&2
    as_root=()
    if [ "$(id -u)" -ne 0 ]; then as_root=(sudo); fi
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: the tests need root (they create local users and mount a tmpfs); run it as root" >&2
    exit 1
fi
exec cargo test --workspace "$@"
