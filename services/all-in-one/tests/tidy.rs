//! Tidy: rules of ARCHITECTURE.md that reading the source can check, run with the other tests
//! (no stack needed).
//!
//! - Only the tenancy module switches roles or search paths (`set_config`, `SET ROLE`,
//!   `search_path`).
//! - `AssertSqlSafe` (a statement built at run time) only in the tenancy module (DDL on
//!   validated identifiers) and the test harness. The statements built with `format!` that
//!   remain elsewhere are listed below with their count: a count may only go down, and an entry
//!   whose file no longer has any must be removed, so the list can only shrink.
//! - No source file over 800 lines; the few that are longer are listed with their length, which
//!   may only go down.
//! - `Tenancy::unguarded` (a territory without the guard's proof) only where it is listed, by
//!   file, with a count that may only go down: pages go through `Authorized::territory`.
//! - « Today » is the date in Paris (`foundation::paris::today`; in SQL `(now() AT TIME ZONE
//!   'Europe/Paris')::date`), never the UTC date nor the server's `current_date`: from
//!   midnight to 1 or 2 a.m. in France they differ.
//! - Every file and folder the code map of ARCHITECTURE.md names exists.
//! - Every table has an owner in docs/TABLES.md; a crate writes only the tables it owns or is
//!   listed for; a migration sits in the folder of a crate owning a table it touches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

/// Statements still built at run time, by file, at most this many.
const ASSERT_SQL_SAFE_LEFT: &[(&str, usize)] = &[];

/// Calls of `Tenancy::unguarded` (a territory reached without a professional guard's proof), by
/// file, at most this many, each group with its reason. Professionals' pages reach a territory
/// through the guard's proofs (`Authorized`, `TenantAuthorized`, `NationalAuthorized`) or the
/// mandate service's `Scope`; a new call anywhere fails this test.
const UNGUARDED_LEFT: &[(&str, usize)] = &[
    // Benchmarks and operators' tools.
    ("load-tests/src/citus_move.rs", 1),
    ("load-tests/src/lib.rs", 1),
    ("load-tests/src/mandates.rs", 1),
    ("load-tests/src/measures.rs", 1),
    ("load-tests/src/outbox.rs", 1),
    ("load-tests/src/statistics.rs", 1),
    ("load-tests/src/volume.rs", 1),
    ("tenant-admin/src/backup.rs", 2),
    ("tenant-admin/src/demo.rs", 1),
    ("tenant-admin/src/journal.rs", 3),
    ("tenant-admin/src/keys.rs", 1),
    ("tenant-admin/src/letters.rs", 2),
    ("tenant-admin/src/place.rs", 1),
    ("tenant-admin/src/professionals.rs", 3),
    ("tenant-admin/src/measures.rs", 1),
    ("tenant-admin/src/retention.rs", 3),
    ("tenant-admin/src/seed.rs", 1),
    // Scheduled jobs and workers (every served territory).
    ("services/habilitation-desk/src/alerts.rs", 2),
    ("services/habilitation-desk/src/requests/digest.rs", 1),
    ("services/habilitation-desk/src/requests/purge.rs", 1),
    ("services/habilitation-desk/src/statistics.rs", 1),
    ("services/habilitation-desk/src/activation.rs", 2),
    ("services/mandate-service/src/jobs.rs", 3),
    ("services/mandate-service/src/judicial/alerts.rs", 1),
    ("services/mandate-service/src/retention.rs", 1),
    ("services/notification-mailer/src/letters.rs", 1),
    ("services/notification-mailer/src/worker.rs", 1),
    // Other principals, each with its own check before the territory: an internal caller's
    // token and granted départements; a signed link; an OpenID client and its grant; an
    // issuer's session owning the request; a reviewer's scope of départements; a usager's
    // session and its own index rows; a remote consent's link; the public open data of places.
    ("services/document-vault-bridge/src/internal.rs", 1),
    ("services/document-vault-bridge/src/download.rs", 1),
    ("services/document-vault-bridge/src/lib.rs", 1),
    ("services/mandate-service/src/web/verification.rs", 1),
    ("services/mandate-service/src/idp/tokens.rs", 3),
    ("services/habilitation-desk/src/request_api.rs", 2),
    ("services/habilitation-desk/src/request_pages.rs", 2),
    ("services/habilitation-desk/src/structure_training.rs", 1),
    ("services/habilitation-desk/src/requests/mod.rs", 2),
    ("services/habilitation-desk/src/requests/acceptance.rs", 3),
    ("services/habilitation-desk/src/review.rs", 3),
    ("services/mandate-service/src/usager_space.rs", 3),
    ("services/mandate-service/src/remote_consent/person.rs", 1),
    // A transfer: the person's own index rows, from FranceConnect's identity in this request
    // (the recap) or from the new mandate's record (its completion and the job).
    ("services/mandate-service/src/transfers.rs", 3),
    ("services/habilitation-desk/src/places/mod.rs", 1),
    // The account page names the structures the professional holds a role in.
    ("services/habilitation-desk/src/account.rs", 1),
];

