//! The route table: every route of the all-in-one application with its method, guard and CSRF
//! status. The table is read from the declarations that build the router
//! (`foundation::routes`), kept in `docs/ROUTES.md` for review, and checked here against the
//! running server: the methods each path answers, what an anonymous caller gets, what a
//! professional without the permission or with an idle session gets, and CSRF refusals on
//! every state-changing route. Run with `AC_WRITE_ROUTES=1` to rewrite `docs/ROUTES.md`.

mod common;

use std::collections::BTreeMap;

use common::identity::*;
use common::{TestApp, spawn_app};
use foundation::app::{Access, Csrf, RouteInfo};
use foundation::ids::{MandateId, StructureId, TenantId, UsagerId};
use policies::{Action, Domain, Role};
use reqwest::Method;
use uuid::Uuid;

const DOC_HEADER: &str = "# Routes of the all-in-one application\n\n\
Generated from the route declarations (`foundation::routes`) and checked by \
`services/all-in-one/tests/routes.rs` (rewrite with `AC_WRITE_ROUTES=1 cargo nextest run -p \
all-in-one --test routes`). *Guard* is the check the handler makes first; *CSRF* is what the \
middleware does for that method and path (`—` for safe methods); *listener* is the public one \
(behind the ingress) or the internal one (other services only, no CSRF, JSON errors).\n\n";

fn doc_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ROUTES.md")
}

/// A concrete URL path for a template: placeholders get plausible values of nobody's.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            ":dep" | ":departement" | ":code" => "01".to_owned(),
            ":status" => "404".to_owned(),
            ":token" => "x".repeat(43),
            "*path" => "dsfr.min.css".to_owned(),
            s if s.starts_with(':') => Uuid::new_v4().to_string(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// One form body with a plausible value for every field of the platform's forms, so that a
/// probe reaches the handler's guard rather than a form error.
fn probe_body() -> String {
    let id = Uuid::new_v4();
    format!(
        "aidant={id}&structure={id}&serie=123456&code=123456&motif=perdue&premier=123456&second=654321\
         &cartes=serie%3Bseed&categorie=social&telephone=0612345678&email=x%40example.test\
         &jeton={}&suite=%2Fcompte&declaration=oui",
        "x".repeat(43)
    )
}

/// A caller sending raw requests: optional cookies, the CSRF token of its cookie, an Origin.
struct Caller<'a> {
    app: &'a TestApp,
    cookies: String,
    csrf: Option<String>,
    origin: String,
}

