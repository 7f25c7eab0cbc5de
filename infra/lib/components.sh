# Start, stop and report the real components. Ports are chosen free at start and written to
# $AC_DATA_DIR/stack.env, which the platform, the tests and `infra/run env` read.

load_secrets() {
  # The secrets live with the cluster they open (for root, outside the clone).
  local home; home="$(pg_home)"; mkdir -p "$home"
  SECRETS="$home/secrets.env"
  if [ ! -f "$SECRETS" ]; then
    umask 077
    cat >"$SECRETS" <<S
PG_ADMIN_PASSWORD=$(secret)
PG_APP_PASSWORD=$(secret)
S3_ACCESS_KEY=$(secret)
S3_SECRET_KEY=$(secret)
S
  fi
  # shellcheck disable=SC1090
  source "$SECRETS"
  # Added later than the others: existing secret files get it on their next start.
  if [ -z "${SMS_TOKEN:-}" ]; then
    (umask 077; echo "SMS_TOKEN=$(secret)" >>"$SECRETS")
    # shellcheck disable=SC1090
    source "$SECRETS"
  fi
}

# Reads a value previously written to stack.env (empty if none).
stack_get() { [ -f "$STACK_ENV" ] && sed -n "s/^export $1=//p" "$STACK_ENV" | tail -n 1 || true; }

# Where the private cluster lives. As root, PostgreSQL runs as an unprivileged user that may not
# be able to traverse the clone's folders (a home directory is often private): the cluster then
# lives under /var/lib/aidants-connect, one folder per data dir.
pg_home() {
  if [ "$(id -u)" -eq 0 ]; then
    echo "/var/lib/aidants-connect/pg-$(printf '%s' "$AC_DATA_DIR" | sha256sum | cut -c1-12)"
  else
    echo "$AC_DATA_DIR/pg"
  fi
}

start_postgres() {
  local home; home="$(pg_home)"
  local pgdata="$home/data" sock="$home/sock"
  mkdir -p "$home" "$sock"
  [ "$(id -u)" -eq 0 ] && { chmod 755 /var/lib/aidants-connect; chown "$PG_OS_USER" "$home" "$sock"; }
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    say "PostgreSQL : création du cluster privé ($pgdata)"
    local pwfile="$home/pgpw"
    (umask 077; printf '%s\n' "$PG_ADMIN_PASSWORD" >"$pwfile")
    [ "$(id -u)" -eq 0 ] && chown "$PG_OS_USER" "$pwfile"
    as_pg "$(pg_bin initdb)" -D "$pgdata" -U aidants_admin --pwfile="$pwfile" \
      --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$LOG_DIR/initdb.log"
    rm -f "$pwfile"
  fi
  if as_pg "$(pg_bin pg_ctl)" -D "$pgdata" status >/dev/null 2>&1; then
    PG_PORT="$(sed -n 4p "$pgdata/postmaster.pid")"  # the running cluster's port
  else
    PG_PORT="$(free_port)"
    as_pg "$(pg_bin pg_ctl)" -D "$pgdata" -l "$home/postgres.log" -w -t 60 \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$sock -c max_connections=400 -c shared_buffers=256MB" \
      start >/dev/null || die "PostgreSQL n'a pas démarré (journal : $home/postgres.log)"
  fi
  wait_for postgres 60 "$(pg_bin pg_isready)" -h 127.0.0.1 -p "$PG_PORT"
  local admin_url="postgres://aidants_admin:$PG_ADMIN_PASSWORD@127.0.0.1:$PG_PORT"
  # The application's login role and the platform database.
  psql -v ON_ERROR_STOP=1 -q "$admin_url/postgres" <<SQL >/dev/null
SELECT 'CREATE ROLE aidants_app LOGIN NOINHERIT PASSWORD ' || quote_literal('$PG_APP_PASSWORD')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'aidants_app') \gexec
SELECT 'CREATE DATABASE aidants' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'aidants') \gexec
SQL
}

