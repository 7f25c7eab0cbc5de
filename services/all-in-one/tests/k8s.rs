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
    assert_eq!(report.matches("passed for resource").count(), 6, "{report}");
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