/// Files over [`MAX_LINES`], at most this long.
const LONG_FILES_LEFT: &[(&str, usize)] = &[
    ("services/habilitation-desk/src/requests/mod.rs", 1240),
    ("services/habilitation-desk/src/request_pages.rs", 1150),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("racine")
}

/// Production sources: every `src/` of the workspace's crates.
fn sources(root: &Path) -> Vec<(String, String)> {
    rust_files(root, "/src/")
}

/// The `.rs` files of the workspace's crates whose path contains `folder` (`/src/`, `/tests/`).
fn rust_files(root: &Path, folder: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![
        root.join("services"),
        root.join("tenant-admin"),
        root.join("load-tests"),
        root.join("policies"),
    ];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("dossier") {
            let path = entry.expect("entrée").path();
            let rel = path
                .strip_prefix(root)
                .expect("relatif")
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                if !rel.ends_with("/target") && !rel.contains("node_modules") {
                    stack.push(path);
                }
            } else if rel.ends_with(".rs") && rel.contains(folder) {
                out.push((rel, std::fs::read_to_string(&path).expect("source")));
            }
        }
    }
    out.sort();
    out
}

fn problems_of(
    files: &[(String, String)],
    architecture: &str,
    exists: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let tenancy = |f: &str| f.starts_with("services/foundation/src/tenancy/");
    let harness = |f: &str| f.starts_with("services/test-support/");
    let assert_left: BTreeMap<&str, usize> = ASSERT_SQL_SAFE_LEFT.iter().copied().collect();
    let long_left: BTreeMap<&str, usize> = LONG_FILES_LEFT.iter().copied().collect();
    let unguarded_left: BTreeMap<&str, usize> = UNGUARDED_LEFT.iter().copied().collect();
    for (file, text) in files {
        for needle in ["set_config", "SET ROLE", "search_path"] {
            if !tenancy(file) && !harness(file) && text.contains(needle) {
                problems.push(format!("{file} : « {needle} » hors du module tenancy"));
            }
        }
        if file != "services/foundation/src/paris.rs" {
            problems.extend(utc_today_problems(file, text));
        }
        let asserted = text.matches("AssertSqlSafe").count();
        if !tenancy(file) && !harness(file) {
            let allowed = assert_left.get(file.as_str()).copied().unwrap_or(0);
            if asserted > allowed {
                problems.push(format!(
                    "{file} : {asserted} AssertSqlSafe (au plus {allowed}) : écrivez la requête en entier"
                ));
            } else if asserted < allowed {
                problems.push(format!(
                    "{file} : {asserted} AssertSqlSafe, la liste en admet {allowed} : baissez-la"
                ));
            }
        }
        if !harness(file) {
            let unguarded = text.matches(".unguarded(").count();
            let allowed = unguarded_left.get(file.as_str()).copied().unwrap_or(0);
            if unguarded > allowed {
                problems.push(format!(
                    "{file} : {unguarded} Tenancy::unguarded (au plus {allowed}) : passez par le garde (Authorized::territory)"
                ));
            } else if unguarded < allowed {
                problems.push(format!(
                    "{file} : {unguarded} Tenancy::unguarded, la liste en admet {allowed} : baissez-la"
                ));
            }
        }
        let lines = text.lines().count();
        let ceiling = long_left.get(file.as_str()).copied().unwrap_or(MAX_LINES);
        if lines > ceiling {
            problems.push(format!(
                "{file} : {lines} lignes (au plus {ceiling}) : découpez-le"
            ));
        } else if ceiling > MAX_LINES && lines < ceiling {
            problems.push(format!(
                "{file} : {lines} lignes, la liste en admet {ceiling} : baissez-la"
            ));
        }
    }
    for (file, _) in ASSERT_SQL_SAFE_LEFT
        .iter()
        .chain(LONG_FILES_LEFT)
        .chain(UNGUARDED_LEFT)
    {
        if !files.iter().any(|(f, _)| f == file) {
            problems.push(format!(
                "{file} : listé mais absent : retirez-le de la liste"
            ));
        }
    }
    problems.extend(code_map_problems(architecture, exists));
    problems
}

