//! Reliability under faults (issue 21), against the real stack: what the platform answers when
//! its connections to PostgreSQL are all taken by slow work, and how it recovers.

mod common;
#[path = "faults/postgres_killed.rs"]
mod postgres_killed;

use std::time::{Duration, Instant};

use common::identity::*;
use common::spawn_app_with;
use policies::Role;
use test_support::database::TestDatabase;

/// Every territory connection held by requests stuck behind a lock (a slow query): the next
/// requests wait at most the acquire timeout and answer a French 503 page, or the JSON error
/// for `/api`; liveness answers at once and readiness within its own 2 s; once the lock goes,
/// the stuck requests complete and new ones are served at once.
#[tokio::test]
async fn an_exhausted_pool_fails_fast_in_french_and_recovers_at_once() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let app = spawn_app_with(db, |s| {
        s.database.max_connections = 6;
        s.database.tenant_max_connections = 2;
        s.database.acquire_timeout_ms = 1_000;
    })
    .await;
    let structure = structure_domain(&app, "33").await;
    let who = professional(
        &app.db.admin,
        "Paula Pool",
        &[(Role::Aidant, structure.domain(), Some("33"))],
    )
    .await;
    let client = browser(&app.address);
    assert_eq!(log_in(&client, &app, &who, -1).await.status(), 303);
    let (status, _) = page(&client, &app.url("/mandats")).await;
    assert_eq!(status, 200, "avant la panne");

    // A slow query elsewhere: the structures table locked, so every page reading it waits,
    // holding its territory connection.
    let mut lock = app.db.admin.begin().await.expect("tx");
    sqlx::query("LOCK TABLE dep_33.structures IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("verrou");
    let stuck: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (&client, app.url("/mandats"));
            async move {
                let resp = client.get(&url).await;
                resp.status().as_u16()
            }
        })
        .collect();
    let stuck = futures::future::join_all(stuck);
    tokio::pin!(stuck);
    // Give the two requests time to take both connections.
    let early = tokio::time::timeout(Duration::from_millis(700), &mut stuck).await;
    assert!(early.is_err(), "les deux requêtes attendent le verrou");

    // Further requests: a 503 in French, within 2 s.
    let mut answered = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let resp = client.get(&app.url("/mandats")).await;
        let status = resp.status().as_u16();
        let html = resp.text().await.expect("page");
        answered.push((status, started.elapsed()));
        assert_eq!(status, 503, "{html}");
        assert!(html.contains("lang=\"fr\""), "{html}");
        assert!(html.contains("indisponible"), "{html}");
    }
    assert!(
        answered.iter().all(|(_, d)| *d <= Duration::from_secs(2)),
        "{answered:?}"
    );
    // The JSON API of the same territory: its documented error.
    let started = Instant::now();
    let resp = app
        .client
        .get(app.url("/api/habilitation/departements/33/lieux"))
        .send()
        .await
        .expect("api");
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "unavailable", "{body}");
    assert!(started.elapsed() <= Duration::from_secs(2));
    // Health: liveness at once, readiness within its bound.
    let started = Instant::now();
    let live = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(live.status(), 200);
    let ready = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .expect("ready");
    assert!(ready.status() == 200 || ready.status() == 503);
    assert!(started.elapsed() <= Duration::from_secs(3));

    // The slow query ends: the stuck requests complete, new ones are served at once.
    lock.commit().await.expect("fin du verrou");
    let stuck = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .expect("les requêtes bloquées se terminent");
    assert_eq!(stuck, [200, 200]);
    let started = Instant::now();
    let (status, _) = page(&client, &app.url("/mandats")).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() <= Duration::from_secs(1));
}

/// A connection that died while idle in a pool (a restarted server, a proxy's timeout, an
/// administrator's `pg_terminate_backend`) is never handed to a request: the pools check a
/// connection idle for `CHECK_IDLE_AFTER` or more before handing it out
/// (`tenancy::request_pool_options`), and the page is served, not a 503. With that check
/// turned off, this test gets a 503.
#[tokio::test]
async fn connections_that_died_while_idle_are_replaced_before_a_request_gets_them() {
    let app = common::spawn_app(&["33"]).await;
    let structure = structure_domain(&app, "33").await;
    let who = professional(
        &app.db.admin,
        "Ida Idle",
        &[(Role::Aidant, structure.domain(), Some("33"))],
    )
    .await;
    let client = browser(&app.address);
    assert_eq!(log_in(&client, &app, &who, -1).await.status(), 303);
    for round in 0..2 {
        let (status, _) = page(&client, &app.url("/mandats")).await;
        assert_eq!(status, 200, "tour {round}, avant");
        // Every connection of the platform to this database, platform and territory pools.
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
        .fetch_all(&app.db.admin)
        .await
        .expect("terminate");
        assert!(killed.len() >= 2, "{killed:?}");
        tokio::time::sleep(foundation::tenancy::CHECK_IDLE_AFTER + Duration::from_millis(500))
            .await;
        let (status, html) = page(&client, &app.url("/mandats")).await;
        assert_eq!(status, 200, "tour {round}, après : {html}");
    }
}

