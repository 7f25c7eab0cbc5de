//! The operators' CLI, run as a process against a fresh database: what it does, and that bad
//! input gets one clear line, a non-zero exit, and changes nothing.

use std::process::Output;

use test_support::database::TestDatabase;

async fn tenant_admin(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tenant-admin"))
        // Absent means production, which refuses the local stack's keys and the demo.
        .env("AC_ENVIRONMENT", "development")
        .arg("--database-url")
        .arg(url)
        .arg("--app-role")
        .arg(test_support::database::app_role())
        .args(args)
        .output()
        .await
        .expect("tenant-admin")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn tenant_count(db: &TestDatabase) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM platform.tenants")
        .fetch_one(&db.admin)
        .await
        .expect("count")
}

#[tokio::test]
async fn migrate_creates_every_departement_schema_with_its_own_role() {
    let db = TestDatabase::create().await;
    let out = tenant_admin(&db.admin_url, &["migrate"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "101 schémas départementaux à la version {}",
            foundation::tenancy::migrate::DEPARTEMENT_MIGRATIONS.latest_version()
        )),
        "{stdout}"
    );
    let ready: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform.departement_schemas WHERE status = 'ready'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("count");
    assert_eq!(ready, 101);
    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname LIKE $1")
        .bind(format!("{}_dep_%", db.name))
        .fetch_one(&db.admin)
        .await
        .expect("roles");
    assert_eq!(roles, 101);
    // Running it again is a no-op.
    let again = tenant_admin(&db.admin_url, &["migrate"]).await;
    assert!(String::from_utf8_lossy(&again.stdout).contains("(0 migration(s) appliquée(s))"));
}

