//! The Kubernetes manifests render with kustomize and validate offline against the Kubernetes
//! schemas (kubernetes-validate, strict), in both layouts — one Deployment per service
//! (`staging`, `production`) and the all-in-one process (`small`) — and keep the properties we
//! rely on: probes, sized resources, the internal API out of the Ingress's reach, and every
//! public route of the route table routed to a process that serves it.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Each overlay, the processes it runs, and its number of resources.
const OVERLAYS: &[(&str, &[&str], usize)] = &[
    ("staging", SERVICES, 19),
    ("production", SERVICES, 19),
    ("small", &["aidants-connect"], 8),
];
const SERVICES: &[&str] = &[
    "habilitation-desk",
    "mandate-service",
    "document-vault-bridge",
    "notification-mailer",
];

fn render(overlay: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../k8s/overlays")
        .join(overlay);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("kubectl (installé par infra/run)");
    assert!(
        out.status.success(),
        "kustomize {overlay} : {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn validate(overlay: &str, rendered: &str, resources: usize) {
    let file =
        std::env::temp_dir().join(format!("aidants-k8s-{overlay}-{}.yaml", std::process::id()));
    std::fs::write(&file, rendered).expect("écriture");
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .arg(&file)
        .output()
        .expect("kubernetes-validate");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{overlay} : {report}");
    assert_eq!(
        report.matches("passed for resource").count(),
        resources,
        "{report}"
    );
}

/// The rendered resources, as JSON (PyYAML comes with kubernetes-validate).
fn resources(rendered: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(rendered.as_bytes())
        .expect("écriture");
    let out = child.wait_with_output().expect("python3");
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("json")
}

fn of_kind<'a>(all: &'a [Value], kind: &str) -> Vec<&'a Value> {
    all.iter().filter(|r| r["kind"] == kind).collect()
}

fn named<'a>(all: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(all, kind)
        .into_iter()
        .find(|r| r["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name}"))
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

/// The process a Deployment runs: the binary of its command.
fn binary(deployment: &Value) -> String {
    container(deployment)["command"][0]
        .as_str()
        .and_then(|c| c.rsplit('/').next())
        .expect("commande")
        .to_owned()
}

fn env<'a>(deployment: &'a Value, name: &str) -> Option<&'a Value> {
    container(deployment)["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

fn port_of(deployment: &Value, name: &str) -> u64 {
    container(deployment)["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("port {name}"))
}

/// The Deployment whose pods a Service selects.
fn selected<'a>(all: &'a [Value], service: &Value) -> &'a Value {
    let selector = service["spec"]["selector"].as_object().expect("selector");
    let matching: Vec<&Value> = of_kind(all, "Deployment")
        .into_iter()
        .filter(|d| {
            let labels = &d["spec"]["template"]["metadata"]["labels"];
            selector.iter().all(|(k, v)| &labels[k] == v)
        })
        .collect();
    assert_eq!(matching.len(), 1, "{service}");
    matching[0]
}

