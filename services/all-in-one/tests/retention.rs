//! Retention (issue 18 §4, product.md §12): mandates that ended are archived after their
//! tenant's archive period and purged after the purge period; a person left with no mandate is
//! erased; a person may be erased at their request once nothing of theirs is live. The plan says
//! beforehand exactly what a run does; a second run does nothing; the journal is never
//! rewritten and still verifies once identities are gone.

mod common;

use common::spawn_app;
use foundation::ids::{MandateId, StructureId, UsagerId};
use foundation::tenancy::{DepartementCode, Territory};
use mandate_service::mandates::{self, NewMandate};
use mandate_service::retention::{self, Context, Done, EraseError, Plan};
use policies::Role;
use time::{Duration, OffsetDateTime};

/// A mandate for a new person of `structure`, ended `ended_years_ago` (or live when `None`).
async fn mandate(
    app: &common::TestApp,
    territory: &Territory,
    structure: StructureId,
    aidant: foundation::ids::ProfessionalId,
    ended_years_ago: Option<i64>,
) -> (UsagerId, MandateId) {
    let identity = common::idp::angela(&format!("fc-sub-{}", uuid::Uuid::new_v4()));
    let mut tx = territory.begin().await.expect("tx");
    let usager = mandates::upsert_usager(&mut tx, &identity, structure, aidant)
        .await
        .expect("usager");
    let mandate = mandates::create(
        &mut tx,
        &NewMandate {
            id: MandateId::new_v7(),
            structure,
            aidant,
            usager,
            categories: vec![mandate_service::categories::by_code("logement").expect("logement")],
            duration_days: 365,
            renewal_of: None,
            idempotency_key: None,
            language: None,
            attestation: None,
        },
        OffsetDateTime::now_utc(),
    )
    .await
    .expect("mandat");
    tx.commit().await.expect("commit");
    if let Some(years) = ended_years_ago {
        // Its term came `years` ago (a year after it was made).
        let end = OffsetDateTime::now_utc() - Duration::days(365 * years + 10);
        sqlx::query("UPDATE dep_33.mandates SET created_at = $2 - interval '365 days', expires_at = $2 WHERE id = $1")
            .bind(mandate)
            .bind(end)
            .execute(&app.db.admin)
            .await
            .expect("dates");
        sqlx::query("UPDATE dep_33.authorisations SET expires_at = $2 WHERE mandate_id = $1")
            .bind(mandate)
            .bind(end)
            .execute(&app.db.admin)
            .await
            .expect("dates");
    }
    (usager, mandate)
}

async fn count(app: &common::TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.db.admin)
        .await
        .expect("compte")
}

/// Waits for the sealer, then verifies the territory's whole journal.
async fn journal_verifies(app: &common::TestApp, territory: &Territory) -> i64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count(app, "SELECT count(*) FROM dep_33.journal WHERE seq IS NULL").await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "journal jamais chaîné"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut tx = territory.begin().await.expect("tx");
    let v = foundation::journal::verify(&mut tx, None, &Default::default())
        .await
        .expect("vérification");
    tx.commit().await.expect("commit");
    assert!(v.intact(), "{v:?}");
    v.checked as i64
}

/// A Gironde platform whose own first retention run is done (before the test's data exists),
/// a structure with one aidant, its territory, and the key of the usager index.
struct Setup {
    app: common::TestApp,
    structure: StructureId,
    aidant: foundation::ids::ProfessionalId,
    territory: Territory,
    key: String,
}

async fn setup(aidant_name: &str) -> Setup {
    let app = spawn_app(&["33"]).await;
    let structure = common::identity::structure_domain(&app, "33").await;
    let aidant = common::identity::professional(
        &app.db.admin,
        aidant_name,
        &[(Role::Aidant, structure.domain(), Some("33"))],
    )
    .await
    .id;
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let territory = tenancy
        .unguarded(DepartementCode::parse("33").expect("33"))
        .await
        .expect("territoire");
    let settings = test_support::test_settings(&app.db.app_url);
    let key = secrecy::ExposeSecret::expose_secret(&settings.security.idp_subject_key).to_owned();
    Setup {
        app,
        structure,
        aidant,
        territory,
        key,
    }
}