#[tokio::test]
async fn tenants_are_created_listed_and_duplicates_refused() {
    let db = TestDatabase::create().await;
    let council = tenant_admin(
        &db.admin_url,
        &[
            "tenants",
            "create",
            "--departement",
            "2a",
            "--name",
            "Collectivité de Corse",
        ],
    )
    .await;
    assert!(council.status.success(), "{}", stderr(&council));
    let city = tenant_admin(
        &db.admin_url,
        &[
            "tenants",
            "create",
            "--commune",
            "97411",
            "--name",
            "Saint-Denis",
        ],
    )
    .await;
    assert!(city.status.success(), "{}", stderr(&city));

    let list = tenant_admin(&db.admin_url, &["tenants", "list", "--json"]).await;
    let tenants: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    let codes: Vec<(&str, &str)> = tenants
        .as_array()
        .expect("liste")
        .iter()
        .map(|t| {
            (
                t["kind"].as_str().unwrap_or_default(),
                t["departement_code"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(codes, [("departement", "2A"), ("commune", "974")]);

    let duplicate = tenant_admin(
        &db.admin_url,
        &[
            "tenants",
            "create",
            "--departement",
            "2A",
            "--name",
            "Autre",
        ],
    )
    .await;
    assert_eq!(duplicate.status.code(), Some(1));
    assert_eq!(
        stderr(&duplicate).trim(),
        "erreur : ce tenant existe déjà : le conseil départemental du 2A (Corse-du-Sud)"
    );
    assert_eq!(tenant_count(&db).await, 2);
}

#[tokio::test]
async fn bad_input_is_one_clear_line_and_changes_nothing() {
    let db = TestDatabase::create().await;
    for (args, expected) in [
        (
            vec!["tenants", "create", "--departement", "20", "--name", "X"],
            "code de département inconnu « 20 »",
        ),
        (
            vec!["tenants", "create", "--commune", "99999", "--name", "X"],
            "code commune INSEE invalide « 99999 »",
        ),
        (
            vec!["tenants", "create", "--departement", "75", "--name", "   "],
            "le nom du tenant est vide",
        ),
        (
            vec!["migrate", "--only", "96"],
            "code de département inconnu « 96 »",
        ),
    ] {
        let out = tenant_admin(&db.admin_url, &args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("erreur : ") && err.contains(expected),
            "{args:?}: {err}"
        );
    }
    assert_eq!(tenant_count(&db).await, 0);
    let schemas: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.departement_schemas")
        .fetch_one(&db.admin)
        .await
        .expect("count");
    assert_eq!(schemas, 0);
}

#[tokio::test]
async fn an_unreachable_database_is_reported_plainly() {
    let out = tenant_admin(
        "postgres://nobody:secret-password@127.0.0.1:9/none",
        &["tenants", "list"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("erreur : base de données injoignable"),
        "{err}"
    );
    assert!(
        !err.contains("secret-password"),
        "le mot de passe ne doit jamais s'afficher : {err}"
    );
}

#[tokio::test]
async fn the_demo_territory_loads_twice_without_duplicates() {
    let db = TestDatabase::create().await;
    for _ in 0..2 {
        let out = tenant_admin(&db.admin_url, &["demo"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(
        tenant_count(&db).await,
        3,
        "the council, Bordeaux, Mérignac"
    );
    let structures: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.structures")
        .fetch_one(&db.admin)
        .await
        .expect("count");
    assert_eq!(structures, 6, "five structures and the guardian service");
    let requests: Vec<String> = sqlx::query_scalar(
        "SELECT reference FROM dep_33.structure_requests WHERE status = 'submitted' ORDER BY 1",
    )
    .fetch_all(&db.admin)
    .await
    .expect("demandes");
    assert_eq!(requests, ["HAB-33-DEMO0001", "HAB-33-DEMO0002"]);
    let professionals: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.professionals")
        .fetch_one(&db.admin)
        .await
        .expect("count");
    assert_eq!(
        professionals, 10,
        "the nine demo accounts and the withdrawn aidant"
    );
    // Training: a past and a coming session, seven files, one per step of the path, each once
    // however many runs.
    let stages: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT (SELECT count(*) FROM platform.training_sessions), (SELECT count(*) FROM platform.training_registrations),
                (SELECT count(*) FROM dep_33.habilitation_files)",
    )
    .fetch_all(&db.admin)
    .await
    .expect("formation");
    assert_eq!(stages, vec![(2, 6, 7)]);
    let path: Vec<(String, String, Option<String>, bool, bool, bool)> = sqlx::query_as(
        "SELECT f.first_name, f.state, r.status,
                EXISTS (SELECT 1 FROM platform.pix_results p WHERE p.file_id = f.id),
                EXISTS (SELECT 1 FROM platform.charter_acceptances c WHERE c.email = f.email),
                EXISTS (SELECT 1 FROM platform.habilitation_activations a WHERE a.file_id = f.id)
         FROM dep_33.habilitation_files f
         LEFT JOIN platform.training_registrations r ON r.file_id = f.id
         ORDER BY f.first_name",
    )
    .fetch_all(&db.admin)
    .await
    .expect("parcours");
    let step = |name: &str| path.iter().find(|p| p.0 == name).cloned().expect(name);
    assert_eq!(step("Anne").1, "to_train");
    assert_eq!(step("Anne").2, None);
    assert_eq!(step("Bruno").2.as_deref(), Some("registered"));
    assert_eq!(
        (step("David").2.as_deref(), step("David").3, step("David").4),
        (Some("attended"), false, false)
    );
    assert_eq!((step("Chloé").3, step("Chloé").4), (true, false));
    assert_eq!((step("Emma").3, step("Emma").4), (false, true));
    assert_eq!(
        (step("Alice").1.as_str(), step("Alice").5),
        ("active", true)
    );
    assert_eq!(step("Fabien").1, "withdrawn");
    let factors: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform.second_factors WHERE confirmed_at IS NOT NULL",
    )
    .fetch_one(&db.admin)
    .await
    .expect("count");
    assert_eq!(factors, 9);
    // The guardian service's 300 measures, shared by its two delegates, recorded once however
    // many runs.
    let (measures, delegates, recorded): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT delegate_id),
                (SELECT count(*) FROM dep_33.journal WHERE kind = 'judicial_measure_recorded')
         FROM dep_33.judicial_measures j JOIN dep_33.structures s ON s.id = j.structure_id
         WHERE s.guardian_service AND j.identified_by = 'civil_status'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("mesures");
    assert_eq!((measures, delegates, recorded), (300, 2, 300));
    // Six usagers with one mandate each (one revoked), journaled once, chain intact; and the
    // 300 people under measure.
    let (usagers, mandates, revoked): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM dep_33.usagers), (SELECT count(*) FROM dep_33.mandates),
                (SELECT count(*) FROM dep_33.mandates WHERE ended_reason = 'revoked')",
    )
    .fetch_one(&db.admin)
    .await
    .expect("count");
    assert_eq!((usagers, mandates, revoked), (306, 306, 1));
    let created: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dep_33.journal WHERE kind = 'mandate_created'")
            .fetch_one(&db.admin)
            .await
            .expect("count");
    assert_eq!(created, 306);
    let out = tenant_admin(&db.admin_url, &["journal", "verify", "--departement", "33"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // A month of figures, and yesterday's burst at the Bastide that the anomaly job raises.
    let days: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT day) FROM dep_33.stats_daily WHERE day >= (now() AT TIME ZONE 'Europe/Paris')::date - 35",
    )
    .fetch_one(&db.admin)
    .await
    .expect("jours");
    assert!(days >= 20, "{days}");
    // The territory spaces read the same month from the tenants' table.
    let (daily, monthly): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT sum(used)::bigint FROM dep_33.stats_daily),
                (SELECT sum(used)::bigint FROM dep_33.stats_tenant_months)",
    )
    .fetch_one(&db.admin)
    .await
    .expect("mois");
    assert!(daily > 0 && daily == monthly, "{daily} {monthly}");
    let tenancy = test_support::tenancy(db.admin.clone()).await;
    let ctx = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse("33").expect("33"))
        .await
        .expect("ctx");
    let yesterday = foundation::paris::today().previous_day().expect("hier");
    let found = habilitation_desk::alerts::detect_day(&ctx, &Default::default(), yesterday)
        .await
        .expect("détection");
    assert!(
        found
            .iter()
            .any(|a| a.rule == "creations" && a.figure == 40),
        "{found:#?}"
    );
}

