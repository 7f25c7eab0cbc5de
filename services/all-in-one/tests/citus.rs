//! On the Citus cluster only (`infra/run test`'s Citus step; the single-cluster step leaves this
//! target out): a territory moved from one worker to the other while a real OpenID client
//! (openid-client, playing FranceConnect) runs identity-provider flows against it, and a worker
//! stopped during traffic.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::idp::*;
use common::{TestApp, spawn_app};
use foundation::tenancy::DepartementCode;
use foundation::tenancy::citus::{self, TransferMode};
use mandate_service::idp::clients::AuthMethod;
use mandate_service::idp::keys::Alg;
use serde_json::{Value, json};

fn require_citus() {
    assert!(
        test_support::database::CitusNodes::from_env().is_some(),
        "ces tests tournent sur le cluster Citus (étape Citus de `infra/run test`)"
    );
}

async fn rp_for(app: &TestApp) -> Rp {
    let rp = Rp::spawn().await;
    let secret = register(
        app,
        "franceconnect-citus",
        AuthMethod::ClientSecretPost,
        &rp.callback(),
        &[],
        Alg::Es256,
        None,
    )
    .await
    .expect("secret");
    rp.configure(json!({
        "issuer": app.address,
        "client_id": "franceconnect-citus",
        "client_secret": secret,
        "auth_method": "client_secret_post",
        "alg": "ES256",
    }))
    .await;
    rp
}

async fn node_of(admin: &sqlx::PgPool, code: &str) -> citus::Node {
    let code = DepartementCode::parse(code).expect("code");
    citus::placements(admin)
        .await
        .expect("placements")
        .into_iter()
        .find(|p| p.departement == code)
        .expect("territoire distribué")
        .node
}

async fn other_worker(admin: &sqlx::PgPool, than: &citus::Node) -> citus::Node {
    citus::nodes(admin)
        .await
        .expect("nœuds")
        .into_iter()
        .find(|n| !n.coordinator && n.id != than.id)
        .expect("un autre nœud")
}

/// Territories 33 and 34 on different workers: 33's worker, and 34's territory.
async fn apart(app: &TestApp) -> (citus::Node, foundation::tenancy::Territory) {
    let down = node_of(&app.db.admin, "33").await;
    if node_of(&app.db.admin, "34").await.id == down.id {
        let other = other_worker(&app.db.admin, &down).await;
        citus::move_schema(
            &app.db.admin,
            DepartementCode::parse("34").expect("34"),
            &other,
            TransferMode::BlockWrites,
        )
        .await
        .expect("déplacement de 34");
    }
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let other = tenancy
        .unguarded(DepartementCode::parse("34").expect("34"))
        .await
        .expect("territoire 34");
    (down, other)
}

/// Appends an entry to the territory's journal; how many it then holds.
async fn journal_entry_in(territory: &foundation::tenancy::Territory, label: &str) -> i64 {
    let mut tx = territory.begin().await.expect(label);
    foundation::journal::append(
        &mut tx,
        foundation::journal::NewEntry::new(foundation::journal::Event::TerritoryMoved)
            .details(json!({ "test": label })),
    )
    .await
    .expect(label);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM journal")
        .fetch_one(&mut *tx)
        .await
        .expect(label);
    tx.commit().await.expect(label);
    n
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&app.db.admin)
        .await
        .expect(sql)
}

