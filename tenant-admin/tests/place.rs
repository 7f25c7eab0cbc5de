//! `tenant-admin territories place`: on the single cluster a clear refusal; on the Citus
//! cluster (`infra/run test`'s Citus step) the nodes and each territory's node, bad input
//! refused with nothing moved, a move to the other worker journaled in the territory.

use test_support::database::{CitusNodes, TestDatabase};

async fn cli(db: &TestDatabase, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenant-admin"))
        .env("AC_ENVIRONMENT", "development")
        .args(["--database-url", &db.admin_url])
        .args(args)
        .output()
        .await
        .expect("tenant-admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The node number of `code` in the listing (`territoire\tnœud\ttaille` lines).
fn node_in(listing: &str, code: &str) -> Option<String> {
    listing
        .lines()
        .skip_while(|l| !l.starts_with("territoire"))
        .find(|l| l.split('\t').next() == Some(code))
        .and_then(|l| l.split('\t').nth(1))
        .map(str::to_owned)
}

#[tokio::test]
async fn place_shows_and_moves_territories_on_citus_and_refuses_bad_input() {
    let db = TestDatabase::with_departements(&["33", "34"]).await;
    if CitusNodes::from_env().is_none() {
        // One PostgreSQL: nothing to place.
        let (ok, _, err) = cli(&db, &["territories", "place"]).await;
        assert!(!ok);
        assert!(err.contains("cette base n'utilise pas Citus"), "{err}");
        return;
    }
    let (ok, listing, err) = cli(&db, &["territories", "place"]).await;
    assert!(ok, "{err}");
    assert!(listing.contains("(coordinateur)"), "{listing}");
    let from = node_in(&listing, "33").expect("33 placé");
    let workers: Vec<String> = listing
        .lines()
        .take_while(|l| !l.is_empty())
        .skip(1)
        .filter(|l| !l.contains("coordinateur"))
        .filter_map(|l| l.split('\t').next().map(str::to_owned))
        .collect();
    assert_eq!(workers.len(), 2, "{listing}");
    let to = workers
        .iter()
        .find(|w| **w != from)
        .expect("autre nœud")
        .clone();

    // Bad input: a clear French error, nothing moved.
    for (args, expected) in [
        (
            vec!["--departement", "33", "--vers", "99"],
            "nœud 99 inconnu",
        ),
        (vec!["--departement", "2C", "--vers", &to], "2C"),
        (
            vec!["--departement", "35", "--vers", &to],
            "n'est pas distribué",
        ),
    ] {
        let mut all = vec!["territories", "place"];
        all.extend(args.iter());
        let (ok, _, err) = cli(&db, &all).await;
        assert!(!ok, "{all:?}");
        assert!(err.contains(expected), "{all:?} : {err}");
    }
    let (_, listing, _) = cli(&db, &["territories", "place"]).await;
    assert_eq!(node_in(&listing, "33").as_deref(), Some(from.as_str()));

    // Already there: nothing to do.
    let (ok, out, _) = cli(
        &db,
        &[
            "territories",
            "place",
            "--departement",
            "33",
            "--vers",
            &from,
        ],
    )
    .await;
    assert!(ok);
    assert!(out.contains("rien à faire"), "{out}");

    // The move, journaled in the territory; 34 stays where it was.
    let before_34 = node_in(&listing, "34");
    let (ok, out, err) = cli(
        &db,
        &["territories", "place", "--departement", "33", "--vers", &to],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains(&format!("déplacé vers le nœud {to}")), "{out}");
    let (_, listing, _) = cli(&db, &["territories", "place"]).await;
    assert_eq!(node_in(&listing, "33").as_deref(), Some(to.as_str()));
    assert_eq!(node_in(&listing, "34"), before_34);
    let moves: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dep_33.journal WHERE kind = 'territory_moved'
         AND details::jsonb ->> 'to_node' = $1",
    )
    .bind(&to)
    .fetch_one(&db.admin)
    .await
    .expect("journal");
    assert_eq!(moves, 1);
}