#[tokio::test]
async fn the_plan_says_what_a_run_archives_purges_and_erases_and_a_second_run_does_nothing() {
    let Setup {
        app,
        structure,
        aidant,
        territory,
        key,
    } = setup("Aidant Conservation").await;
    let cx = Context {
        pool: &app.db.admin,
        subject_key: &key,
    };

    let (gone, purged) = mandate(&app, &territory, structure, aidant, Some(7)).await;
    let (_, archived) = mandate(&app, &territory, structure, aidant, Some(4)).await;
    let (_, recent) = mandate(&app, &territory, structure, aidant, Some(1)).await;
    let (_, live) = mandate(&app, &territory, structure, aidant, None).await;
    let before = journal_verifies(&app, &territory).await;

    // Default periods, 3 + 3 years: one to archive, one to purge, its person to erase.
    let now = OffsetDateTime::now_utc();
    let plan = retention::plan(&cx, &territory, now).await.expect("plan");
    assert_eq!(
        plan,
        Plan {
            to_archive: 1,
            to_purge: 1,
            usagers_to_erase: 1,
            documents_due: 0
        }
    );
    let done = retention::run(&cx, &territory, now).await.expect("passage");
    assert_eq!(
        done,
        Done {
            archived: 1,
            purged: 1,
            erased: 1
        }
    );
    let left: Vec<(MandateId, bool)> = sqlx::query_as(
        "SELECT id, archived_at IS NOT NULL FROM dep_33.mandates ORDER BY created_at",
    )
    .fetch_all(&app.db.admin)
    .await
    .expect("mandats");
    assert!(!left.iter().any(|(m, _)| *m == purged), "{left:?}");
    assert!(left.contains(&(archived, true)), "{left:?}");
    assert!(left.contains(&(recent, false)) && left.contains(&(live, false)));
    let identity_left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dep_33.usagers WHERE id = $1")
            .bind(gone)
            .fetch_one(&app.db.admin)
            .await
            .expect("usager");
    assert_eq!(identity_left, 0);
    // The journal kept every entry (the purged mandate's among them) and still verifies.
    let mentions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dep_33.journal WHERE mandate_id = $1 OR usager_id = $2",
    )
    .bind(purged)
    .bind(gone)
    .fetch_one(&app.db.admin)
    .await
    .expect("journal");
    assert!(mentions >= 2, "{mentions}");
    let after = journal_verifies(&app, &territory).await;
    assert!(after >= before + 3, "{before} → {after}");
    // Each step journaled once (other jobs of the running platform may journal meanwhile).
    let steps: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, count(*) FROM dep_33.journal
         WHERE kind IN ('retention_archived', 'retention_purged', 'usager_erased')
         GROUP BY kind ORDER BY kind",
    )
    .fetch_all(&app.db.admin)
    .await
    .expect("journal");
    assert_eq!(
        steps,
        [
            ("retention_archived".to_owned(), 1),
            ("retention_purged".to_owned(), 1),
            ("usager_erased".to_owned(), 1)
        ]
    );

    // Nothing more is due: the plan and a second run say so.
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        retention::plan(&cx, &territory, now).await.expect("plan"),
        Plan::default()
    );
    assert_eq!(
        retention::run(&cx, &territory, now).await.expect("passage"),
        Done::default()
    );

    // A tenant that keeps mandates 1 + 1 years: the one ended a year ago is now archived.
    sqlx::query(
        "UPDATE platform.tenants SET mandate_archive_years = 1, mandate_purge_years = 1
         WHERE departement_code = '33'",
    )
    .execute(&app.db.admin)
    .await
    .expect("durées");
    let plan = retention::plan(&cx, &territory, now).await.expect("plan");
    assert_eq!((plan.to_archive, plan.to_purge), (1, 1), "{plan:?}");
    let done = retention::run(&cx, &territory, now).await.expect("passage");
    assert_eq!((done.archived, done.purged, done.erased), (1, 1, 1));
    let _ = recent;
}