/// SIGTERM under load, on the platform's own binary: readiness says « draining » at once (a
/// load balancer stops sending), requests already in flight — held behind a slow query — all
/// finish with 200, the listeners then stop accepting, and the process exits cleanly within
/// 30 s.
#[tokio::test]
async fn sigterm_drains_readiness_first_and_lets_in_flight_requests_finish() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let service = test_support::service_binary::start_with(
        env!("CARGO_BIN_EXE_aidants-connect"),
        &db,
        &[("AC_HTTP__DRAIN_MS", "1500")],
    )
    .await;
    let http = reqwest::Client::new();
    let places = service.url("/api/habilitation/departements/33/lieux");
    assert_eq!(http.get(&places).send().await.expect("lieux").status(), 200);

    // Six requests in flight (fewer than the territory pool holds), each waiting behind a slow
    // query.
    let mut lock = db.admin.begin().await.expect("tx");
    sqlx::query("LOCK TABLE dep_33.structures IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("verrou");
    let in_flight: Vec<_> = (0..6)
        .map(|_| {
            let (http, url) = (http.clone(), places.clone());
            tokio::spawn(async move {
                http.get(&url)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        in_flight.iter().all(|h| !h.is_finished()),
        "les requêtes attendent encore au SIGTERM"
    );
    let stopping = Instant::now();
    service.sigterm();
    // Readiness first.
    let mut draining = None;
    for _ in 0..20 {
        let ready = http.get(service.url("/health/ready")).send().await;
        if let Ok(r) = ready
            && r.status() == 503
        {
            let body: serde_json::Value = r.json().await.expect("json");
            draining = Some(body["status"].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(draining, Some(serde_json::json!("draining")));
    assert!(
        stopping.elapsed() < Duration::from_millis(1_500),
        "avant l'arrêt des écoutes"
    );
    // The slow query ends: every request in flight is answered.
    lock.commit().await.expect("fin du verrou");
    let mut answered = Vec::new();
    for request in in_flight {
        answered.push(request.await.expect("tâche"));
    }
    assert_eq!(answered, vec![Ok(200); 6]);
    // After the drain, nobody is accepted any more; the process exits cleanly.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let late = http
        .get(service.url("/health"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(late.is_err(), "plus aucune connexion acceptée : {late:?}");
    let exit = service.exited().await;
    assert!(exit.success(), "{exit:?}");
    assert!(stopping.elapsed() <= Duration::from_secs(30));
}

/// The value of the first hidden `cle` field of a page (a form's idempotency key).
fn act_key_of(html: &str) -> String {
    html.split("name=\"cle\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("clé : {html}"))
        .to_owned()
}

/// A revocation sent again (a network error, a double click) with the form's idempotency key
/// answers the first outcome — « révoqué » — and revokes, journals and attests once; another
/// démarche's form on the same page is its own act.
#[tokio::test]
async fn a_revocation_sent_twice_with_its_key_is_done_once_and_answered_the_same() {
    let app = common::spawn_app(&["33"]).await;
    let fx = common::idp::fixture(
        &app,
        &common::idp::angela("fc-sub-retry"),
        &["logement", "social"],
    )
    .await;
    let at = format!("/mandats/{}", fx.mandate);
    let (status, html) = page(&fx.aidant, &app.url(&at)).await;
    assert_eq!(status, 200);
    let (csrf, key) = (csrf_of(&html), act_key_of(&html));
    let revoke = |category: &'static str| {
        let (client, url, csrf, key) = (
            &fx.aidant,
            app.url(&format!("{at}/revocation")),
            csrf.clone(),
            key.clone(),
        );
        async move {
            let resp = client
                .post(
                    &url,
                    &[("csrf", &csrf), ("cle", &key), ("categorie", category)],
                )
                .await;
            assert_eq!(resp.status(), 303);
            common::idp::location(&resp)
        }
    };
    let first = revoke("logement").await;
    assert!(first.ends_with("?message=revoque"), "{first}");
    let again = revoke("logement").await;
    assert_eq!(again, first, "la même réponse, pas « rien à révoquer »");
    // The other démarche's form, same page: a distinct act.
    let other = revoke("social").await;
    assert!(other.ends_with("?message=revoque"), "{other}");
    let revoked: Vec<(String, i64)> = sqlx::query_as(
        "SELECT details, count(*) FROM dep_33.journal
         WHERE kind = 'authorisation_revoked' AND mandate_id = $1 GROUP BY details ORDER BY details",
    )
    .bind(fx.mandate)
    .fetch_all(&app.db.admin)
    .await
    .expect("journal");
    assert_eq!(revoked.len(), 2, "{revoked:?}");
    assert!(revoked.iter().all(|(_, n)| *n == 1), "{revoked:?}");
    let keys: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dep_33.act_keys WHERE mandate_id = $1")
            .bind(fx.mandate)
            .fetch_one(&app.db.admin)
            .await
            .expect("clés");
    assert_eq!(keys, 2);
}

/// The state of the `journal_checkpoints` job: (last start, whether the run finished).
async fn checkpoint_job(db: &TestDatabase) -> Option<(time::OffsetDateTime, bool)> {
    sqlx::query_as(
        "SELECT last_started_at, coalesce(last_finished_at >= last_started_at, false)
         FROM platform.job_runs WHERE name = 'journal_checkpoints'",
    )
    .fetch_optional(&db.admin)
    .await
    .expect("job_runs")
}

/// Two replicas (the platform's binary, twice) on one database. The first claims the journal
/// checkpoints job (every 10 minutes) and is stopped by SIGTERM in the middle of it (the job
/// waits behind a lock); it gives its claim back, the second replica takes the run within a
/// tick, and the job's work is done once.
#[tokio::test]
async fn a_job_stopped_mid_run_by_sigterm_is_taken_over_by_the_other_replica_and_done_once() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let exe = env!("CARGO_BIN_EXE_aidants-connect");
    let env = [("AC_JOBS__TICK_MS", "300")];
    let mut lock = db.admin.begin().await.expect("tx");
    sqlx::query("LOCK TABLE dep_33.journal_checkpoints IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("verrou");
    let first = test_support::service_binary::start_with(exe, &db, &env).await;
    let started = Instant::now();
    let claimed = loop {
        if let Some((at, false)) = checkpoint_job(&db).await {
            break at;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "claim by the first replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let second = test_support::service_binary::start_with(exe, &db, &env).await;
    // The second replica looks several times and leaves the claimed run alone.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(checkpoint_job(&db).await, Some((claimed, false)));

    let stopping = Instant::now();
    first.sigterm();
    let exit = first.exited().await;
    assert!(exit.success(), "{exit:?}");
    assert!(stopping.elapsed() <= Duration::from_secs(30));
    // The claim was given back: the second replica claims the run at its next look (and
    // waits behind the lock in turn), long before the job's next period.
    let taken = Instant::now();
    let retaken = loop {
        let (at, _) = checkpoint_job(&db).await.expect("job");
        if at > claimed {
            break at;
        }
        assert!(
            taken.elapsed() < Duration::from_secs(10),
            "taken over within a tick"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    lock.commit().await.expect("fin du verrou");
    // And runs it to the end.
    loop {
        if let Some((at, true)) = checkpoint_job(&db).await {
            assert_eq!(at, retaken, "the second replica's run");
            break;
        }
        assert!(taken.elapsed() < Duration::from_secs(20), "run to the end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (error, checkpoints): (Option<String>, i64) = sqlx::query_as(
        "SELECT (SELECT last_error FROM platform.job_runs WHERE name = 'journal_checkpoints'),
                (SELECT count(*) FROM dep_33.journal_checkpoints)",
    )
    .fetch_one(&db.admin)
    .await
    .expect("état");
    assert_eq!(error, None);
    assert_eq!(checkpoints, 1, "the territory's checkpoint signed once");
    let _ = second.terminate().await;
}

/// A territory whose journal cannot be sealed (a lock held, a hung node) holds back no other
/// territory's sealing: its sealing transaction is bounded, and it is visited again at its
/// retry only. Its own entries are chained once it can be sealed again.
#[tokio::test]
async fn a_territory_that_cannot_be_sealed_holds_back_no_other() {
    let db = TestDatabase::with_departements(&["33", "34"]).await;
    let app = spawn_app_with(db, |_| {}).await;
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let entry_in = |code: &'static str| {
        let tenancy = tenancy.clone();
        async move {
            let territory = tenancy
                .unguarded(foundation::tenancy::DepartementCode::parse(code).expect("code"))
                .await
                .expect("territoire");
            let mut tx = territory.begin().await.expect("tx");
            foundation::journal::append(
                &mut tx,
                foundation::journal::NewEntry::new(foundation::journal::Event::TerritoryMoved)
                    .details(serde_json::json!({ "test": code })),
            )
            .await
            .expect("entrée");
            tx.commit().await.expect("commit");
        }
    };
    let chained_within = |code: &'static str, limit: Duration| {
        let admin = app.db.admin.clone();
        async move {
            let sql = format!("SELECT count(*) FROM dep_{code}.journal WHERE seq IS NULL");
            let deadline = Instant::now() + limit;
            loop {
                let pending: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_one(&admin)
                    .await
                    .expect("journal");
                if pending == 0 {
                    return true;
                }
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // The sealing lock of 33, held: the sealer's visit of 33 waits on it.
    let mut holder = app.db.admin.acquire().await.expect("connexion");
    sqlx::query("SELECT pg_advisory_lock(hashtext('aidants-connect:journal-seal:dep_33'))")
        .execute(&mut *holder)
        .await
        .expect("verrou");
    entry_in("33").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    entry_in("34").await;
    assert!(
        chained_within("34", Duration::from_secs(15)).await,
        "le journal de 34 est chaîné malgré 33 bloqué"
    );
    assert!(!chained_within("33", Duration::ZERO).await);

    sqlx::query("SELECT pg_advisory_unlock(hashtext('aidants-connect:journal-seal:dep_33'))")
        .execute(&mut *holder)
        .await
        .expect("fin du verrou");
    assert!(
        chained_within("33", Duration::from_secs(40)).await,
        "le journal de 33 est chaîné une fois le verrou levé"
    );
}
