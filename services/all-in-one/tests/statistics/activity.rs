//! The aidant's activity page (`/activite`) after three years of acts: its figures are those of
//! the journal over the twelve months it shows, and a view reads from the journal's table about
//! the current month's entries, not the year's (an aidant of a busy France Services writes tens
//! of thousands of entries a year: `load-tests`, national volume).

use super::common::identity::*;
use super::common::spawn_app;
use mandate_service::web::activity::MONTHS;

#[tokio::test]
async fn the_activity_page_counts_the_twelve_months_from_the_journal_without_reading_them_all() {
    let app = spawn_app(&["33"]).await;
    let (who, structure, client) = logged_in_aidant(&app).await;
    let me = who.id.as_uuid();
    // Three years, eight acts a day: an identification, a creation, its attestation, four or
    // five uses of four démarches, a revocation one day in five; 400 people. Another aidant's
    // uses alongside, never counted.
    sqlx::query(
        "INSERT INTO dep_33.journal (at, kind, structure_id, professional_id, usager_id, mandate_id, details)
         SELECT now() - d * interval '1 day' - k * interval '7 minutes',
                CASE WHEN k = 0 THEN 'usager_identified' WHEN k = 1 THEN 'mandate_created'
                     WHEN k = 2 THEN 'attestation_produced'
                     WHEN k = 7 AND d % 5 = 0 THEN 'mandate_revoked' ELSE 'mandate_used' END,
                $1, CASE WHEN k = 7 AND d % 3 = 0 THEN $3 ELSE $2 END,
                ('00000000-0000-4000-8000-' || lpad(((d * 7 + k) % 400)::text, 12, '0'))::uuid,
                gen_random_uuid(),
                CASE WHEN k >= 3 THEN json_build_object(
                    'category', (ARRAY['social', 'famille', 'logement', 'papiers'])[1 + (d + k) % 4],
                    'client', 'caf-espace-allocataire', 'grant', d * 8 + k)::text
                     ELSE '{}' END
         FROM generate_series(0, 1094) AS d, generate_series(0, 7) AS k",
    )
    .bind(structure.as_uuid())
    .bind(me)
    .bind(uuid::Uuid::new_v4())
    .execute(&app.db.admin)
    .await
    .expect("journal");
    sqlx::raw_sql("VACUUM ANALYZE dep_33.journal")
        .execute(&app.db.admin)
        .await
        .expect("vacuum");

    // The figures, from the journal, over the twelve months shown (this one and the eleven
    // before it, months of the calendar in France).
    const WINDOW: &str = "professional_id = $1
        AND at >= (date_trunc('month', now() AT TIME ZONE 'Europe/Paris') - interval '11 months')
                  AT TIME ZONE 'Europe/Paris'";
    let months: Vec<(time::Date, i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(
        format!(
            "SELECT date_trunc('month', at AT TIME ZONE 'Europe/Paris')::date,
                    count(DISTINCT usager_id) FILTER (WHERE kind IN ('mandate_created', 'mandate_used')),
                    count(*) FILTER (WHERE kind = 'mandate_used'),
                    count(*) FILTER (WHERE kind = 'mandate_created')
             FROM dep_33.journal WHERE {WINDOW} GROUP BY 1 ORDER BY 1"
        ),
    ))
    .bind(me)
    .fetch_all(&app.db.admin)
    .await
    .expect("mois");
    assert_eq!(months.len(), 12);
    let totals: (i64, i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(DISTINCT usager_id) FILTER (WHERE kind IN ('mandate_created', 'mandate_used')),
                count(*) FILTER (WHERE kind = 'mandate_used'),
                count(*) FILTER (WHERE kind = 'mandate_created')
         FROM dep_33.journal WHERE {WINDOW}"
    )))
    .bind(me)
    .fetch_one(&app.db.admin)
    .await
    .expect("totaux");
    let uses: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT details::jsonb ->> 'category', count(*) FROM dep_33.journal
         WHERE {WINDOW} AND kind = 'mandate_used' GROUP BY 1"
    )))
    .bind(me)
    .fetch_all(&app.db.admin)
    .await
    .expect("catégories");
    assert_eq!(uses.len(), 4);
    let mut expected: Vec<String> = months
        .iter()
        .map(|(m, people, demarches, created)| {
            format!(
                "<tr><td>{} {}</td><td>{people}</td><td>{demarches}</td><td>{created}</td></tr>",
                MONTHS[usize::from(u8::from(m.month())) - 1],
                m.year()
            )
        })
        .collect();
    for (n, what) in [
        (totals.0, "personnes accompagnées"),
        (totals.1, "démarches réalisées"),
        (totals.2, "mandats créés"),
    ] {
        expected.push(format!(
            "<p class=\"fr-tile__title\">{n}</p><p class=\"fr-tile__desc\">{what}</p>"
        ));
    }
    for (code, n) in &uses {
        let label = mandate_service::categories::by_code(code)
            .expect("catégorie")
            .label;
        expected.push(format!("<li>{label} : {n}</li>"));
    }
    // The first view and the next ones show the same figures.
    for view in ["première", "deuxième"] {
        let (status, html) = page(&client, &app.url("/activite")).await;
        assert_eq!(status, 200);
        for line in &expected {
            assert!(html.contains(line), "{view} vue : {line} absent de\n{html}");
        }
    }

    // What a view reads from the journal's table: about this month's entries of the aidant.
    let mut conn = app.db.admin.acquire().await.expect("connexion");
    sqlx::raw_sql("SET search_path = dep_33, public")
        .execute(&mut *conn)
        .await
        .expect("search_path");
    let recent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dep_33.journal
         WHERE professional_id = $1
           AND at >= date_trunc('month', (now() - interval '1 hour') AT TIME ZONE 'Europe/Paris')
                     AT TIME ZONE 'Europe/Paris'",
    )
    .bind(me)
    .fetch_one(&mut *conn)
    .await
    .expect("ce mois");
    let year = totals.1 + totals.2;
    let mut read = 0.0;
    let mut plans = Vec::new();
    for statement in mandate_service::web::activity::STATEMENTS {
        let statement = statement.replace("$1", &format!("'{me}'::uuid"));
        let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (ANALYZE, FORMAT JSON) {statement}"
        )))
        .fetch_one(&mut *conn)
        .await
        .expect("explain");
        for node in super::common::plans::nodes(&plan[0]["Plan"]) {
            if node.relation == "journal" {
                read += if node.kind == "Index Only Scan" {
                    node.heap_fetches
                } else {
                    node.rows + node.removed
                };
            }
        }
        plans.push(plan);
    }
    assert!(
        read <= 2.0 * recent as f64 + 50.0,
        "{read} lignes du journal lues pour {recent} entrées ce mois-ci ({year} actes sur douze mois) : {plans:#?}"
    );
}

