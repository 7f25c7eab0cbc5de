//! The demo's guardian service (issue 18): the « Service mandataire de l'UDAF de la Gironde »,
//! flagged as such, whose two delegates (demo accounts) hold 300 measures imported from a CSV
//! made here, as a service's case-management software would export it. Idempotent: a second
//! run imports the same file, which changes nothing.

use foundation::ids::StructureId;
use foundation::tenancy::Territory;
use sqlx::PgPool;

/// The measures of the demo service.
const MEASURES: usize = 300;

const FAMILY: [&str; 12] = [
    "Lambert", "Fontaine", "Rousseau", "Vincent", "Muller", "Lefèvre", "Faure", "André", "Mercier",
    "Blanc", "Guérin", "Boyer",
];
const GIVEN: [&str; 10] = [
    "Germaine", "Marcel", "Yvette", "Roger", "Odette", "Lucien", "Simone", "Raymond", "Paulette",
    "Gérard",
];
const KINDS: [&str; 6] = [
    "Tutelle",
    "Curatelle renforcée",
    "Curatelle simple",
    "Habilitation familiale",
    "Sauvegarde de justice",
    "Mandat de protection future",
];
const DEMARCHES: [&str; 4] = [
    "social|argent|logement",
    "social|argent",
    "argent|logement|papiers",
    "social|logement|justice",
];

/// The file: `numero_dossier` `UDAF33-0001`…; ends spread from 20 days to 5 years from now (so
/// some alerts are due), a third of the measures with a renewal date.
pub fn csv(delegates: &[&str]) -> String {
    let today = foundation::paris::today();
    let fr = |d: time::Date| format!("{:02}/{:02}/{}", d.day(), u8::from(d.month()), d.year());
    let mut out = String::from(
        "numero_dossier;nom_naissance;nom_usage;prenoms;sexe;date_naissance;code_lieu_naissance;code_pays_naissance;type_mesure;tribunal;date_jugement;numero_rg;date_debut;date_fin;date_revision;demarches;delegue\n",
    );
    for i in 0..MEASURES {
        let ends = today + time::Duration::days(20 + (i as i64 * 6) % 1800);
        let decided = ends - time::Duration::days(1826);
        let decided = decided.min(today - time::Duration::days(10));
        let born = time::Date::from_calendar_date(
            1928 + (i % 55) as i32,
            time::Month::try_from(1 + (i % 12) as u8).unwrap_or(time::Month::January),
            1 + (i % 28) as u8,
        )
        .unwrap_or(today);
        let renewal = if i % 3 == 0 {
            fr(ends - time::Duration::days(120))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "UDAF33-{:04};{};;{};{};{};33063;99100;{};Tribunal judiciaire de Bordeaux;{};RG {}/{:05};{};{};{};{};{}\n",
            i + 1,
            FAMILY[i % FAMILY.len()],
            GIVEN[(i / 3) % GIVEN.len()],
            if (i / 3) % 2 == 0 { "F" } else { "M" },
            fr(born),
            KINDS[i % KINDS.len()],
            fr(decided),
            decided.year() % 100,
            1000 + i,
            fr(decided),
            fr(ends),
            renewal,
            DEMARCHES[i % DEMARCHES.len()],
            delegates[i % delegates.len()],
        ));
    }
    out
}

/// Flags the structure as a guardian service and imports its measures.
pub async fn demo_measures(
    pool: &PgPool,
    territory: &Territory,
    structure: StructureId,
    delegates: &[&str],
) -> anyhow::Result<()> {
    let mut tx = territory.begin().await?;
    sqlx::query("UPDATE structures SET guardian_service = true WHERE id = $1")
        .bind(structure)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let file = csv(delegates);
    let report = crate::measures::import_file(
        pool,
        territory,
        structure,
        delegates[0],
        file.as_bytes(),
        false,
    )
    .await?;
    anyhow::ensure!(
        report.refused == 0,
        "mesures de démonstration refusées : {:?}",
        report
            .lines
            .iter()
            .find(|l| l.outcome == mandate_service::judicial::import::Outcome::Refused)
    );
    println!(
        "service mandataire de démonstration : {MEASURES} mesures ({} importées, {} déjà là)",
        report.imported,
        report.unchanged + report.updated
    );
    Ok(())
}