#[tokio::test]
async fn professionals_are_created_with_an_activation_mail_and_deactivated() {
    let db = TestDatabase::create().await;
    let email = format!("creee-{}@example.test", std::process::id());
    let out = tenant_admin(
        &db.admin_url,
        &[
            "professionals",
            "create",
            "--email",
            &email,
            "--name",
            "Zoé Créée",
            "--role",
            "national_admin",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    // No mailer runs in this test: the message waits in the outbox, ready to be sent.
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform.outbox WHERE recipient = $1 AND template = 'enrolment_link'",
    )
    .bind(&email)
    .fetch_one(&db.admin)
    .await
    .expect("outbox");
    assert_eq!(queued, 1);

    for (args, expected) in [
        (
            vec![
                "professionals",
                "create",
                "--email",
                "x@example.test",
                "--name",
                "X",
                "--role",
                "chef",
            ],
            "rôle inconnu « chef »",
        ),
        (
            vec![
                "professionals",
                "create",
                "--email",
                "x@example.test",
                "--name",
                "X",
                "--role",
                "aidant",
            ],
            "demande --structure",
        ),
        (
            vec![
                "professionals",
                "create",
                "--email",
                "pas-une-adresse",
                "--name",
                "X",
                "--role",
                "national_admin",
            ],
            "adresse e-mail invalide",
        ),
        (
            vec![
                "professionals",
                "create",
                "--email",
                &email,
                "--name",
                "X",
                "--role",
                "national_admin",
            ],
            "existe déjà",
        ),
    ] {
        let out = tenant_admin(&db.admin_url, &args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.professionals")
        .fetch_one(&db.admin)
        .await
        .expect("count");
    assert_eq!(accounts, 1, "les erreurs n'ont rien créé");

    let out = tenant_admin(
        &db.admin_url,
        &[
            "professionals",
            "deactivate",
            "--email",
            &email,
            "--reason",
            "départ",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let active: bool =
        sqlx::query_scalar("SELECT active FROM platform.professionals WHERE email = $1")
            .bind(&email)
            .fetch_one(&db.admin)
            .await
            .expect("compte");
    assert!(!active);
}

#[tokio::test]
async fn cards_are_imported_from_a_file_with_a_line_report() {
    let db = TestDatabase::create().await;
    let file = std::env::temp_dir().join(format!("cartes-{}.csv", std::process::id()));
    std::fs::write(
        &file,
        "serial,seed\nCARTE-F001,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\nCARTE-F002,???\n",
    )
    .expect("fichier");
    let out = tenant_admin(
        &db.admin_url,
        &["cards", "import", "--file", file.to_str().expect("chemin")],
    )
    .await;
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ligne 2 (CARTE-F001) : importée"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ligne 3 (CARTE-F002) : refusée"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 carte(s) importée(s), 1 ligne(s) refusée(s)"),
        "{stdout}"
    );
    let missing = tenant_admin(
        &db.admin_url,
        &["cards", "import", "--file", "/nulle/part.csv"],
    )
    .await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("fichier illisible"));
}

#[tokio::test]
async fn the_totp_key_rotates_and_every_seed_stays_usable() {
    use base64::Engine;
    use sha2::Digest;
    let db = TestDatabase::create().await;
    assert!(
        tenant_admin(&db.admin_url, &["demo"])
            .await
            .status
            .success()
    );
    let new_key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let out = tenant_admin(
        &db.admin_url,
        &[
            "keys",
            "rotate-totp",
            "--new-key",
            &new_key,
            "--new-version",
            "2",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT DISTINCT key_version FROM platform.second_factors")
            .fetch_all(&db.admin)
            .await
            .expect("versions");
    assert_eq!(versions, vec![2]);
    let cipher =
        foundation::auth::secrets::SeedCipher::new(&new_key.clone().into(), 2).expect("clé");
    let (factor, ciphertext, nonce): (uuid::Uuid, Vec<u8>, Vec<u8>) = sqlx::query_as(
        "SELECT f.id, f.seed_ciphertext, f.seed_nonce FROM platform.second_factors f JOIN platform.professionals p ON p.id = f.professional_id
         WHERE p.email = 'alice.aidant@demo.aidantsconnect.test' AND f.aad_bound",
    )
    .fetch_one(&db.admin)
    .await
    .expect("facteur");
    let expected =
        sha2::Sha256::digest(b"aidants-connect-demo:alice.aidant@demo.aidantsconnect.test")[..20]
            .to_vec();
    assert_eq!(
        cipher
            .decrypt_for(&ciphertext, &nonce, 2, Some(factor.as_bytes()))
            .expect("déchiffré, lié à sa ligne"),
        expected
    );
    // The old key no longer opens anything; a second rotation with it fails and changes nothing.
    let again = tenant_admin(
        &db.admin_url,
        &[
            "keys",
            "rotate-totp",
            "--new-key",
            &new_key,
            "--new-version",
            "3",
        ],
    )
    .await;
    assert_eq!(again.status.code(), Some(1));
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT DISTINCT key_version FROM platform.second_factors")
            .fetch_all(&db.admin)
            .await
            .expect("versions");
    assert_eq!(versions, vec![2]);
}

#[tokio::test]
async fn a_tenant_key_rotation_is_refused_for_an_unknown_tenant() {
    let db = TestDatabase::create().await;
    let out = tenant_admin(
        &db.admin_url,
        &[
            "keys",
            "rotate-tenant",
            "--tenant",
            "00000000-0000-0000-0000-000000000000",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("tenant inconnu"), "{}", stderr(&out));
    assert!(
        tenant_admin(&db.admin_url, &["demo"])
            .await
            .status
            .success()
    );
    let council: String =
        sqlx::query_scalar("SELECT id::text FROM platform.tenants WHERE kind = 'departement'")
            .fetch_one(&db.admin)
            .await
            .expect("tenant");
    let out = tenant_admin(
        &db.admin_url,
        &["keys", "rotate-tenant", "--tenant", &council],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 document(s) rechiffré(s)"));
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.tenant_keys")
        .fetch_one(&db.admin)
        .await
        .expect("clés");
    assert_eq!(
        versions, 2,
        "version 1 créée à la première utilisation, puis la 2"
    );
}

#[tokio::test]
async fn internal_callers_get_a_token_once_and_can_be_disabled() {
    let db = TestDatabase::create().await;
    let url = db.admin_url.clone();
    let add = move |name: &'static str| {
        let url = url.clone();
        async move {
            tenant_admin(
                &url,
                &[
                    "internal",
                    "caller",
                    "add",
                    "--name",
                    name,
                    "--kinds",
                    "attestation,court_decision",
                    "--departements",
                    "33",
                ],
            )
            .await
        }
    };
    let added = add("mandate-service").await;
    assert!(added.status.success(), "{}", stderr(&added));
    let printed = String::from_utf8_lossy(&added.stdout);
    let token = printed.lines().last().expect("jeton").trim().to_owned();
    let stored: Vec<u8> = sqlx::query_scalar(
        "SELECT token_sha256 FROM platform.internal_callers WHERE name = 'mandate-service'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("appelant");
    assert_eq!(
        stored,
        foundation::auth::secrets::token_hash(&token),
        "seule l'empreinte est gardée"
    );
    test_support::secrets::assert_nowhere_in_clear(&db.admin, "le jeton d'appelant", &token).await;
    let again = add("mandate-service").await;
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("déjà enregistré"),
        "{}",
        stderr(&again)
    );
    let bad = add("Service Majuscule").await;
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("nom invalide"), "{}", stderr(&bad));
    let disabled = tenant_admin(
        &db.admin_url,
        &["internal", "caller", "disable", "--name", "mandate-service"],
    )
    .await;
    assert!(disabled.status.success(), "{}", stderr(&disabled));
    let list = tenant_admin(&db.admin_url, &["internal", "caller", "list"]).await;
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "mandate-service\tdésactivé\tattestation,court_decision\t33\n"
    );
}

#[tokio::test]
async fn pending_letters_are_batched_listed_and_written_to_a_pdf_file() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let structure = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO dep_33.structures (id, tenant_id, name, kind, commune_code)
         VALUES ($1, $2, 'CCAS de Bègles', 'ccas', '33039')",
    )
    .bind(structure)
    .bind(uuid::Uuid::new_v4())
    .execute(&db.admin)
    .await
    .expect("structure");
    for who in ["Mme Angela DUBOIS", "M. Jean MARTIN"] {
        sqlx::query(
            "INSERT INTO dep_33.outbox (id, channel, recipient, template, payload, structure_id)
             VALUES (gen_random_uuid(), 'letter', $1, 'mandate_used', $2, $3)",
        )
        .bind(format!("{who}\n12 rue des Lilas\n33130 Bègles"))
        .bind(serde_json::json!({"date": "23/11/2026 à 10h05", "structure": "CCAS de Bègles", "demarche": "Logement"}))
        .bind(structure)
        .execute(&db.admin)
        .await
        .expect("courrier");
    }
    let batch = tenant_admin(&db.admin_url, &["letters", "batch", "--departement", "33"]).await;
    assert!(batch.status.success(), "{}", stderr(&batch));
    let out = String::from_utf8_lossy(&batch.stdout).into_owned();
    assert!(
        out.contains("2 courrier(s)") && out.ends_with("1 lot(s) préparé(s)\n"),
        "{out}"
    );
    let id = out.split_whitespace().nth(1).expect("lot").to_owned();
    let again = tenant_admin(&db.admin_url, &["letters", "batch", "--departement", "33"]).await;
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "0 lot(s) préparé(s)\n"
    );
    let list = tenant_admin(&db.admin_url, &["letters", "list", "--departement", "33"]).await;
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        listed.starts_with(&id) && listed.contains("CCAS de Bègles"),
        "{listed}"
    );
    let file = std::env::temp_dir().join(format!("lot-{id}.pdf"));
    let download = tenant_admin(
        &db.admin_url,
        &[
            "letters",
            "download",
            "--departement",
            "33",
            "--batch",
            &id,
            "--out",
            file.to_str().expect("chemin"),
        ],
    )
    .await;
    assert!(download.status.success(), "{}", stderr(&download));
    let pdf = std::fs::read(&file).expect("fichier");
    let _ = std::fs::remove_file(&file);
    let text = foundation::pdf::shown_text(&pdf);
    assert!(
        text.contains("Mme Angela DUBOIS") && text.contains("M. Jean MARTIN"),
        "{text}"
    );
    let unknown = tenant_admin(
        &db.admin_url,
        &[
            "letters",
            "download",
            "--departement",
            "33",
            "--batch",
            &uuid::Uuid::new_v4().to_string(),
            "--out",
            "/tmp/x.pdf",
        ],
    )
    .await;
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("lot inconnu"),
        "{}",
        stderr(&unknown)
    );
}

