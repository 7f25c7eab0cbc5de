//! A relay on 127.0.0.1 in front of an SMTP server (a MailDev), for the tests that need the
//! server slow, or silent from a chosen moment: every connection it accepts is passed on to the
//! server, the server's answers passed back as the [`Behaviour`] says.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the relay passes the server's answers back.
#[derive(Default)]
pub struct Behaviour {
    /// Each answer passed on this late (a slow provider).
    pub answer_delay: Duration,
    /// Once a message's content has gone through to the server (`.` alone on its line), the
    /// server's next answers are held until this turns true, for ever if its sender is dropped
    /// first: the server has the message, the client does not know yet, or never will (a relay
    /// that hangs mid-session, a firewall dropping packets). The connection stays open.
    pub after_content: Option<tokio::sync::watch::Receiver<bool>>,
    /// A session is cut (both ways) when its client starts a message past this many, that
    /// command not passed on: a server limiting the messages of a session.
    pub messages_per_session: Option<usize>,
}

pub struct SmtpRelay {
    pub port: u16,
    /// How many connections it accepted.
    pub accepted: Arc<AtomicUsize>,
    /// The most connections open through it at once.
    pub most_open: Arc<AtomicUsize>,
    /// Told each time a message's content has gone through to the server.
    pub content_passed: Arc<tokio::sync::Notify>,
}

/// Starts a relay in front of the SMTP server on `server_port`.
pub async fn start(server_port: u16, behaviour: Behaviour) -> SmtpRelay {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("relais");
    let port = listener.local_addr().expect("adresse").port();
    let relay = SmtpRelay {
        port,
        accepted: Arc::default(),
        most_open: Arc::default(),
        content_passed: Arc::default(),
    };
    let (accepted, most_open) = (relay.accepted.clone(), relay.most_open.clone());
    let content_passed = relay.content_passed.clone();
    let open = Arc::new(AtomicUsize::new(0));
    let behaviour = Arc::new(behaviour);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            most_open.fetch_max(open.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            let session = relay_one(
                client,
                server_port,
                behaviour.clone(),
                content_passed.clone(),
            );
            let open = Open(open.clone());
            tokio::spawn(async move {
                let _open = open;
                session.await;
            });
        }
    });
    relay
}

/// Counted open until its session's task ends, however it ends.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn relay_one(
    client: tokio::net::TcpStream,
    server_port: u16,
    behaviour: Arc<Behaviour>,
    content_passed: Arc<tokio::sync::Notify>,
) {
    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", server_port)).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let passed = Arc::new(AtomicBool::new(false));
    let seen = passed.clone();
    let cut = Arc::new(tokio::sync::Notify::new());
    let cutting = cut.clone();
    let limit = behaviour.messages_per_session;
    tokio::spawn(async move {
        let (mut buf, mut tail, mut messages) = (vec![0u8; 64 * 1024], Vec::new(), 0);
        while let Ok(n) = from_client.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if buf[..n].to_ascii_uppercase().starts_with(b"MAIL FROM") {
                messages += 1;
                if limit.is_some_and(|limit| messages > limit) {
                    cutting.notify_one();
                    return;
                }
            }
            // The end of a message's content (`.` alone on its line; a line of the content
            // starting with a dot has it doubled), maybe split between two reads.
            tail.extend_from_slice(&buf[..n]);
            if tail.windows(5).any(|w| w == b"\r\n.\r\n") {
                seen.store(true, Ordering::SeqCst);
                content_passed.notify_one();
            }
            tail.drain(..tail.len().saturating_sub(4));
            if to_server.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            read = from_server.read(&mut buf) => match read {
                Ok(n) if n > 0 => n,
                _ => break,
            },
            // Both directions closed: the client sees its session cut.
            _ = cut.notified() => break,
        };
        if !behaviour.answer_delay.is_zero() {
            tokio::time::sleep(behaviour.answer_delay).await;
        }
        if let Some(gate) = &behaviour.after_content
            && passed.load(Ordering::SeqCst)
            && gate.clone().wait_for(|open| *open).await.is_err()
        {
            // Never opened: silent, the client's side held open until the client leaves.
            let _held = to_client;
            return std::future::pending().await;
        }
        if to_client.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}