/// « Today » read as the UTC date or the server's `current_date` in `text`, a call chain split
/// over lines included.
fn utc_today_problems(file: &str, text: &str) -> Vec<String> {
    let compact: String = text.split_whitespace().collect();
    ["now_utc().date()", "current_date"]
        .into_iter()
        .filter(|utc_today| compact.contains(utc_today))
        .map(|utc_today| format!(
            "{file} : « {utc_today} » n'est pas la date de Paris : aujourd'hui, c'est foundation::paris::today() (en SQL : (now() AT TIME ZONE 'Europe/Paris')::date)"
        ))
        .collect()
}

/// The code map's rows: `| `crate or path` | what, with `file.rs` and `folder/` named |`.
/// The first cell must exist; every `.rs` file or folder named in the second must exist under
/// it.
fn code_map_problems(architecture: &str, exists: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut problems = Vec::new();
    let map = architecture
        .split("## Code map")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_default();
    let mut rows = 0;
    for line in map.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let Some(place) = cells[0]
            .trim_start_matches("| `")
            .split('`')
            .next()
            .filter(|p| !p.contains('{'))
        else {
            continue;
        };
        rows += 1;
        if !exists(place) {
            problems.push(format!("ARCHITECTURE.md : « {place} » n'existe pas"));
            continue;
        }
        let what = cells.get(1).copied().unwrap_or_default();
        for named in what.split('`').skip(1).step_by(2) {
            let is_path = (named.ends_with(".rs") || named.ends_with('/'))
                && !named.contains(' ')
                && !named.contains('<');
            if is_path && !exists(&format!("{place}/**/{named}")) {
                problems.push(format!(
                    "ARCHITECTURE.md : « {named} » introuvable sous {place}"
                ));
            }
        }
    }
    if rows < 10 {
        problems.push(format!(
            "ARCHITECTURE.md : plan du code illisible ({rows} lignes)"
        ));
    }
    problems
}

/// Whether `pattern` exists: a plain path, or `place/**/tail` (a path ending with `tail`
/// somewhere under `place`).
fn exists_under(root: &Path, pattern: &str) -> bool {
    let Some((place, tail)) = pattern.split_once("/**/") else {
        return root.join(pattern).exists();
    };
    let tail = tail.trim_end_matches('/');
    let mut stack = vec![root.join(place)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.to_string_lossy();
            if name.ends_with(&format!("/{tail}")) {
                return true;
            }
            if path.is_dir() && !name.ends_with("/target") && !name.contains("node_modules") {
                stack.push(path);
            }
        }
    }
    false
}