#[tokio::test]
async fn internal_callers_are_granted_named_departements_only() {
    let db = TestDatabase::create().await;
    let add = |name: &'static str, departements: &'static str| {
        let url = db.admin_url.clone();
        async move {
            tenant_admin(
                &url,
                &[
                    "internal",
                    "caller",
                    "add",
                    "--name",
                    name,
                    "--kinds",
                    "attestation",
                    "--departements",
                    departements,
                ],
            )
            .await
        }
    };
    let added = add("mandate-service", "33,2a").await;
    assert!(added.status.success(), "{}", stderr(&added));
    let granted: Vec<String> = sqlx::query_scalar(
        "SELECT departements FROM platform.internal_callers WHERE name = 'mandate-service'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("appelant");
    assert_eq!(granted, ["33", "2A"]);
    let bad = add("other-service", "33,99").await;
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("99"), "{}", stderr(&bad));
    let none = tenant_admin(
        &db.admin_url,
        &[
            "internal",
            "caller",
            "add",
            "--name",
            "third-service",
            "--kinds",
            "attestation",
        ],
    )
    .await;
    assert!(
        !none.status.success(),
        "un appelant sans territoire n'a pas de sens"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.internal_callers")
        .fetch_one(&db.admin)
        .await
        .expect("count");
    assert_eq!(count, 1);
    let list = tenant_admin(&db.admin_url, &["internal", "caller", "list"]).await;
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "mandate-service\tactif\tattestation\t33,2A\n"
    );
}