#[tokio::test]
async fn a_territory_moves_to_the_other_worker_while_flows_run_and_nothing_fails_or_is_lost() {
    require_citus();
    let app = spawn_app(&["33"]).await;
    let fx = Arc::new(fixture(&app, &angela("fc-sub-move"), &["logement"]).await);
    let rp = Arc::new(rp_for(&app).await);
    let app = Arc::new(app);
    let from = node_of(&app.db.admin, "33").await;
    let to = other_worker(&app.db.admin, &from).await;

    // Two clients run complete flows (authorize, choice, code, token, userinfo) until told to
    // stop; every error is kept.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (app, fx, rp, stop, done) = (
            app.clone(),
            fx.clone(),
            rp.clone(),
            stop.clone(),
            done.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (url, _) = rp.start(Some("Logement")).await;
                let result: Value = rp
                    .land(&choose(&fx, &app, &url, fx.usager, "logement").await)
                    .await;
                if result["error"] != Value::Null || result["userinfo"]["sub"].is_null() {
                    errors.push(result.to_string());
                } else {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            errors
        }));
    }
    // Some flows before, the move, some flows after.
    while done.load(Ordering::Relaxed) < 5 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before_move = done.load(Ordering::Relaxed);
    let started = std::time::Instant::now();
    citus::move_schema(
        &app.db.admin,
        DepartementCode::parse("33").expect("33"),
        &to,
        TransferMode::Online,
    )
    .await
    .expect("déplacement");
    let after_move = done.load(Ordering::Relaxed);
    let moved_in = started.elapsed();
    while done.load(Ordering::Relaxed) < after_move + 5 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for c in clients {
        errors.extend(c.await.expect("client"));
    }
    eprintln!(
        "déplacement du nœud {} au nœud {} en {:.2} s ; flux aboutis : {before_move} avant, {} pendant, {} en tout ; {} en échec",
        from.id,
        to.id,
        moved_in.as_secs_f64(),
        after_move - before_move,
        done.load(Ordering::Relaxed),
        errors.len()
    );
    assert!(errors.is_empty(), "flux en échec : {errors:#?}");
    assert_eq!(
        node_of(&app.db.admin, "33").await.id,
        to.id,
        "territoire déplacé"
    );
    assert_ne!(from.id, to.id);
    assert!(
        after_move > before_move,
        "des flux ont abouti pendant le déplacement ({before_move} avant, {after_move} après)"
    );

    // Every flow journaled once, nothing lost or doubled, and the chain verifies.
    let flows = done.load(Ordering::Relaxed) as i64;
    let uses = count(
        &app,
        "SELECT count(*) FROM dep_33.journal WHERE kind = 'mandate_used'",
    )
    .await;
    assert_eq!(uses, flows, "une entrée « mandat utilisé » par flux");
    let distinct = count(
        &app,
        "SELECT count(DISTINCT details) FROM dep_33.journal WHERE kind = 'mandate_used'",
    )
    .await;
    assert_eq!(distinct, flows, "aucune entrée en double");
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let code = DepartementCode::parse("33").expect("33");
    foundation::journal::seal_from_platform(&tenancy, code)
        .await
        .expect("scellement");
    let territory = tenancy.unguarded(code).await.expect("territoire");
    let mut tx = territory.begin().await.expect("tx");
    let v = foundation::journal::verify(&mut tx, None, &foundation::journal::Anchor::default())
        .await
        .expect("vérification");
    tx.commit().await.expect("commit");
    assert_eq!(v.first_broken, None, "{v:?}");
    let entries = count(&app, "SELECT count(*) FROM dep_33.journal").await;
    assert_eq!(
        v.checked as i64, entries,
        "toute la chaîne vérifiée : {v:?}"
    );
}

#[tokio::test]
async fn a_stopped_worker_makes_only_its_territories_answer_503_and_they_come_back_with_it() {
    require_citus();
    let nodes = test_support::database::CitusNodes::from_env().expect("Citus");
    let app = spawn_app(&["33", "34"]).await;
    let fx = fixture(&app, &angela("fc-sub-outage"), &["logement"]).await;
    let (down, other) = apart(&app).await;
    assert_eq!(fx.aidant.get(&app.url("/mandats")).await.status(), 200);
    let before = journal_entry_in(&other, "avant").await;

    let dir = nodes.stop_worker(down.port as u16).await;
    // The territory on the stopped worker: a French 503, quickly, every time.
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let resp = fx.aidant.get(&app.url("/mandats")).await;
        let elapsed = started.elapsed();
        assert_eq!(resp.status(), 503);
        assert!(
            resp.text()
                .await
                .expect("page")
                .contains("momentanément indisponible")
        );
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }
    // The other territory, and the platform itself, keep working.
    assert_eq!(journal_entry_in(&other, "pendant").await, before + 1);
    assert_eq!(app.get("/connexion").await.status(), 200);

    nodes.start_worker(&dir).await;
    back_within(&app, &fx.aidant, Duration::from_secs(20)).await;
    // Nothing was lost on either side.
    assert_eq!(journal_entry_in(&other, "après").await, before + 2);
}