/// `docs/TABLES.md`: (schema, table) → (owner, crates also allowed to write it).
fn table_owners(tables_md: &str) -> BTreeMap<(String, String), (String, Vec<String>)> {
    let mut owners = BTreeMap::new();
    let mut schema = "";
    for line in tables_md.lines() {
        if line.starts_with("## Territory") {
            schema = "departement";
        } else if line.starts_with("## Platform") {
            schema = "platform";
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if schema.is_empty() || cells.len() < 5 || !cells[1].starts_with('`') {
            continue;
        }
        let also = cells[3]
            .split(',')
            .filter_map(|w| w.split_whitespace().next())
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect();
        owners.insert(
            (schema.to_owned(), cells[1].trim_matches('`').to_owned()),
            (cells[2].to_owned(), also),
        );
    }
    owners
}

/// The crate a source file belongs to (`services/<crate>/…`, `tenant-admin/…`).
fn crate_of(file: &str) -> &str {
    match file.split('/').collect::<Vec<_>>().as_slice() {
        ["services", name, ..] => name,
        [name, ..] => name,
        [] => "",
    }
}

/// Tables written by a source text: (schema, table) after `INSERT INTO`, `UPDATE` or
/// `DELETE FROM` (lower-case names only, so `DO UPDATE SET` and `FOR UPDATE` are not).
fn written_tables(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for verb in ["INSERT INTO ", "UPDATE ", "DELETE FROM "] {
        for (at, _) in text.match_indices(verb) {
            let rest = text[at + verb.len()..].trim_start();
            let (schema, rest) = match rest.strip_prefix("platform.") {
                Some(rest) => ("platform", rest),
                None => ("departement", rest),
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((schema.to_owned(), name));
            }
        }
    }
    out
}

/// Crates that may write any table: the operators' commands and demo data, the benchmarks.
const WRITE_ANY: &[&str] = &["tenant-admin", "load-tests", "test-support"];

/// Every table created by a migration has an owner in `docs/TABLES.md`, and each crate writes
/// only the tables it owns or is listed for.
fn ownership_problems(
    files: &[(String, String)],
    tables_md: &str,
    migrations: &[(String, String)],
) -> Vec<String> {
    let owners = table_owners(tables_md);
    let mut problems = Vec::new();
    if owners.len() < 50 {
        problems.push(format!("docs/TABLES.md : {} tables lues", owners.len()));
    }
    for (file, sql) in migrations {
        let schema = if file.contains("/migrations/platform/") {
            "platform"
        } else {
            "departement"
        };
        for (at, _) in sql.match_indices("CREATE TABLE ") {
            let rest = sql[at + "CREATE TABLE ".len()..].trim_start();
            let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
            let rest = rest.strip_prefix("platform.").unwrap_or(rest);
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !owners.contains_key(&(schema.to_owned(), name.clone())) {
                problems.push(format!(
                    "{file} : la table {schema}.{name} n'a pas de propriétaire dans docs/TABLES.md"
                ));
            }
        }
        // A migration lives in the folder of a crate that owns at least one table it touches
        // (or foundation's, for the database-wide ones).
        let folder_crate = crate_of(file);
        let touches_owned = owners.iter().any(|((s, t), (owner, _))| {
            s == schema && owner == folder_crate && sql.contains(t.as_str())
        });
        if !touches_owned && folder_crate != "foundation" {
            problems.push(format!(
                "{file} : aucune table de {folder_crate} n'y est touchée : rangez-la chez son propriétaire"
            ));
        }
    }
    for (file, text) in files {
        let writer = crate_of(file);
        if WRITE_ANY.contains(&writer) {
            continue;
        }
        for key in written_tables(text) {
            // Not a table (a column list, a CTE name): the migrations' check covers tables.
            let Some((owner, also)) = owners.get(&key) else {
                continue;
            };
            if owner != writer && !also.iter().any(|a| a == writer) {
                problems.push(format!(
                    "{file} : écrit {}.{} dont le propriétaire est {owner} (docs/TABLES.md)",
                    key.0, key.1
                ));
            }
        }
    }
    problems
}

/// Every migration file of every service: (path, SQL).
fn migrations(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for service in std::fs::read_dir(root.join("services"))
        .expect("services")
        .flatten()
    {
        for scope in ["platform", "departement"] {
            let dir = service.path().join("migrations").join(scope);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let rel = path
                    .strip_prefix(root)
                    .expect("relatif")
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read_to_string(&path).expect("migration")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_source_keeps_the_rules_of_architecture_md() {
    let root = root();
    let files = sources(&root);
    assert!(files.len() > 100, "{} fichiers lus", files.len());
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("plan");
    let problems = problems_of(&files, &architecture, &|p| exists_under(&root, p));
    assert!(problems.is_empty(), "{problems:#?}");
    let tables = std::fs::read_to_string(root.join("docs/TABLES.md")).expect("docs/TABLES.md");
    let migrations = migrations(&root);
    assert!(
        migrations.len() > 40,
        "{} migrations lues",
        migrations.len()
    );
    let problems = ownership_problems(&files, &tables, &migrations);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Tests read « today » in Paris too: data a test writes for « yesterday » or « in ten days »
/// must mean the day the code under test computes, or the test fails from 10 or 11 p.m. UTC to
/// midnight (a demo burst « yesterday » in Paris was looked for on the UTC yesterday).
#[test]
fn the_tests_read_today_in_paris_too() {
    let root = root();
    let tests = rust_files(&root, "/tests/");
    assert!(tests.len() > 40, "{} fichiers de test lus", tests.len());
    let problems: Vec<String> = tests
        .iter()
        .filter(|(file, _)| !file.ends_with("/tests/tidy.rs"))
        .flat_map(|(file, text)| utc_today_problems(file, text))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The ownership rules catch a crate writing another's table, a table without owner and a
/// migration in the wrong folder.
#[test]
fn the_ownership_rules_fail_on_planted_violations() {
    let root = root();
    let mut files = sources(&root);
    let tables = std::fs::read_to_string(root.join("docs/TABLES.md")).expect("docs/TABLES.md");
    let mut migrations = migrations(&root);
    assert!(ownership_problems(&files, &tables, &migrations).is_empty());
    files.push((
        "services/notification-mailer/src/planted.rs".to_owned(),
        "sqlx::query(\"UPDATE mandates SET expires_at = now() WHERE id = $1\")".to_owned(),
    ));
    let problems = ownership_problems(&files, &tables, &migrations);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("écrit departement.mandates") && p.contains("mandate-service")),
        "{problems:#?}"
    );
    files.pop();
    migrations.push((
        "services/mandate-service/migrations/departement/0099_planted.sql".to_owned(),
        "CREATE TABLE planted_notes (id uuid PRIMARY KEY);".to_owned(),
    ));
    let problems = ownership_problems(&files, &tables, &migrations);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("departement.planted_notes n'a pas de propriétaire")),
        "{problems:#?}"
    );
    migrations.pop();
    migrations.push((
        "services/notification-mailer/migrations/platform/0099_planted.sql".to_owned(),
        "ALTER TABLE platform.oidc_clients ADD COLUMN planted text;".to_owned(),
    ));
    let problems = ownership_problems(&files, &tables, &migrations);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("rangez-la chez son propriétaire")),
        "{problems:#?}"
    );
}

