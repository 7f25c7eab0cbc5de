# Citus: built from the vendored release source when missing, and run as a coordinator and two
# workers (three private PostgreSQL clusters on free ports of 127.0.0.1).
#
# The nodes reach each other through one Unix-socket directory that only the clusters' OS user
# may open (0700): connections there are trusted, which lets the coordinator open connections to
# the workers as any role (the département roles, the journal sealer) without keeping their
# passwords. Everything else connects over TCP with SCRAM passwords, as on the single cluster.

CITUS_VERSION=13.0.5
# The vendored release: next to the clone (../shared/vendor), or where AC_VENDOR_DIR says.
citus_tarball() {
  local d
  for d in "${AC_VENDOR_DIR:-}" "$ROOT/../shared/vendor" /work/shared/vendor; do
    [ -n "$d" ] && [ -f "$d/citus-$CITUS_VERSION.tar.gz" ] && { echo "$d/citus-$CITUS_VERSION.tar.gz"; return; }
  done
  echo "$ROOT/../shared/vendor/citus-$CITUS_VERSION.tar.gz"
}
CITUS_SHA256=b5fbf66f21552c4ecfb6121d89de90a58c3da55c1e58bd3fd0fc085a9e9de7a3
CITUS_BUILD="${AC_CITUS_BUILD_DIR:-$HOME/.cache/aidants-connect/citus-build}"
CITUS_NODES=(coordinator worker1 worker2)

# Our fixes to the release, applied at build (infra/citus/*.patch, each says what it fixes).
citus_patches_hash() { cat "$INFRA"/citus/*.patch 2>/dev/null | sha256sum | cut -c1-12; }
citus_stamp() { echo "$("$(pg_bin pg_config)" --pkglibdir)/citus.aidants-build"; }

citus_installed() {
  local lib; lib="$("$(pg_bin pg_config)" --pkglibdir 2>/dev/null)" || return 1
  [ -f "$lib/citus.so" ] && [ "$(cat "$(citus_stamp)" 2>/dev/null)" = "$CITUS_VERSION-$(citus_patches_hash)" ]
}

install_citus() {
  local before; before="$("$(pg_bin postgres)" --version 2>/dev/null || true)"
  apt_install make gcc patch postgresql-server-dev-15 libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev
  local after; after="$("$(pg_bin postgres)" --version 2>/dev/null || true)"
  if [ -n "$before" ] && [ "$before" != "$after" ]; then
    # The headers' package upgraded PostgreSQL's minor release under running clusters: a
    # running server would fail loading the new libraries ("undefined symbol").
    say "PostgreSQL mis à jour ($before → $after) : redémarrage des clusters en marche"
    restart_running_clusters
  fi
  citus_installed && return 0
  local CITUS_TARBALL; CITUS_TARBALL="$(citus_tarball)"
  [ -f "$CITUS_TARBALL" ] || die "source de Citus introuvable : $CITUS_TARBALL"
  echo "$CITUS_SHA256  $CITUS_TARBALL" | sha256sum -c --quiet - || die "empreinte inattendue pour $CITUS_TARBALL"
  say "Citus $CITUS_VERSION : compilation (2 à 4 minutes, une fois par machine) dans $CITUS_BUILD"
  mkdir -p "$CITUS_BUILD"
  local build="$CITUS_VERSION-$(citus_patches_hash)"
  local src="$CITUS_BUILD/citus-$build"
  if [ ! -f "$src/configure" ]; then
    rm -rf "$src.tmp" && mkdir -p "$src.tmp"
    tar xzf "$CITUS_TARBALL" -C "$src.tmp" --strip-components=1
    local p
    for p in "$INFRA"/citus/*.patch; do
      [ -f "$p" ] || continue
      patch -d "$src.tmp" -p1 --quiet <"$p" || die "le correctif $p ne s'applique pas à Citus $CITUS_VERSION"
    done
    rm -rf "$src" && mv "$src.tmp" "$src"
  fi
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  ( cd "$src" && { [ -f config.status ] || ./configure >"$LOG_DIR/citus-build.log" 2>&1; } \
      && make -j"$(nproc)" >>"$LOG_DIR/citus-build.log" 2>&1 \
      && $sudo make install >>"$LOG_DIR/citus-build.log" 2>&1 ) \
    || die "la compilation de Citus a échoué (journal : $LOG_DIR/citus-build.log)"
  echo "$build" | $sudo tee "$(citus_stamp)" >/dev/null
  citus_installed || die "Citus compilé mais introuvable dans $("$(pg_bin pg_config)" --pkglibdir)"
  # Running nodes keep the library they loaded: restart them on the new build.
  CITUS_REBUILT=1
}

# Every private cluster of this data dir that runs (single and Citus nodes), restarted on the
# new binaries with the options of its last start (`pg_ctl restart` reads postmaster.opts: the
# same port). Stopping them only left the single cluster, started just before, down for the
# rest of `infra/run test` (a fresh machine's first CI: « Connection refused »).
restart_running_clusters() {
  local home; home="$(pg_home)"
  local d
  for d in "$home/data" "$home"/citus/*/data; do
    [ -f "$d/PG_VERSION" ] || continue
    as_pg "$(pg_bin pg_ctl)" -D "$d" status >/dev/null 2>&1 || continue
    as_pg "$(pg_bin pg_ctl)" -D "$d" -l "$(dirname "$d")/postgres.log" -m fast -w -t 60 restart >/dev/null \
      || die "PostgreSQL n'a pas redémarré après sa mise à jour (journal : $(dirname "$d")/postgres.log)"
  done
}

