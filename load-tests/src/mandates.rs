//! Benchmark of the mandate service on the all-in-one application (release build, real
//! PostgreSQL and SeaweedFS of the local stack; `infra/run bench`):
//!
//! - the mandate list of a structure holding 100,000 mandates: first page, with a name search,
//!   over HTTP with a real session (target p99 ≤ 30 ms);
//! - mandate creation by recap submission, FranceConnect already done (target ≥ 300/s): each
//!   creation checks the aidant's TOTP code, writes the usager, mandate, authorisations and
//!   journal, builds the attestation PDF and stores it encrypted in the object store; with
//!   the CPU each creation took, read from `/proc` over the run (PostgreSQL, this process, the
//!   object store, the rest) and the ceilings it implies;
//! - journal appends from concurrent writers in one territory (target ≥ 2,000 entries/s);
//! - journal verification of 1,000,000 entries: in memory on one core (target ≥ 5,000,000
//!   entries/s) and end to end, read from the database (target ≥ 1,000,000 entries/s).
//!
//! Every figure is printed with its target and the ratio; the database's own rate for the same
//! single-row transactions is measured in the same run, as a yardstick.

use std::time::{Duration, Instant};

use foundation::auth::{secrets, session, totp};
use foundation::ids::{MandateId, ProfessionalId, StructureId, UsagerId};
use foundation::journal::{self, ChainCheck, Entry, Event, NewEntry};
use foundation::tenancy::{DepartementCode, Tenancy, Territory};
use futures::StreamExt;
use load_tests::{ms, percentile, timed_gets};
use serde_json::json;
use sha2::{Digest, Sha256};
use test_support::database::TestDatabase;
use time::OffsetDateTime;
use uuid::Uuid;

const MANDATES: i64 = 100_000;

async fn open_session(admin: &sqlx::PgPool, who: ProfessionalId) -> anyhow::Result<String> {
    let mut conn = admin.acquire().await?;
    let cookie = session::open(&mut conn, who, OffsetDateTime::now_utc(), false).await?;
    Ok(cookie.value_str().to_owned())
}

/// 100,000 usagers and mandates (two categories each) for one structure, written directly.
async fn fill(
    admin: &sqlx::PgPool,
    structure: StructureId,
    aidant: ProfessionalId,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO dep_33.usagers (id, fc_sub, given_name, family_name, birthdate, gender, birthplace, birthcountry, search_name)
         SELECT gen_random_uuid(), 'bench-' || i, g, f, '1970-01-01', 'female', '33063', '99100', lower(f || ' ' || g)
         FROM (SELECT i,
                      (ARRAY['Marie','Jean','Nadia','Pierre','Fatou','Louis','Sarah','Ahmed','Julie','Marc',
                             'Emma','Paul','Léa','Hugo','Inès','Noah','Chloé','Adam','Zoé','Yanis'])[1 + i % 20] AS g,
                      (ARRAY['MARTIN','BERNARD','THOMAS','PETIT','ROBERT','RICHARD','DURAND','DUBOIS','MOREAU','LAURENT',
                             'SIMON','MICHEL','LEFEBVRE','LEROY','ROUX','DAVID','BERTRAND','MOREL','FOURNIER','GIRARD',
                             'BONNET','DUPONT','LAMBERT','FONTAINE','ROUSSEAU','VINCENT','MULLER','LEFEVRE','FAURE','ANDRE',
                             'MERCIER','BLANC','GUERIN','BOYER','GARNIER','CHEVALIER','FRANCOIS','LEGRAND','GAUTHIER','GARCIA',
                             'PERRIN','ROBIN','CLEMENT','MORIN','NICOLAS','HENRY','ROUSSEL','MATHIEU','GAUTIER','MASSON'])[1 + (i / 20) % 50]
                      || CASE WHEN i % 3 = 0 THEN '' ELSE '-' || (i % 997)::text END AS f
               FROM generate_series(1, $1::int) AS i) s",
    )
    .bind(MANDATES)
    .execute(admin)
    .await?;
    sqlx::query(
        "INSERT INTO dep_33.mandates (id, structure_id, usager_id, created_by, created_at, duration_days, expires_at, legal_text_version)
         SELECT gen_random_uuid(), $1, u.id, $2, c, 365, c + interval '365 days', '2026-11-v1'
         FROM (SELECT id, now() - (random() * interval '400 days') AS c FROM dep_33.usagers WHERE fc_sub LIKE 'bench-%') u",
    )
    .bind(structure)
    .bind(aidant)
    .execute(admin)
    .await?;
    sqlx::query(
        "UPDATE dep_33.mandates SET ended_at = created_at + interval '10 days', ended_reason = 'revoked'
         WHERE random() < 0.05",
    )
    .execute(admin)
    .await?;
    sqlx::query(
        "INSERT INTO dep_33.authorisations (id, mandate_id, structure_id, usager_id, category, expires_at, revoked_at)
         SELECT gen_random_uuid(), m.id, m.structure_id, m.usager_id, c, m.expires_at, m.ended_at
         FROM dep_33.mandates m CROSS JOIN (VALUES ('social'), ('logement')) AS cats(c)",
    )
    .execute(admin)
    .await?;
    Ok(())
}

