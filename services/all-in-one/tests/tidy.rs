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
//! - Every file and folder the code map of ARCHITECTURE.md names exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

/// Statements still built at run time, by file, at most this many.
const ASSERT_SQL_SAFE_LEFT: &[(&str, usize)] = &[
    ("load-tests/src/statistics.rs", 5),
    ("load-tests/src/mandates.rs", 1),
];

/// Files over [`MAX_LINES`], at most this long.
const LONG_FILES_LEFT: &[(&str, usize)] = &[
    ("services/habilitation-desk/src/requests/mod.rs", 1308),
    ("services/habilitation-desk/src/request_pages.rs", 1150),
    ("services/habilitation-desk/src/training.rs", 1000),
    ("tenant-admin/src/demo.rs", 987),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("racine")
}

/// Production sources: every `src/` of the workspace's crates.
fn sources(root: &Path) -> Vec<(String, String)> {
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
            } else if rel.ends_with(".rs") && rel.contains("/src/") {
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
    for (file, text) in files {
        for needle in ["set_config", "SET ROLE", "search_path"] {
            if !tenancy(file) && !harness(file) && text.contains(needle) {
                problems.push(format!("{file} : « {needle} » hors du module tenancy"));
            }
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
    for (file, _) in ASSERT_SQL_SAFE_LEFT.iter().chain(LONG_FILES_LEFT) {
        if !files.iter().any(|(f, _)| f == file) {
            problems.push(format!(
                "{file} : listé mais absent : retirez-le de la liste"
            ));
        }
    }
    problems.extend(code_map_problems(architecture, exists));
    problems
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

#[test]
fn the_source_keeps_the_rules_of_architecture_md() {
    let root = root();
    let files = sources(&root);
    assert!(files.len() > 100, "{} fichiers lus", files.len());
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("plan");
    let problems = problems_of(&files, &architecture, &|p| exists_under(&root, p));
    assert!(problems.is_empty(), "{problems:#?}");
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