citus_node_dir() { echo "$(pg_home)/citus/$1"; }
citus_socket_dir() { echo "$(pg_home)/citus/sock"; }

# start_citus_node NAME: creates (once) and starts one node; sets NODE_PORT.
start_citus_node() {
  local name="$1" home; home="$(citus_node_dir "$1")"
  local pgdata="$home/data" sock; sock="$(citus_socket_dir)"
  mkdir -p "$home" "$sock"
  chmod 700 "$sock"
  [ "$(id -u)" -eq 0 ] && chown "$PG_OS_USER" "$home" "$sock" "$(dirname "$home")"
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    say "Citus : création du nœud $name ($pgdata)"
    local pwfile="$home/pgpw"
    (umask 077; printf '%s\n' "$PG_ADMIN_PASSWORD" >"$pwfile")
    [ "$(id -u)" -eq 0 ] && chown "$PG_OS_USER" "$pwfile"
    # Local (socket) connections are trusted: the socket directory is the clusters' user's only.
    as_pg "$(pg_bin initdb)" -D "$pgdata" -U aidants_admin --pwfile="$pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$LOG_DIR/initdb-$name.log"
    rm -f "$pwfile"
    # Logical replication (an online territory move) connects through the same socket.
    echo "local replication all trust" | as_pg tee -a "$pgdata/pg_hba.conf" >/dev/null
  fi
  NODE_OLD_PORT=""
  if as_pg "$(pg_bin pg_ctl)" -D "$pgdata" status >/dev/null 2>&1; then
    NODE_PORT="$(sed -n 4p "$pgdata/postmaster.pid")"
  else
    # A node keeps its port across restarts (the coordinator's registry names it) unless
    # something else took it meanwhile; start_citus then updates the registry.
    NODE_PORT="$(cat "$home/port" 2>/dev/null || true)"
    NODE_OLD_PORT="$NODE_PORT"
    if [ -z "$NODE_PORT" ] || ! port_free "$NODE_PORT"; then NODE_PORT="$(free_port)"; fi
    echo "$NODE_PORT" >"$home/port"
    # The node's settings live in its data directory, so that `pg_ctl -D … start` alone
    # restarts it as it was (the worker-outage test does).
    grep -q "include_if_exists = 'aidants.conf'" "$pgdata/postgresql.conf" \
      || echo "include_if_exists = 'aidants.conf'" | as_pg tee -a "$pgdata/postgresql.conf" >/dev/null
    as_pg tee "$pgdata/aidants.conf" >/dev/null <<C
port = $NODE_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock'
unix_socket_permissions = 0700
shared_preload_libraries = 'citus'
# Citus runs a maintenance worker per database, and the tests keep theirs until the next run;
# each keeps connections to the nodes: 368 of them on the coordinator at the end of a CI run's
# Citus step (129 databases), when the limit was 400 and the last tests found it full.
max_connections = 1000
shared_buffers = 128MB
max_worker_processes = 256
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_wal_size = 256MB
min_wal_size = 64MB
citus.enable_unsafe_triggers = on
citus.local_hostname = '$sock'
C
    as_pg "$(pg_bin pg_ctl)" -D "$pgdata" -l "$home/postgres.log" -w -t 60 start >/dev/null \
      || die "le nœud Citus $name n'a pas démarré (journal : $home/postgres.log)"
  fi
  wait_for "citus-$name" 60 "$(pg_bin pg_isready)" -h 127.0.0.1 -p "$NODE_PORT"
}