/// The months are those of the calendar in France: an act at half past midnight, Paris time,
/// on the first of a month counts in that month (in UTC it is still the month before), and the
/// twelve months start at midnight in Paris.
#[tokio::test]
async fn the_activity_page_cuts_the_months_at_midnight_in_paris() {
    let app = spawn_app(&["33"]).await;
    let (who, structure, client) = logged_in_aidant(&app).await;
    // The first instant of the month k months before this one, in Paris.
    const START: &str = "(date_trunc('month', now() AT TIME ZONE 'Europe/Paris')
                          - $1 * interval '1 month') AT TIME ZONE 'Europe/Paris'";
    let start = |k: i32| {
        let app = &app;
        async move {
            sqlx::query_scalar::<_, time::OffsetDateTime>(sqlx::AssertSqlSafe(format!(
                "SELECT {START}"
            )))
            .bind(k)
            .fetch_one(&app.db.admin)
            .await
            .expect("début du mois")
        }
    };
    let half_hour = time::Duration::minutes(30);
    let now = time::OffsetDateTime::now_utc();
    let acts = [
        // Half past midnight on the first of last month, and half past eleven the evening before.
        (start(1).await + half_hour, "mandate_created", None),
        (start(1).await - half_hour, "mandate_created", None),
        // The twelve months' first half hour, and the half hour before it (not shown).
        (
            start(11).await + half_hour,
            "mandate_used",
            Some("logement"),
        ),
        (start(11).await - half_hour, "mandate_used", Some("papiers")),
        // This month's first half hour (or now, in that half hour).
        (
            (start(0).await + half_hour).min(now),
            "mandate_used",
            Some("famille"),
        ),
    ];
    for (at, kind, category) in acts {
        sqlx::query(
            "INSERT INTO dep_33.journal (at, kind, structure_id, professional_id, usager_id,
                                         mandate_id, details)
             VALUES ($1, $2, $3, $4, gen_random_uuid(), gen_random_uuid(),
                     coalesce(json_build_object('category', $5::text)::text, '{}'))",
        )
        .bind(at)
        .bind(kind)
        .bind(structure.as_uuid())
        .bind(who.id.as_uuid())
        .bind(category)
        .execute(&app.db.admin)
        .await
        .expect("acte");
    }
    // The months' labels as the calendar in France names them.
    let label = |k: i32| {
        let app = &app;
        async move {
            let day: time::Date = sqlx::query_scalar(
                "SELECT (date_trunc('month', now() AT TIME ZONE 'Europe/Paris')
                         - $1 * interval '1 month')::date",
            )
            .bind(k)
            .fetch_one(&app.db.admin)
            .await
            .expect("mois");
            format!(
                "{} {}",
                MONTHS[usize::from(u8::from(day.month())) - 1],
                day.year()
            )
        }
    };
    let expected = [
        (label(11).await, 1, 1, 0),
        (label(2).await, 1, 0, 1),
        (label(1).await, 1, 0, 1),
        (label(0).await, 1, 1, 0),
    ]
    .map(|(month, people, demarches, created)| {
        format!("<tr><td>{month}</td><td>{people}</td><td>{demarches}</td><td>{created}</td></tr>")
    });
    // The first view counts the months that are over; the second reads them counted.
    for view in ["première", "deuxième"] {
        let (status, html) = page(&client, &app.url("/activite")).await;
        assert_eq!(status, 200);
        let rows: Vec<&str> = html
            .split("<tr><td>")
            .skip(1)
            .map(|row| row.split("</tr>").next().unwrap_or(""))
            .collect();
        assert_eq!(
            rows.iter()
                .map(|row| format!("<tr><td>{row}</tr>"))
                .collect::<Vec<_>>(),
            expected,
            "{view} vue : {html}"
        );
        for line in [
            "<p class=\"fr-tile__title\">4</p><p class=\"fr-tile__desc\">personnes accompagnées",
            "<p class=\"fr-tile__title\">2</p><p class=\"fr-tile__desc\">démarches réalisées",
            "<p class=\"fr-tile__title\">2</p><p class=\"fr-tile__desc\">mandats créés",
            "<li>Logement : 1</li>",
            "<li>Famille - Scolarité : 1</li>",
        ] {
            assert!(html.contains(line), "{view} vue : {line} absent de\n{html}");
        }
        assert!(!html.contains("<li>Papiers"), "{view} vue : {html}");
    }
}
