//! The Kubernetes manifests render with kustomize and validate offline against the
//! Kubernetes schemas (kubernetes-validate, strict), and keep the properties we rely on.

use std::path::Path;
use std::process::Command;

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

fn validate(overlay: &str, rendered: &str) {
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
    assert_eq!(report.matches("passed for resource").count(), 8, "{report}");
}

#[test]
fn overlays_render_and_validate_strictly() {
    for overlay in ["staging", "production"] {
        let rendered = render(overlay);
        validate(overlay, &rendered);
        // Production mode refuses the local stack's placeholder secrets.
        assert!(rendered.contains("AC_ENVIRONMENT: production"), "{overlay}");
        assert!(rendered.contains("path: /health/ready"));
        assert!(rendered.contains("runAsNonRoot: true"));
        // The administrator URL goes to the migration job only.
        assert_eq!(rendered.matches("AC_ADMIN_DATABASE_URL").count(), 1);
        // The migrator sets the département roles' passwords, the pods log in with them.
        assert_eq!(rendered.matches("key: tenant-role-secret").count(), 2);
    }
    assert!(render("production").contains("replicas: 3"));
}

/// The rendered resources, as JSON (PyYAML comes with kubernetes-validate).
fn resources(overlay: &str) -> Vec<serde_json::Value> {
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
        .write_all(render(overlay).as_bytes())
        .expect("écriture");
    let out = child.wait_with_output().expect("python3");
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("json")
}

fn of_kind<'a>(all: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    all.iter().filter(|r| r["kind"] == kind).collect()
}

#[test]
fn the_ingress_reaches_only_the_public_port_never_the_internal_api() {
    for overlay in ["staging", "production"] {
        let all = resources(overlay);
        let deployment = of_kind(&all, "Deployment")[0];
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let port_of = |name: &str| {
            container["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .find(|p| p["name"] == name)
                .and_then(|p| p["containerPort"].as_u64())
                .unwrap_or_else(|| panic!("{overlay}: port {name}"))
        };
        let (public, internal) = (port_of("http"), port_of("internal"));
        assert_ne!(public, internal);
        let config = of_kind(&all, "ConfigMap")[0];
        assert_eq!(
            config["data"]["AC_HTTP__INTERNAL_PORT"],
            internal.to_string(),
            "{overlay}"
        );

        // The Ingress sends every rule to the public Service's public port.
        let ingresses = of_kind(&all, "Ingress");
        assert_eq!(ingresses.len(), 1, "{overlay}");
        let public_service = of_kind(&all, "Service")
            .into_iter()
            .find(|s| s["metadata"]["name"] == "aidants-connect")
            .expect("service public");
        let service_ports = public_service["spec"]["ports"].as_array().expect("ports");
        assert!(
            service_ports.iter().all(|p| p["targetPort"] == "http"),
            "{overlay}: le service public n'expose que le port public"
        );
        for rule in ingresses[0]["spec"]["rules"].as_array().expect("rules") {
            for path in rule["http"]["paths"].as_array().expect("paths") {
                let backend = &path["backend"]["service"];
                assert_eq!(backend["name"], "aidants-connect", "{overlay}");
                assert_eq!(backend["port"]["name"], "http", "{overlay}");
            }
        }

        // The network policy: the ingress controller's namespace reaches the public port only;
        // the internal port only from pods of the platform's own namespace.
        let policy = of_kind(&all, "NetworkPolicy")[0];
        for rule in policy["spec"]["ingress"].as_array().expect("ingress") {
            let ports: Vec<u64> = rule["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .filter_map(|p| p["port"].as_u64())
                .collect();
            let from_ingress = rule["from"]
                .as_array()
                .expect("from")
                .iter()
                .any(|f| f.get("namespaceSelector").is_some());
            if ports.contains(&internal) {
                assert!(!from_ingress, "{overlay}: {rule}");
                assert_eq!(ports, [internal], "{overlay}");
            }
            if from_ingress {
                assert_eq!(ports, [public], "{overlay}: {rule}");
            }
        }
    }
}
