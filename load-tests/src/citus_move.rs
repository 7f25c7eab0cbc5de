//! Benchmark on the Citus cluster (`infra/run bench-citus`): territory 33 moved from one worker
//! to the other, back and forth, while 16 simulated desks run complete identity-provider flows
//! against it over HTTP (authorize, démarches, choice, token, userinfo). For each move: its
//! duration, the flows completed during it, their rate against the rate measured just before
//! (same run), the slowest request, and the failed flows. At the end: one `mandate_used`
//! journal entry per completed flow, none twice, and the chain verifies.
//! Targets (../shared/spec/targets.md): 0 failed flows, 0 lost or duplicated journal entries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use foundation::tenancy::DepartementCode;
use foundation::tenancy::citus::{self, TransferMode};
use load_tests::ms;
use load_tests::oidc::{Worker, flow};
use test_support::database::TestDatabase;

const WORKERS: usize = 16;
const MOVES: usize = 4;
const BEFORE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Counters {
    done: AtomicU64,
    failed: AtomicU64,
    slowest_us: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    anyhow::ensure!(
        test_support::database::CitusNodes::from_env().is_some(),
        "ce banc tourne sur le cluster Citus : lancez-le avec « infra/run bench-citus »"
    );
    let db = TestDatabase::with_departements(&["33"]).await;
    let mut settings = test_support::test_settings(&db.app_url);
    settings.database.max_connections = 40;
    let (ctx, structure) =
        load_tests::bench_structure(&db, "France Services de banc d'essai").await?;
    let (workers, secret) = load_tests::oidc::desks(&db, &ctx, structure, WORKERS, 200).await?;
    let base = load_tests::spawn_platform(settings).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(WORKERS)
        .build()?;

    // The desks run until the end; a failed flow is counted and the desk goes on.
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers = Arc::new(workers);
    let mut desks = Vec::new();
    for i in 0..WORKERS {
        let (http, base, secret, workers, counters, stop) = (
            http.clone(),
            base.clone(),
            secret.clone(),
            workers.clone(),
            counters.clone(),
            stop.clone(),
        );
        desks.push(tokio::spawn(async move {
            let w: &Worker = &workers[i];
            let mut csrf = None;
            let mut n = (i as u64) << 32;
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match flow(&http, &base, &secret, w, n, &mut csrf).await {
                    Ok(times) => {
                        counters.done.fetch_add(1, Ordering::Relaxed);
                        let slowest = times.iter().max().copied().unwrap_or_default();
                        counters
                            .slowest_us
                            .fetch_max(slowest.as_micros() as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        errors.push(e.to_string());
                        csrf = None;
                    }
                }
                n += 1;
            }
            errors
        }));
    }

    println!(
        "Citus : territoire 33 déplacé {MOVES} fois d'un nœud à l'autre pendant des parcours du fournisseur d'identité ({WORKERS} simultanés)"
    );
    println!(
        "{:<10} {:>9} {:>13} {:>13} {:>9} {:>16} {:>8}",
        "déplac.", "durée", "avant (/s)", "pendant (/s)", "rapport", "requête max (ms)", "échecs"
    );
    let code = DepartementCode::parse("33")?;
    for _ in 0..MOVES {
        // The rate just before, then the move.
        let (d0, t0) = (counters.done.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(BEFORE).await;
        let before =
            (counters.done.load(Ordering::Relaxed) - d0) as f64 / t0.elapsed().as_secs_f64();
        let placement = citus::placements(&db.admin)
            .await?
            .into_iter()
            .find(|p| p.departement == code)
            .ok_or_else(|| anyhow::anyhow!("33 n'est pas distribué"))?;
        let target = citus::nodes(&db.admin)
            .await?
            .into_iter()
            .find(|n| !n.coordinator && n.id != placement.node.id)
            .ok_or_else(|| anyhow::anyhow!("pas d'autre nœud"))?;
        counters.slowest_us.store(0, Ordering::Relaxed);
        let failed0 = counters.failed.load(Ordering::Relaxed);
        let (d1, t1) = (counters.done.load(Ordering::Relaxed), Instant::now());
        citus::move_schema(&db.admin, code, &target, TransferMode::Online).await?;
        let took = t1.elapsed();
        let during = (counters.done.load(Ordering::Relaxed) - d1) as f64 / took.as_secs_f64();
        println!(
            "{:<10} {:>7.2} s {:>13.0} {:>13.0} {:>8.0} % {:>16.1} {:>8}",
            format!("{} → {}", placement.node.id, target.id),
            took.as_secs_f64(),
            before,
            during,
            during / before * 100.0,
            ms(Duration::from_micros(
                counters.slowest_us.load(Ordering::Relaxed)
            )),
            counters.failed.load(Ordering::Relaxed) - failed0
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for d in desks {
        errors.extend(d.await?);
    }
    let flows = counters.done.load(Ordering::Relaxed) as i64;
    let (uses, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT details) FROM dep_33.journal WHERE kind = 'mandate_used'",
    )
    .fetch_one(&db.admin)
    .await?;
    let tenancy =
        foundation::tenancy::Tenancy::load(db.admin.clone(), TestDatabase::tenant_login()).await?;
    foundation::journal::seal_from_platform(&tenancy, code).await?;
    let mut tx = tenancy.unguarded(code).await?.begin().await?;
    let v =
        foundation::journal::verify(&mut tx, None, &foundation::journal::Anchor::default()).await?;
    tx.commit().await?;
    println!(
        "parcours aboutis {flows}, en échec {} ; entrées « mandat utilisé » {uses} ({distinct} distinctes) ; chaîne : {} entrées vérifiées, {}",
        errors.len(),
        v.checked,
        if v.first_broken.is_none() && v.problem.is_none() {
            "intacte".to_owned()
        } else {
            format!("ROMPUE ({:?}, {:?})", v.first_broken, v.problem)
        }
    );
    for e in errors.iter().take(5) {
        println!("  échec : {e}");
    }
    anyhow::ensure!(
        errors.is_empty() && uses == flows && distinct == flows && v.first_broken.is_none(),
        "cible manquée : 0 parcours en échec, une entrée par parcours, chaîne intacte"
    );
    Ok(())
}
