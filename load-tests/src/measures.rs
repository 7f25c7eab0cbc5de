//! Benchmark of a guardian service's CSV import (`infra/run bench`, release build, the local
//! stack's PostgreSQL), target: 10,000 lines in under a minute (issue 18 §2).
//!
//! A guardian service with 40 delegates imports a 10,000-line file of measures (people
//! identified by the decision's civil status, each measure a judicial mandate with its
//! authorisations, its measure row and three journal entries), then the same file again (every
//! line unchanged: the idempotent re-import), then the file with one line in ten changed. The
//! yardstick, measured in the same run and rolled back: the same rows written by the database
//! alone in a few set-based statements (no per-line work), the bound no per-line import can
//! beat.

use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use foundation::ids::StructureId;
use foundation::tenancy::{DepartementCode, Tenancy};
use mandate_service::judicial::csv;
use mandate_service::judicial::import::{self, Context, Report};
use policies::{Domain, Role};
use test_support::database::TestDatabase;
use uuid::Uuid;

const LINES: usize = 10_000;
const DELEGATES: usize = 40;
const TARGET: Duration = Duration::from_secs(60);

const KINDS: [&str; 6] = [
    "Tutelle",
    "Curatelle renforcée",
    "Curatelle simple",
    "Habilitation familiale",
    "Sauvegarde de justice",
    "Mandat de protection future",
];
const NAMES: [&str; 10] = [
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau",
];
const GIVEN: [&str; 8] = [
    "Jeanne",
    "Marie",
    "Louis",
    "Pierre",
    "Madeleine",
    "André",
    "Suzanne",
    "René",
];

/// The file: `changed` lines out of ten get a later end.
fn file(delegates: &[String], changed: usize) -> String {
    let today = foundation::paris::today();
    let fr = |d: time::Date| format!("{:02}/{:02}/{}", d.day(), u8::from(d.month()), d.year());
    let mut out = String::from(
        "numero_dossier;nom_naissance;nom_usage;prenoms;sexe;date_naissance;code_lieu_naissance;code_pays_naissance;type_mesure;tribunal;date_jugement;numero_rg;date_debut;date_fin;date_revision;demarches;delegue\n",
    );
    for i in 0..LINES {
        let decided = today - time::Duration::days(30 + (i % 1500) as i64);
        let mut ends = decided + time::Duration::days(1826);
        if i % 10 < changed {
            ends += time::Duration::days(365);
        }
        let born = time::Date::from_calendar_date(
            1930 + (i % 60) as i32,
            time::Month::March,
            1 + (i % 28) as u8,
        )
        .unwrap_or(today);
        out.push_str(&format!(
            "MJPM-{i:06};{};;{} {};{};{};33063;99100;{};Tribunal judiciaire de Bordeaux;{};RG 26/{i:05};{};{};{};social|argent|logement;{}\n",
            NAMES[i % NAMES.len()],
            GIVEN[i % GIVEN.len()],
            GIVEN[(i / 8) % GIVEN.len()],
            if i % 2 == 0 { "F" } else { "M" },
            fr(born),
            KINDS[i % KINDS.len()],
            fr(decided),
            fr(decided),
            fr(ends),
            fr(ends - time::Duration::days(180)),
            delegates[i % delegates.len()],
        ));
    }
    out
}