fn report_latency(what: &str, times: &[Duration], target_ms: f64) {
    let p99 = ms(percentile(times, 0.99));
    println!(
        "{what:<58} p50 {:>6.2} ms  p99 {:>6.2} ms  cible p99 ≤ {target_ms} ms  marge ×{:.1}",
        ms(percentile(times, 0.5)),
        p99,
        target_ms / p99
    );
}

type Job = (String, Vec<u8>, Uuid);

/// Creations run before the measured ones, at the same concurrency (see `main`).
const WARM_UP: usize = 96;

/// Server processes started since the cluster's statistics were reset (every database).
async fn database_sessions(admin: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT sum(sessions)::int8 FROM pg_stat_database")
            .fetch_one(admin)
            .await?,
    )
}

/// `count` aidants, each with a session and a prepared draft (identity already captured).
async fn prepare_creations(
    db: &TestDatabase,
    structure: StructureId,
    cipher: &secrets::SeedCipher,
    count: usize,
) -> anyhow::Result<Vec<Job>> {
    let mut jobs = Vec::with_capacity(count);
    for n in 0..count {
        let (who, _, seed) =
            load_tests::aidant_with_factor(&db.admin, cipher, structure, &format!("aidant-{n}"))
                .await?;
        let token = open_session(&db.admin, who).await?;
        let sub = format!("bench-create-{n}-{}", Uuid::new_v4().simple());
        let draft =
            test_support::drafts::identified(&db.admin, structure, who, &token, &sub, 30).await?;
        jobs.push((token, seed, draft));
    }
    Ok(jobs)
}

/// Creations by recap submission, `concurrency` at a time: each aidant submits its draft with
/// its current TOTP code.
async fn creations(
    base: &str,
    jobs: Vec<Job>,
    concurrency: usize,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let csrf = secrets::new_token();
    let started = Instant::now();
    let results = futures::stream::iter(jobs)
        .map(|(token, seed, draft)| {
            let client = client.clone();
            let csrf = csrf.clone();
            async move {
                let code =
                    totp::code_at(&seed, 30, OffsetDateTime::now_utc().unix_timestamp() as u64);
                let t = Instant::now();
                let resp = client
                    .post(format!("{base}/mandats/preparation/{draft}"))
                    .header("cookie", format!("ac_session={token}; ac_csrf={csrf}"))
                    .header("origin", base)
                    .form(&[
                        ("csrf", csrf.as_str()),
                        ("code", code.as_str()),
                        ("declaration", "oui"),
                    ])
                    .send()
                    .await?;
                let location = resp
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                anyhow::ensure!(
                    resp.status() == 303 && location.ends_with("?message=cree"),
                    "création refusée : {} {location}",
                    resp.status()
                );
                Ok::<Duration, anyhow::Error>(t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let elapsed = started.elapsed();
    let mut times: Vec<Duration> = results.into_iter().collect::<Result<_, _>>()?;
    times.sort();
    Ok((elapsed, times))
}

/// `writers` concurrent writers append `each` entries, one transaction per entry, while the
/// application's sealer chains them. Returns (append rate, rate until every entry is chained).
async fn journal_appends(
    ctx: &Territory,
    admin: &sqlx::PgPool,
    writers: usize,
    each: usize,
) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                for i in 0..each {
                    let mut tx = ctx.begin().await?;
                    journal::append(
                        &mut tx,
                        NewEntry::new(Event::MandateUsed)
                            .structure(StructureId::from_uuid(Uuid::nil()))
                            .usager(UsagerId::new_v7())
                            .details(json!({ "category": "social", "writer": w, "i": i })),
                    )
                    .await?;
                    tx.commit().await?;
                }
                Ok::<(), sqlx::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let appended = started.elapsed();
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM dep_33.journal WHERE seq IS NULL")
                .fetch_one(admin)
                .await?;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let chained = started.elapsed();
    let n = (writers * each) as f64;
    Ok((n / appended.as_secs_f64(), n / chained.as_secs_f64()))
}

/// The database's own rate for single-row insert transactions with the same concurrency (no
/// chain, no lock): what the journal's serialised appends are compared with.
async fn insert_bound(pool: &sqlx::PgPool, writers: usize, each: usize) -> anyhow::Result<f64> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS public.bench_bound (id uuid PRIMARY KEY, details text)",
    )
    .execute(pool)
    .await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..each {
                    let mut tx = pool.begin().await?;
                    sqlx::query("INSERT INTO public.bench_bound VALUES ($1, $2)")
                        .bind(Uuid::now_v7())
                        .bind("{\"category\":\"social\"}")
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                }
                Ok::<(), sqlx::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok((writers * each) as f64 / started.elapsed().as_secs_f64())
}

/// Hashes per second of `hash` over the first `n` bytes of `bytes` for each `n` of `lengths`,
/// on one core, the best of three passes.
fn hash_rate(lengths: &[usize], bytes: &[u8], hash: impl Fn(&[u8]) -> u8) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..3 {
        let started = Instant::now();
        let mut acc = 0u8;
        for &n in lengths {
            acc ^= hash(&bytes[..n]);
        }
        std::hint::black_box(acc);
        best = best.max(lengths.len() as f64 / started.elapsed().as_secs_f64());
    }
    best
}