#[tokio::test]
async fn pix_results_import_as_a_stream_with_a_line_report_and_never_twice() {
    let db = TestDatabase::with_departements(&["33"]).await;
    // Fifty habilitation files (their index entries are what the import matches).
    let mut known = Vec::new();
    for i in 0..50 {
        let email = format!("aidant{i}@pix.example.test");
        sqlx::query(
            "INSERT INTO platform.habilitation_file_index (file_id, departement_code, structure_id, email, display_name)
             VALUES (gen_random_uuid(), '33', gen_random_uuid(), $1, 'Aidant')",
        )
        .bind(&email)
        .execute(&db.admin)
        .await
        .expect("index");
        known.push(email);
    }
    let dir = std::env::temp_dir().join(format!("pix-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dossier");
    // A wrong header refuses the whole file.
    let bad = dir.join("mauvais.csv");
    std::fs::write(
        &bad,
        "email;score;date\r\naidant0@pix.example.test;512;2026-11-02\r\n",
    )
    .expect("fichier");
    let out = tenant_admin(
        &db.admin_url,
        &["pix", "import", "--file", bad.to_str().expect("chemin")],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("en-tête invalide"),
        "{}",
        stderr(&out)
    );
    let results = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM platform.pix_results")
            .fetch_one(&db.admin)
            .await
            .expect("count")
    };
    assert_eq!(results().await, 0);
    // 100,000 lines with a BOM, semicolons and Windows line ends: the fifty known people, and
    // lines for unknown people, bad scores, bad dates and one duplicate.
    let mut csv = String::from("\u{feff}identifiant;score;date\r\n");
    for (i, email) in known.iter().enumerate() {
        csv.push_str(&format!(
            "{email};{};2026-11-{:02}\r\n",
            300 + i,
            1 + i % 28
        ));
    }
    csv.push_str("aidant0@pix.example.test;400;2026-11-03\r\n");
    csv.push_str("personne@inconnue.example.test;500;2026-11-03\r\n");
    csv.push_str("aidant-x@pix.example.test;2000;2026-11-03\r\n");
    csv.push_str("aidant-y@pix.example.test;500;31/02/2026\r\n");
    for i in 0..(100_000 - 54) {
        csv.push_str(&format!(
            "inconnu{i}@ailleurs.example.test;450;02/11/2026\r\n"
        ));
    }
    let big = dir.join("resultats.csv");
    std::fs::write(&big, &csv).expect("fichier");
    let out = tenant_admin(
        &db.admin_url,
        &[
            "pix",
            "import",
            "--file",
            big.to_str().expect("chemin"),
            "--quiet",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("50 ligne(s) importée(s), 99950 ligne(s) non importée(s)"),
        "{}",
        &stdout[stdout.len().saturating_sub(300)..]
    );
    assert!(stdout.contains("ligne 52 (aidant0@pix.example.test) : doublon"));
    assert!(stdout.contains("ligne 53 (personne@inconnue.example.test) : personne inconnue"));
    assert!(stdout.contains("ligne 54 (aidant-x@pix.example.test) : score invalide"));
    assert!(stdout.contains("ligne 55 (aidant-y@pix.example.test) : date invalide"));
    assert_eq!(results().await, 50);
    // The same file again: nothing imported twice.
    let out = tenant_admin(
        &db.admin_url,
        &[
            "pix",
            "import",
            "--file",
            big.to_str().expect("chemin"),
            "--quiet",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("0 ligne(s) importée(s), 100000 ligne(s) non importée(s)"));
    assert!(stdout.contains("ligne 2 (aidant0@pix.example.test) : déjà importé"));
    assert_eq!(results().await, 50);
    let journaled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform.security_journal WHERE kind = 'pix_imported'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("journal");
    assert!(journaled >= 2);
    std::fs::remove_dir_all(&dir).ok();
}

/// `retention plan` says what the job would do before it runs; `retention set` refuses periods
/// out of bounds and changes nothing; `usagers erase` of nobody says so.
#[tokio::test]
async fn the_retention_plan_shows_before_anything_runs_and_bad_periods_are_refused() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let out = tenant_admin(
        &db.admin_url,
        &[
            "tenants",
            "create",
            "--departement",
            "33",
            "--name",
            "Gironde",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let tenant: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM platform.tenants WHERE departement_code = '33'")
            .fetch_one(&db.admin)
            .await
            .expect("tenant");
    let out = tenant_admin(&db.admin_url, &["retention", "plan", "--departement", "33"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "33 : 0 mandat(s) à archiver, 0 à purger, 0 personne(s) à effacer, 0 document(s) à supprimer du stockage"
        ),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let id = tenant.to_string();
    let periods = || async {
        sqlx::query_as::<_, (i32, i32)>(
            "SELECT mandate_archive_years, mandate_purge_years FROM platform.tenants WHERE id = $1",
        )
        .bind(tenant)
        .fetch_one(&db.admin)
        .await
        .expect("durées")
    };
    let out = tenant_admin(
        &db.admin_url,
        &[
            "retention",
            "set",
            "--tenant",
            &id,
            "--archive-years",
            "0",
            "--purge-years",
            "3",
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("durées refusées"), "{}", stderr(&out));
    assert_eq!(periods().await, (3, 3));
    let out = tenant_admin(
        &db.admin_url,
        &[
            "retention",
            "set",
            "--tenant",
            &id,
            "--archive-years",
            "5",
            "--purge-years",
            "5",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(periods().await, (5, 5));
    let nobody = uuid::Uuid::new_v4().to_string();
    let out = tenant_admin(
        &db.admin_url,
        &[
            "usagers",
            "erase",
            "--departement",
            "33",
            "--usager",
            &nobody,
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Aucune personne"), "{}", stderr(&out));
}

/// `structures guardian` flags a structure as a guardian service (and `--non` unflags it),
/// journaled; an unknown structure is said so and nothing changes.
#[tokio::test]
async fn a_structure_is_flagged_as_a_guardian_service_and_back() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let structure = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO dep_33.structures (id, tenant_id, name, kind, commune_code)
         VALUES ($1, $2, 'UDAF de la Gironde', 'association', '33063')",
    )
    .bind(structure)
    .bind(uuid::Uuid::new_v4())
    .execute(&db.admin)
    .await
    .expect("structure");
    let flag = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT guardian_service FROM dep_33.structures WHERE id = $1",
        )
        .bind(structure)
        .fetch_one(&db.admin)
        .await
        .expect("drapeau")
    };
    let id = structure.to_string();
    let args = [
        "structures",
        "guardian",
        "--departement",
        "33",
        "--structure",
        &id,
    ];
    let out = tenant_admin(&db.admin_url, &args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(flag().await);
    let mut off = args.to_vec();
    off.push("--non");
    let out = tenant_admin(&db.admin_url, &off).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!flag().await);
    let nobody = uuid::Uuid::new_v4().to_string();
    let out = tenant_admin(
        &db.admin_url,
        &[
            "structures",
            "guardian",
            "--departement",
            "33",
            "--structure",
            &nobody,
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("aucune structure"),
        "{}",
        stderr(&out)
    );
    let journaled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dep_33.journal WHERE kind = 'structure_details_updated' AND structure_id = $1",
    )
    .bind(structure)
    .fetch_one(&db.admin)
    .await
    .expect("journal");
    assert_eq!(journaled, 2);
}

/// `measures import` reads a guardian service's CSV with a progress bar and prints the line
/// report; a second run changes nothing; a Latin-1 file is refused whole, said so, with nothing
/// written; a structure that is not a guardian service is refused.
#[tokio::test]
async fn measures_are_imported_from_a_csv_with_a_line_report_and_never_twice() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let structure = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO dep_33.structures (id, tenant_id, name, kind, commune_code, guardian_service)
         VALUES ($1, $2, 'ATMP de la Gironde', 'association', '33063', true)",
    )
    .bind(structure)
    .bind(uuid::Uuid::new_v4())
    .execute(&db.admin)
    .await
    .expect("structure");
    let delegate = uuid::Uuid::new_v4();
    sqlx::query(
        "WITH p AS (INSERT INTO platform.professionals (id, email, display_name)
                    VALUES ($1, 'delegue@atmp33.test', 'Délégué') RETURNING id)
         INSERT INTO platform.role_assignments (professional_id, role, domain, departement_code)
         SELECT id, 'aidant', 'structure:' || $2::text, '33' FROM p",
    )
    .bind(delegate)
    .bind(structure)
    .execute(&db.admin)
    .await
    .expect("délégué");
    let dir = std::env::temp_dir().join(format!("measures-{structure}"));
    std::fs::create_dir_all(&dir).expect("dossier");
    let header = "numero_dossier;nom_naissance;nom_usage;prenoms;sexe;date_naissance;code_lieu_naissance;code_pays_naissance;type_mesure;tribunal;date_jugement;numero_rg;date_debut;date_fin;date_revision;demarches;delegue";
    let good = dir.join("mesures.csv");
    std::fs::write(
        &good,
        format!(
            "{header}\n\
             M-1;Martin;;Jeanne;F;12/04/1941;33063;99100;tutelle;TJ Bordeaux;01/02/2026;RG 1;01/02/2026;01/02/2031;;social|argent;delegue@atmp33.test\n\
             M-2;Durand;;Paul;M;02/01/1950;;;curatelle simple;TJ Bordeaux;01/02/2026;RG 2;01/02/2026;01/02/2030;;logement;\n\
             M-3;Petit;;Luc;M;02/01/1950;;;tutelle;TJ Bordeaux;01/02/2026;RG 3;01/02/2026;01/02/2030;;social;inconnu@ailleurs.test\n"
        ),
    )
    .expect("fichier");
    let id = structure.to_string();
    let file = good.to_string_lossy().into_owned();
    let args = |path: &str| {
        vec![
            "measures".to_owned(),
            "import".into(),
            "--departement".into(),
            "33".into(),
            "--structure".into(),
            id.clone(),
            "--par".into(),
            "delegue@atmp33.test".into(),
            path.to_owned(),
        ]
    };
    let run = |a: Vec<String>| {
        let url = db.admin_url.clone();
        async move {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            tenant_admin(&url, &a).await
        }
    };
    let out = run(args(&file)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("2 importée(s), 0 mise(s) à jour, 0 déjà à jour, 1 refusée(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ligne 4 (dossier M-3) refusée : « inconnu@ailleurs.test » n'est pas un délégué de votre service"),
        "{stdout}"
    );
    let out = run(args(&file)).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("0 importée(s), 0 mise(s) à jour, 2 déjà à jour"),
        "{stdout}"
    );
    let measures = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM dep_33.judicial_measures")
            .fetch_one(&db.admin)
            .await
            .expect("mesures")
    };
    assert_eq!(measures().await, 2);
    // Latin-1: refused whole, named.
    let latin1 = dir.join("latin1.csv");
    let mut bytes = format!("{header}\n").into_bytes();
    bytes.extend_from_slice(b"M-9;B\xE9ranger;;Ir\xE8ne;F;12/04/1941;;;tutelle;TJ;01/02/2026;RG 9;01/02/2026;01/02/2031;;social;\n");
    std::fs::write(&latin1, bytes).expect("latin-1");
    let out = run(args(&latin1.to_string_lossy())).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "Ligne 2, colonne 6 : le fichier n'est pas en UTF-8 : il semble encodé en Latin-1"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(measures().await, 2);
    // Not a guardian service: refused.
    sqlx::query("UPDATE dep_33.structures SET guardian_service = false WHERE id = $1")
        .bind(structure)
        .execute(&db.admin)
        .await
        .expect("drapeau");
    let out = run(args(&file)).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("pas un service mandataire"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `outbox requeue` of a territory's dead letter wakes the outbox consumer before the command
/// exits (a wake-up left to a background task would die with the process, and the message
/// would wait for the consumer's sweep).
#[tokio::test]
async fn the_outbox_requeue_command_wakes_the_consumer_before_it_exits() {
    use foundation::outbox::{Channel, MAX_ATTEMPTS, NOTIFY_CHANNEL, OutboxMessage};
    use std::time::Duration;
    let db = TestDatabase::with_departements(&["33"]).await;
    let mut listener = sqlx::postgres::PgListener::connect(&db.admin_url)
        .await
        .expect("écoute");
    listener.listen(NOTIFY_CHANNEL).await.expect("LISTEN");
    async fn next(listener: &mut sqlx::postgres::PgListener) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .ok()
            .map(|n| n.expect("notification").payload().to_owned())
    }
    let tenancy = test_support::tenancy(db.admin.clone()).await;
    let gironde = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse("33").expect("33"))
        .await
        .expect("33");
    let mut tx = gironde.begin().await.expect("tx");
    let id = foundation::outbox::enqueue_tenant(
        &mut tx,
        &OutboxMessage {
            channel: Channel::Email,
            recipient: "lettre-morte@example.test".into(),
            template: "operator_test",
            payload: serde_json::json!({ "sent_by": "le test" }),
        },
    )
    .await
    .expect("file");
    tx.commit().await.expect("commit");
    // The queuing's own wake-up, then the message given up on.
    assert_eq!(next(&mut listener).await.as_deref(), Some("33"));
    sqlx::query("UPDATE dep_33.outbox SET attempts = $2 WHERE id = $1")
        .bind(id)
        .bind(MAX_ATTEMPTS)
        .execute(&db.admin)
        .await
        .expect("lettre morte");

    let out = tenant_admin(
        &db.admin_url,
        &["outbox", "requeue", "--id", &id.to_string()],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(next(&mut listener).await.as_deref(), Some("33"));
}
