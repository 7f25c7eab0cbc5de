//! The outbox consumer (e-mail and SMS; letters wait for their batch, see `letters`). Woken at once by `pg_notify` when a producer's transaction has committed (`outbox`), and
//! by a periodic sweep (retries after backoff, notifications missed while disconnected). Rows
//! are claimed with `FOR UPDATE SKIP LOCKED`, so several replicas, and the lanes of one drain,
//! share the work safely.

use std::time::Duration;

use futures::FutureExt;

use foundation::app::{Platform, Shutdown};
use foundation::outbox::{NOTIFY_CHANNEL, PLATFORM_SCOPE};
use foundation::tenancy::DepartementCode;
use foundation::tenancy::failing::Failing;
use uuid::Uuid;

use crate::sms::{SmsBatch, SmsGateway};
use crate::smtp::{Mailer, SendError, Session};
use crate::templates;

mod pending;
mod sql;
mod visits;
use pending::{Left, Pending};
use sql::{PLATFORM_SQL, Sql, TENANT_SQL};
use visits::Visits;

pub use foundation::outbox::MAX_ATTEMPTS;
const BATCH: i64 = 20;
const SWEEP_EVERY: Duration = Duration::from_secs(15);
/// The longest a failing territory is left out of the sweeps.
const SET_ASIDE_AT_MOST: Duration = Duration::from_secs(300);
/// How often a batch in progress looks whether the worker is asked to stop.
const STOP_CHECK: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scope {
    Platform,
    Departement(DepartementCode),
}

/// A claimed message: id, channel, recipient, template, payload, sealed payload, and the time of
/// its claim.
type Row = (
    Uuid,
    String,
    String,
    String,
    serde_json::Value,
    Option<Vec<u8>>,
    time::OffsetDateTime,
);

/// What happened to one claimed message.
pub enum Outcome {
    Sent,
    /// Known not delivered: retried later (transient) or given up (permanent).
    Failed(SendError),
}

pub struct OutboxWorker {
    platform: Platform,
    mailer: Mailer,
    sms: SmsGateway,
    /// Retries due later, so the worker wakes up for them instead of waiting for the sweep.
    retries: std::sync::Mutex<Vec<(time::OffsetDateTime, Scope)>>,
    /// A national retry was recorded: the national loop reckons its next wake-up again.
    national_retry: tokio::sync::Notify,
    /// Territories whose last drain failed, left out of the sweeps until their retry.
    failing: Failing,
    /// Outcomes and give-backs a scope could not take, written before its next claim.
    pending: Pending,
}

impl OutboxWorker {
    pub fn new(platform: Platform, mailer: Mailer, sms: SmsGateway) -> Self {
        Self {
            platform,
            mailer,
            sms,
            retries: Default::default(),
            national_retry: tokio::sync::Notify::new(),
            failing: Failing::new(SWEEP_EVERY, SET_ASIDE_AT_MOST),
            pending: Pending::default(),
        }
    }

    /// The worker with the SMTP and SMS settings of the platform.
    pub fn from_platform(platform: Platform) -> anyhow::Result<Self> {
        let mailer = Mailer::new(&platform.settings.smtp)?;
        let sms = SmsGateway::new(&platform.settings.sms)?;
        Ok(Self::new(platform, mailer, sms))
    }

    /// The scopes whose retries are due now (removed from the list), national or territorial.
    fn due_retries(&self, national: bool) -> Vec<Scope> {
        let now = time::OffsetDateTime::now_utc();
        let mut retries = self.retries.lock().unwrap_or_else(|e| e.into_inner());
        let ours = |s: &Scope| (*s == Scope::Platform) == national;
        let mut due: Vec<Scope> = retries
            .iter()
            .filter(|(at, s)| *at <= now && ours(s))
            .map(|(_, s)| *s)
            .collect();
        retries.retain(|(at, s)| *at > now || !ours(s));
        due.dedup();
        due
    }

