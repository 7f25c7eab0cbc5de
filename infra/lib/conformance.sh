# API conformance: every OpenAPI document the platform serves, checked against the running
# platform by schemathesis (`--checks all`). Part of `infra/run test`, before the test runner.

# Pinned: a new schemathesis release may add checks; upgrading is a deliberate change here.
SCHEMATHESIS_VERSION=4.32.5

# Installs schemathesis from PyPI into a venv of the data directory, once per version.
install_schemathesis() {
  local venv="$AC_DATA_DIR/venv/schemathesis"
  SCHEMATHESIS="$venv/bin/schemathesis"
  if [ -x "$SCHEMATHESIS" ] && "$SCHEMATHESIS" --version 2>/dev/null | grep -q " $SCHEMATHESIS_VERSION\$"; then
    return 0
  fi
  say "pip : schemathesis $SCHEMATHESIS_VERSION (venv $venv)"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv a échoué (paquet python3-venv ?)"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
    || die "installation de schemathesis impossible"
}

# Starts the platform on a database of its own (t_conformance: provisioned like the demo,
# dropped with the other test databases), with an internal caller's real token, and runs
# schemathesis against each OpenAPI document. Any failure fails `infra/run test`.
run_api_conformance() {
  local bin="${1:-$CARGO_TARGET_DIR/debug}"
  install_schemathesis
  local db=t_conformance
  local server="${AC_ADMIN_DATABASE_URL%/*}/postgres"
  psql -q -v ON_ERROR_STOP=1 "$server" >/dev/null <<SQL
DROP DATABASE IF EXISTS $db WITH (FORCE);
CREATE DATABASE $db;
SQL
  local admin_url="${AC_ADMIN_DATABASE_URL%/*}/$db" app_url="${AC_DATABASE__URL%/*}/$db"
  local app_role; app_role="$(printf '%s' "$AC_DATABASE__URL" | sed -E 's#^[a-z]+://([^:@]+).*#\1#')"
  local admin=("$bin/tenant-admin" --database-url "$admin_url" --app-role "$app_role")
  AC_ENVIRONMENT=development "${admin[@]}" demo >"$LOG_DIR/conformance-demo.log" 2>&1 \
    || die "base de conformité : tenant-admin demo a échoué (journal : $LOG_DIR/conformance-demo.log)"
  local token
  token="$("${admin[@]}" internal caller add --name schemathesis --kinds attestation,court_decision \
      --departements 33 | tail -n 1)"
  [ -n "$token" ] || die "base de conformité : appelant interne non créé"

  local port internal_port
  port="$(free_port)"; internal_port="$(free_port)"
  AC_ENVIRONMENT=development AC_DATABASE__URL="$app_url" AC_HTTP__PORT="$port" \
    AC_HTTP__INTERNAL_PORT="$internal_port" AC_HTTP__PUBLIC_URL="http://127.0.0.1:$port" \
    AC_TELEMETRY__LOG_FILTER=warn \
    start_bg conformance-platform "$bin/aidants-connect"
  wait_for conformance-platform 60 http_ok "http://127.0.0.1:$port/health"

  local failed=0 public="http://127.0.0.1:$port" internal="http://127.0.0.1:$internal_port"
  local doc
  for doc in "$public/health/openapi.json" "$public/api/habilitation/openapi.json"; do
    conformance_of "$doc" || failed=1
  done
  conformance_of "$internal/internal/documents/openapi.json" -H "Authorization: Bearer $token" || failed=1
  stop_bg conformance-platform
  (( failed == 0 )) || die "conformité des API : échecs ci-dessus (schemathesis)"
  say "conformité des API : aucun échec"
}

# conformance_of DOCUMENT [schemathesis options…]
conformance_of() {
  local doc="$1"; shift
  say "schemathesis : $doc"
  # Run from the data directory: schemathesis keeps its cache (.schemathesis/) in the cwd.
  (cd "$AC_DATA_DIR" && "$SCHEMATHESIS" run "$doc" --checks all --max-examples 50 --workers 2 \
    --suppress-health-check all --no-color "$@")
}