#[test]
fn every_overlay_renders_validates_and_runs_each_process_with_probes_and_sized_resources() {
    for (overlay, processes, count) in OVERLAYS {
        let rendered = render(overlay);
        validate(overlay, &rendered, *count);
        let all = resources(&rendered);
        let deployments = of_kind(&all, "Deployment");
        let mut run: Vec<String> = deployments.iter().map(|d| binary(d)).collect();
        run.sort();
        let mut expected: Vec<String> = processes.iter().map(|p| p.to_string()).collect();
        expected.sort();
        assert_eq!(run, expected, "{overlay}");
        // Production mode refuses the local stack's placeholder secrets.
        let config = of_kind(&all, "ConfigMap")[0];
        assert_eq!(config["data"]["AC_ENVIRONMENT"], "production", "{overlay}");
        // The administrator URL goes to the migration job only; the migrator sets the
        // département roles' passwords, every process logs in with them.
        assert_eq!(rendered.matches("AC_ADMIN_DATABASE_URL").count(), 1);
        assert_eq!(
            rendered.matches("key: tenant-role-secret").count(),
            deployments.len() + 1,
            "{overlay}"
        );
        assert_eq!(of_kind(&all, "Job").len(), 1, "{overlay}");
        for d in &deployments {
            let name = d["metadata"]["name"].as_str().expect("nom");
            let c = container(d);
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health", "{name}");
            assert_eq!(
                c["readinessProbe"]["httpGet"]["path"], "/health/ready",
                "{name}"
            );
            // Readiness answers within 2 s (its checks run at once, each bounded): the probe
            // waits for it (Kubernetes' default is 1 s).
            assert!(
                c["readinessProbe"]["timeoutSeconds"].as_u64() >= Some(3),
                "{name}: readinessProbe.timeoutSeconds"
            );
            assert_eq!(c["startupProbe"]["httpGet"]["path"], "/health", "{name}");
            for field in ["cpu", "memory"] {
                assert!(
                    c["resources"]["requests"][field].is_string(),
                    "{overlay} {name}: requests.{field}"
                );
            }
            assert!(c["resources"]["limits"]["memory"].is_string(), "{name}");
            assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
            assert_eq!(
                d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
                true
            );
            // Each process's settings: the same ConfigMap and every secret it validates.
            assert!(env(d, "AC_DATABASE__URL").is_some(), "{name}");
            assert!(env(d, "AC_SECURITY__LINK_SECRET").is_some(), "{name}");
            // Disruptions keep one pod of each process.
            let budget = named(&all, "PodDisruptionBudget", name);
            assert_eq!(budget["spec"]["minAvailable"], 1, "{name}");
        }
    }
    let production = resources(&render("production"));
    for name in ["habilitation-desk", "mandate-service"] {
        assert_eq!(
            named(&production, "Deployment", name)["spec"]["replicas"],
            3
        );
    }
}

/// The route table, `docs/ROUTES.md`: (path, service) of every route on the public listener.
fn public_routes() -> Vec<(String, String)> {
    let table =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ROUTES.md"))
            .expect("docs/ROUTES.md");
    let routes: Vec<(String, String)> = table
        .lines()
        .filter(|l| l.starts_with("| GET") || l.starts_with("| POST"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[5] == "public")
                .then(|| (cells[2].trim_matches('`').to_owned(), cells[6].to_owned()))
        })
        .collect();
    assert!(routes.len() > 150, "{} routes publiques lues", routes.len());
    routes
}

/// Kubernetes' `Prefix` match: `prefix` matches `path` element by element.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/"))
}

/// The Service an Ingress sends `path` to (the longest matching prefix wins).
fn backend_of(ingress: &Value, path: &str) -> (String, String) {
    let mut best: Option<(usize, String, String)> = None;
    for rule in ingress["spec"]["rules"].as_array().expect("rules") {
        for p in rule["http"]["paths"].as_array().expect("paths") {
            assert_eq!(p["pathType"], "Prefix");
            let prefix = p["path"].as_str().expect("path");
            if prefix_matches(prefix, path) && best.as_ref().is_none_or(|b| prefix.len() > b.0) {
                let service = &p["backend"]["service"];
                best = Some((
                    prefix.len(),
                    service["name"].as_str().expect("service").to_owned(),
                    service["port"]["name"].as_str().expect("port").to_owned(),
                ));
            }
        }
    }
    let (_, service, port) = best.unwrap_or_else(|| panic!("{path} : aucune règle"));
    (service, port)
}

