//! Test harness shared by every crate's black-box tests: the real stack started by
//! `infra/run`, one fresh database per test provisioned through the production code, an
//! in-process OTLP receiver, a MailDev reader and the browser harness.

pub mod browser;
pub mod database;
/// Mandate drafts whose identity FranceConnect already gave (benchmarks, fault tests).
pub mod drafts;
pub mod franceconnect;
pub mod maildev;
pub mod otlp;
pub mod private_maildev;
pub mod private_postgres;
pub mod private_process;
pub mod private_seaweedfs;
pub mod private_smtp_tls;
/// Looking for a secret in clear in every table of the database.
pub mod secrets;
/// A service binary started as a deployment starts it (smoke tests).
pub mod service_binary;
pub mod sms_gateway;
/// A relay in front of an SMTP server, slow or silent from a chosen moment.
pub mod smtp_relay;

use foundation::config::{Environment, Settings};

/// A TCP port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port libre")
}

/// Reads a variable that `infra/run test` exports; a clear message when run outside it.
pub fn stack_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} manque : lancez les tests avec `infra/run test` (la pile locale fournit cette variable)")
    })
}

/// Settings for an application under test: port 0, the given database, the stack's services.
pub fn test_settings(database_url: &str) -> Settings {
    let mut settings = Settings {
        environment: Environment::Test,
        ..Settings::default()
    };
    settings.http.port = 0;
    settings.http.internal_port = 0;
    settings.database.url = database_url.to_owned().into();
    settings.database.max_connections = 8;
    settings.smtp.host = "127.0.0.1".into();
    settings.smtp.port = stack_var("AC_SMTP__PORT").parse().expect("AC_SMTP__PORT");
    settings.object_store.endpoint = stack_var("AC_OBJECT_STORE__ENDPOINT");
    settings.object_store.access_key_id = stack_var("AC_OBJECT_STORE__ACCESS_KEY_ID");
    settings.object_store.secret_access_key =
        stack_var("AC_OBJECT_STORE__SECRET_ACCESS_KEY").into();
    settings.sms.provider = foundation::config::SmsProvider::HttpJson;
    settings.sms.gateway_url = stack_var("AC_SMS__GATEWAY_URL");
    settings.sms.api_token = stack_var("AC_SMS__API_TOKEN").into();
    settings.web.dsfr_dir = stack_var("AC_WEB__DSFR_DIR").into();
    settings.telemetry.log_filter = "warn".into();
    settings
}

/// The tenancy registry over `pool` (the application's or the administrator's), as the
/// services build it with the test settings.
pub async fn tenancy(pool: sqlx::PgPool) -> foundation::tenancy::Tenancy {
    foundation::tenancy::Tenancy::load(pool, database::TestDatabase::tenant_login())
        .await
        .expect("registre des territoires")
}