/// A chain of `n` entries as the identity provider writes them (`mandate_used`: structure,
/// aidant, usager, mandate, démarche, client and grant), each with its own ids.
fn in_memory_chain(n: i64) -> Vec<Entry> {
    let mut prev = vec![0u8; 32];
    let at = OffsetDateTime::now_utc();
    let at = at
        .replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at);
    (1..=n)
        .map(|seq| {
            let (structure, professional) =
                (Some(StructureId::new_v7()), Some(ProfessionalId::new_v7()));
            let (usager, mandate) = (Some(UsagerId::new_v7()), Some(MandateId::new_v7()));
            let details = used_details(seq).to_string();
            let hash = journal::entry_hash(
                &prev,
                seq,
                at,
                "mandate_used",
                structure,
                professional,
                usager,
                mandate,
                &details,
            );
            let e = Entry {
                seq,
                at,
                kind: "mandate_used".into(),
                structure_id: structure,
                professional_id: professional,
                usager_id: usager,
                mandate_id: mandate,
                details,
                prev_hash: prev.clone(),
                hash: hash.to_vec(),
            };
            prev = hash.to_vec();
            e
        })
        .collect()
}

/// What the identity provider's `mandate_used` entry says (`idp::tokens`).
fn used_details(n: i64) -> serde_json::Value {
    json!({ "category": "social", "client": "caf-espace-allocataire", "grant": 1_000_000 + n })
}

