#!/usr/bin/env bash
# One-time (and idempotent) set-up for a Debian or Ubuntu machine. `make run` and `make test`
# call it; it does nothing that is already done, and says what it created.
#
# Where things live, whatever directory the checkout is in (a 0700 home included):
#   /opt/renderq/venv          renderq installed read-only (not editable), owned by root:
#                              what the front, the workers and the sandbox run
#   /var/lib/renderq/redis     the private Redis's data, 0700, its own user only
#   /etc/renderq               redis.conf, redis-password and signing-key, readable by the
#                              users that need them only
#   /var/log/renderq, /run/renderq   supervisord's log, pid file and control socket
#   .venv (in the checkout)    the developer's tools: pytest, ruff, mypy, an editable install
# Users: renderq (front and workers), renderq-render (the sandbox; owns no file),
# renderq-redis (the private Redis).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
RENDERQ_WORKER_USER=${RENDERQ_WORKER_USER:-renderq}
RENDERQ_RENDER_USER=${RENDERQ_RENDER_USER:-renderq-render}
RENDERQ_REDIS_USER=${RENDERQ_REDIS_USER:-renderq-redis}
RENDERQ_REDIS_PORT=${RENDERQ_REDIS_PORT:-6390}
RENDERQ_REDIS_MAXMEMORY=${RENDERQ_REDIS_MAXMEMORY:-512mb}
INSTALL_DIR=${RENDERQ_INSTALL_DIR:-/opt/renderq}
STATE_DIR=/var/lib/renderq
SECRETS_DIR=/etc/renderq
LOG_DIR=/var/log/renderq
RUN_DIR=/run/renderq
# chromium: the dashboard's test opens the page in a real (headless) browser; tmux: the
# command line's test watches its progress bar in a real terminal. The Noto fonts cover the
# world's scripts and colour emoji (README: Text and fonts); the text layout calls libfribidi0
# (the bidi algorithm, which Pillow's raqm layout loads too) and libicu72 (line and cluster
# breaks, which ImageMagick's libxml2 loads too). libheif1 (with libdav1d6, which
# it pulls in) is ImageMagick's AVIF decoder; Pillow's wheel carries its own AVIF codecs.
# curl and jq: the README's examples.
PACKAGES=(redis-server redis-sentinel libmagickwand-6.q16-6 fonts-dejavu-core python3-venv
    bubblewrap libseccomp2 openssl chromium tmux curl jq
    fonts-noto-core fonts-noto-cjk fonts-noto-color-emoji libfribidi0 libicu72 libheif1)

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi

say() { printf 'setup: %s\n' "$*" >&2; }

quietly() {  # run a noisy command (pip); show what it said only if it failed
    local log status=0
    log=$(mktemp)
    "$@" >"$log" 2>&1 || status=$?
    [ "$status" -eq 0 ] || cat "$log" >&2
    rm -f "$log"
    return "$status"
}

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

install_dev_venv() {
    if [ ! -x .venv/bin/python ]; then
        say "creating .venv (developer tools) with $PYTHON"
        "$PYTHON" -m venv .venv
    fi
    # Reinstall only when the declared dependencies changed.
    if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
        say "installing Python packages into .venv"
        quietly .venv/bin/pip install --upgrade pip
        quietly .venv/bin/pip install -e '.[server,dev]'
        touch .venv/.installed
    fi
}

create_user() {  # name, what for
    if ! id "$1" >/dev/null 2>&1; then
        say "creating system user $1 ($2)"
        "${SUDO[@]}" useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$1"
    fi
}

make_dir() {  # path, owner, mode
    if [ ! -d "$1" ]; then
        say "creating $1 ($2, $3)"
        "${SUDO[@]}" mkdir -p "$1"
    fi
    "${SUDO[@]}" chown "$2" "$1"
    "${SUDO[@]}" chmod "$3" "$1"
}