#[test]
fn every_public_route_reaches_a_process_that_serves_it_and_the_internal_api_none() {
    let routes = public_routes();
    for (overlay, _, _) in OVERLAYS {
        let all = resources(&render(overlay));
        let ingresses = of_kind(&all, "Ingress");
        assert_eq!(ingresses.len(), 1, "{overlay}");
        let services: HashMap<String, &Value> = of_kind(&all, "Service")
            .into_iter()
            .map(|s| (s["metadata"]["name"].as_str().expect("nom").to_owned(), s))
            .collect();
        for (path, owner) in &routes {
            let (service, port) = backend_of(ingresses[0], path);
            assert_eq!(port, "http", "{overlay} {path}");
            let service = services
                .get(&service)
                .unwrap_or_else(|| panic!("{overlay}: Service {service}"));
            // The Service's port goes to the public listener, never the internal one.
            for p in service["spec"]["ports"].as_array().expect("ports") {
                assert_eq!(p["targetPort"], "http", "{overlay} {path}");
            }
            let process = binary(selected(&all, service));
            // Every process serves the shell (landing, legal pages, DSFR, health).
            let serves = process == "aidants-connect" || owner == "foundation" || &process == owner;
            assert!(serves, "{overlay}: {path} ({owner}) arrive à {process}");
        }
        // The internal API's path goes to a public listener, which answers 404.
        let (service, _) = backend_of(ingresses[0], "/internal/documents");
        assert_ne!(service, "document-vault-bridge-internal");
        assert!(!service.ends_with("-internal"), "{overlay}");
    }
}

#[test]
fn only_the_mandate_service_reaches_the_vault_internal_api() {
    for overlay in ["staging", "production"] {
        let all = resources(&render(overlay));
        let mandate = named(&all, "Deployment", "mandate-service");
        let vault = named(&all, "Deployment", "document-vault-bridge");
        let config = of_kind(&all, "ConfigMap")[0];
        assert_eq!(
            config["data"]["AC_HTTP__INTERNAL_PORT"],
            port_of(vault, "internal").to_string()
        );
        // The mandate service stores attestations through the vault's internal Service.
        let url = env(mandate, "AC_DOCUMENTS__VAULT_URL").expect("AC_DOCUMENTS__VAULT_URL");
        let host = url["value"]
            .as_str()
            .and_then(|u| u.strip_prefix("http://"))
            .expect("URL interne");
        let internal = named(&all, "Service", host);
        assert_eq!(binary(selected(&all, internal)), "document-vault-bridge");
        assert_eq!(internal["spec"]["ports"][0]["targetPort"], "internal");
        let token = env(mandate, "AC_DOCUMENTS__VAULT_TOKEN").expect("jeton");
        assert!(token["valueFrom"]["secretKeyRef"]["key"].is_string());
        for other in SERVICES.iter().filter(|s| **s != "mandate-service") {
            assert!(
                env(
                    named(&all, "Deployment", other),
                    "AC_DOCUMENTS__VAULT_TOKEN"
                )
                .is_none(),
                "{other}"
            );
        }

        // Network rules: the internal port admits the mandate service's pods only; the
        // ingress controller's namespace reaches the public port only.
        let internal_port = port_of(vault, "internal");
        let public_port = port_of(vault, "http");
        let mut internal_admitted = Vec::new();
        for policy in of_kind(&all, "NetworkPolicy") {
            let Some(rules) = policy["spec"]["ingress"].as_array() else {
                continue;
            };
            for rule in rules {
                let ports: Vec<u64> = rule["ports"]
                    .as_array()
                    .expect("ports")
                    .iter()
                    .filter_map(|p| p["port"].as_u64())
                    .collect();
                for from in rule["from"].as_array().expect("from") {
                    if from.get("namespaceSelector").is_some() {
                        assert_eq!(ports, [public_port], "{overlay}: {rule}");
                    }
                    if ports.contains(&internal_port) {
                        internal_admitted.push(from["podSelector"]["matchLabels"].clone());
                    }
                }
            }
        }
        assert_eq!(
            internal_admitted,
            [serde_json::json!({"app.kubernetes.io/component": "mandate-service"})],
            "{overlay}"
        );
    }
}
