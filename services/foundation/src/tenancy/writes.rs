//! Where a territory's writes run: a transaction ([`TenantTx`]) or one statement that is its
//! own transaction ([`TenantStatement`], `Territory::single_statement`).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::PgConnection;

use super::{DepartementCode, TenantConn, TenantTx};

/// Where a territory's writes run: a transaction ([`TenantTx`]) or one statement that is its
/// own transaction ([`TenantStatement`]). The journal's and the outbox's writers take either.
pub trait TenantWrites: DerefMut<Target = PgConnection> + Send {
    fn departement(&self) -> DepartementCode;
    /// Asks for the territory's outbox consumer to be woken once these writes are committed
    /// (nothing if they are not).
    fn wake_outbox_once_committed(&mut self);
}

impl TenantWrites for TenantTx {
    fn departement(&self) -> DepartementCode {
        self.departement
    }
    fn wake_outbox_once_committed(&mut self) {
        self.wake_on_commit = true;
    }
}

/// A territory's connection for one writing statement, its own transaction
/// (`Territory::single_statement`). Use it as an executor with `&mut *statement`.
pub struct TenantStatement {
    conn: TenantConn,
    departement: DepartementCode,
    outbox_wake: Arc<crate::outbox::OutboxWake>,
    /// The statement wrote a message for the consumer: wake it once done.
    wake_when_done: bool,
}

impl TenantStatement {
    pub(super) fn new(
        conn: TenantConn,
        departement: DepartementCode,
        outbox_wake: Arc<crate::outbox::OutboxWake>,
    ) -> TenantStatement {
        TenantStatement {
            conn,
            departement,
            outbox_wake,
            wake_when_done: false,
        }
    }

    /// The statement succeeded (it committed as it ended): the connection is kept for the next
    /// use and, if the statement wrote a message for the outbox consumer, the consumer is woken.
    /// Dropped without it (the statement failed or wrote nothing that counts), nobody is woken.
    pub fn done(self) {
        drop(self.conn);
        if self.wake_when_done {
            self.outbox_wake.wake(self.departement.as_str());
        }
    }
}

impl TenantWrites for TenantStatement {
    fn departement(&self) -> DepartementCode {
        self.departement
    }
    fn wake_outbox_once_committed(&mut self) {
        self.wake_when_done = true;
    }
}

impl Deref for TenantStatement {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for TenantStatement {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}
