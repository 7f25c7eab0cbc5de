//! Logs and traces. One `request` span per HTTP request carries the request id, the route
//! template, the status and the tenant (département code) — never names, e-mails or tokens.
//! When `telemetry.otlp_endpoint` is set, spans are exported over OTLP/HTTP.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use poem::PathPattern;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::TelemetrySettings;

/// Keeps the exporter alive; flushes pending spans when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports every finished span now (used at shutdown and by tests).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(e) = provider.force_flush()
        {
            eprintln!("telemetry: flush failed: {e}");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber. Calling it again in the same process changes nothing.
pub fn init(settings: &TelemetrySettings) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_new(&settings.log_filter)?;
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_filter(filter);
    let (otel, provider) = match &settings.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                .build()?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    Resource::builder()
                        .with_service_name(settings.service_name.clone())
                        .build(),
                )
                .build();
            let tracer = provider.tracer("aidants-connect");
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(EnvFilter::try_new(
                    "info,sqlx=warn,h2=off,hyper=off,reqwest=off",
                )?);
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    // A second initialisation (tests building several applications) keeps the first one.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(TelemetryGuard { provider })
}

/// Wraps an endpoint in the request span and sets `x-request-id` on the response.
pub fn with_request_span<E: Endpoint + 'static>(ep: E) -> impl Endpoint<Output = Response> {
    ep.around(|ep, req: Request| async move {
        let request_id = uuid::Uuid::now_v7().to_string();
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            http.request.method = %req.method(),
            http.route = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            tenant = tracing::field::Empty,
            professional = tracing::field::Empty,
        );
        async move {
            let result = ep.call(req).await;
            let mut resp = match result {
                Ok(resp) => resp.into_response(),
                Err(err) => err.into_response(),
            };
            let span = tracing::Span::current();
            if let Some(PathPattern(pattern)) = resp.data::<PathPattern>() {
                span.record("http.route", &**pattern);
            }
            span.record("http.response.status_code", resp.status().as_u16());
            if let Ok(value) = request_id.parse() {
                resp.headers_mut().insert("x-request-id", value);
            }
            Ok(resp)
        }
        .instrument(span)
        .await
    })
}

/// Records the territory on the current request span.
pub fn record_tenant(departement: &str) {
    tracing::Span::current().record("tenant", departement);
}

/// Records the professional's pseudonymous id on the current request span.
pub fn record_professional(id: crate::ids::ProfessionalId) {
    tracing::Span::current().record("professional", tracing::field::display(id));
}
