//! PostgreSQL killed (`kill -9` of the postmaster) three times while 16 clients send 1,000
//! mandate creations, each retrying its recap with its draft (the idempotency key) until it
//! gets a definite answer; one client in five also loses its first answer (it gives up after
//! 30 ms while the platform goes on). The platform runs on a cluster of this test's own.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use foundation::auth::{factors, secrets, session, totp};
use foundation::ids::{ProfessionalId, StructureId};
use foundation::journal;
use foundation::tenancy::DepartementCode;
use futures::StreamExt;
use policies::Role;
use test_support::database::TestDatabase;
use test_support::private_postgres::PrivatePostgres;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::common::identity::{cipher, structure_domain};
use crate::common::spawn_app_with;

const CREATIONS: usize = 1_000;
const CLIENTS: usize = 16;

struct Job {
    seed: Vec<u8>,
    token: String,
    draft: Uuid,
}

/// What one client saw until its definite answer.
#[derive(Debug, Default)]
struct Outcome {
    draft: Uuid,
    /// The mandate the platform named: on creation, or when the draft was already done.
    mandate: Option<String>,
    first_answer_created: bool,
    attempts: usize,
    unavailable: usize,
    refused_codes: usize,
    network_errors: usize,
    other: Vec<u16>,
    /// When each 503 was asked, and how long it took.
    unavailable_at: Vec<(Instant, Duration)>,
}

fn current_step() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp() / 30
}

/// 1,000 aidants of one structure, each with a session and a draft whose identity is already
/// captured (FranceConnect done), written directly.
async fn jobs(admin: &sqlx::PgPool, structure: StructureId) -> Vec<Job> {
    let cipher = cipher();
    let mut jobs = Vec::with_capacity(CREATIONS);
    for n in 0..CREATIONS {
        let mut tx = admin.begin().await.expect("tx");
        let who: ProfessionalId = habilitation_desk::accounts::create_professional(
            &mut tx,
            &format!("aidant-{n}-{}@panne.test", Uuid::new_v4().simple()),
            &format!("Aidant {n}"),
        )
        .await
        .expect("compte");
        habilitation_desk::accounts::grant_role(
            &mut tx,
            who,
            Role::Aidant,
            structure.domain(),
            Some("33"),
        )
        .await
        .expect("rôle");
        let (factor, seed) = factors::start_app_enrolment(&mut tx, &cipher, who)
            .await
            .expect("facteur");
        sqlx::query("UPDATE platform.second_factors SET confirmed_at = now() WHERE id = $1")
            .bind(factor)
            .execute(&mut *tx)
            .await
            .expect("confirmation");
        let cookie = session::open(&mut tx, who, OffsetDateTime::now_utc(), false)
            .await
            .expect("session");
        let token = cookie.value_str().to_owned();
        tx.commit().await.expect("commit");
        let sub = format!("panne-{n}-{}", Uuid::new_v4().simple());
        let draft = test_support::drafts::identified(admin, structure, who, &token, &sub, 60)
            .await
            .expect("brouillon");
        jobs.push(Job { seed, token, draft });
    }
    jobs
}

