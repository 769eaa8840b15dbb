#!/usr/bin/env bash
# One-time (and idempotent) set-up for a Debian or Ubuntu machine: system packages, the
# project's .venv, and the unprivileged user the services run as. `make run` and `make test`
# call it; it does nothing that is already done.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
RENDERQ_USER=${RENDERQ_USER:-renderq}
PACKAGES=(redis-server libmagickwand-6.q16-6 fonts-dejavu-core python3-venv)

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi

say() { printf 'setup: %s\n' "$*" >&2; }

install_packages() {
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return
    say "installing Debian packages: ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq
    # Debian starts a system redis-server on install; renderq runs its own, so keep it off.
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d
}

install_venv() {
    if [ ! -x .venv/bin/python ]; then
        say "creating .venv with $PYTHON"
        "$PYTHON" -m venv .venv
    fi
    # Reinstall only when the declared dependencies changed.
    if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
        say "installing Python packages into .venv"
        .venv/bin/pip install -q --upgrade pip >/dev/null
        .venv/bin/pip install -q -e '.[dev]'
        touch .venv/.installed
    fi
}

create_user() {
    [ "$(id -u)" -eq 0 ] || return 0
    if ! id "$RENDERQ_USER" >/dev/null 2>&1; then
        say "creating system user $RENDERQ_USER"
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$RENDERQ_USER"
    fi
    mkdir -p var/redis var/log
    chown -R "$RENDERQ_USER:" var
}

install_packages
install_venv
create_user
