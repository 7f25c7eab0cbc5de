//! A real OTLP/HTTP receiver (protobuf over HTTP, `POST /v1/traces`), in process, so tests can
//! assert which spans arrive and what they carry. `infra/` runs the same code as `otlp-sink`.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Response, Route, handler, post};
use prost::Message;

/// One received span: its name and attributes rendered as strings.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub name: String,
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

/// Decodes an export request into spans.
pub fn decode(body: &[u8]) -> Result<Vec<ReceivedSpan>, prost::DecodeError> {
    let request = ExportTraceServiceRequest::decode(body)?;
    let mut spans = Vec::new();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .into_iter()
                    .map(|kv| {
                        let value = match kv.value.and_then(|v| v.value) {
                            Some(AnyValue::StringValue(s)) => s,
                            Some(AnyValue::IntValue(i)) => i.to_string(),
                            Some(AnyValue::BoolValue(b)) => b.to_string(),
                            Some(AnyValue::DoubleValue(d)) => d.to_string(),
                            Some(other) => format!("{other:?}"),
                            None => String::new(),
                        };
                        (kv.key, value)
                    })
                    .collect();
                spans.push(ReceivedSpan {
                    name: span.name,
                    attributes,
                });
            }
        }
    }
    Ok(spans)
}

#[handler]
async fn traces(body: poem::Body, spans: Data<&Spans>) -> Response {
    let bytes = match body.into_bytes().await {
        Ok(bytes) => bytes,
        Err(_) => {
            return Response::builder()
                .status(poem::http::StatusCode::BAD_REQUEST)
                .finish();
        }
    };
    match decode(&bytes) {
        Ok(received) => {
            spans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(received);
            Response::builder()
                .content_type("application/x-protobuf")
                .body(ExportTraceServiceResponse::default().encode_to_vec())
        }
        Err(_) => Response::builder()
            .status(poem::http::StatusCode::BAD_REQUEST)
            .finish(),
    }
}

/// Starts a receiver on 127.0.0.1:`port` (0: a free port); returns its port and its spans.
pub async fn start(port: u16) -> std::io::Result<(u16, Spans)> {
    let spans: Spans = Arc::default();
    let acceptor = TcpListener::bind(("127.0.0.1", port))
        .into_acceptor()
        .await?;
    let port = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().map(|s| s.port()))
        .ok_or_else(|| std::io::Error::other("no local address"))?;
    let app = Route::new()
        .at("/v1/traces", post(traces))
        .data(spans.clone());
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    Ok((port, spans))
}
