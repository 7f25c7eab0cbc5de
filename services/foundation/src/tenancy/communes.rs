//! Communes of the reference data (`reference/communes.tsv`, INSEE COG), loaded into
//! `platform.communes` for each département when its schema is provisioned, and looked up by
//! INSEE code (structure requests, coverage).

use std::collections::HashMap;
use std::sync::LazyLock;

use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use super::{CommuneCode, DepartementCode};

const COMMUNES: &str = include_str!("../../reference/communes.tsv");

/// The load of one département's communes (its parameters: the columns as arrays, then the
/// département). Part of the reference's digest: a change in how rows are written reloads them.
const LOAD: &str = "INSERT INTO platform.communes (code, name, departement_code, postal_codes, population, parent_code)
         SELECT c, n, $6, CASE WHEN p = '' THEN '{}'::text[] ELSE string_to_array(p, ',') END, pop, par
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[]) AS t(c, n, p, pop, par)
         ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, departement_code = EXCLUDED.departement_code,
             postal_codes = EXCLUDED.postal_codes, population = EXCLUDED.population, parent_code = EXCLUDED.parent_code
         WHERE (communes.name, communes.departement_code, communes.postal_codes, communes.population, communes.parent_code)
               IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.departement_code, EXCLUDED.postal_codes, EXCLUDED.population, EXCLUDED.parent_code)";

/// A commune as the reference data describes it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Commune {
    pub code: String,
    pub name: String,
    pub departement_code: String,
    pub postal_codes: Vec<String>,
    pub population: Option<i32>,
}

/// The reference lines by département (code, name, département, postal codes, population,
/// parent), split once per process: the migrator reads one département's lines at each run of
/// each territory, and filtering the 35,000 lines each time cost more than the read itself.
static BY_DEPARTEMENT: LazyLock<HashMap<&'static str, Vec<[&'static str; 6]>>> =
    LazyLock::new(|| {
        let mut by = HashMap::<_, Vec<_>>::new();
        let fields = COMMUNES
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some([
                    f.next()?,
                    f.next()?,
                    f.next()?,
                    f.next()?,
                    f.next()?,
                    f.next()?,
                ])
            });
        for line in fields {
            by.entry(line[2]).or_default().push(line);
        }
        by
    });

/// The reference lines of one département, in the reference's order.
fn lines_of(departement: DepartementCode) -> impl Iterator<Item = [&'static str; 6]> {
    BY_DEPARTEMENT
        .get(departement.as_str())
        .into_iter()
        .flatten()
        .copied()
}

/// What the reference data holds for one département: its number of communes and a digest of
/// their lines. The migrator keeps the digest once it has loaded them, and loads them again
/// only when the reference or the number of rows differs.
pub(super) struct Reference {
    pub rows: u64,
    pub digest: [u8; 32],
}

impl Reference {
    pub fn of(departement: DepartementCode) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(LOAD.as_bytes());
        let mut rows = 0;
        for fields in lines_of(departement) {
            for field in fields {
                hasher.update((field.len() as u64).to_be_bytes());
                hasher.update(field.as_bytes());
            }
            rows += 1;
        }
        Self {
            rows,
            digest: hasher.finalize().into(),
        }
    }
}

/// Loads (or updates) the département's communes. Idempotent; rows are rewritten only when the
/// reference changed.
pub async fn load(
    conn: &mut PgConnection,
    departement: DepartementCode,
) -> Result<u64, sqlx::Error> {
    let mut codes = Vec::new();
    let mut names = Vec::new();
    let mut postal = Vec::new();
    let mut population = Vec::new();
    let mut parent = Vec::new();
    for [code, name, _, postal_codes, pop, parent_code] in lines_of(departement) {
        codes.push(code);
        names.push(name);
        postal.push(postal_codes);
        population.push(pop.parse::<i32>().ok());
        parent.push((!parent_code.is_empty()).then_some(parent_code));
    }
    let done = sqlx::query(LOAD)
        .bind(&codes)
        .bind(&names)
        .bind(&postal)
        .bind(&population)
        .bind(&parent)
        .bind(departement.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// The commune of an INSEE code, if the reference data knows it.
pub async fn find(pool: &PgPool, code: &CommuneCode) -> Result<Option<Commune>, sqlx::Error> {
    sqlx::query_as(
        "SELECT code, name, departement_code, postal_codes, population FROM platform.communes WHERE code = $1",
    )
    .bind(code.as_str())
    .fetch_optional(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_holds_every_departement_and_known_communes() {
        for d in DepartementCode::all() {
            assert!(lines_of(d).count() > 0, "{}", d.as_str());
        }
        let rhone: Vec<_> = lines_of(DepartementCode::parse("69").expect("69")).collect();
        assert!(rhone.iter().any(|f| f[0] == "69123" && f[1] == "Lyon"));
        // Lyon's arrondissements name their commune.
        assert!(rhone.iter().any(|f| f[0] == "69381" && f[5] == "69123"));
        let corse: Vec<_> = lines_of(DepartementCode::parse("2A").expect("2A")).collect();
        assert!(corse.iter().any(|f| f[0] == "2A004" && f[1] == "Ajaccio"));
        assert!(COMMUNES.lines().count() > 34_000);
    }
}