/// The same rules catch what they are for, on planted violations.
#[test]
fn each_rule_fails_on_a_planted_violation() {
    let root = root();
    let mut files = sources(&root);
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("plan");
    let exists = |p: &str| exists_under(&root, p);
    assert!(problems_of(&files, &architecture, &exists).is_empty());
    let planted = "services/mandate-service/src/planted.rs".to_owned();
    let cases = [
        (
            "sqlx::query(\"SELECT set_config('search_path', 'dep_33', true)\")".to_owned(),
            "hors du module tenancy",
        ),
        (
            "sqlx::query(sqlx::AssertSqlSafe(format!(\"SELECT {x}\")))".to_owned(),
            "AssertSqlSafe (au plus 0)",
        ),
        ("//\n".repeat(MAX_LINES + 1), "lignes (au plus 800)"),
        (
            "platform.tenancy.unguarded(code).await?".to_owned(),
            "Tenancy::unguarded (au plus 0)",
        ),
        (
            "let today = OffsetDateTime::now_utc().date();".to_owned(),
            "foundation::paris::today()",
        ),
        (
            "sqlx::query(\"SELECT 1 WHERE first_day > current_date\")".to_owned(),
            "« current_date »",
        ),
    ];
    for (text, expected) in cases {
        files.push((planted.clone(), text));
        let problems = problems_of(&files, &architecture, &exists);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected} : {problems:#?}"
        );
        files.pop();
    }
    // A file of the code map that does not exist.
    let moved = architecture.replace("(`tokens.rs`)", "(`jetons.rs`)");
    let moved = if moved == architecture {
        architecture.replace("`tokens.rs`", "`jetons.rs`")
    } else {
        moved
    };
    assert_ne!(moved, architecture);
    let problems = problems_of(&files, &moved, &exists);
    assert!(
        problems.iter().any(|p| p.contains("jetons.rs")),
        "{problems:#?}"
    );
    // A ceiling that is no longer reached must come down.
    let long = files
        .iter_mut()
        .find(|(f, _)| f == LONG_FILES_LEFT[0].0)
        .expect("fichier long");
    long.1 = long
        .1
        .lines()
        .take(MAX_LINES)
        .collect::<Vec<_>>()
        .join("\n");
    let problems = problems_of(&files, &architecture, &exists);
    assert!(
        problems.iter().any(|p| p.contains("baissez-la")),
        "{problems:#?}"
    );
}