    /// How long until the next retry of the national (`national`) or territorial outboxes (at
    /// most a sweep).
    fn retry_in(&self, national: bool) -> Duration {
        let earliest = self
            .retries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, s)| (*s == Scope::Platform) == national)
            .map(|(at, _)| *at)
            .min();
        earliest
            .map(|at| (at - time::OffsetDateTime::now_utc()).max(time::Duration::ZERO))
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or(SWEEP_EVERY)
    }

    /// The national outbox (login and enrolment links, valid minutes) and the territories' are
    /// served by two loops: a territory whose outbox cannot be read (a hung node, a lock held by
    /// a migration) holds the territories' loop only (test
    /// `login_links_leave_while_a_territory_outbox_is_stuck`). The territories' lanes still send
    /// the national messages due before each of their batches. One `LISTEN` connection passes
    /// each loop its wake-ups.
    pub async fn run(self, shutdown: Shutdown) {
        let (national_tx, national_rx) = tokio::sync::mpsc::unbounded_channel();
        let (territories_tx, territories_rx) = tokio::sync::mpsc::unbounded_channel();
        let loops = async {
            tokio::join!(
                self.national_loop(shutdown.clone(), national_rx),
                self.visit_territories(shutdown, territories_rx)
            )
        };
        tokio::select! {
            _ = self.listen(national_tx, territories_tx) => {}
            _ = loops => {}
        }
        // A last try for what the territories could not take, if they answer again (bounded:
        // the workers are given 5 s in all at shutdown).
        let last_try = async {
            for scope in self.pending.scopes() {
                let _ = self.write_pending(scope).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), last_try).await;
        let owed = self.pending.messages();
        if !owed.is_empty() {
            tracing::warn!(
                messages = ?owed,
                "outbox: outcomes or give-backs never written, their messages left claimed, for the operators"
            );
        }
    }

    /// Reads the notifications and passes each to its loop, in a future of its own so that
    /// reading is never cut short (a reconnection included); ends when the loops have gone.
    async fn listen(
        &self,
        national: tokio::sync::mpsc::UnboundedSender<()>,
        territories: tokio::sync::mpsc::UnboundedSender<DepartementCode>,
    ) {
        let mut listener = match self.platform.listen(NOTIFY_CHANNEL).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "outbox: LISTEN failed, periodic sweep only");
                return std::future::pending().await;
            }
        };
        loop {
            // On an error the next `recv` connects again (what was notified meanwhile is lost:
            // the sweeps find it).
            let passed = match listener.recv().await {
                Ok(n) if n.payload() == PLATFORM_SCOPE => national.send(()).is_ok(),
                Ok(n) => match DepartementCode::parse(n.payload()) {
                    Ok(d) => territories.send(d).is_ok(),
                    Err(_) => true,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "outbox: listening interrupted");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    true
                }
            };
            if !passed {
                return;
            }
        }
    }

    async fn national_loop(
        &self,
        mut shutdown: Shutdown,
        mut woken: tokio::sync::mpsc::UnboundedReceiver<()>,
    ) {
        // Its first tick is at once: the first pass.
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let retry_in = self.retry_in(true);
            let drain = tokio::select! {
                _ = shutdown.requested() => break,
                _ = sweep.tick() => true,
                _ = tokio::time::sleep(retry_in) => !self.due_retries(true).is_empty(),
                _ = self.national_retry.notified() => false,
                Some(()) = woken.recv() => {
                    // One drain for every wake-up already there.
                    while woken.try_recv().is_ok() {}
                    true
                }
            };
            if drain {
                self.drain(Scope::Platform, &|| shutdown.is_requested())
                    .await;
            }
        }
    }

    /// The territories' outboxes, one at a time, from two queues ([`Visits`]): the territories
    /// woken (a producer committed a message) first, then those the sweep and retries bring
    /// (one of them after every few woken ones, so that they are never starved); the queues are
    /// read again after each territory. A territory that cannot answer costs the loop its
    /// bounded claim (3 s) per visit, and a woken territory never waits for a sweep's whole
    /// round of such territories. A territory whose drain failed is left out of the sweeps
    /// until its retry (15 s, doubling up to 5 minutes); its own wake-up, proof that its outbox
    /// can be written again, is served as any other (test
    /// `a_stuck_territory_holds_back_no_other_territory`).
    async fn visit_territories(
        &self,
        mut shutdown: Shutdown,
        mut woken: tokio::sync::mpsc::UnboundedReceiver<DepartementCode>,
    ) {
        let mut visits = Visits::default();
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Wait for an event only when nothing is queued; then take every event already there.
            if visits.is_empty() {
                let retry_in = self.retry_in(false);
                tokio::select! {
                    _ = shutdown.requested() => return,
                    _ = sweep.tick() => self.sweep_into(&mut visits),
                    // Taken below.
                    _ = tokio::time::sleep(retry_in) => {}
                    Some(d) = woken.recv() => visits.wake(d),
                }
            }
            while let Ok(d) = woken.try_recv() {
                visits.wake(d);
            }
            if sweep.tick().now_or_never().is_some() {
                self.sweep_into(&mut visits);
            }
            for scope in self.due_retries(false) {
                match scope {
                    // A failing territory's: with the swept ones.
                    Scope::Departement(d) if self.failing.is_failing(d) => visits.sweep(d),
                    // A message's (a relay's transient failure).
                    Scope::Departement(d) => visits.wake(d),
                    Scope::Platform => {}
                }
            }
            if shutdown.is_requested() {
                return;
            }
            if let Some(d) = visits.next() {
                let (_, error) = self
                    .drain(Scope::Departement(d), &|| shutdown.is_requested())
                    .await;
                self.visited(d, error.is_none());
            }
        }
    }

    /// Queues every served territory but those left out.
    fn sweep_into(&self, visits: &mut Visits) {
        for d in self.platform.tenancy.served() {
            if !self.failing.set_aside(d) {
                visits.sweep(d);
            }
        }
    }

    /// After a territory's drain: a failure leaves it out of the sweeps until a retry, 15 s
    /// after a first failure, twice as long after each next one, 5 minutes at most.
    fn visited(&self, departement: DepartementCode, ok: bool) {
        if ok {
            self.failing.succeeded(departement);
            return;
        }
        let until = time::OffsetDateTime::now_utc() + self.failing.failed(departement);
        let scope = Scope::Departement(departement);
        let mut retries = self.retries.lock().unwrap_or_else(|e| e.into_inner());
        // One retry per territory: an earlier one (a message's, a previous failure's) would
        // only find it failing again.
        retries.retain(|(_, s)| *s != scope);
        retries.push((until, scope));
    }

    /// Delivers batches until nothing is due in this scope, on up to `smtp.sessions` SMTP
    /// sessions at once: one lane to start with, and another each time a lane claims a full
    /// batch (a backlog), each lane keeping its session from one batch to the next. The claim
    /// skips the rows other lanes hold (`SKIP LOCKED`), as it does for other replicas; the
    /// messages of one backlog may then leave in a different order, which SMTP relays never
    /// guaranteed either. Before each of a territory's batches a lane sends the platform's
    /// due messages (login and enrolment links, valid minutes): they never wait behind a
    /// territory's backlog.
    ///
    /// Returns how many messages were claimed, and the first error met (a lane meeting one
    /// stops; the others go on).
    async fn drain(
        &self,
        scope: Scope,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> (usize, Option<sqlx::Error>) {
        if stop() {
            return (0, None);
        }
        let lanes = self.platform.settings.smtp.sessions.max(1) as usize;
        let mut running = futures::stream::FuturesUnordered::new();
        running.push(self.lane_batch(scope, self.mailer.session(), stop));
        let (mut total, mut first_error) = (0, None);
        while let Some((session, claimed)) = futures::StreamExt::next(&mut running).await {
            match claimed {
                Ok((platform, ours)) if platform + ours > 0 && !stop() => {
                    total += platform + ours;
                    running.push(self.lane_batch(scope, session, stop));
                    if ours == BATCH as usize && running.len() < lanes {
                        running.push(self.lane_batch(scope, self.mailer.session(), stop));
                    }
                }
                Ok((platform, ours)) => {
                    total += platform + ours;
                    session.close().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox: batch not processed");
                    first_error.get_or_insert(e);
                    session.close().await;
                }
            }
        }
        (total, first_error)
    }

    /// One step of a lane: for a territory, the platform's due messages first, then a batch of
    /// the scope, on the lane's session, given back with how many messages of the platform's
    /// and of the scope's were claimed.
    async fn lane_batch<'a>(
        &'a self,
        scope: Scope,
        mut session: Session<'a>,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> (Session<'a>, Result<(usize, usize), sqlx::Error>) {
        let mut platform = 0;
        if scope != Scope::Platform {
            match self.batch_on(Scope::Platform, &mut session, stop).await {
                Ok(n) => platform = n,
                Err(e) => tracing::warn!(error = %e, "outbox: batch not processed"),
            }
        }
        let claimed = self.batch_on(scope, &mut session, stop).await;
        (session, claimed.map(|ours| (platform, ours)))
    }

    /// Step 1: claims up to a batch of due messages (committed before anything is sent).
    async fn claim(&self, scope: Scope) -> Result<Vec<Row>, sqlx::Error> {
        match scope {
            // One statement, its own transaction: one exchange instead of three (BEGIN, the
            // statement, COMMIT), its commit as durable.
            Scope::Platform => {
                sqlx::query_as(PLATFORM_SQL.claim)
                    .bind(MAX_ATTEMPTS)
                    .bind(BATCH)
                    .fetch_all(self.platform.platform_pool())
                    .await
            }
            Scope::Departement(departement) => {
                // A territory not served (not provisioned, failed migration) has nothing to send.
                let Ok(tenant) = territory(&self.platform, departement).await else {
                    return Ok(Vec::new());
                };
                // Bounded: a territory that cannot answer (a lock held, a hung node) fails its
                // claim within seconds, its rows untouched, instead of holding the loop.
                let mut tx = tenant.begin_bounded().await?;
                let rows = sqlx::query_as(TENANT_SQL.claim)
                    .bind(MAX_ATTEMPTS)
                    .bind(BATCH)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(rows)
            }
        }
    }

    /// A transaction of `departement`'s for one write after the claim (an outcome, a batch
    /// given back), bounded as the claim: a territory that stops answering between the two
    /// fails the write within seconds instead of holding the loop (the write is then kept in
    /// [`Pending`]).
    async fn bounded_in(
        &self,
        departement: DepartementCode,
    ) -> Result<foundation::tenancy::TenantTx, sqlx::Error> {
        let tenant = territory(&self.platform, departement)
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        tenant.begin_bounded().await
    }

    /// Step 2: sends one message. The outbox id is the Message-ID.
    async fn send(&self, row: &Row, session: &mut Session<'_>, sms: &mut SmsBatch<'_>) -> Outcome {
        let (id, channel, recipient, template, payload, sealed, _) = row;
        // Sealed parameters are opened only here, in memory, for this one delivery.
        let opened;
        let payload = match sealed {
            Some(sealed) => {
                match foundation::outbox::open_sealed(&self.platform.cipher, *id, sealed) {
                    Some(value) => {
                        opened = value;
                        &opened
                    }
                    None => {
                        return Outcome::Failed(SendError::Permanent(
                            "paramètres scellés illisibles avec la clé en service".into(),
                        ));
                    }
                }
            }
            None => payload,
        };
        let result = match channel.as_str() {
            "email" => match templates::render(template, payload) {
                Ok(message) => session.send(*id, recipient, &message).await,
                Err(e) => Err(SendError::Permanent(e.to_string())),
            },
            "sms" => match templates::render_sms(template, payload) {
                Ok(text) => sms.send(*id, recipient, &text).await,
                Err(e) => Err(SendError::Permanent(e.to_string())),
            },
            other => Err(SendError::Permanent(format!(
                "canal « {other} » pas encore disponible"
            ))),
        };
        match result {
            Ok(()) => Outcome::Sent,
            Err(e) => Outcome::Failed(e),
        }
    }

    /// Step 3: records the outcome of the message `id` claimed at `claimed_at` (nothing is
    /// written if the row was claimed again since: re-queued by an operator, say, while this
    /// outcome was kept for later).
    async fn record(
        &self,
        scope: Scope,
        id: Uuid,
        claimed_at: time::OffsetDateTime,
        outcome: &Outcome,
    ) -> Result<(), sqlx::Error> {
        let base = self.platform.settings.smtp.retry_base_ms as f64 / 1000.0;
        let retry_at = match scope {
            Scope::Platform => {
                let mut conn = self.platform.platform_pool().acquire().await?;
                record_on(&mut conn, &PLATFORM_SQL, (id, claimed_at), outcome, base).await?
            }
            Scope::Departement(departement) => {
                let mut tx = self.bounded_in(departement).await?;
                let retry_at =
                    record_on(&mut tx, &TENANT_SQL, (id, claimed_at), outcome, base).await?;
                tx.commit().await?;
                retry_at
            }
        };
        if let (Some(at), Outcome::Failed(SendError::Transient(_))) = (retry_at, outcome) {
            self.retries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((at, scope));
            // Recorded by a territory's lane (which sends the national messages due first): the
            // national loop, asleep until its earlier retry, is told to look again.
            if scope == Scope::Platform {
                self.national_retry.notify_one();
            }
        }
        Ok(())
    }

    /// Claims a batch and sends it on `session` (a batch's e-mails share a session: MailDev
    /// takes 100 ms to greet a new one), recording each outcome. When the worker is asked to
    /// stop, the batch's messages not tried yet are given back to the queue at once, while the
    /// message in hand goes on to its outcome; when an outcome cannot be recorded, the next ones
    /// are given back too. Left claimed, they would wait for an operator as if their fate were
    /// unknown (test `a_replica_stopped_mid_batch_gives_back_the_messages_it_has_not_tried`).
    /// An outcome or a give-back the scope cannot take is kept and written before its next claim
    /// (test `an_outcome_the_territory_cannot_take_is_recorded_once_it_answers`).
    async fn batch_on(
        &self,
        scope: Scope,
        session: &mut Session<'_>,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<usize, sqlx::Error> {
        if stop() {
            return Ok(0);
        }
        self.write_pending(scope).await?;
        let rows = self.claim(scope).await?;
        session.next_batch();
        let mut sms = self.sms.batch();
        for (i, row) in rows.iter().enumerate() {
            if stop() {
                self.give_back(scope, &rows[i..]).await;
                break;
            }
            let sending = async {
                let outcome = self.send(row, session, &mut sms).await;
                let recorded = self.record(scope, row.0, row.6, &outcome).await;
                if let Err(e) = &recorded {
                    tracing::warn!(error = %e, message_id = %row.0, "outbox: outcome kept, to be recorded later");
                    self.pending
                        .keep(scope, Left::Outcome(row.0, row.6, outcome));
                }
                recorded
            };
            let watching = async {
                while !stop() {
                    tokio::time::sleep(STOP_CHECK).await;
                }
                self.give_back(scope, &rows[i + 1..]).await;
            };
            tokio::pin!(sending, watching);
            let (recorded, stopping) = tokio::select! {
                recorded = &mut sending => (recorded, false),
                _ = &mut watching => (sending.await, true),
            };
            if let Err(e) = recorded {
                if !stopping {
                    self.give_back(scope, &rows[i + 1..]).await;
                }
                return Err(e);
            }
            if stopping {
                break;
            }
        }
        Ok(rows.len())
    }

    /// Gives claimed messages that were not tried back to the queue, as they were; those the
    /// scope cannot take back now are kept, to be given back before its next claim (or, if the
    /// worker stops first, left claimed for the operators).
    async fn give_back(&self, scope: Scope, rows: &[Row]) {
        if rows.is_empty() {
            return;
        }
        let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
        let claimed_at = rows[0].6;
        if let Err(e) = self.give_back_ids(scope, &ids, claimed_at).await {
            tracing::warn!(
                error = %e,
                count = ids.len(),
                "outbox: untried messages kept claimed, to be given back later"
            );
            self.pending.keep(scope, Left::Untried(ids, claimed_at));
        }
    }

    async fn give_back_ids(
        &self,
        scope: Scope,
        ids: &[Uuid],
        claimed_at: time::OffsetDateTime,
    ) -> Result<(), sqlx::Error> {
        match scope {
            Scope::Platform => {
                sqlx::query(PLATFORM_SQL.give_back)
                    .bind(ids)
                    .bind(claimed_at)
                    .execute(self.platform.platform_pool())
                    .await?;
            }
            Scope::Departement(departement) => {
                let mut tx = self.bounded_in(departement).await?;
                sqlx::query(TENANT_SQL.give_back)
                    .bind(ids)
                    .bind(claimed_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
        }
        tracing::info!(count = ids.len(), "outbox: untried messages given back");
        // Another replica's consumer takes them at once, not at its sweep (awaited: this one may
        // be stopping).
        let payload = match scope {
            Scope::Platform => PLATFORM_SCOPE,
            Scope::Departement(d) => d.as_str(),
        };
        let _ = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(payload)
            .execute(self.platform.platform_pool())
            .await;
        Ok(())
    }

    /// Writes what `scope` could not take before (outcomes, give-backs), in order, before its
    /// next claim; on a failure the rest is kept for the next time and the batch does not start.
    async fn write_pending(&self, scope: Scope) -> Result<(), sqlx::Error> {
        let mut owed = self.pending.take(scope).into_iter();
        while let Some(left) = owed.next() {
            let written = match &left {
                Left::Outcome(id, claimed_at, outcome) => {
                    self.record(scope, *id, *claimed_at, outcome).await
                }
                Left::Untried(ids, claimed_at) => self.give_back_ids(scope, ids, *claimed_at).await,
            };
            match written {
                Ok(()) => {
                    if let Left::Outcome(id, _, _) = left {
                        tracing::info!(message_id = %id, "outbox: outcome recorded late");
                    }
                }
                Err(e) => {
                    self.pending
                        .put_back(scope, std::iter::once(left).chain(owed));
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Claims and sends the platform's due messages without recording the outcome: what a
    /// worker that dies between sending and recording leaves behind. For the crash test only.
    #[doc(hidden)]
    pub async fn send_without_recording(&self) -> Result<usize, sqlx::Error> {
        let rows = self.claim(Scope::Platform).await?;
        let mut session = self.mailer.session();
        let mut sms = self.sms.batch();
        for row in &rows {
            self.send(row, &mut session, &mut sms).await;
        }
        session.close().await;
        Ok(rows.len())
    }

    /// One full pass over the national and territorial outboxes, each drained as the running
    /// worker drains it (tests, tools, `bench-outbox`); how many messages were claimed.
    pub async fn deliver_due(&self) -> Result<usize, sqlx::Error> {
        let scopes = std::iter::once(Scope::Platform).chain(
            self.platform
                .tenancy
                .served()
                .into_iter()
                .map(Scope::Departement),
        );
        let mut total = 0;
        for scope in scopes {
            let (claimed, error) = self.drain(scope, &|| false).await;
            total += claimed;
            if let Some(e) = error {
                return Err(e);
            }
        }
        Ok(total)
    }
}

/// Writes the outcome of one message (its id and claim time) with the scope's SQL, only if the
/// row is still under that claim and, for a delivery, not recorded yet (a write made again after
/// a commit whose answer was lost changes nothing); returns when a transient failure will be
/// retried.
async fn record_on(
    conn: &mut sqlx::PgConnection,
    sql: &Sql,
    (id, claimed_at): (Uuid, time::OffsetDateTime),
    outcome: &Outcome,
    retry_base_seconds: f64,
) -> Result<Option<time::OffsetDateTime>, sqlx::Error> {
    match outcome {
        Outcome::Sent => {
            sqlx::query(sql.sent)
                .bind(id)
                .bind(claimed_at)
                .execute(&mut *conn)
                .await?;
            Ok(None)
        }
        Outcome::Failed(e @ SendError::Uncertain(_)) => {
            tracing::warn!(message_id = %id, "outbox: send uncertain, left to operators");
            sqlx::query(sql.uncertain)
                .bind(id)
                .bind(e.to_string())
                .bind(claimed_at)
                .execute(&mut *conn)
                .await?;
            Ok(None)
        }
        Outcome::Failed(e) => {
            let permanent = matches!(e, SendError::Permanent(_));
            tracing::warn!(message_id = %id, permanent, "outbox: send failed");
            sqlx::query_scalar(sql.failed)
                .bind(id)
                .bind(e.to_string())
                .bind(permanent)
                .bind(MAX_ATTEMPTS)
                .bind(retry_base_seconds)
                .bind(claimed_at)
                .fetch_optional(&mut *conn)
                .await
        }
    }
}

/// A territory's outbox, reached by the consumer (a worker, outside any request: no guard).
async fn territory(
    platform: &Platform,
    departement: DepartementCode,
) -> Result<foundation::tenancy::Territory, foundation::tenancy::TenancyError> {
    platform.tenancy.unguarded(departement).await
}

/// Delivered messages are kept 30 days (to answer "did you send it?"), then deleted; messages
/// never delivered stay, as dead letters, for the operators.
pub fn purge_delivered_messages() -> foundation::jobs::Job {
    foundation::jobs::Job::new(
        "purge_delivered_messages",
        Duration::from_secs(3600),
        |platform: Platform| async move {
            let purged = sqlx::query(
                "DELETE FROM platform.outbox WHERE sent_at < now() - interval '30 days'",
            )
            .execute(platform.platform_pool())
            .await?
            .rows_affected();
            let platform = &platform;
            let territories =
                foundation::jobs::each_territory(platform, |departement| async move {
                    let ctx = territory(platform, departement).await?;
                    let mut tx = ctx.begin().await?;
                    let purged = sqlx::query(
                        "DELETE FROM outbox WHERE sent_at < now() - interval '30 days'",
                    )
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    tx.commit().await?;
                    Ok(purged)
                })
                .await?;
            Ok(purged + territories)
        },
    )
}
