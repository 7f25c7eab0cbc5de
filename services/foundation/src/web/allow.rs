//! `Allow` on 405 answers (RFC 9110 requires it): the methods the OpenAPI documents give the
//! path. Routes are the documents' own, so the header cannot drift from what is served.

use std::sync::Arc;

use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response};

/// Path templates of the served OpenAPI documents and their methods.
#[derive(Debug, Default)]
pub struct AllowTable(Vec<(Vec<String>, HeaderValue)>);

const METHODS: [&str; 7] = ["get", "head", "post", "put", "patch", "delete", "options"];

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl AllowTable {
    /// From OpenAPI documents (JSON), each with its server URL as path prefix.
    pub fn from_specs(specs: &[String]) -> Self {
        let mut table = Vec::new();
        for spec in specs {
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(spec) else {
                continue;
            };
            let server = doc["servers"][0]["url"].as_str().unwrap_or("");
            let Some(paths) = doc["paths"].as_object() else {
                continue;
            };
            for (path, item) in paths {
                let mut methods: Vec<&str> = METHODS
                    .iter()
                    .filter(|m| item.get(**m).is_some())
                    .copied()
                    .collect();
                // poem answers HEAD wherever GET is served.
                if methods.contains(&"get") && !methods.contains(&"head") {
                    methods.insert(1, "head");
                }
                let value = methods.join(", ").to_ascii_uppercase();
                if let Ok(value) = HeaderValue::from_str(&value) {
                    table.push((segments(&format!("{server}{path}")), value));
                }
            }
        }
        Self(table)
    }

    fn allow(&self, path: &str) -> Option<&HeaderValue> {
        let wanted = segments(path);
        self.0.iter().find_map(|(template, value)| {
            let matches = template.len() == wanted.len()
                && template
                    .iter()
                    .zip(&wanted)
                    .all(|(t, w)| t.starts_with('{') || t == w);
            matches.then_some(value)
        })
    }
}

/// On documented paths: a method the document does not give answers 405 with `Allow` at once
/// (before the CSRF check, which would otherwise say 403 to an undocumented PUT), and any other
/// 405 gets `Allow` too.
pub fn with_allow<E: Endpoint + 'static>(
    ep: E,
    table: Arc<AllowTable>,
) -> impl Endpoint<Output = Response> {
    ep.around(move |ep, req: Request| {
        let table = table.clone();
        async move {
            let path = req.uri().path().to_owned();
            if let Some(allowed) = table.allow(&path) {
                let method = req.method().as_str();
                let listed = allowed
                    .to_str()
                    .unwrap_or_default()
                    .split(", ")
                    .any(|m| m == method);
                if !listed {
                    let mut resp =
                        super::errors::error_response(StatusCode::METHOD_NOT_ALLOWED, true);
                    resp.headers_mut().insert(header::ALLOW, allowed.clone());
                    return Ok(resp);
                }
            }
            let mut resp = ep.call(req).await?.into_response();
            if resp.status() == StatusCode::METHOD_NOT_ALLOWED
                && let Some(value) = table.allow(&path)
            {
                resp.headers_mut().insert(header::ALLOW, value.clone());
            }
            Ok(resp)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_paths_get_their_methods() {
        let spec = r#"{"servers":[{"url":"/api/x"}],"paths":{"/d/{code}/lieux":{"get":{}},"/d/{code}":{"post":{},"delete":{}}}}"#;
        let table = AllowTable::from_specs(&[spec.to_owned()]);
        assert_eq!(
            table
                .allow("/api/x/d/33/lieux")
                .map(|v| v.to_str().unwrap_or("")),
            Some("GET, HEAD")
        );
        assert_eq!(
            table.allow("/api/x/d/33").map(|v| v.to_str().unwrap_or("")),
            Some("POST, DELETE")
        );
        assert!(table.allow("/api/x/d").is_none());
    }
}