#[tokio::test]
async fn a_person_is_erased_at_their_request_only_with_nothing_live_and_the_journal_verifies() {
    let Setup {
        app,
        structure,
        aidant,
        territory,
        key,
    } = setup("Aidant Effacement").await;
    let cx = Context {
        pool: &app.db.admin,
        subject_key: &key,
    };
    let (usager, mandate) = mandate(&app, &territory, structure, aidant, None).await;
    let now = OffsetDateTime::now_utc();

    let refused = retention::erase(&cx, &territory, usager, now).await;
    assert!(
        matches!(refused, Err(EraseError::LiveMandates(1))),
        "{refused:?}"
    );
    assert_eq!(
        refused.err().map(|e| e.to_string()).unwrap_or_default(),
        "La personne a encore 1 mandat(s) en cours : ils doivent être révoqués avant l'effacement."
    );
    assert_eq!(count(&app, "SELECT count(*) FROM dep_33.usagers").await, 1);

    let mut tx = territory.begin().await.expect("tx");
    mandates::revoke(&mut tx, structure, mandate, None, Some(aidant), now)
        .await
        .expect("révocation");
    tx.commit().await.expect("commit");
    retention::erase(&cx, &territory, usager, OffsetDateTime::now_utc())
        .await
        .expect("effacement");
    assert_eq!(count(&app, "SELECT count(*) FROM dep_33.usagers").await, 0);
    // The mandate keeps the pseudonymous id, the journal its entries; the chain verifies.
    let kept: UsagerId = sqlx::query_scalar("SELECT usager_id FROM dep_33.mandates WHERE id = $1")
        .bind(mandate)
        .fetch_one(&app.db.admin)
        .await
        .expect("mandat");
    assert_eq!(kept, usager);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'usager_erased'"
        )
        .await,
        1
    );
    journal_verifies(&app, &territory).await;
    // Asked again: nobody to erase.
    assert!(matches!(
        retention::erase(&cx, &territory, usager, OffsetDateTime::now_utc()).await,
        Err(EraseError::Unknown)
    ));
}

/// Two runs at once (the job and an operator's `retention run`, say): each mandate is purged
/// and journaled once, each person erased once.
#[tokio::test]
async fn two_runs_at_once_purge_and_journal_each_mandate_once() {
    let Setup {
        app,
        structure,
        aidant,
        territory,
        key,
    } = setup("Aidant Concurrence").await;
    let cx = Context {
        pool: &app.db.admin,
        subject_key: &key,
    };
    for _ in 0..6 {
        mandate(&app, &territory, structure, aidant, Some(7)).await;
    }
    let now = OffsetDateTime::now_utc();
    let (a, b) = tokio::join!(
        retention::run(&cx, &territory, now),
        retention::run(&cx, &territory, now)
    );
    let (a, b) = (a.expect("passage a"), b.expect("passage b"));
    assert_eq!(a.purged + b.purged, 6, "{a:?} {b:?}");
    assert_eq!(a.erased + b.erased, 6, "{a:?} {b:?}");
    let journaled: Vec<String> =
        sqlx::query_scalar("SELECT details FROM dep_33.journal WHERE kind = 'retention_purged'")
            .fetch_all(&app.db.admin)
            .await
            .expect("journal");
    let mut ids: Vec<String> = journaled
        .iter()
        .flat_map(|d| {
            serde_json::from_str::<serde_json::Value>(d).expect("json")["mandates"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|v| v.as_str().expect("id").to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!((before, ids.len()), (6, 6), "{journaled:?}");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'usager_erased'"
        )
        .await,
        6
    );
}

/// The purge deletes mandates and their authorisations: every column that references them is
/// indexed, or each deleted row makes PostgreSQL scan the referencing table to check it (at
/// Paris's volume, 315,000 mandates and 631,000 authorisations, 200 mandates took 14 s: 71 ms
/// a mandate, 10 s of it checking `authorisations.superseded_by`).
#[tokio::test]
async fn every_reference_to_what_the_purge_deletes_is_indexed() {
    let db = test_support::database::TestDatabase::with_departements(&["33"]).await;
    let unindexed: Vec<String> = sqlx::query_scalar(
        "SELECT format('%s.%s → %s', c.conrelid::regclass, a.attname, c.confrelid::regclass)
         FROM pg_constraint c
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
         WHERE c.contype = 'f' AND c.connamespace = 'dep_33'::regnamespace
           AND c.confrelid IN ('dep_33.mandates'::regclass, 'dep_33.authorisations'::regclass,
                               'dep_33.usagers'::regclass)
           AND NOT EXISTS (SELECT 1 FROM pg_index i
                           WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])
         ORDER BY 1",
    )
    .fetch_all(&db.admin)
    .await
    .expect("catalogue");
    assert!(
        unindexed.is_empty(),
        "références sans index : {unindexed:#?}"
    );
    // The check sees the references that are indexed too (it would pass on an empty query).
    let indexed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_constraint
         WHERE contype = 'f' AND confrelid = 'dep_33.mandates'::regclass",
    )
    .fetch_one(&db.admin)
    .await
    .expect("catalogue");
    assert!(indexed >= 8, "{indexed}");
}

