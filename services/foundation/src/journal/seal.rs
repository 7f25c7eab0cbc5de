//! Chaining: the sealer gives committed entries their place in the chain (`seq`, `prev_hash`,
//! `hash`) through the schema's sealing function, shortly after the acts that wrote them.

use super::*;

/// Territories this process wrote entries to, with the time of the last write: its sealer
/// chains them shortly after (no database notification, whose global queue would serialise
/// every committing act). Entries another replica wrote and did not chain (it stopped) are
/// found by the periodic sweep of every territory.
static DIRTY: std::sync::LazyLock<(
    tokio::sync::Notify,
    std::sync::Mutex<
        std::collections::HashMap<crate::tenancy::DepartementCode, std::time::Instant>,
    >,
)> = std::sync::LazyLock::new(Default::default);

pub(super) fn mark_dirty(departement: crate::tenancy::DepartementCode) {
    DIRTY
        .1
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(departement, std::time::Instant::now());
    DIRTY.0.notify_one();
}
/// Most entries chained in one sealing transaction.
pub const SEAL_BATCH: i32 = 5_000;

/// Chains the committed entries not yet chained, in arrival order, up to [`SEAL_BATCH`] per
/// call, through the schema's sealing function; returns how many were chained. One sealer at a
/// time per territory (the function takes an advisory lock).
pub async fn seal(tx: &mut TenantTx) -> Result<u64, sqlx::Error> {
    let conn: &mut PgConnection = tx;
    let sealed: i32 = sqlx::query_scalar("SELECT journal_seal($1)")
        .bind(SEAL_BATCH)
        .fetch_one(&mut *conn)
        .await?;
    Ok(sealed.max(0) as u64)
}

/// Seals a territory until nothing is left to chain.
pub async fn seal_all(tenant: &crate::tenancy::Territory) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let mut tx = tenant.begin().await?;
        let n = seal(&mut tx).await?;
        tx.commit().await?;
        total += n;
        if n < SEAL_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Seals a territory until nothing is left to chain, from the platform pool (no connection of
/// the territory's own: the sweep visits every territory).
pub async fn seal_from_platform(
    tenancy: &crate::tenancy::Tenancy,
    departement: crate::tenancy::DepartementCode,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let n = tenancy.seal_journal(departement, SEAL_BATCH).await?;
        total += n;
        if n < SEAL_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// How long after its last write a territory is sealed again (an act's transaction usually
/// commits within it; a slower one is caught by the next write or by the sweep).
const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

/// Background worker: chains the territories this process wrote to, within moments of their
/// acts committing, and sweeps every served territory every 30 seconds (entries of a replica
/// that stopped before chaining them). A territory whose sealing failed (bounded to 10 s:
/// `Tenancy::seal_journal`) is left out until its retry, 5 s after a first failure, twice as
/// long after each next one, 5 minutes at most: it delays the others by one bounded wait per
/// retry (test `a_territory_that_cannot_be_sealed_holds_back_no_other`).
pub async fn sealer(platform: crate::app::Platform, mut shutdown: crate::app::Shutdown) {
    let failing = crate::tenancy::failing::Failing::new(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(300),
    );
    let mut sweep = tokio::time::interval(std::time::Duration::from_secs(30));
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let everything = tokio::select! {
            _ = shutdown.requested() => return,
            _ = sweep.tick() => true,
            _ = DIRTY.0.notified() => false,
            _ = tick.tick() => false,
        };
        let started = std::time::Instant::now();
        let schemas: Vec<crate::tenancy::DepartementCode> = if everything {
            platform.tenancy.served()
        } else {
            DIRTY
                .1
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .copied()
                .collect()
        };
        for departement in schemas {
            if failing.set_aside(departement) {
                continue;
            }
            match seal_from_platform(&platform.tenancy, departement).await {
                Ok(_) => {
                    failing.succeeded(departement);
                    // Settled: no write since well before this run began.
                    let mut dirty = DIRTY.1.lock().unwrap_or_else(|e| e.into_inner());
                    if dirty
                        .get(&departement)
                        .is_some_and(|last| started.duration_since(*last) > SETTLE)
                    {
                        dirty.remove(&departement);
                    }
                }
                Err(e) => {
                    let retry_in = failing.failed(departement);
                    tracing::error!(
                        error = %e,
                        departement = departement.as_str(),
                        retry_in_s = retry_in.as_secs(),
                        "journal sealing failed"
                    )
                }
            }
        }
        // Let acts accumulate a little: fewer, larger sealing transactions under load.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