create_layout() {
    create_user "$RENDERQ_WORKER_USER" "the front and the workers"
    create_user "$RENDERQ_RENDER_USER" "the render sandbox"
    create_user "$RENDERQ_REDIS_USER" "the private Redis"
    make_dir "$INSTALL_DIR" root:root 0755
    make_dir "$STATE_DIR" root:root 0755
    make_dir "$STATE_DIR/redis" "$RENDERQ_REDIS_USER:$RENDERQ_REDIS_USER" 0700
    make_dir "$SECRETS_DIR" root:root 0755
    make_dir "$LOG_DIR" root:root 0755
    make_dir "$RUN_DIR" root:root 0755
}

# The secret that signs result links (RENDERQ_SIGNING_KEY_FILE, which the Makefile points
# here): made once and kept, so links stay valid across restarts. Rotating it is described in
# the README ("Tenants and keys").
write_signing_key() {
    make_secret "$SECRETS_DIR/signing-key" "the result links' signing key"
}

# A random secret in FILE ($1), made once and kept, readable by root and the services' group.
make_secret() {
    local file="$1" what="$2"
    if [ ! -s "$file" ]; then
        say "generating $what into $file"
        "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))' \
            | "${SUDO[@]}" tee "$file" >/dev/null
    fi
    "${SUDO[@]}" chown "root:$RENDERQ_WORKER_USER" "$file"
    "${SUDO[@]}" chmod 0640 "$file"
}

write_secrets() {
    local password_file="$SECRETS_DIR/redis-password"
    make_secret "$password_file" "the Redis password"
    local conf="$SECRETS_DIR/redis.conf" new
    new=$(mktemp)
    {
        echo "# Written by deploy/setup.sh for make run's private Redis; rewritten on each run."
        echo "port $RENDERQ_REDIS_PORT"
        echo "bind 127.0.0.1"
        echo "dir $STATE_DIR/redis"
        echo "appendonly yes"
        echo "appendfsync everysec"
        echo 'save ""'
        echo "maxmemory $RENDERQ_REDIS_MAXMEMORY"
        echo "maxmemory-policy noeviction"
        echo "requirepass $("${SUDO[@]}" cat "$password_file")"
    } >"$new"
    if ! "${SUDO[@]}" cmp -s "$new" "$conf" 2>/dev/null; then
        say "writing $conf (port $RENDERQ_REDIS_PORT, maxmemory $RENDERQ_REDIS_MAXMEMORY)"
        "${SUDO[@]}" install -m 0640 -o root -g "$RENDERQ_REDIS_USER" "$new" "$conf"
    fi
    rm -f "$new"
}

install_service_venv() {
    local venv="$INSTALL_DIR/venv" digest
    if [ ! -x "$venv/bin/python" ]; then
        say "creating $venv (what the services run)"
        "${SUDO[@]}" "$PYTHON" -m venv "$venv"
        quietly "${SUDO[@]}" "$venv/bin/pip" install --upgrade pip 'setuptools>=68' wheel
    fi
    digest=$("$PYTHON" deploy/source_digest.py .)
    if [ "$(cat "$INSTALL_DIR/SOURCE_DIGEST" 2>/dev/null)" != "$digest" ]; then
        say "installing renderq into $venv (read-only, owned by root)"
        # From a clean copy of the sources: an in-tree build would leave build/ behind,
        # whose stale files a later build would install again.
        local source
        source=$(mktemp -d)
        cp -r pyproject.toml renderq service worker "$source/"
        find "$source" -name __pycache__ -prune -exec rm -rf {} +
        chmod -R a+rX "$source"
        quietly "${SUDO[@]}" "$venv/bin/pip" install --no-build-isolation "$source[server]"
        rm -rf "$source"
        "${SUDO[@]}" chmod -R u=rwX,go=rX "$INSTALL_DIR"
        echo "$digest" | "${SUDO[@]}" tee "$INSTALL_DIR/SOURCE_DIGEST" >/dev/null
    fi
}

install_packages
create_layout
write_secrets
write_signing_key
install_dev_venv
install_service_venv
