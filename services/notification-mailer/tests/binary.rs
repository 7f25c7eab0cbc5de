//! The service's own binary starts as its Kubernetes Deployment starts it (settings from
//! `AC_*` variables, ports 0), becomes ready and stops cleanly on SIGTERM.

#[tokio::test]
async fn the_binary_starts_becomes_ready_and_stops_on_sigterm() {
    test_support::service_binary::smoke(env!("CARGO_BIN_EXE_notification-mailer"), &["smtp"]).await;
}