#[tokio::test]
async fn a_structure_forgets_a_persons_name_with_their_last_mandate_there() {
    let Setup {
        app,
        structure,
        aidant,
        territory,
        key,
    } = setup("Aidant Première Structure").await;
    let cx = Context {
        pool: &app.db.admin,
        subject_key: &key,
    };
    let other = common::identity::structure_domain(&app, "33").await;
    let other_aidant = common::identity::professional(
        &app.db.admin,
        "Aidant Seconde Structure",
        &[(Role::Aidant, other.domain(), Some("33"))],
    )
    .await
    .id;
    // The same person: a mandate ended seven years ago here, a live one in the other structure.
    let (person, old) = mandate(&app, &territory, structure, aidant, Some(7)).await;
    let sub: String = sqlx::query_scalar("SELECT fc_sub FROM dep_33.usagers WHERE id = $1")
        .bind(person)
        .fetch_one(&app.db.admin)
        .await
        .expect("sub");
    let mut tx = territory.begin().await.expect("tx");
    let again = mandates::upsert_usager(&mut tx, &common::idp::angela(&sub), other, other_aidant)
        .await
        .expect("usager");
    assert_eq!(again, person);
    mandates::create(
        &mut tx,
        &NewMandate {
            id: MandateId::new_v7(),
            structure: other,
            aidant: other_aidant,
            usager: person,
            categories: vec![mandate_service::categories::by_code("social").expect("social")],
            duration_days: 365,
            renewal_of: None,
            idempotency_key: None,
            language: None,
            attestation: None,
        },
        OffsetDateTime::now_utc(),
    )
    .await
    .expect("mandat");
    tx.commit().await.expect("commit");
    let known_by = |app: &common::TestApp| {
        let admin = app.db.admin.clone();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>(
                "SELECT structure_id FROM dep_33.structure_usagers WHERE usager_id = $1
                 ORDER BY structure_id",
            )
            .bind(person)
            .fetch_all(&admin)
            .await
            .expect("structures")
        }
    };
    let mut both = vec![structure.as_uuid(), other.as_uuid()];
    both.sort();
    assert_eq!(known_by(&app).await, both);

    let done = retention::run(&cx, &territory, OffsetDateTime::now_utc())
        .await
        .expect("passage");
    assert_eq!((done.purged, done.erased), (1, 0), "{done:?}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.mandates WHERE id = $1")
        .bind(old)
        .fetch_one(&app.db.admin)
        .await
        .expect("mandat");
    assert_eq!(left, 0);
    // The person stays (a live mandate elsewhere); only that structure still lists them.
    assert_eq!(known_by(&app).await, vec![other.as_uuid()]);
}
