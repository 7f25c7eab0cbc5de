//! The listeners' connection loop. poem's own server gives hyper no timer, so hyper enforces no
//! limit on reading a request's head: a client sending a header line every few seconds (the
//! « slowloris » attack) or opening connections and leaving them silent held a task and a socket
//! each, without end. Here each connection is served by hyper's HTTP/1 server with a timer and a
//! head read limit, which runs from the connection's start and, on a kept-alive connection, from
//! the end of each response: a connection silent that long is closed (test
//! `web_shell::a_slow_or_silent_client_is_cut_off_and_others_are_served`).
//!
//! HTTP/1 only: browsers reach the platform through TLS, ended by the ingress, which speaks
//! HTTP/1.1 to it; nothing here speaks cleartext HTTP/2, whose opening hyper's automatic
//! detection waits for without a limit, and whose stream resets would start handlers without
//! bound (each request runs in a task of its own, below).
//!
//! Requests reach the same poem endpoint as before, each in a task of its own that runs to its
//! end whether or not its client waits (as under poem's server); stopping is as poem's: no new
//! connection, each one closed after the request in progress, all of them given `grace`.

use std::convert::Infallible;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use poem::listener::{Acceptor, TcpAcceptor};
use poem::{Endpoint, EndpointExt, IntoEndpoint, Response};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves `ep` on the connections `acceptor` takes until `stop` resolves, then lets the
/// requests in progress finish for up to `grace` and returns. `head_read`: the longest a client
/// may take to send a request's head (the request line and its headers), counted from the
/// connection's start, then on a kept-alive connection from the end of each response; past it
/// the connection is closed.
pub async fn serve<E>(
    mut acceptor: TcpAcceptor,
    ep: E,
    head_read: Duration,
    stop: impl std::future::Future<Output = ()>,
    grace: Duration,
) where
    E: IntoEndpoint,
    E::Endpoint: 'static,
{
    let ep = std::sync::Arc::new(ep.into_endpoint().map_to_response().boxed());
    let stopping = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(stop);
    loop {
        let (io, local, remote, scheme) = tokio::select! {
            _ = &mut stop => break,
            accepted = acceptor.accept() => match accepted {
                Ok(accepted) => accepted,
                // A connection lost before it was accepted (reset), or no file left for it: the
                // next, a little later (a warning each 100 ms at most).
                Err(e) => {
                    tracing::warn!(error = %e, "connexion non acceptée");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let ep = ep.clone();
        let stopping = stopping.clone();
        let requests = connections.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let ep = ep.clone();
                let request =
                    poem::Request::from((req, local.clone(), remote.clone(), scheme.clone()));
                // Each request runs to its end in a task of its own, even if its client goes
                // away: hyper, reading ahead for the next request's head (the limit above),
                // notices a client that hung up and drops what serves it, which would cut a
                // handler short between two of its steps. The handlers' own limit is
                // `http.request_timeout_ms`; stopping waits for these tasks too.
                let handled = requests.spawn(async move { ep.get_response(request).await });
                async move {
                    let response: Response = handled.await.unwrap_or_else(|e| {
                        tracing::error!(error = %e, "requête interrompue");
                        poem::http::StatusCode::INTERNAL_SERVER_ERROR.into()
                    });
                    Ok::<_, Infallible>(hyper::Response::from(response))
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(head_read)
                .serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stopping.cancelled() => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(acceptor);
    stopping.cancel();
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "connexions encore ouvertes à la fin du délai d'arrêt"
        );
    }
}