# Starts the three nodes, creates the platform database with the extension on each and
# registers the workers with the coordinator. Sets CITUS_PORTS (coordinator first).
start_citus() {
  CITUS_REBUILT=0
  install_citus
  [ "$CITUS_REBUILT" = 1 ] && stop_citus
  CITUS_PORTS=(); CITUS_OLD_PORTS=()
  local n
  for n in "${CITUS_NODES[@]}"; do
    start_citus_node "$n"
    CITUS_PORTS+=("$NODE_PORT"); CITUS_OLD_PORTS+=("${NODE_OLD_PORT:-$NODE_PORT}")
  done
  citus_create_database aidants
  # The application's login role (propagated to the workers by Citus) and the node registry.
  psql -v ON_ERROR_STOP=1 -q "postgres://aidants_admin:$PG_ADMIN_PASSWORD@127.0.0.1:${CITUS_PORTS[0]}/aidants" <<SQL >/dev/null
SELECT 'CREATE ROLE aidants_app LOGIN NOINHERIT PASSWORD ' || quote_literal('$PG_APP_PASSWORD')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'aidants_app') \gexec
SQL
  citus_register_workers aidants
}

# citus_create_database NAME: the database NAME on the three nodes, with the extension on
# each. Needs CITUS_PORTS (start_citus).
citus_create_database() {
  local db="$1" i url
  for i in 0 1 2; do
    url="postgres://aidants_admin:$PG_ADMIN_PASSWORD@127.0.0.1:${CITUS_PORTS[$i]}"
    psql -v ON_ERROR_STOP=1 -q "$url/postgres" <<SQL >/dev/null
SELECT 'CREATE DATABASE $db' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$db') \gexec
SQL
    psql -v ON_ERROR_STOP=1 -q "$url/$db" -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION IF NOT EXISTS citus' >/dev/null
  done
}

# citus_register_workers NAME: the workers registered with the coordinator's copy of NAME
# (each database of the cluster has its own registry), once; a worker whose port changed
# since is updated in place. Needs CITUS_PORTS and CITUS_OLD_PORTS (start_citus).
citus_register_workers() {
  local db="$1" i sock; sock="$(citus_socket_dir)"
  local coordinator="postgres://aidants_admin:$PG_ADMIN_PASSWORD@127.0.0.1:${CITUS_PORTS[0]}"
  psql -v ON_ERROR_STOP=1 -q "$coordinator/$db" <<SQL >/dev/null
SELECT citus_set_coordinator_host('$sock', ${CITUS_PORTS[0]});
-- Moves name their slots and roles (shared by the node's databases) after their operation
-- number: this database counts from its own random point, as foundation's attach does.
SELECT setval('pg_catalog.pg_dist_operationid_seq', 1 + floor(random() * 2^40)::bigint)
  FROM pg_catalog.pg_dist_operationid_seq WHERE NOT is_called;
SQL
  for i in 1 2; do
    psql -v ON_ERROR_STOP=1 -q "$coordinator/$db" <<SQL >/dev/null
SELECT citus_update_node(nodeid, '$sock', ${CITUS_PORTS[$i]}) FROM pg_dist_node
 WHERE nodeport = ${CITUS_OLD_PORTS[$i]} AND nodeport <> ${CITUS_PORTS[$i]};
SELECT citus_add_node('$sock', ${CITUS_PORTS[$i]})
 WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE nodeport = ${CITUS_PORTS[$i]});
SQL
  done
}

citus_running() {
  as_pg "$(pg_bin pg_ctl)" -D "$(citus_node_dir coordinator)/data" status >/dev/null 2>&1
}

stop_citus() {
  local n pgdata
  for n in "${CITUS_NODES[@]}"; do
    pgdata="$(citus_node_dir "$n")/data"
    [ -f "$pgdata/PG_VERSION" ] && as_pg "$(pg_bin pg_ctl)" -D "$pgdata" -m fast stop >/dev/null 2>&1 || true
  done
}