/// Waits until the aidant's mandate list answers 200 again (at most `limit`), then checks that
/// territory 33's mandate is still there.
async fn back_within(app: &TestApp, aidant: &common::identity::Browser, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let status = aidant.get(&app.url("/mandats")).await.status();
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "toujours {status} après le retour du nœud"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mandates = count(app, "SELECT count(*) FROM dep_33.mandates").await;
    assert!(mandates >= 1, "le mandat de 33 est toujours là");
}

/// A worker that hangs rather than stops — its processes frozen, its port still taking
/// connections nobody answers — makes its territories' requests answer the French 503 at the
/// request timeout, wave after wave, while the other territory and the platform keep working;
/// when it wakes, its territories answer again and nothing was lost.
#[tokio::test]
async fn a_hung_worker_makes_only_its_territories_answer_503_at_the_timeout_and_they_come_back() {
    require_citus();
    let nodes = test_support::database::CitusNodes::from_env().expect("Citus");
    let db = test_support::database::TestDatabase::with_departements(&["33", "34"]).await;
    let timeout = Duration::from_millis(2_000);
    let app = common::spawn_app_with(db, |s| {
        s.http.request_timeout_ms = timeout.as_millis() as u64
    })
    .await;
    let fx = fixture(&app, &angela("fc-sub-hung"), &["logement"]).await;
    let (down, other) = apart(&app).await;
    assert_eq!(fx.aidant.get(&app.url("/mandats")).await.status(), 200);
    let before = journal_entry_in(&other, "avant").await;

    let frozen = nodes.hang_worker(down.port as u16).await;
    // Three waves of four requests at once for the frozen territory: each a French 503 at
    // the timeout; a hung request must hold nothing the next wave needs.
    for wave in 0..3 {
        let started = std::time::Instant::now();
        let answers = futures::future::join_all((0..4).map(|_| async {
            let resp = fx.aidant.get(&app.url("/mandats")).await;
            let status = resp.status();
            (status, resp.text().await.expect("page"), started.elapsed())
        }))
        .await;
        for (status, page, elapsed) in answers {
            assert_eq!(status, 503, "vague {wave}");
            assert!(page.contains("momentanément indisponible"), "vague {wave}");
            assert!(
                elapsed < timeout + Duration::from_millis(1_500),
                "vague {wave} : {elapsed:?}"
            );
        }
        // Meanwhile the other territory and the platform answer.
        assert_eq!(
            journal_entry_in(&other, "pendant").await,
            before + 1 + wave as i64
        );
        assert_eq!(app.get("/connexion").await.status(), 200);
    }

    frozen.resume();
    back_within(&app, &fx.aidant, Duration::from_secs(30)).await;
    assert_eq!(journal_entry_in(&other, "après").await, before + 4);
}

/// A hung worker holds back no other territory's mail: the consumer's claim on the frozen
/// territory gives up (its 3 s bound), and a message of the other territory, woken by its
/// commit, leaves; the frozen territory's own message leaves once the worker wakes.
#[tokio::test]
async fn a_hung_worker_holds_back_no_other_territorys_mail() {
    require_citus();
    let nodes = test_support::database::CitusNodes::from_env().expect("Citus");
    let app = spawn_app(&["33", "34"]).await;
    let (down, other) = apart(&app).await;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let frozen = nodes.hang_worker(down.port as u16).await;
    // 33's wake-up: the consumer's claim there waits on the frozen worker.
    sqlx::query("SELECT pg_notify($1, '33')")
        .bind(foundation::outbox::NOTIFY_CHANNEL)
        .execute(&app.db.admin)
        .await
        .expect("réveil");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let herault = format!("herault-{unique}@example.test");
    common::queue_test_mail(&other, &herault).await;
    test_support::maildev::wait_for_mail_to(&herault, Duration::from_secs(10))
        .await
        .expect("le message de 34 part malgré le nœud figé");

    frozen.resume();
    let gironde = format!("gironde-{unique}@example.test");
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let territory = tenancy
        .unguarded(DepartementCode::parse("33").expect("33"))
        .await
        .expect("territoire 33");
    common::queue_test_mail(&territory, &gironde).await;
    test_support::maildev::wait_for_mail_to(&gironde, Duration::from_secs(40))
        .await
        .expect("le message de 33 part au réveil du nœud");
}