start_seaweedfs() {
  if pid_alive seaweedfs; then S3_PORT="$(stack_get AC_S3_PORT)"; return; fi
  local dir="$AC_DATA_DIR/seaweedfs"; mkdir -p "$dir"
  local cfg="$RUN_DIR/s3.json"
  (umask 077; cat >"$cfg" <<J
{"identities":[{"name":"aidants","credentials":[{"accessKey":"$S3_ACCESS_KEY","secretKey":"$S3_SECRET_KEY"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
J
)
  S3_PORT="$(free_port)"
  local p=(); for _ in $(seq 1 10); do p+=("$(free_port)"); done
  start_bg seaweedfs weed mini -dir="$dir" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="${p[0]}" -master.port.grpc="${p[1]}" -volume.port="${p[2]}" -volume.port.grpc="${p[3]}" \
    -filer.port="${p[4]}" -filer.port.grpc="${p[5]}" -s3.port="$S3_PORT" -s3.port.grpc="${p[6]}" \
    -admin.port="${p[7]}" -admin.port.grpc="${p[8]}" -admin.ui=false -webdav.port="${p[9]}" \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$cfg" -bucket=aidants-connect
  wait_for seaweedfs 90 bash -c "code=\$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 http://127.0.0.1:$S3_PORT/); [ \"\$code\" != 000 ]"
}

# MailDev reads every kept message when it starts: past a few thousand (benchmarks send many),
# it was not ready within its 30 s. The newest MAILDEV_KEEP are kept, the others removed.
MAILDEV_KEEP=2000

prune_maildev() {
  local dir="$AC_DATA_DIR/maildev" n
  [ -d "$dir" ] || return 0
  n=$(find "$dir" -maxdepth 1 -type f -name '*.eml' | wc -l)
  [ "$n" -gt "$MAILDEV_KEEP" ] || return 0
  find "$dir" -maxdepth 1 -type f -name '*.eml' -printf '%T@ %p\n' | sort -rn \
    | tail -n +"$((MAILDEV_KEEP + 1))" | cut -d' ' -f2- | xargs -r rm -f
  say "MailDev : $((n - MAILDEV_KEEP)) anciens messages retirés, les $MAILDEV_KEEP plus récents gardés"
}

start_maildev() {
  if pid_alive maildev; then SMTP_PORT="$(stack_get AC_SMTP__PORT)"; MAILDEV_PORT="$(stack_get AC_MAILDEV_PORT)"; return; fi
  prune_maildev
  SMTP_PORT="$(free_port)"; MAILDEV_PORT="$(free_port)"
  start_bg maildev node "$INFRA/node_modules/maildev/dist/bin/maildev.js" --smtp "$SMTP_PORT" --web "$MAILDEV_PORT" \
    --ip 127.0.0.1 --web-ip 127.0.0.1 --mail-directory "$AC_DATA_DIR/maildev" --silent
  wait_for maildev 30 http_ok "http://127.0.0.1:$MAILDEV_PORT/api/healthz"
}

start_sms_gateway() {
  if pid_alive sms-gateway; then SMS_PORT="$(stack_get AC_SMS_GATEWAY_PORT)"; return; fi
  SMS_PORT="$(free_port)"; mkdir -p "$AC_DATA_DIR/sms-gateway"
  SMS_PORT="$SMS_PORT" SMS_TOKEN="$SMS_TOKEN" SMS_DATA="$AC_DATA_DIR/sms-gateway/messages.jsonl" \
    start_bg sms-gateway node "$INFRA/sms-gateway/server.mjs"
  wait_for sms-gateway 30 http_ok "http://127.0.0.1:$SMS_PORT/v1/messages"
}

start_fc() {
  if pid_alive fc-standin; then FC_PORT="$(stack_get AC_FC_PORT)"; return; fi
  FC_PORT="$(free_port)"
  FC_PORT="$FC_PORT" start_bg fc-standin node "$INFRA/fc-standin/server.mjs"
  wait_for fc-standin 30 http_ok "http://127.0.0.1:$FC_PORT/api/v2/.well-known/openid-configuration"
}

start_otlp() {
  if pid_alive otlp-sink; then OTLP_PORT="$(stack_get AC_OTLP_PORT)"; return; fi
  OTLP_PORT="$(free_port)"
  cargo build -q -p test-support --bin otlp-sink
  start_bg otlp-sink "$CARGO_TARGET_DIR/debug/otlp-sink" --port "$OTLP_PORT"
  wait_for otlp-sink 30 bash -c "code=\$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 http://127.0.0.1:$OTLP_PORT/v1/traces); [ \"\$code\" != 000 ]"
}

# AC_CITUS=1 (`infra/run start --citus`, `up --citus`): the platform's database is a Citus
# cluster (a coordinator and two workers) instead of the single cluster. `infra/run test` starts
# both: its Citus step runs the tenancy, mandate, identity-provider, journal and document tests
# on the cluster.
start_all() {
  load_secrets
  local citus_only=0 with_citus="${1:-}"
  [ "${AC_CITUS:-0}" = 1 ] && { citus_only=1; with_citus=citus; }
  # Citus nodes already running stay in stack.env (a later plain start must not hide them).
  citus_running && with_citus=citus
  if [ "$citus_only" = 1 ]; then
    start_citus
    PG_PORT="${CITUS_PORTS[0]}"
  else
    start_postgres
    [ "$with_citus" = citus ] && start_citus
  fi
  start_seaweedfs
  start_maildev
  start_sms_gateway
  start_fc
  start_otlp
  local tmp="$STACK_ENV.tmp"
  (umask 077; cat >"$tmp" <<E
# Written by infra/run start: the local stack's addresses (127.0.0.1, free ports) and secrets.
# Development mode: the platform's default (absent) is production, which refuses these secrets.
export AC_ENVIRONMENT=development
export AC_PG_PORT=$PG_PORT
export AC_ADMIN_DATABASE_URL=postgres://aidants_admin:$PG_ADMIN_PASSWORD@127.0.0.1:$PG_PORT/aidants
export AC_DATABASE__URL=postgres://aidants_app:$PG_APP_PASSWORD@127.0.0.1:$PG_PORT/aidants
export AC_S3_PORT=$S3_PORT
export AC_OBJECT_STORE__ENDPOINT=http://127.0.0.1:$S3_PORT
export AC_OBJECT_STORE__ACCESS_KEY_ID=$S3_ACCESS_KEY
export AC_OBJECT_STORE__SECRET_ACCESS_KEY=$S3_SECRET_KEY
export AC_SMTP__HOST=127.0.0.1
export AC_SMTP__PORT=$SMTP_PORT
export AC_MAILDEV_PORT=$MAILDEV_PORT
export AC_MAILDEV_URL=http://127.0.0.1:$MAILDEV_PORT
export AC_SMS_GATEWAY_PORT=$SMS_PORT
export AC_SMS__PROVIDER=http_json
export AC_SMS__GATEWAY_URL=http://127.0.0.1:$SMS_PORT/v1/messages
export AC_SMS__API_TOKEN=$SMS_TOKEN
export AC_FC_PORT=$FC_PORT
export AC_FC_ISSUER=http://127.0.0.1:$FC_PORT/api/v2
export AC_OTLP_PORT=$OTLP_PORT
export AC_TELEMETRY__OTLP_ENDPOINT=http://127.0.0.1:$OTLP_PORT
export AC_WEB__DSFR_DIR=$INFRA/node_modules/@gouvfr/dsfr/dist
export AC_BROWSER_HARNESS=$INFRA/browser
export AC_CHROMIUM=$(command -v chromium || true)
E
)
  if [ "$with_citus" = citus ]; then
    local base="postgres://aidants_admin:$PG_ADMIN_PASSWORD@127.0.0.1"
    cat >>"$tmp" <<E
export AC_CITUS=$citus_only
export AC_CITUS_SOCKET=$(citus_socket_dir)
export AC_CITUS_PORTS="${CITUS_PORTS[*]}"
export AC_CITUS_ADMIN_URL=$base:${CITUS_PORTS[0]}/aidants
export AC_CITUS_APP_URL=postgres://aidants_app:$PG_APP_PASSWORD@127.0.0.1:${CITUS_PORTS[0]}/aidants
export AC_CITUS_WORKER_ADMIN_URLS=$base:${CITUS_PORTS[1]}/aidants,$base:${CITUS_PORTS[2]}/aidants
E
  fi
  mv "$tmp" "$STACK_ENV"
}

stop_all() {
  stop_bg conformance-platform; stop_bg demo-service; stop_bg otlp-sink; stop_bg fc-standin; stop_bg sms-gateway; stop_bg maildev; stop_bg seaweedfs
  ensure_pg_user
  local pgdata; pgdata="$(pg_home)/data"
  if [ -f "$pgdata/PG_VERSION" ]; then
    as_pg "$(pg_bin pg_ctl)" -D "$pgdata" -m fast stop >/dev/null 2>&1 || true
  fi
  stop_citus
  say "pile arrêtée"
}

# Stops the stack, then deletes what it wrote: the private clusters (under /var/lib when run as
# root) and the data directory.
purge_all() {
  stop_all
  local home; home="$(pg_home)"
  case "$home" in
    */pg|/var/lib/aidants-connect/pg-*) rm -rf "$home" ;;
    *) echo "purge : dossier inattendu, laissé en place : $home" >&2 ;;
  esac
  rm -rf "$AC_DATA_DIR"
  say "pile arrêtée, données supprimées"
}

status_all() {
  ensure_pg_user
  local pgdata; pgdata="$(pg_home)/data"
  if [ -f "$pgdata/PG_VERSION" ] && as_pg "$(pg_bin pg_ctl)" -D "$pgdata" status >/dev/null 2>&1; then
    echo "postgres     en marche  127.0.0.1:$(stack_get AC_PG_PORT)"
  else
    echo "postgres     arrêté"
  fi
  local n
  for n in "${CITUS_NODES[@]}"; do
    if as_pg "$(pg_bin pg_ctl)" -D "$(citus_node_dir "$n")/data" status >/dev/null 2>&1; then
      printf 'citus %-6s en marche  127.0.0.1:%s\n' "${n#worker}" "$(cat "$(citus_node_dir "$n")/port")"
    fi
  done
  for c in seaweedfs maildev sms-gateway fc-standin otlp-sink platform; do
    if pid_alive "$c"; then printf '%-12s en marche  pid %s\n' "$c" "$(cat "$RUN_DIR/$c.pid")"; else printf '%-12s arrêté\n' "$c"; fi
  done
}

print_urls() {
  # shellcheck disable=SC1090
  source "$STACK_ENV"
  [ "${AC_CITUS:-0}" = 1 ] && say "PostgreSQL : cluster Citus (coordinateur et deux nœuds : ports $AC_CITUS_PORTS)"
  cat >&2 <<U
  PostgreSQL     127.0.0.1:$AC_PG_PORT (base aidants)
  S3 (SeaweedFS) $AC_OBJECT_STORE__ENDPOINT
  MailDev        $AC_MAILDEV_URL  (courriels envoyés)
  SMS            http://127.0.0.1:$AC_SMS_GATEWAY_PORT/  (passerelle SMS locale, SMS envoyés)
  FranceConnect  $AC_FC_ISSUER  (simulateur)
  OTLP           $AC_TELEMETRY__OTLP_ENDPOINT
U
}

# Registers the platform as a client of the FranceConnect stand-in (dynamic registration, its
# exact redirect and logout URIs) and exports the client's settings for the platform.
register_fc_client() {
  local origin="$1" reply
  reply="$(curl -sf -X POST "$AC_FC_ISSUER/reg" \
    -H "Authorization: Bearer ${FC_REGISTRATION_TOKEN:-stand-in-registration}" \
    -H 'content-type: application/json' \
    -d "{\"redirect_uris\":[\"$origin/mandats/franceconnect/retour\",\"$origin/mes-mandats/franceconnect/retour\",\"$origin/consentement/franceconnect/retour\"],\"post_logout_redirect_uris\":[\"$origin/mandats/franceconnect/deconnexion\",\"$origin/mes-mandats/franceconnect/deconnexion\",\"$origin/consentement/franceconnect/deconnexion\"],\"client_name\":\"Aidants Connect (local)\"}")" \
    || die "l'enregistrement auprès du simulateur FranceConnect a échoué"
  export AC_FRANCECONNECT__ISSUER="$AC_FC_ISSUER"
  AC_FRANCECONNECT__CLIENT_ID="$(printf '%s' "$reply" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).client_id))')"
  AC_FRANCECONNECT__CLIENT_SECRET="$(printf '%s' "$reply" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).client_secret))')"
  export AC_FRANCECONNECT__CLIENT_ID AC_FRANCECONNECT__CLIENT_SECRET
}

# A demo online service (openid-client) using the platform's identity provider, as
# FranceConnect does: registered as a client with tenant-admin, started on a free port.
start_demo_service() {
  local admin="$1" secret
  stop_bg demo-service
  RP_PORT="$(free_port)"
  secret="$("$admin" --database-url "$AC_ADMIN_DATABASE_URL" idp client add \
      --client-id "service-demo-$RP_PORT" --name "Service en ligne de démonstration" \
      --redirect-uri "http://127.0.0.1:$RP_PORT/callback" \
      --scopes profile,email,birth --categories logement,famille \
      --post-logout-redirect-uri "http://127.0.0.1:$RP_PORT/logged-out" \
    | sed -n 's/^client_secret (affiché une seule fois) : //p')"
  [ -n "$secret" ] || die "l'enregistrement du service de démonstration a échoué"
  RP_ISSUER="$AC_HTTP__PUBLIC_URL" RP_CLIENT_ID="service-demo-$RP_PORT" RP_CLIENT_SECRET="$secret" \
    start_bg demo-service node "$INFRA/idp-client/rp.mjs" "$RP_PORT"
  wait_for demo-service 30 http_ok "http://127.0.0.1:$RP_PORT/jwks"
}

# Migrates every schema, loads the demo territory and runs the all-in-one platform.
up() {
  install_all
  say "compilation de la plateforme"
  cargo build -q -p all-in-one -p tenant-admin -p test-support
  start_all
  # shellcheck disable=SC1090
  source "$STACK_ENV"
  export AC_ENVIRONMENT=development
  local admin="$CARGO_TARGET_DIR/debug/tenant-admin"
  "$admin" --database-url "$AC_ADMIN_DATABASE_URL" migrate
  "$admin" --database-url "$AC_ADMIN_DATABASE_URL" demo
  export AC_HTTP__PORT="${AC_HTTP__PORT:-$(free_port)}"
  export AC_HTTP__INTERNAL_PORT="${AC_HTTP__INTERNAL_PORT:-$(free_port)}"
  export AC_HTTP__PUBLIC_URL="http://127.0.0.1:$AC_HTTP__PORT"
  register_fc_client "$AC_HTTP__PUBLIC_URL"
  start_demo_service "$admin"
  print_urls
  cat >&2 <<U

  Aidants Connect : $AC_HTTP__PUBLIC_URL
  API interne (services) : http://127.0.0.1:$AC_HTTP__INTERNAL_PORT/internal/documents/openapi.json
  Service en ligne de démonstration (utiliser un mandat) : http://127.0.0.1:$RP_PORT
  (Ctrl-C pour arrêter la plateforme ; « infra/run stop » arrête les autres composants.)
U
  echo $$ >"$RUN_DIR/platform.pid"
  exec "$CARGO_TARGET_DIR/debug/aidants-connect"
}

# Runs every test of the workspace against the stack: first the API conformance run
# (schemathesis on every OpenAPI document, infra/lib/conformance.sh), then the test runner,
# whose summary line comes last.
# What the tests and benchmarks read to run on the stack's Citus cluster (test-support's
# TestDatabase: coordinator URLs, the nodes' socket directory, the workers' URLs).
export_citus_test_env() {
  export AC_TEST_ADMIN_URL="$AC_CITUS_ADMIN_URL" AC_TEST_APP_URL="$AC_CITUS_APP_URL" \
    AC_TEST_CITUS_SOCKET="$AC_CITUS_SOCKET" AC_TEST_CITUS_WORKERS="$AC_CITUS_WORKER_ADMIN_URLS"
}

# The test targets that also run on the Citus cluster (a coordinator and two workers).
CITUS_TEST_TARGETS=(citus tenancy mandates identity_provider documents internal_documents retention
  statistics territories habilitation_requests habilitation_training)

run_tests() {
  install_all
  cargo build -q -p test-support --bin otlp-sink
  cargo build -q -p all-in-one -p tenant-admin
  start_all citus
  # shellcheck disable=SC1090
  source "$STACK_ENV"
  drop_test_databases "$AC_ADMIN_DATABASE_URL" "$AC_CITUS_ADMIN_URL" ${AC_CITUS_WORKER_ADMIN_URLS//,/ }
  run_api_conformance
  # First the Citus step (its summary stays above), then every test on the single cluster.
  local targets=() t citus_status=0
  for t in "${CITUS_TEST_TARGETS[@]}"; do targets+=(--test "$t"); done
  targets+=(-p tenant-admin --test journal --test place --test seed)
  say "tests sur le cluster Citus : ${CITUS_TEST_TARGETS[*]}, tenant-admin journal, place et seed"
  # The worker-outage tests stop or freeze a worker that every test database shares: they run
  # alone, one after the other, after the rest.
  local outage='test(a_stopped_worker_makes_only_its_territories_answer_503_and_they_come_back_with_it)'
  outage+=' | test(a_hung_worker_makes_only_its_territories_answer_503_at_the_timeout_and_they_come_back)'
  outage+=' | test(a_hung_worker_holds_back_no_other_territorys_mail)'
  outage+=' | test(a_hung_worker_costs_a_job_one_bound_and_the_other_workers_territories_are_served)'
  (
    export_citus_test_env
    s=0
    cargo nextest run -p all-in-one "${targets[@]}" --no-fail-fast --cargo-quiet -E "not ($outage)" || s=$?
    cargo nextest run -p all-in-one --test citus --no-fail-fast --cargo-quiet --test-threads 1 \
      -E "$outage" || s=$?
    exit "$s"
  ) || citus_status=$?
  say "tests sur le cluster unique"
  export AC_TEST_ADMIN_URL="$AC_ADMIN_DATABASE_URL" AC_TEST_APP_URL="$AC_DATABASE__URL"
  local status=0
  cargo nextest run --workspace --no-fail-fast --cargo-quiet -E 'not binary_id(all-in-one::citus)' "$@" || status=$?
  if [ "$citus_status" != 0 ]; then
    echo "échec de l'étape Citus (voir son résumé plus haut)" >&2
    [ "$status" = 0 ] && status="$citus_status"
  fi
  return "$status"
}

# Runs the benchmarks of load-tests/ against the stack (release build).
run_bench() {
  install_all
  start_all
  # shellcheck disable=SC1090
  source "$STACK_ENV"
  export AC_TEST_ADMIN_URL="$AC_ADMIN_DATABASE_URL" AC_TEST_APP_URL="$AC_DATABASE__URL"
  # Each benchmark makes its own database, as a test does: clear those of earlier runs.
  drop_test_databases "$AC_ADMIN_DATABASE_URL"
  cargo build -q --release -p load-tests
  cargo build -q --release -p all-in-one --bin aidants-connect
  "$CARGO_TARGET_DIR/release/bench-migrations" "$@"
  echo
  "$CARGO_TARGET_DIR/release/bench-mandates"
  echo
  "$CARGO_TARGET_DIR/release/bench-idp" --binary "$CARGO_TARGET_DIR/release/aidants-connect"
  echo
  "$CARGO_TARGET_DIR/release/bench-outbox"
  echo
  "$CARGO_TARGET_DIR/release/bench-statistics"
  echo
  "$CARGO_TARGET_DIR/release/bench-measures"
}

# The Citus benchmark of load-tests/ (release build): territory 33 moved between the workers
# while identity-provider flows run against it.
run_bench_citus() {
  install_all
  start_all citus
  # shellcheck disable=SC1090
  source "$STACK_ENV"
  export_citus_test_env
  cargo build -q --release -p load-tests --bin bench-citus-move
  "$CARGO_TARGET_DIR/release/bench-citus-move" "$@"
}

# The benchmark at national volume (release build): the database `seed_10m` of the single
# cluster, seeded once by `tenant-admin seed` (10 M mandates, 50,000 aidants; about 11 minutes
# and 18 GB; an interrupted seed resumes), then the aidant's pages and the identity provider's
# flows measured on it. With --citus, the same on the Citus cluster (started next to the single
# one): `seed_10m` made on its three nodes, each territory distributed by the migrations.
run_bench_volume() {
  local citus=0
  if [ "${1:-}" = --citus ]; then citus=1; shift; fi
  install_all
  if [ "$citus" = 1 ]; then start_all citus; else start_all; fi
  # shellcheck disable=SC1090
  source "$STACK_ENV"
  local url
  if [ "$citus" = 1 ]; then
    export_citus_test_env
    url="${AC_CITUS_ADMIN_URL%/*}"
    # The registry follows a worker's new port at the start that saw it change (start_citus).
    citus_create_database seed_10m
    citus_register_workers seed_10m
  else
    export AC_TEST_ADMIN_URL="$AC_ADMIN_DATABASE_URL" AC_TEST_APP_URL="$AC_DATABASE__URL"
    url="${AC_ADMIN_DATABASE_URL%/*}"
    psql -v ON_ERROR_STOP=1 -q "$url/postgres" <<SQL >/dev/null
SELECT 'CREATE DATABASE seed_10m' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'seed_10m') \gexec
SQL
  fi
  # Each binary named: with --bin, cargo builds only the binaries named, whatever -p says.
  cargo build -q --release -p tenant-admin --bin tenant-admin -p load-tests --bin bench-volume \
    -p all-in-one --bin aidants-connect
  local admin=("$CARGO_TARGET_DIR/release/tenant-admin" --database-url "$url/seed_10m")
  AC_ENVIRONMENT=development "${admin[@]}" territories seed >/dev/null
  AC_ENVIRONMENT=development "${admin[@]}" migrate
  AC_ENVIRONMENT=development "${admin[@]}" seed "$@"
  # A territory in its steady state: its bulk-loaded tables analysed and vacuumed (the pages'
  # index-only reads need the visibility map autovacuum keeps), as autovacuum leaves them.
  psql -q "$url/seed_10m" -c 'VACUUM ANALYZE' >/dev/null
  if [ "$citus" = 1 ]; then
    # The territories' rows are on the workers: their statistics are made there.
    local worker
    for worker in ${AC_CITUS_WORKER_ADMIN_URLS//,/ }; do
      psql -q "${worker%/*}/seed_10m" -c 'VACUUM ANALYZE' >/dev/null
    done
  fi
  "$CARGO_TARGET_DIR/release/bench-volume" --database seed_10m \
    --binary "$CARGO_TARGET_DIR/release/aidants-connect"
}

# The soak of load-tests/ (release build): the platform's binary under a steady mixed load for
# 30 minutes (--minutes N), a line per minute, the table and the trend at the end.
run_soak() {
  install_all
  start_all
  # shellcheck disable=SC1090
  source "$STACK_ENV"
  export AC_TEST_ADMIN_URL="$AC_ADMIN_DATABASE_URL" AC_TEST_APP_URL="$AC_DATABASE__URL"
  cargo build -q --release -p load-tests --bin soak -p all-in-one --bin aidants-connect
  "$CARGO_TARGET_DIR/release/soak" --binary "$CARGO_TARGET_DIR/release/aidants-connect" "$@"
}

# Each test creates its own database (t_…) and département roles (t_…_dep_…): clear those of
# earlier runs before a new one.
# Each node of a Citus cluster has its own copy of each test database and of the roles.
drop_test_databases() {
  local server url
  for server in "$@"; do
    url="${server%/*}/postgres"
    psql -q -v ON_ERROR_STOP=1 "$url" >/dev/null <<'SQL'
SELECT format('DROP DATABASE %I WITH (FORCE)', datname) FROM pg_database WHERE datname LIKE 't\_%' \gexec
SELECT format('DROP ROLE %I', rolname) FROM pg_roles WHERE rolname LIKE 't\_%\_dep\_%' OR rolname LIKE 't\_%\_journal\_sealer' \gexec
SQL
  done
}

# Formatting and lints, as CI runs them.
run_lint() {
  cargo fmt --all --check
  cargo clippy --workspace --all-targets --quiet -- -D warnings
  check_query_data
}

# The statements checked at compile time (sqlx::query!) build offline from the committed
# query data (.sqlx/). That data must be what the reference territory schema says today: the
# stack's database, migrated, with dep_33 first in the search path.
SQLX_CRATES=(mandate-service)
REFERENCE_URL_OPTIONS='options=-c%20search_path%3Ddep_33%2Cplatform'

# Starts the stack and migrates its database; `live` builds the operators' CLI against the
# reference schema itself (when .sqlx/ is to be rewritten, the offline data may be stale).
reference_schema() {
  install_all
  start_all
  # shellcheck disable=SC1090
  source "$STACK_ENV"
  if [ "${1:-}" = live ]; then
    DATABASE_URL="$AC_ADMIN_DATABASE_URL?$REFERENCE_URL_OPTIONS" cargo build -q -p tenant-admin
  else
    cargo build -q -p tenant-admin
  fi
  "$CARGO_TARGET_DIR/debug/tenant-admin" --database-url "$AC_ADMIN_DATABASE_URL" migrate >/dev/null
}

# Checks the crates that use the macros again against the reference, writing what they learn
# to $1.
describe_queries() {
  local crate
  for crate in "${SQLX_CRATES[@]}"; do
    touch "services/$crate/src/lib.rs"
    DATABASE_URL="$AC_ADMIN_DATABASE_URL?$REFERENCE_URL_OPTIONS" SQLX_OFFLINE_DIR="$1" \
      cargo check -q -p "$crate"
  done
}

check_query_data() {
  reference_schema
  local fresh
  fresh="$(mktemp -d)"
  describe_queries "$fresh"
  if ! diff -r "$fresh" .sqlx >/dev/null; then
    echo "Les données des requêtes vérifiées (.sqlx/) ne correspondent plus au schéma : régénérez-les avec infra/run sqlx." >&2
    diff -r "$fresh" .sqlx >&2 || true
    rm -rf "$fresh"
    return 1
  fi
  rm -rf "$fresh"
}

# Rewrites .sqlx/ from the reference schema (after changing a checked statement). The stack's
# database must already hold the schema the statements need (infra/run up migrates it).
run_sqlx_prepare() {
  reference_schema live
  rm -rf .sqlx && mkdir .sqlx
  describe_queries "$PWD/.sqlx"
  echo "données des requêtes vérifiées écrites dans .sqlx/ ($(ls .sqlx | wc -l) requêtes)"
}