/// Writes `chain` into the journal of territory 35 as the sealer would have left it, with the
/// administrator's bulk load (the chain columns' triggers are for the roles that serve the
/// territory), then vacuums it: the journal of a territory that has been running for years.
async fn load_sealed_journal(admin: &sqlx::PgPool, chain: &[Entry]) -> anyhow::Result<()> {
    use std::fmt::Write;
    let mut conn = admin.acquire().await?;
    sqlx::raw_sql("BEGIN; SET LOCAL session_replication_role = replica")
        .execute(&mut *conn)
        .await?;
    for part in chain.chunks(50_000) {
        let mut data = String::with_capacity(part.len() * 400);
        let id = |u: Option<Uuid>| u.map_or_else(|| "\\N".to_owned(), |u| u.to_string());
        for e in part {
            let at =
                e.at.format(&time::format_description::well_known::Rfc3339)?;
            writeln!(
                data,
                "{}\t{at}\t{}\t{}\t{}\t{}\t{}\t{}\t\\\\x{}\t\\\\x{}",
                e.seq,
                e.kind,
                id(e.structure_id.map(|s| s.as_uuid())),
                id(e.professional_id.map(|p| p.as_uuid())),
                id(e.usager_id.map(|u| u.as_uuid())),
                id(e.mandate_id.map(|m| m.as_uuid())),
                e.details,
                hex::encode(&e.prev_hash),
                hex::encode(&e.hash),
            )?;
        }
        let mut copy = conn
            .copy_in_raw(
                "COPY dep_35.journal (seq, at, kind, structure_id, professional_id, usager_id,
                                      mandate_id, details, prev_hash, hash) FROM STDIN",
            )
            .await?;
        copy.send(data.as_bytes()).await?;
        copy.finish().await?;
    }
    sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
    sqlx::raw_sql("VACUUM ANALYZE dep_35.journal")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = TestDatabase::with_departements(&["33", "35"]).await;
    let mut settings = test_support::test_settings(&db.app_url);
    settings.database.max_connections = 40;
    let cipher = secrets::SeedCipher::new(
        &settings.security.totp_key,
        settings.security.totp_key_version,
    )?;
    let (ctx, structure) =
        load_tests::bench_structure(&db, "France Services de banc d'essai").await?;
    // `BENCH_ONLY=journal` runs the journal part alone, `BENCH_ONLY=creation` the creations
    // alone (to attribute CPU time by process).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only == "journal" {
        // The application runs for its sealer, which chains the appended entries.
        load_tests::spawn_platform(settings).await?;
        return journal_part(&db, &ctx).await;
    }
    let (reader, _, _) =
        load_tests::aidant_with_factor(&db.admin, &cipher, structure, "lecteur").await?;
    let started = Instant::now();
    fill(&db.admin, structure, reader).await?;
    // A database in its steady state: vacuumed and analysed after the bulk load.
    sqlx::raw_sql("VACUUM ANALYZE dep_33.usagers, dep_33.mandates, dep_33.authorisations")
        .execute(&db.admin)
        .await?;
    println!(
        "préparation : {MANDATES} mandats et {} autorisations en {:.1} s",
        MANDATES * 2,
        started.elapsed().as_secs_f64()
    );
    let creators = 600;
    // Accounts exist before the application starts, so its guard knows their roles. The first
    // WARM_UP creations are not measured: they open the pools' connections (each new server
    // process loads its catalogue caches and prepares its statements), as a running platform
    // already has.
    let mut jobs = prepare_creations(&db, structure, &cipher, creators + WARM_UP).await?;
    let warm_up: Vec<Job> = jobs.drain(..WARM_UP).collect();
    let cookie = open_session(&db.admin, reader).await?;

    let platform_start = load_tests::database_clock(&db.admin).await?;
    let base = load_tests::spawn_platform(settings).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(8)
        .build()?;

    let only_creation = only == "creation";
    println!("\nListe des mandats d'une structure de {MANDATES} mandats (HTTP, session réelle)");
    for (what, query, conc) in [
        ("première page, sans recherche", "", 1),
        ("première page, recherche « dubois »", "?q=dubois", 1),
        (
            "première page, recherche « dubois marie »",
            "?q=dubois+marie",
            1,
        ),
        ("filtre « expirent dans 30 jours »", "?etat=bientot", 1),
        (
            "recherche « dubois », 4 requêtes simultanées",
            "?q=dubois",
            4,
        ),
    ] {
        if only_creation {
            break;
        }
        // Warm-up, then 400 measured requests.
        let list = ["<table", "Aucun mandat"];
        timed_gets(
            &client,
            &format!("{base}/mandats{query}"),
            Some(&cookie),
            &list,
            20,
            conc,
        )
        .await?;
        let times = timed_gets(
            &client,
            &format!("{base}/mandats{query}"),
            Some(&cookie),
            &list,
            400,
            conc,
        )
        .await?;
        report_latency(what, &times, 30.0);
    }

    // The start's jobs over (they complete the usager index from the 100,000 loaded above):
    // creations are measured in steady traffic, the sealer chaining their entries.
    let waited = load_tests::start_up_jobs_over(&db.admin, platform_start).await?;
    println!(
        "\ntâches planifiées du démarrage terminées après {:.1} s",
        waited.as_secs_f64()
    );
    creations(&base, warm_up, 16).await?;
    let sessions_before = database_sessions(&db.admin).await?;
    let cpu_before = load_tests::cpu::Reading::now(None);
    let (elapsed, times) = creations(&base, jobs, 16).await?;
    let opened = database_sessions(&db.admin).await? - sessions_before;
    let rate = creators as f64 / elapsed.as_secs_f64();
    let creation_cpu =
        load_tests::cpu::Reading::now(None).per_unit_since(&cpu_before, creators as u64);
    println!(
        "\nCréation de mandats (récapitulatif validé, FranceConnect déjà fait ; TOTP, base, journal, PDF chiffré dans le stockage objet)"
    );
    println!(
        "{:<58} {rate:>7.0} /s  p99 {:>6.1} ms  cible ≥ 300 /s  marge ×{:.2}",
        format!("{creators} créations, 16 simultanées"),
        ms(percentile(&times, 0.99)),
        rate / 300.0
    );
    // The platform runs inside this process: its CPU is counted with the load generator's.
    creation_cpu.print("CPU par création (plateforme dans le générateur)", 300.0);
    println!(
        "  connexions ouvertes au serveur pendant la mesure : {} ({WARM_UP} créations d'échauffement avant)",
        opened
    );

    if only_creation {
        return Ok(());
    }
    journal_part(&db, &ctx).await
}

