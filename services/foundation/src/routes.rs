//! Route declarations: every route is declared with its method and the guard its handler
//! applies, in the one list that also builds the router. `Application` keeps the resulting
//! table (`Application::routes`), which the route table test compares with the running server
//! and with `docs/ROUTES.md`; a route cannot be added without an entry.

use std::fmt;

use poem::endpoint::BoxEndpoint;
use poem::http::Method;
use poem::{Endpoint, EndpointExt, IntoEndpoint, Route};
use policies::Action;

/// Who may call a route: the check its handler makes before anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// Anyone holding a secret or signature carried by the request (login or enrolment link,
    /// signed document link, verification HMAC, id_token hint).
    Link,
    /// An issuer ("demandeur") whose address was verified by a link (issuer session).
    Issuer,
    /// A usager signed in with FranceConnect in their own space (usager session).
    Usager,
    /// A signed-in professional.
    Session,
    /// A signed-in professional whose session is not idle (else the TOTP re-check).
    Recent,
    /// A signed-in professional allowed this action by the guard.
    Permission(Action),
    /// A recently verified session allowed this action by the guard.
    RecentPermission(Action),
    /// An authorization request of a registered client and exact redirect URI, then a recently
    /// verified session allowed `mandate:use`.
    OidcRequest,
    /// An OpenID client authenticating itself (`client_secret_basic` / `_post`).
    OidcClient,
    /// An identity provider access token (`Authorization: Bearer`).
    OidcToken,
    /// An internal caller's bearer token (`platform.internal_callers`).
    InternalCaller,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Public => f.write_str("public"),
            Access::Link => f.write_str("secret in the link"),
            Access::Issuer => f.write_str("issuer session"),
            Access::Usager => f.write_str("usager session"),
            Access::Session => f.write_str("session"),
            Access::Recent => f.write_str("session + re-check"),
            Access::Permission(a) => write!(f, "session + `{}`", a.as_str()),
            Access::RecentPermission(a) => write!(f, "session + re-check + `{}`", a.as_str()),
            Access::OidcRequest => {
                f.write_str("client request, then session + re-check + `mandate:use`")
            }
            Access::OidcClient => f.write_str("client authentication"),
            Access::OidcToken => f.write_str("access token"),
            Access::InternalCaller => f.write_str("internal caller token"),
        }
    }
}

/// Whether the CSRF middleware checks a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Csrf {
    /// Safe method (GET): nothing to check.
    NotApplicable,
    /// Origin and double-submit token checked.
    Protected,
    /// Path exempted by its service (`ServiceParts::csrf_exempt`).
    Exempt,
}

impl fmt::Display for Csrf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Csrf::NotApplicable => "—",
            Csrf::Protected => "protected",
            Csrf::Exempt => "exempt",
        })
    }
}

/// Which listener serves a route: the public one (behind the ingress), or the internal one
/// (`http.internal_port`, other services only; no cookies, no CSRF, JSON errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Public,
    Internal,
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Listener::Public => "public",
            Listener::Internal => "internal",
        })
    }
}

/// One row of the route table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    pub service: &'static str,
    pub method: Method,
    /// Path template as poem reads it (`:id`, `*path`).
    pub path: String,
    pub access: Access,
    pub csrf: Csrf,
    pub listener: Listener,
}

/// A page or form at its exact path, with its methods.
pub struct Page {
    pub path: &'static str,
    pub methods: Vec<(Method, Access, BoxEndpoint<'static>)>,
}

impl Page {
    pub fn at(path: &'static str) -> Self {
        Self {
            path,
            methods: Vec::new(),
        }
    }

    pub fn method<E>(mut self, method: Method, access: Access, ep: E) -> Self
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        self.methods
            .push((method, access, ep.into_endpoint().map_to_response().boxed()));
        self
    }

    pub fn get<E>(self, access: Access, ep: E) -> Self
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        self.method(Method::GET, access, ep)
    }

    pub fn post<E>(self, access: Access, ep: E) -> Self
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        self.method(Method::POST, access, ep)
    }
}

/// Endpoints nested under a prefix (the prefix is stripped), with the operations they serve.
pub struct Mount {
    pub prefix: &'static str,
    /// (method, path below the prefix, access).
    pub operations: Vec<(Method, String, Access)>,
    pub endpoint: BoxEndpoint<'static>,
    /// The OpenAPI document served, if any (405 answers read their `Allow` from it).
    pub document: Option<String>,
}

impl Mount {
    /// An OpenAPI service and its document at `{prefix}/openapi.json` (public); the operations
    /// are read from the service's own document, which poem-openapi builds from the same
    /// declarations as its router.
    pub fn openapi<T, W>(
        prefix: &'static str,
        access: Access,
        api: poem_openapi::OpenApiService<T, W>,
    ) -> Self
    where
        T: poem_openapi::OpenApi + 'static,
        W: poem_openapi::Webhook + 'static,
    {
        let spec_json = api.spec();
        let document: serde_json::Value =
            serde_json::from_str(&spec_json).unwrap_or(serde_json::Value::Null);
        let mut operations = vec![(Method::GET, "/openapi.json".to_owned(), Access::Public)];
        if let Some(paths) = document["paths"].as_object() {
            for (path, item) in paths {
                for method in item.as_object().into_iter().flat_map(|o| o.keys()) {
                    if let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) {
                        operations.push((method, poem_template(path), access));
                    }
                }
            }
        }
        // The document answers GET only (a bare endpoint would answer every method).
        let spec = poem::get(api.spec_endpoint());
        let endpoint = Route::new()
            .at("/openapi.json", spec)
            .nest("/", api)
            .map_to_response()
            .boxed();
        Self {
            prefix,
            operations,
            endpoint,
            document: Some(spec_json),
        }
    }

    /// The operations under `path_prefix` (below the mount's prefix) take another guard.
    pub fn with_access(mut self, path_prefix: &str, access: Access) -> Self {
        for (_, path, a) in &mut self.operations {
            if path.starts_with(path_prefix) {
                *a = access;
            }
        }
        self
    }

    /// Any endpoint, with the operations it serves stated by the caller.
    pub fn new<E: Endpoint + 'static>(
        prefix: &'static str,
        operations: Vec<(Method, &str, Access)>,
        ep: E,
    ) -> Self {
        Self {
            prefix,
            operations: operations
                .into_iter()
                .map(|(m, p, a)| (m, p.to_owned(), a))
                .collect(),
            endpoint: ep.map_to_response().boxed(),
            document: None,
        }
    }
}

/// `{id}` (OpenAPI) written as poem writes it (`:id`).
fn poem_template(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment.strip_prefix('{') {
            Some(rest) => format!(":{}", rest.trim_end_matches('}')),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The route table as a Markdown table, sorted by path then method.
pub fn markdown(routes: &[RouteInfo]) -> String {
    let mut rows: Vec<&RouteInfo> = routes.iter().collect();
    rows.sort_by(|a, b| (&a.path, a.method.as_str()).cmp(&(&b.path, b.method.as_str())));
    let mut out = String::from(
        "| method | path | guard | CSRF | listener | service |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} |\n",
            r.method, r.path, r.access, r.csrf, r.listener, r.service
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_templates_become_poem_templates() {
        assert_eq!(
            poem_template("/departements/{departement}/documents/{id}"),
            "/departements/:departement/documents/:id"
        );
        assert_eq!(poem_template("/"), "/");
    }
}