async fn timed_import(ctx: &Context<'_>, text: &str) -> anyhow::Result<(Duration, Report)> {
    let started = Instant::now();
    let today = foundation::paris::today();
    let lines = csv::parse(csv::decode(text.as_bytes())?, today)?;
    let progress = AtomicUsize::new(0);
    let report = import::apply(ctx, text.as_bytes(), lines, &progress).await?;
    Ok((started.elapsed(), report))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = TestDatabase::with_departements(&["33"]).await;
    let tenancy = Tenancy::load(db.admin.clone(), TestDatabase::tenant_login()).await?;
    let d = DepartementCode::parse("33")?;
    let territory = tenancy.unguarded(d).await?;
    let tenant = foundation::tenancy::tenants::create_tenant(
        &db.admin,
        &foundation::tenancy::tenants::TenantKind::Departement(d),
        "Conseil départemental de la Gironde",
    )
    .await?
    .id;
    let structure = StructureId::from_uuid(Uuid::now_v7());
    sqlx::query(
        "INSERT INTO dep_33.structures (id, tenant_id, name, kind, commune_code, address, guardian_service)
         VALUES ($1, $2, 'ATMP de la Gironde', 'association', '33063', '1 rue du Palais', true)",
    )
    .bind(structure)
    .bind(tenant)
    .execute(&db.admin)
    .await?;
    let mut delegates = Vec::new();
    let mut tx = db.admin.begin().await?;
    for i in 0..DELEGATES {
        let email = format!("delegue{i}@atmp33.bench.test");
        let id = habilitation_desk::accounts::create_professional(
            &mut tx,
            &email,
            &format!("Délégué {i}"),
        )
        .await?;
        habilitation_desk::accounts::grant_role(
            &mut tx,
            id,
            Role::Aidant,
            Domain::Structure(structure.as_uuid()),
            Some("33"),
        )
        .await?;
        delegates.push(email);
    }
    tx.commit().await?;
    let by = import::delegates(&db.admin, structure).await?[&delegates[0]];
    let demarches: Vec<String> = foundation::categories::ALL
        .iter()
        .map(|c| c.code.to_owned())
        .collect();
    let ctx = Context {
        platform: &db.admin,
        territory: &territory,
        structure,
        demarches: &demarches,
        by,
    };

    // The yardstick first (rolled back): the same rows, set-based.
    let started = Instant::now();
    let mut tx = territory.begin().await?;
    for sql in [
        "INSERT INTO usagers (id, fc_sub, given_name, family_name, birthdate, gender, birthplace, birthcountry, search_name, identified_by)
         SELECT u, 'etat-civil:' || u, 'Jeanne', 'Martin', '1941-04-12', 'female', '33063', '99100', 'martin jeanne', 'civil_status' FROM (SELECT i, md5('u' || i)::uuid AS u, md5('m' || i)::uuid AS m FROM generate_series(1, $3::int) i) l",
        "INSERT INTO mandates (id, structure_id, usager_id, created_by, created_at, duration_days, expires_at, legal_text_version)
         SELECT m, $1, u, $2, now(), 1500, now() + interval '1500 days', 'v1' FROM (SELECT i, md5('u' || i)::uuid AS u, md5('m' || i)::uuid AS m FROM generate_series(1, $3::int) i) l",
        "INSERT INTO authorisations (id, mandate_id, structure_id, usager_id, category, expires_at)
         SELECT gen_random_uuid(), m, $1, u, c, now() + interval '1500 days' FROM (SELECT i, md5('u' || i)::uuid AS u, md5('m' || i)::uuid AS m FROM generate_series(1, $3::int) i) l, unnest('{social,argent,logement}'::text[]) c",
        "INSERT INTO judicial_measures (mandate_id, kind, court, decision_date, decision_reference, starts, ends, identified_by, structure_id, case_number, delegate_id, categories)
         SELECT m, 'tutelle', 'Tribunal judiciaire de Bordeaux', (now() AT TIME ZONE 'Europe/Paris')::date - 30, 'RG ' || i, (now() AT TIME ZONE 'Europe/Paris')::date - 30, (now() AT TIME ZONE 'Europe/Paris')::date + 1500, 'civil_status', $1, 'MJPM-' || i, $2, '{argent,logement,social}' FROM (SELECT i, md5('u' || i)::uuid AS u, md5('m' || i)::uuid AS m FROM generate_series(1, $3::int) i) l",
        "INSERT INTO journal (at, kind, structure_id, professional_id, usager_id, mandate_id, details)
         SELECT now(), k, $1, $2, u, m, '{}' FROM (SELECT i, md5('u' || i)::uuid AS u, md5('m' || i)::uuid AS m FROM generate_series(1, $3::int) i) l, unnest('{usager_identified,mandate_created,judicial_measure_recorded}'::text[]) k",
    ] {
        sqlx::query(sql)
            .bind(structure)
            .bind(by)
            .bind(LINES as i32)
            .execute(&mut *tx)
            .await?;
    }
    let bound = started.elapsed();
    tx.rollback().await?;

    let first = file(&delegates, 0);
    let (t_first, r_first) = timed_import(&ctx, &first).await?;
    anyhow::ensure!(
        r_first.imported == LINES,
        "importées : {}",
        r_first.imported
    );
    let (t_again, r_again) = timed_import(&ctx, &first).await?;
    anyhow::ensure!(
        r_again.unchanged == LINES,
        "inchangées : {}",
        r_again.unchanged
    );
    let (t_changed, r_changed) = timed_import(&ctx, &file(&delegates, 1)).await?;
    anyhow::ensure!(
        r_changed.updated == LINES / 10,
        "mises à jour : {}",
        r_changed.updated
    );
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dep_33.journal WHERE kind = 'judicial_measure_recorded'",
    )
    .fetch_one(&db.admin)
    .await?;
    anyhow::ensure!(recorded == LINES as i64, "journal : {recorded}");

    let s = |d: Duration| d.as_secs_f64();
    println!(
        "bench-measures : import CSV d'un service mandataire, {LINES} lignes, {DELEGATES} délégués"
    );
    println!("| what | measured | target | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| first import, {LINES} new measures | {:.1} s ({:.0} lines/s) | ≤ 60 s | ×{:.1} |",
        s(t_first),
        LINES as f64 / s(t_first),
        s(TARGET) / s(t_first)
    );
    println!(
        "| same file again (all unchanged) | {:.1} s | ≤ 60 s | ×{:.1} |",
        s(t_again),
        s(TARGET) / s(t_again)
    );
    println!(
        "| one line in ten changed ({} updated) | {:.1} s | ≤ 60 s | ×{:.1} |",
        r_changed.updated,
        s(t_changed),
        s(TARGET) / s(t_changed)
    );
    println!(
        "| yardstick: the same rows set-based, rolled back | {:.2} s | | first import = ×{:.1} the yardstick |",
        s(bound),
        s(t_first) / s(bound)
    );
    Ok(())
}
