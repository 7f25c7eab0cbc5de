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
    // before it).
    const WINDOW: &str =
        "professional_id = $1 AND at >= date_trunc('month', now()) - interval '11 months'";
    let months: Vec<(time::OffsetDateTime, i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(
        format!(
            "SELECT date_trunc('month', at),
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
         WHERE professional_id = $1 AND at >= date_trunc('month', now() - interval '1 hour')",
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