/// Prints the best of `rates` (entries/s) against `target`, with every pass; returns the best.
fn best_of_passes(what: &str, rates: &[f64], target: f64) -> f64 {
    let rate = rates.iter().copied().fold(0.0, f64::max);
    let passes: Vec<String> = rates.iter().map(|r| format!("{:.2} M", r / 1e6)).collect();
    println!(
        "{what:<58} {rate:>9.0} /s  cible ≥ {} /s  marge ×{:.2}  ({} passes : {})",
        target as u64,
        rate / target,
        rates.len(),
        passes.join(", ")
    );
    rate
}

/// The journal: chained appends against the database's own rate, then verification.
async fn journal_part(db: &TestDatabase, ctx: &Territory) -> anyhow::Result<()> {
    println!("\nJournal d'un territoire");
    let bound = insert_bound(&db.admin, 8, 1_000).await?;
    for writers in [8, 16] {
        let (appended, chained) =
            journal_appends(ctx, &db.admin, writers, 16_000 / writers).await?;
        println!(
            "{:<58} {chained:>7.0} /s  cible ≥ 2 000 /s  marge ×{:.2}  (écriture seule {appended:.0} /s, {:.0} % du débit brut de la base)",
            format!("ajouts chaînés, {writers} écrivains, une transaction par entrée"),
            chained / 2_000.0,
            appended / bound * 100.0
        );
    }
    println!(
        "{:<58} {bound:>7.0} /s  (insertions d'une ligne, 8 écrivains, sans chaînage)",
        "débit brut de la base, même session"
    );

    // Verification: 1,000,000 entries as the identity provider writes them, checked in
    // memory on one core (three passes, the best kept: the machine is shared), then the same
    // entries as a territory's journal read from PostgreSQL, whole, as an auditor's check does.
    let chain = in_memory_chain(1_000_000);
    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let mut check = ChainCheck::default();
        for e in &chain {
            assert!(check.push(e));
        }
        rates.push(chain.len() as f64 / started.elapsed().as_secs_f64());
    }
    let rate = best_of_passes(
        "vérification en mémoire, 1 000 000 entrées, un cœur",
        &rates,
        5_000_000.0,
    );
    // The yardstick: SHA-256 alone over as many bytes per entry as the chain hashes (the
    // previous hash, number, time, then each field length-prefixed), same core, same run.
    let lengths: Vec<usize> = chain
        .iter()
        .map(|e| 32 + 8 + 8 + 4 + e.kind.len() + 4 * (4 + 16) + 4 + e.details.len())
        .collect();
    let bytes = vec![0x5au8; lengths.iter().copied().max().unwrap_or(0)];
    let bound = hash_rate(&lengths, &bytes, |b| Sha256::digest(b)[0]);
    println!(
        "{:<58} {bound:>9.0} /s  (la vérification en fait {:.0} %)",
        format!(
            "SHA-256 seul, {} octets par entrée en moyenne",
            lengths.iter().sum::<usize>() / lengths.len().max(1)
        ),
        rate / bound * 100.0
    );
    // The same yardstick with AWS-LC's SHA-256, to choose the journal's implementation.
    let lc = hash_rate(&lengths, &bytes, |b| {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref()[0]
    });
    println!(
        "{:<58} {lc:>9.0} /s  (×{:.2} de RustCrypto)",
        "SHA-256 seul, AWS-LC",
        lc / bound
    );
    let tenancy = Tenancy::load(db.admin.clone(), TestDatabase::tenant_login()).await?;
    let other = tenancy.unguarded(DepartementCode::parse("35")?).await?;
    load_sealed_journal(&db.admin, &chain).await?;
    drop(chain);
    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let mut tx = other.begin().await?;
        let v = journal::verify(&mut tx, None, &Default::default()).await?;
        tx.commit().await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            v.intact() && v.checked == 1_000_000,
            "journal rompu : {v:?}"
        );
        rates.push(v.checked as f64 / elapsed.as_secs_f64());
    }
    best_of_passes(
        "vérification de bout en bout, 1 000 000 entrées lues dans PostgreSQL",
        &rates,
        1_000_000.0,
    );
    // The territory whose journal the appends above wrote verifies too.
    journal::seal_all(ctx).await?;
    let mut tx = ctx.begin().await?;
    let v = journal::verify(&mut tx, None, &Default::default()).await?;
    tx.commit().await?;
    anyhow::ensure!(v.intact(), "journal rompu : {v:?}");
    Ok(())
}