/// Sends the recap until the platform says the mandate exists (created now, or already).
/// Each code is used once: after a refused code (a code spent by an attempt whose mandate
/// did not commit), the next step's code.
async fn create_until_answered(
    client: reqwest::Client,
    base: String,
    job: Job,
    answered: Arc<AtomicUsize>,
    lose_first_answer: bool,
) -> Outcome {
    let csrf = secrets::new_token();
    let cookie = format!("ac_session={}; ac_csrf={csrf}", job.token);
    let mut out = Outcome {
        draft: job.draft,
        ..Outcome::default()
    };
    let mut step = current_step();
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        step = step.max(current_step() - 1);
        while step > current_step() + 1 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let code = totp::code_at(&job.seed, 30, (step * 30) as u64);
        out.attempts += 1;
        let started = Instant::now();
        let sent = client
            .post(format!("{base}/mandats/preparation/{}", job.draft))
            .header("cookie", &cookie)
            .header("origin", &base)
            .form(&[
                ("csrf", csrf.as_str()),
                ("code", code.as_str()),
                ("declaration", "oui"),
            ])
            // A client that gives up before the answer (a network cut): the platform goes on.
            .timeout(if lose_first_answer && out.attempts == 1 {
                Duration::from_millis(30)
            } else {
                Duration::from_secs(15)
            })
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(_) => {
                out.network_errors += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        match status {
            303 if location.ends_with("?message=cree") => {
                out.mandate = location
                    .trim_start_matches("/mandats/")
                    .split('?')
                    .next()
                    .map(str::to_owned);
                out.first_answer_created = true;
                break;
            }
            303 if location.ends_with("/termine") => {
                // Already done by an earlier attempt: the page names its mandate.
                let done = client
                    .get(format!("{base}{location}"))
                    .header("cookie", &cookie)
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await;
                if let Ok(done) = done
                    && done.status() == 303
                {
                    out.mandate = done
                        .headers()
                        .get("location")
                        .and_then(|l| l.to_str().ok())
                        .map(|l| l.trim_start_matches("/mandats/").to_owned());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            503 => {
                out.unavailable += 1;
                out.unavailable_at.push((started, started.elapsed()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            200 | 422 => {
                // The recap again, with its message: the code was refused (spent by an attempt
                // whose mandate did not commit); the next step's code.
                out.refused_codes += 1;
                step += 1;
            }
            other => {
                out.other.push(other);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    answered.fetch_add(1, Ordering::SeqCst);
    out
}

/// The readiness check named `database` fails, and a page answers the French 503 in ≤ 2 s.
async fn while_down(base: &str, page_cookie: &str) -> (bool, u16, Duration, bool) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let ready = http
        .get(format!("{base}/health/ready"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("readiness");
    let ready_503 = ready.status() == 503;
    let body: serde_json::Value = ready.json().await.unwrap_or_default();
    let database_down = body["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["name"] == "database" && c["ok"] == false);
    let started = Instant::now();
    let page = http
        .get(format!("{base}/mandats"))
        .header("cookie", page_cookie)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("page");
    let status = page.status().as_u16();
    let elapsed = started.elapsed();
    let html = page.text().await.unwrap_or_default();
    let french = html.contains("lang=\"fr\"") && html.contains("indisponible");
    (ready_503 && database_down, status, elapsed, french)
}

#[tokio::test]
async fn postgres_killed_three_times_under_keyed_creations_loses_and_duplicates_nothing() {
    let mut pg = PrivatePostgres::start().await;
    let db = TestDatabase::create_on(&pg.admin_url(), &pg.app_url()).await;
    db.provision("33").await;
    // The breaker as in production, with a 1.5 s acquire timeout (2 s by default): a request
    // caught at the instant PostgreSQL dies waits the acquire timeout once before the breaker
    // opens (seen 2.002–2.007 s in CI with the default), so the ≤ 2 s target holds with 1.5 s.
    let app = spawn_app_with(db, |s| {
        s.database.acquire_timeout_ms = 1_500;
    })
    .await;
    let structure = structure_domain(&app, "33").await;
    let jobs = jobs(&app.db.admin, structure).await;
    let drafts: Vec<Uuid> = jobs.iter().map(|j| j.draft).collect();
    // A page of one aidant, asked while the database is down (its session is its own).
    let page_cookie = format!("ac_session={}", jobs[0].token);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("client");
    let answered = Arc::new(AtomicUsize::new(0));
    let sending = {
        let (client, base, answered) = (client.clone(), app.address.clone(), answered.clone());
        tokio::spawn(async move {
            futures::stream::iter(jobs.into_iter().enumerate())
                .map(|(n, job)| {
                    // One client in five loses its first answer.
                    create_until_answered(
                        client.clone(),
                        base.clone(),
                        job,
                        answered.clone(),
                        n % 5 == 0,
                    )
                })
                .buffer_unordered(CLIENTS)
                .collect::<Vec<Outcome>>()
                .await
        })
    };

    let mut outages = Vec::new();
    let mut windows: Vec<(Instant, Instant)> = Vec::new();
    for at in [150, 450, 750] {
        let waiting = Instant::now();
        while answered.load(Ordering::SeqCst) < at {
            assert!(
                waiting.elapsed() < Duration::from_secs(240),
                "{at} réponses attendues"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pg.kill9().await;
        let down = Instant::now();
        let seen = while_down(&app.address, &page_cookie).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let restarting = Instant::now();
        pg.restart().await;
        windows.push((down, restarting));
        // Back by itself: readiness and pages, without restarting the platform.
        let http = reqwest::Client::new();
        let back = Instant::now();
        loop {
            let ready = http
                .get(app.url("/health/ready"))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(back.elapsed() < Duration::from_secs(30), "rétablissement");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        outages.push((seen, down.elapsed(), back.elapsed()));
    }
    let outcomes = tokio::time::timeout(Duration::from_secs(360), sending)
        .await
        .expect("toutes les créations répondent")
        .expect("clients");

    for ((database_down, status, elapsed, french), down_for, back_in) in &outages {
        assert!(
            *database_down,
            "readiness names the database while it is down"
        );
        assert_eq!(*status, 503, "a page while the database is down");
        assert!(*elapsed <= Duration::from_secs(2), "503 in {elapsed:?}");
        assert!(*french, "the 503 page is the French one");
        // The outage as the test made it: the kill, the pages asked meanwhile, 1.5 s, then
        // PostgreSQL's start with its crash recovery. It bounds the harness, not the platform
        // (the platform's own bounds are the 503's 2 s and the recovery's 30 s): 30.9 s once in
        // CI under the whole suite's load (2026-12-04), so the bound is the start's own 60 s.
        assert!(*down_for < Duration::from_secs(60), "{down_for:?}");
        assert!(*back_in < Duration::from_secs(30), "{back_in:?}");
    }
    // Every client got a definite answer naming a mandate, without any other status.
    let sent: usize = outcomes.iter().map(|o| o.attempts).sum();
    let unavailable: usize = outcomes.iter().map(|o| o.unavailable).sum();
    let network: usize = outcomes.iter().map(|o| o.network_errors).sum();
    let refused: usize = outcomes.iter().map(|o| o.refused_codes).sum();
    let created_first: usize = outcomes.iter().filter(|o| o.first_answer_created).count();
    // The 503s of requests asked while the database was down (not those caught in flight by
    // the kill, whose time includes their work before it).
    let asked_while_down: Vec<Duration> = outcomes
        .iter()
        .flat_map(|o| o.unavailable_at.iter())
        .filter(|(at, _)| windows.iter().any(|(down, up)| at >= down && at < up))
        .map(|(_, took)| *took)
        .collect();
    let slowest = asked_while_down.iter().max().copied().unwrap_or_default();
    let others: Vec<u16> = outcomes.iter().flat_map(|o| o.other.clone()).collect();
    println!(
        "créations : {CREATIONS} demandées, {sent} envois, {unavailable} réponses 503 ({} demandées base arrêtée, la plus lente {slowest:?}), \
         {network} erreurs réseau, {refused} codes refusés, {created_first} « créé » au premier succès, \
         {} « déjà créé » ; pannes {:?}",
        asked_while_down.len(),
        CREATIONS - created_first,
        outages.iter().map(|o| (o.1, o.2)).collect::<Vec<_>>()
    );
    assert_eq!(outcomes.len(), CREATIONS);
    let unanswered: Vec<&Outcome> = outcomes.iter().filter(|o| o.mandate.is_none()).collect();
    assert!(
        unanswered.is_empty(),
        "sans réponse définitive : {unanswered:?}"
    );
    assert!(others.is_empty(), "statuts inattendus : {others:?}");
    assert!(slowest <= Duration::from_secs(2), "503 en {slowest:?}");
    // The breaker answers at once: nine in ten of them well under the acquire timeout (without
    // it, every one waits the 1.5 s).
    let mut sorted = asked_while_down.clone();
    sorted.sort();
    let p90 = sorted
        .get(sorted.len() * 9 / 10)
        .copied()
        .unwrap_or_default();
    assert!(p90 <= Duration::from_millis(100), "p90 des 503 : {p90:?}");
    assert!(
        !asked_while_down.is_empty(),
        "requests were asked during the outages"
    );
    assert!(unavailable > 0, "the kills were felt by the clients");
    assert!(
        created_first < CREATIONS,
        "some retries found their mandate already created"
    );

    // Stored: one mandate per draft, exactly the one each client was told; journaled once each.
    let admin = sqlx::PgPool::connect(&app.db.admin_url)
        .await
        .expect("admin");
    let stored: Vec<(String, Uuid)> = sqlx::query_as(
        "SELECT idempotency_key, id FROM dep_33.mandates WHERE idempotency_key LIKE 'draft:%'",
    )
    .fetch_all(&admin)
    .await
    .expect("mandats");
    assert_eq!(stored.len(), CREATIONS, "0 lost, 0 duplicated");
    let by_draft: HashMap<String, String> = stored
        .into_iter()
        .map(|(key, id)| (key, id.to_string()))
        .collect();
    for o in &outcomes {
        assert_eq!(
            by_draft.get(&format!("draft:{}", o.draft)),
            o.mandate.as_ref(),
            "the mandate the client was told is the stored one"
        );
    }
    assert!(
        drafts
            .iter()
            .all(|d| by_draft.contains_key(&format!("draft:{d}")))
    );
    let journaled: (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT mandate_id) FROM dep_33.journal WHERE kind = 'mandate_created'",
    )
    .fetch_one(&admin)
    .await
    .expect("journal");
    assert_eq!(journaled, (CREATIONS as i64, CREATIONS as i64));
    let tenancy =
        test_support::tenancy(sqlx::PgPool::connect(&app.db.app_url).await.expect("pool")).await;
    let territory = tenancy
        .unguarded(DepartementCode::parse("33").expect("33"))
        .await
        .expect("33");
    journal::seal_all(&territory).await.expect("chaînage");
    let mut tx = territory.begin().await.expect("tx");
    let verified = journal::verify(&mut tx, None, &journal::Anchor::default())
        .await
        .expect("vérification");
    tx.commit().await.expect("commit");
    assert!(verified.intact(), "{verified:?}");
    assert!(verified.checked >= CREATIONS as u64);
    println!(
        "stockés : {CREATIONS} mandats, {} entrées « mandat créé », chaîne de {} entrées vérifiée",
        journaled.0, verified.checked
    );
}