#[tokio::test]
async fn a_move_interrupted_half_way_leaves_the_territory_where_it_was_and_can_be_made_again() {
    require_citus();
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-interrupted"), &["logement"]).await;
    let code = DepartementCode::parse("33").expect("33");
    let from = node_of(&app.db.admin, "33").await;
    let to = other_worker(&app.db.admin, &from).await;
    // As soon as the move runs, cancel it (an operator's Ctrl-C, a lost connection). A small
    // territory's move may end before the cancel reaches it: then it is moved back and the
    // interruption tried again.
    let mut interrupted = false;
    for _ in 0..5 {
        let mover = {
            let (admin, to) = (app.db.admin.clone(), to.clone());
            tokio::spawn(async move {
                citus::move_schema(&admin, code, &to, TransferMode::Online).await
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Only a move still running: an idle connection keeps showing its last query.
            let cancelled: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT pg_cancel_backend(pid) FROM pg_stat_activity
                 WHERE query LIKE 'SELECT citus_schema_move(%' AND state = 'active'
                   AND pid <> pg_backend_pid() AND datname = current_database()) c",
            )
            .fetch_one(&app.db.admin)
            .await
            .expect("annulation");
            if cancelled > 0 || mover.is_finished() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "déplacement jamais vu"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if mover.await.expect("tâche").is_err() {
            interrupted = true;
            break;
        }
        citus::move_schema(&app.db.admin, code, &from, TransferMode::BlockWrites)
            .await
            .expect("retour");
    }
    assert!(interrupted, "le déplacement n'a jamais pu être interrompu");
    // Never two copies serving: the territory is where it was, and it is served.
    assert_eq!(node_of(&app.db.admin, "33").await.id, from.id);
    let shards: Vec<(String, i32)> = sqlx::query_as(
        "SELECT DISTINCT nodename::text, nodeport FROM citus_shards
         WHERE table_name::text LIKE 'dep\\_33.%'",
    )
    .fetch_all(&app.db.admin)
    .await
    .expect("shards");
    assert_eq!(shards, vec![(from.host.clone(), from.port)]);
    assert_eq!(fx.aidant.get(&app.url("/mandats")).await.status(), 200);
    // The half-made copy is cleaned up; the move can be made again, to the end.
    sqlx::query("CALL citus_cleanup_orphaned_resources()")
        .execute(&app.db.admin)
        .await
        .expect("nettoyage");
    citus::move_schema(&app.db.admin, code, &to, TransferMode::Online)
        .await
        .expect("déplacement repris");
    assert_eq!(node_of(&app.db.admin, "33").await.id, to.id);
    assert_eq!(fx.aidant.get(&app.url("/mandats")).await.status(), 200);
}

#[tokio::test]
async fn a_migration_failing_on_a_distributed_schema_rolls_back_on_its_worker_and_spares_the_others()
 {
    use foundation::tenancy::migrate::{self, DEPARTEMENT_MIGRATIONS, Migration};
    require_citus();
    let db = test_support::database::TestDatabase::with_departements(&["33", "34"]).await;
    let mut set = DEPARTEMENT_MIGRATIONS.clone();
    let latest = set.latest_version();
    // A column added, then an error: the whole migration of that schema must roll back, on the
    // coordinator and on the worker (two-phase commit).
    set.0.push(Migration {
        version: 9_001,
        name: "9001_half_done",
        sql: "ALTER TABLE structures ADD COLUMN half_done text;
              SELECT 1 / 0;",
    });
    let login = test_support::database::TestDatabase::tenant_login();
    let code = DepartementCode::parse("33").expect("33");
    let report = migrate::provision_departement(&db.admin, &db.app_role, &login, code, &set)
        .await
        .expect("rapport");
    assert!(report.result.is_err(), "{:?}", report.result);
    let (status, version): (String, i64) = sqlx::query_as(
        "SELECT status, version FROM platform.departement_schemas WHERE departement_code = '33'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("état");
    assert_eq!((status.as_str(), version), ("failed", latest));
    // Nowhere a trace of the half-done migration: not on the coordinator, not on any worker.
    let on_workers: Vec<(String,)> = sqlx::query_as(
        "SELECT result FROM run_command_on_workers(
             $$SELECT count(*) FROM information_schema.columns
               WHERE table_schema = 'dep_33' AND column_name = 'half_done'$$)",
    )
    .fetch_all(&db.admin)
    .await
    .expect("nœuds");
    assert_eq!(on_workers.len(), 2);
    assert!(on_workers.iter().all(|(r,)| r == "0"), "{on_workers:?}");
    let here: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns
         WHERE table_schema = 'dep_33' AND column_name = 'half_done'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("coordinateur");
    assert_eq!(here, 0);
    let applied: i64 = sqlx::query_scalar("SELECT max(version) FROM dep_33.schema_migrations")
        .fetch_one(&db.admin)
        .await
        .expect("versions");
    assert_eq!(applied, latest);
    // The other territory is untouched and still served; 33 migrates once the set is right.
    let (status, version): (String, i64) = sqlx::query_as(
        "SELECT status, version FROM platform.departement_schemas WHERE departement_code = '34'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("état de 34");
    assert_eq!((status.as_str(), version), ("ready", latest));
    let report = migrate::provision_departement(
        &db.admin,
        &db.app_role,
        &login,
        code,
        &DEPARTEMENT_MIGRATIONS,
    )
    .await
    .expect("rapport");
    assert_eq!(report.result, Ok(latest));
}

/// Where `code` is placed in this database, and the other worker.
async fn placed(
    db: &test_support::database::TestDatabase,
    code: &str,
) -> (citus::Node, citus::Node) {
    let code = DepartementCode::parse(code).expect("code");
    let here = citus::placements(&db.admin)
        .await
        .expect("placements")
        .into_iter()
        .find(|p| p.departement == code)
        .expect("territoire distribué")
        .node;
    let other = citus::nodes(&db.admin)
        .await
        .expect("nœuds")
        .into_iter()
        .find(|n| !n.coordinator && n.id != here.id)
        .expect("un autre nœud");
    (here, other)
}

#[tokio::test]
async fn a_move_left_half_done_in_one_database_never_blocks_a_move_in_another_on_the_same_nodes() {
    // Replication slots and the moves' roles belong to a node, not to one of its databases, and
    // Citus names them by the move's operation number: two databases counting from the same
    // point would name their moves alike.
    require_citus();
    use test_support::database::TestDatabase;
    let (a, b) = (
        TestDatabase::with_departements(&["33"]).await,
        TestDatabase::with_departements(&["33"]).await,
    );
    let code = DepartementCode::parse("33").expect("33");
    // Both databases hold 33 on the same worker, to be moved the same way.
    let (from, _) = placed(&a, "33").await;
    let (b_from, b_other) = placed(&b, "33").await;
    if b_from.port != from.port {
        citus::move_schema(&b.admin, code, &b_other, TransferMode::Online)
            .await
            .expect("mise en place");
    }
    let (_, to) = placed(&a, "33").await;
    // A's move stops half-way once its replication slot exists, and is left uncleaned.
    let mover = {
        let (admin, to) = (a.admin.clone(), to.clone());
        tokio::spawn(
            async move { citus::move_schema(&admin, code, &to, TransferMode::Online).await },
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let slots: Vec<(String,)> = sqlx::query_as(
            "SELECT result FROM run_command_on_workers(
                 format($$SELECT count(*) FROM pg_replication_slots
                          WHERE slot_name LIKE 'citus\\_shard\\_move\\_slot\\_%%' AND database = %L$$,
                        current_database()))",
        )
        .fetch_all(&a.admin)
        .await
        .expect("slots");
        if slots.iter().any(|(n,)| n != "0") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot jamais créé");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sqlx::query(
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
         WHERE query LIKE 'SELECT citus_schema_move(%' AND pid <> pg_backend_pid()
           AND datname = current_database()",
    )
    .execute(&a.admin)
    .await
    .expect("annulation");
    assert!(
        mover.await.expect("tâche").is_err(),
        "le déplacement aurait dû être interrompu"
    );
    // B's move, the same way, goes to the end.
    let (_, b_to) = placed(&b, "33").await;
    assert_eq!(b_to.port, to.port);
    citus::move_schema(&b.admin, code, &b_to, TransferMode::Online)
        .await
        .expect("déplacement dans l'autre base");
    assert_eq!(placed(&b, "33").await.0.port, to.port);
    // A, cleaned up, moves too.
    citus::move_schema(&a.admin, code, &to, TransferMode::Online)
        .await
        .expect("déplacement repris");
    assert_eq!(placed(&a, "33").await.0.port, to.port);
}

/// A worker that hangs costs a job one bound (`jobs.territory_seconds`), not one per territory
/// it holds: once the first of its territories is given up, and the worker does not take a new
/// connection either, the others it holds are left out of the run and named, and the other
/// worker's territory, last in code order, is served well before the run's own bound. A lock
/// held in one territory, on a worker that answers, holds back no other territory of that
/// worker.
#[tokio::test]
async fn a_hung_worker_costs_a_job_one_bound_and_the_other_workers_territories_are_served() {
    require_citus();
    let nodes = test_support::database::CitusNodes::from_env().expect("Citus");
    let db = test_support::database::TestDatabase::with_departements(&["32", "33", "34"]).await;
    let code = |c: &str| DepartementCode::parse(c).expect("code");
    // 32 and 33 on one worker, 34 on the other.
    let hung = node_of(&db.admin, "33").await;
    let other = other_worker(&db.admin, &hung).await;
    for (c, to) in [("32", &hung), ("34", &other)] {
        if node_of(&db.admin, c).await.id != to.id {
            citus::move_schema(&db.admin, code(c), to, TransferMode::BlockWrites)
                .await
                .expect("déplacement");
        }
    }
    let old_messages = |deps: &'static [&'static str]| {
        let admin = db.admin.clone();
        async move {
            for dep in deps {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO dep_{dep}.outbox (id, channel, recipient, template, sent_at)
                     VALUES (gen_random_uuid(), 'email', 'vieux@example.test', 'operator_test', now() - interval '40 days')"
                )))
                .execute(&admin)
                .await
                .expect("message ancien");
            }
        }
    };
    let left = |dep: &'static str| {
        let admin = db.admin.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM dep_{dep}.outbox"
            )))
            .fetch_one(&admin)
            .await
            .expect("restes")
        }
    };
    let period_over = || {
        sqlx::query("UPDATE platform.job_runs SET last_started_at = now() - interval '2 hours'")
            .execute(&db.admin)
    };
    let mut settings = test_support::test_settings(&db.app_url);
    settings.jobs.territory_seconds = 3;
    settings.jobs.lease_seconds = 12;
    let platform = foundation::app::Platform::connect(settings)
        .await
        .expect("plateforme");
    let jobs = vec![notification_mailer::worker::purge_delivered_messages()];
    let failed = |ran: Vec<(&'static str, Result<u64, String>)>| match &ran[..] {
        [(_, Err(e))] => e.clone(),
        other => panic!("le passage devait échouer : {other:?}"),
    };

    // A lock held on 32's outbox: 32 is given up, its worker answers, 33 (on it) is served.
    old_messages(&["32", "33"]).await;
    let mut holder = db.admin.begin().await.expect("transaction");
    sqlx::query("LOCK TABLE dep_32.outbox IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await
        .expect("verrou");
    let error = failed(foundation::jobs::run_due(&platform, &jobs).await);
    assert!(error.contains("32 (no answer after 3 s"), "{error}");
    assert!(
        !error.contains("left out") && !error.contains("33 ("),
        "{error}"
    );
    assert_eq!(left("33").await, 0, "33 servi malgré le verrou de 32");
    holder.rollback().await.expect("verrou rendu");
    period_over().await.expect("période");

    // The worker of 32 and 33 hangs: one bound, 33 left out, 34 served.
    old_messages(&["33", "34"]).await;
    let frozen = nodes.hang_worker(hung.port as u16).await;
    let started = std::time::Instant::now();
    let error = failed(foundation::jobs::run_due(&platform, &jobs).await);
    let took = started.elapsed();
    assert!(error.contains("32 (no answer after 3 s"), "{error}");
    assert!(
        error.contains("33 (left out: its worker") && error.contains("did not answer for 32"),
        "{error}"
    );
    assert!(!error.contains("34 ("), "{error}");
    // One bound (3 s) and the worker's check (at most 1.5 s), not one of each per territory.
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert_eq!(left("34").await, 0, "34 purgé malgré le nœud figé");

    frozen.resume();
    period_over().await.expect("période");
    let again = tokio::time::timeout(
        Duration::from_secs(30),
        foundation::jobs::run_due(&platform, &jobs),
    )
    .await
    .expect("au réveil du nœud");
    assert_eq!(again, vec![("purge_delivered_messages", Ok(2))]);
}