impl<'a> Caller<'a> {
    /// An anonymous caller holding a valid CSRF cookie and token, from our origin.
    async fn anonymous(app: &'a TestApp) -> Caller<'a> {
        let b = browser(&app.address);
        let (_, html) = page(&b, &app.url("/connexion")).await;
        Self::from_browser(app, &b, csrf_of(&html))
    }

    fn from_browser(app: &'a TestApp, b: &Browser, csrf: String) -> Caller<'a> {
        let cookies = b
            .cookies()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        Caller {
            app,
            cookies,
            csrf: Some(csrf),
            origin: app.address.clone(),
        }
    }

    async fn send(&self, method: Method, path: &str, body: &str) -> reqwest::Response {
        // `/internal/*` is served by the internal listener only (the route table says so).
        let base = if path.starts_with("/internal/") {
            &self.app.internal_address
        } else {
            &self.app.address
        };
        let mut req = self
            .app
            .client
            .request(method, format!("{base}{path}"))
            .header("origin", &self.origin)
            .header("content-type", "application/x-www-form-urlencoded");
        if !self.cookies.is_empty() {
            req = req.header("cookie", &self.cookies);
        }
        let mut body = body.to_owned();
        if let Some(token) = &self.csrf {
            body = if body.is_empty() {
                format!("csrf={token}")
            } else {
                format!("csrf={token}&{body}")
            };
        }
        req.body(body).send().await.expect("requête")
    }
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn method_of(r: &RouteInfo) -> Method {
    Method::from_bytes(r.method.as_str().as_bytes()).expect("méthode")
}

#[tokio::test]
async fn the_route_table_is_the_router_and_is_kept_in_docs_routes_md() {
    let app = spawn_app(&["01"]).await;
    let table = foundation::routes::markdown(&app.routes);
    let expected = format!("{DOC_HEADER}{table}");
    if std::env::var("AC_WRITE_ROUTES").is_ok() {
        std::fs::write(doc_path(), &expected).expect("écriture de docs/ROUTES.md");
    }
    let kept = std::fs::read_to_string(doc_path()).unwrap_or_default();
    assert!(
        kept == expected,
        "docs/ROUTES.md ne correspond pas aux routes servies (nouvelle route ? garde changée ?). \
         Relisez la table puis régénérez-la avec AC_WRITE_ROUTES=1.\n{table}"
    );
    println!("{table}");

    // Every (method, path) pair appears once.
    let mut seen = std::collections::BTreeSet::new();
    for r in &app.routes {
        assert!(
            seen.insert((r.method.to_string(), r.path.clone())),
            "{r:?} en double"
        );
    }

    // The running router answers exactly the declared methods of each path: a declared one is
    // routed (never 405), any other is 405 (sent with a valid CSRF token, so that the CSRF
    // middleware lets it reach the router).
    let caller = Caller::anonymous(&app).await;
    let mut by_path: BTreeMap<&str, Vec<Method>> = BTreeMap::new();
    for r in &app.routes {
        by_path.entry(&r.path).or_default().push(method_of(r));
    }
    let all = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ];
    let mut disagreements = Vec::new();
    for (template, declared) in &by_path {
        let path = concrete(template);
        for method in &all {
            let status = caller
                .send(method.clone(), &path, "")
                .await
                .status()
                .as_u16();
            let routed = status != 405;
            if routed != declared.contains(method) {
                disagreements.push(format!("{method} {template} → {status}"));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "le routeur et la table divergent : {disagreements:#?}"
    );
    // Counted, so that a table silently emptied cannot pass.
    assert!(app.routes.len() >= 50, "{}", app.routes.len());
}

fn needs_session(access: Access) -> bool {
    matches!(
        access,
        Access::Session | Access::Recent | Access::Permission(_) | Access::RecentPermission(_)
    )
}

#[tokio::test]
async fn anonymous_callers_meet_each_routes_guard() {
    let app = spawn_app(&["01"]).await;
    let caller = Caller::anonymous(&app).await;
    let mut wrong = Vec::new();
    for r in &app.routes {
        let path = concrete(&r.path);
        let resp = caller.send(method_of(r), &path, &probe_body()).await;
        let status = resp.status().as_u16();
        let to = location(&resp);
        let to_login = status == 303 && to.starts_with("/connexion?suite=");
        let ok = match r.access {
            a if needs_session(a) => to_login,
            // Anyone (or anyone holding a link): never sent to login, never refused as such.
            Access::Public => !to_login && status != 401 && status != 403 && status < 500,
            // A wrong or missing secret may be refused (403, 404…), never by a login page.
            Access::Link => !to_login && status < 500,
            // No issuer session: back to the desk's address form (pages), 401 (API).
            Access::Issuer if r.path.starts_with("/api/") => status == 401,
            Access::Issuer => status == 303 && to.starts_with("/demande?"),
            // No usager session: back to the space's FranceConnect page.
            Access::Usager => status == 303 && to.starts_with("/mes-mandats?"),
            // Without a registered client and redirect URI: an error page, never a redirect.
            Access::OidcRequest => status == 400,
            Access::OidcClient | Access::OidcToken | Access::InternalCaller => {
                status == 401 || (r.path.ends_with("/openapi.json") && status == 200)
            }
            _ => false,
        };
        if !ok {
            wrong.push(format!(
                "{} {} ({}) → {status} {to}",
                r.method, r.path, r.access
            ));
        }
    }
    assert!(wrong.is_empty(), "gardes non tenues : {wrong:#?}");
}

/// Permissions of a role in a structure, read from the policy itself.
async fn holds(role: Role, action: Action) -> bool {
    let who = Uuid::from_u128(1);
    let structure = Domain::Structure(Uuid::from_u128(2));
    let guard = policies::Guard::new(std::sync::Arc::new(policies::StaticAssignments(vec![
        policies::Assignment {
            professional: who,
            role,
            domain: structure,
        },
    ])))
    .await
    .expect("guard");
    guard.allows(who, &structure, action).await
}

/// Permissions of a role in a tenant, read from the policy itself.
async fn holds_in_tenant(role: Role, action: Action) -> bool {
    let who = Uuid::from_u128(1);
    let tenant = Domain::Tenant(Uuid::from_u128(3));
    let guard = policies::Guard::new(std::sync::Arc::new(policies::StaticAssignments(vec![
        policies::Assignment {
            professional: who,
            role,
            domain: tenant,
        },
    ])))
    .await
    .expect("guard");
    guard.allows(who, &tenant, action).await
}

#[tokio::test]
async fn signed_in_professionals_meet_permission_and_recheck_guards() {
    let app = spawn_app(&["01"]).await;
    let s = structure_domain(&app, "01").await;
    let aidant = professional(
        &app.db.admin,
        "Ada Routes",
        &[(Role::Aidant, s.domain(), Some("01"))],
    )
    .await;
    let referent = professional(
        &app.db.admin,
        "Rita Routes",
        &[(Role::Referent, s.domain(), Some("01"))],
    )
    .await;
    // A member of the structure with a tenant role only: no structure permission at all.
    let tenant: TenantId = sqlx::query_scalar("SELECT id FROM platform.tenants LIMIT 1")
        .fetch_one(&app.db.admin)
        .await
        .expect("tenant");
    let admin = professional(
        &app.db.admin,
        "Tom Routes",
        &[(Role::TerritoryAdmin, tenant.domain(), Some("01"))],
    )
    .await;
    let mut callers = Vec::new();
    for (role, who) in [
        (Some(Role::Aidant), &aidant),
        (Some(Role::Referent), &referent),
        (None, &admin),
    ] {
        let b = browser(&app.address);
        assert_eq!(log_in(&b, &app, who, -1).await.status(), 303);
        // Put the territory admin in the structure (as a switch would), without a role there.
        sqlx::query("UPDATE platform.sessions SET current_structure = $2 WHERE professional_id = $1 AND ended_at IS NULL")
            .bind(who.id)
            .bind(s)
            .execute(&app.db.admin)
            .await
            .expect("structure courante");
        let (_, html) = page(&b, &app.url("/compte")).await;
        callers.push((role, who.id, Caller::from_browser(&app, &b, csrf_of(&html))));
    }

    // Each permission route, called by a signed-in professional of the structure whose roles
    // lack that permission: 403, whatever the ids.
    let mut wrong = Vec::new();
    let mut checked = 0;
    for r in &app.routes {
        let (Access::Permission(action) | Access::RecentPermission(action)) = r.access else {
            continue;
        };
        for (role, _, caller) in &callers {
            let lacks = match role {
                Some(role) => !holds(*role, action).await,
                // The territory admin holds the tenant's permissions, nothing in a structure.
                None => !holds_in_tenant(Role::TerritoryAdmin, action).await,
            };
            if !lacks {
                continue;
            }
            let resp = caller
                .send(method_of(r), &concrete(&r.path), &probe_body())
                .await;
            checked += 1;
            if resp.status() != 403 {
                wrong.push(format!(
                    "{} {} par {role:?} sans {} → {} {}",
                    r.method,
                    r.path,
                    action.as_str(),
                    resp.status(),
                    location(&resp)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "permissions non tenues : {wrong:#?}");
    assert!(checked >= 20, "{checked}");

    // An idle session (re-check required): every route that asks for the re-check sends there;
    // the others do not (POSTs of those others are left out: they would act).
    let (_, aidant_id, caller) = &callers[0];
    sqlx::query("UPDATE platform.sessions SET recheck_required = true WHERE professional_id = $1 AND ended_at IS NULL")
        .bind(aidant_id)
        .execute(&app.db.admin)
        .await
        .expect("session inactive");
    for r in app.routes.iter().filter(|r| {
        needs_session(r.access)
            && (r.method == Method::GET
                || matches!(r.access, Access::Recent | Access::RecentPermission(_)))
    }) {
        let resp = caller
            .send(method_of(r), &concrete(&r.path), &probe_body())
            .await;
        let to_recheck =
            resp.status() == 303 && location(&resp).starts_with("/compte/verification?suite=");
        let wants = matches!(r.access, Access::Recent | Access::RecentPermission(_));
        if to_recheck != wants {
            wrong.push(format!(
                "{} {} ({}) en session inactive → {} {}",
                r.method,
                r.path,
                r.access,
                resp.status(),
                location(&resp)
            ));
        }
    }
    assert!(wrong.is_empty(), "re-vérification non tenue : {wrong:#?}");
}

/// Every state-changing route the CSRF middleware protects is refused without the token, with a
/// wrong token, and with the right token from another origin — and the same request with the
/// token from our origin is not refused by the middleware (so the 403 is the CSRF check's).
#[tokio::test]
async fn every_protected_post_is_refused_without_csrf() {
    let app = spawn_app(&["01"]).await;
    let s = structure_domain(&app, "01").await;
    let aidant = professional(
        &app.db.admin,
        "Cy Routes",
        &[
            (Role::Aidant, s.domain(), Some("01")),
            (Role::Referent, s.domain(), Some("01")),
        ],
    )
    .await;
    let b = browser(&app.address);
    assert_eq!(log_in(&b, &app, &aidant, -1).await.status(), 303);
    let (_, html) = page(&b, &app.url("/compte")).await;
    let good = Caller::from_browser(&app, &b, csrf_of(&html));
    let cookies_without_csrf = good
        .cookies
        .split("; ")
        .filter(|c| !c.starts_with("ac_csrf="))
        .collect::<Vec<_>>()
        .join("; ");

    let protected: Vec<&RouteInfo> = app
        .routes
        .iter()
        .filter(|r| r.csrf == Csrf::Protected)
        .collect();
    assert!(protected.len() >= 10, "{}", protected.len());
    let mut wrong = Vec::new();
    for r in &protected {
        let path = concrete(&r.path);
        let attempts = [
            (
                "sans jeton ni cookie",
                Caller {
                    app: &app,
                    cookies: cookies_without_csrf.clone(),
                    csrf: None,
                    origin: app.address.clone(),
                },
            ),
            (
                "cookie sans jeton",
                Caller {
                    app: &app,
                    cookies: good.cookies.clone(),
                    csrf: None,
                    origin: app.address.clone(),
                },
            ),
            (
                "mauvais jeton",
                Caller {
                    app: &app,
                    cookies: good.cookies.clone(),
                    csrf: Some("x".repeat(43)),
                    origin: app.address.clone(),
                },
            ),
            (
                "origine étrangère",
                Caller {
                    app: &app,
                    cookies: good.cookies.clone(),
                    csrf: good.csrf.clone(),
                    origin: "https://attaquant.example".into(),
                },
            ),
        ];
        for (what, caller) in attempts {
            let status = caller
                .send(method_of(r), &path, &probe_body())
                .await
                .status();
            if status != 403 {
                wrong.push(format!("{} {} {what} → {status}", r.method, r.path));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "requêtes sans CSRF acceptées : {wrong:#?}"
    );
    // Last (a control may log out): with the token from our origin the middleware lets each
    // request through — an anonymous caller then meets the route's own guard, never a 403.
    let anonymous = Caller::anonymous(&app).await;
    for r in &protected {
        let status = anonymous
            .send(method_of(r), &concrete(&r.path), &probe_body())
            .await
            .status();
        assert_ne!(
            status, 403,
            "{} {} : 403 même avec le jeton",
            r.method, r.path
        );
    }

    // What is exempt is called by machines with their own credentials, never by a session.
    let exempt: Vec<String> = app
        .routes
        .iter()
        .filter(|r| r.csrf == Csrf::Exempt)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    for r in app.routes.iter().filter(|r| r.csrf == Csrf::Exempt) {
        assert!(
            matches!(
                r.access,
                Access::OidcClient | Access::OidcToken | Access::InternalCaller
            ) || (r.path == "/oidc/authorize" && r.access == Access::Public),
            "{} {} exempté de CSRF avec la garde {}",
            r.method,
            r.path,
            r.access
        );
    }
    let mut exempt = exempt;
    exempt.sort();
    assert_eq!(
        exempt,
        [
            "POST /internal/documents/departements/:departement/documents",
            "POST /internal/documents/departements/:departement/documents/:id/link",
            "POST /oidc/authorize",
            "POST /oidc/token",
            "POST /oidc/userinfo",
        ],
        "routes exemptées de CSRF"
    );
}

/// What a path's `:id` names, for the routes of the professional's space.
#[derive(Clone, Copy, Debug)]
enum IdKind {
    Mandate,
    Draft,
    Usager,
    RemoteConsent,
    MeasureImport,
}

fn id_kind(template: &str) -> Option<IdKind> {
    if template.starts_with("/mandats/preparation/:id") {
        Some(IdKind::Draft)
    } else if template.starts_with("/mandats/a-distance/:id") {
        Some(IdKind::RemoteConsent)
    } else if template.starts_with("/mandats/:id") {
        Some(IdKind::Mandate)
    } else if template.starts_with("/usagers/:id") {
        Some(IdKind::Usager)
    } else if template.starts_with("/mesures/import/:id") {
        Some(IdKind::MeasureImport)
    } else if template.starts_with("/mesures/:id") {
        Some(IdKind::Mandate)
    } else {
        None
    }
}

/// A structure's usager, mandate and draft (the draft completed by that mandate).
struct Foreign {
    family_name: String,
    usager: UsagerId,
    mandate: MandateId,
    draft: Uuid,
    remote_consent: Uuid,
    measure_import: Uuid,
}

async fn foreign_rows(app: &TestApp, departement: &str, structure: StructureId) -> Foreign {
    use mandate_service::mandates::{self, NewMandate};
    let aidant = professional(
        &app.db.admin,
        "Autre Aidant",
        &[(Role::Aidant, structure.domain(), Some(departement))],
    )
    .await;
    let family_name =
        format!("ETRANGERE{}", &Uuid::new_v4().simple().to_string()[..6]).to_uppercase();
    let mut identity = common::idp::angela(&format!("fc-sub-{}", Uuid::new_v4()));
    identity.family_name = family_name.clone();
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let tenant = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse(departement).expect("dep"))
        .await
        .expect("territoire");
    let draft = Uuid::new_v4();
    let mut tx = tenant.begin().await.expect("tx");
    let usager = mandates::upsert_usager(&mut tx, &identity, structure, aidant.id)
        .await
        .expect("usager");
    sqlx::query(
        "INSERT INTO mandate_drafts (id, structure_id, aidant_id, session_hash, categories,
             duration_days, state_hash, nonce, usager_id, expires_at)
         VALUES ($1, $2, $3, $4, '{logement}', 365, $5, 'n', $6, now() + interval '1 hour')",
    )
    .bind(draft)
    .bind(structure)
    .bind(aidant.id)
    .bind(vec![1u8; 32])
    .bind(Uuid::new_v4().as_bytes().to_vec())
    .bind(usager)
    .execute(&mut *tx)
    .await
    .expect("brouillon");
    let mandate = mandates::create(
        &mut tx,
        &NewMandate {
            id: MandateId::new_v7(),
            structure,
            aidant: aidant.id,
            usager,
            categories: vec![mandate_service::categories::by_code("logement").expect("catégorie")],
            duration_days: 365,
            renewal_of: None,
            idempotency_key: Some(format!("draft:{draft}")),
            language: None,
            attestation: None,
        },
        time::OffsetDateTime::now_utc(),
    )
    .await
    .expect("mandat");
    // A remote consent prepared for the same person (its list shows the family name).
    let remote_consent = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO remote_consents (id, structure_id, aidant_id, categories, duration_days,
             given_name, family_name, birthdate, channel, destination, link_hash, link_expires_at)
         VALUES ($1, $2, $3, '{logement}', 365, 'Angela', $4, '1962-08-24', 'sms', '+33611223344',
                 $5, now() + interval '1 day')",
    )
    .bind(remote_consent)
    .bind(structure)
    .bind(aidant.id)
    .bind(&family_name)
    .bind(Uuid::new_v4().as_bytes().to_vec())
    .execute(&mut *tx)
    .await
    .expect("consentement à distance");
    // A guardian service's import of measures (its report names case numbers).
    let measure_import = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO measure_imports (id, structure_id, started_by, file_name, file_sha256, state)
         VALUES ($1, $2, $3, 'mesures.csv', '\\x00', 'done')",
    )
    .bind(measure_import)
    .bind(structure)
    .bind(aidant.id)
    .execute(&mut *tx)
    .await
    .expect("import de mesures");
    tx.commit().await.expect("commit");
    Foreign {
        family_name,
        usager,
        mandate,
        draft,
        remote_consent,
        measure_import,
    }
}

/// Every id-taking route of the professional's space, called by an aidant-référent of
/// structure A (every permission there, session fresh) with the ids of structure B (same
/// département) and of structure C (another département): 404, and no list shows their rows.
#[tokio::test]
async fn foreign_ids_answer_404_and_lists_show_no_foreign_rows() {
    let app = spawn_app(&["33", "01"]).await;
    let a = structure_domain(&app, "33").await;
    let b = structure_domain(&app, "33").await;
    let c = structure_domain(&app, "01").await;
    let alice = professional(
        &app.db.admin,
        "Alice Ids",
        &[
            (Role::Aidant, a.domain(), Some("33")),
            (Role::Referent, a.domain(), Some("33")),
        ],
    )
    .await;
    let own = foreign_rows(&app, "33", a).await;
    let foreign = [
        ("autre structure", foreign_rows(&app, "33", b).await),
        ("autre département", foreign_rows(&app, "01", c).await),
    ];
    let client = browser(&app.address);
    assert_eq!(log_in(&client, &app, &alice, -1).await.status(), 303);
    let (_, html) = page(&client, &app.url("/compte")).await;
    let caller = Caller::from_browser(&app, &client, csrf_of(&html));

    // Control: Alice's own mandate page answers, so a 404 below is the scope's.
    let (status, _) = page(&client, &app.url(&format!("/mandats/{}", own.mandate))).await;
    assert_eq!(status, 200);

    let mut wrong = Vec::new();
    let mut probed = 0;
    for r in app.routes.iter().filter(|r| r.path.contains("/:")) {
        if !needs_session(r.access) {
            // Ids behind a link or a token are probed by their own tests (documents, IdP).
            continue;
        }
        if r.path.contains(":reference")
            || r.path.starts_with("/formation/sessions/")
            || r.path.starts_with("/territoire/collectivites/")
            || r.path.starts_with("/audit/collectivites/")
            || r.path.starts_with("/structure/alertes/")
        {
            // Structure requests (a reviewer of another département, another issuer), training
            // sessions (another organisation's trainer), tenants (another département's or a
            // sibling commune's admin or auditor) and alerts (another structure's référent) are
            // probed by tests/habilitation_requests.rs, tests/habilitation_training.rs,
            // tests/territories.rs and tests/statistics.rs.
            continue;
        }
        let kind = id_kind(&r.path).unwrap_or_else(|| {
            panic!(
                "{} {} prend un identifiant sans sonde ici : ajoutez-la",
                r.method, r.path
            )
        });
        for (label, rows) in &foreign {
            let id = match kind {
                IdKind::Mandate => rows.mandate.to_string(),
                IdKind::Draft => rows.draft.to_string(),
                IdKind::Usager => rows.usager.to_string(),
                IdKind::RemoteConsent => rows.remote_consent.to_string(),
                IdKind::MeasureImport => rows.measure_import.to_string(),
            };
            let path = r.path.replace(":id", &id);

            let resp = caller.send(method_of(r), &path, &probe_body()).await;
            probed += 1;
            if resp.status() != 404 {
                wrong.push(format!(
                    "{} {} ({label}) → {} {}",
                    r.method,
                    r.path,
                    resp.status(),
                    location(&resp)
                ));
            }
        }
    }
    assert!(probed >= 16, "{probed}");

    // Lists: every page of the space without an id shows none of the foreign rows.
    for r in app
        .routes
        .iter()
        .filter(|r| needs_session(r.access) && r.method == Method::GET && !r.path.contains(':'))
    {
        let resp = caller.send(Method::GET, &r.path, "").await;
        let body = resp.text().await.unwrap_or_default();
        for (label, rows) in &foreign {
            for marker in [
                rows.family_name.clone(),
                rows.usager.to_string(),
                rows.mandate.to_string(),
                rows.remote_consent.to_string(),
            ] {
                if body.contains(&marker) {
                    wrong.push(format!(
                        "GET {} montre une ligne ({label}) : {marker}",
                        r.path
                    ));
                }
            }
        }
    }
    // Control: the list shows Alice's own row, so the search above could find one.
    let (_, list) = page(&client, &app.url("/mandats")).await;
    assert!(list.contains(&own.family_name) || list.contains(&own.mandate.to_string()));
    let (_, remote) = page(&client, &app.url("/mandats/a-distance")).await;
    assert!(remote.contains(&own.remote_consent.to_string()));
    assert!(
        wrong.is_empty(),
        "identifiants étrangers servis : {wrong:#?}"
    );
}

/// The identity provider never offers, nor grants, another structure's or département's
/// usager: the usager's id in the choice pages and in the decision leads nowhere.
#[tokio::test]
async fn the_identity_provider_takes_no_foreign_usager() {
    use mandate_service::idp::clients::AuthMethod;
    use mandate_service::idp::keys::Alg;
    let app = spawn_app(&["33", "01"]).await;
    let a = structure_domain(&app, "33").await;
    let b = structure_domain(&app, "33").await;
    let c = structure_domain(&app, "01").await;
    let alice = professional(
        &app.db.admin,
        "Alice Idp",
        &[(Role::Aidant, a.domain(), Some("33"))],
    )
    .await;
    let own = foreign_rows(&app, "33", a).await;
    let foreign = [
        ("autre structure", foreign_rows(&app, "33", b).await),
        ("autre département", foreign_rows(&app, "01", c).await),
    ];
    let redirect = "http://127.0.0.1:9/callback";
    common::idp::register(
        &app,
        "fc-ids-probe",
        AuthMethod::ClientSecretPost,
        redirect,
        &[],
        Alg::Es256,
        None,
    )
    .await
    .expect("secret");
    let client = browser(&app.address);
    assert_eq!(log_in(&client, &app, &alice, -1).await.status(), 303);
    let query = serde_urlencoded::to_string([
        ("client_id", "fc-ids-probe"),
        ("redirect_uri", redirect),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "etat-ids-0123456789"),
        ("nonce", "nonce-ids-0123456789"),
    ])
    .expect("query");
    let authorize = app.url(&format!("/oidc/authorize?{query}"));
    // Control: Alice's own usager is offered.
    let (status, html) = page(&client, &format!("{authorize}&ac_usager={}", own.usager)).await;
    assert_eq!(status, 200);
    assert!(html.contains(&own.family_name), "{html}");
    let (_, list) = page(&client, &authorize).await;
    for (label, rows) in &foreign {
        assert!(!list.contains(&rows.family_name), "liste ({label})");
        let (status, html) = page(&client, &format!("{authorize}&ac_usager={}", rows.usager)).await;
        assert_eq!(status, 200, "{label}");
        assert!(!html.contains(&rows.family_name), "page de choix ({label})");
        let csrf = csrf_of(&html);
        let mut fields: Vec<(String, String)> = serde_urlencoded::from_str(&query).expect("champs");
        fields.push(("csrf".into(), csrf));
        fields.push(("ac_usager".into(), rows.usager.to_string()));
        fields.push(("ac_categorie".into(), "logement".into()));
        fields.push(("ac_action".into(), "choisir".into()));
        let borrowed: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let resp = client.post(&app.url("/oidc/choix"), &borrowed).await;
        assert!(!location(&resp).contains("code="), "code émis ({label})");
    }
    for dep in ["dep_33", "dep_01"] {
        let grants: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {dep}.oidc_grants"
        )))
        .fetch_one(&app.db.admin)
        .await
        .expect("grants");
        assert_eq!(grants, 0, "{dep}");
    }
}
