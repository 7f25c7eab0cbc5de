//! `tenant-admin seed`: a national population for measuring at volume — structures, aidants,
//! usagers, mandates and their authorisations spread over the served territories in proportion
//! to their population, loaded with `COPY` one territory per transaction. A territory already
//! seeded is skipped, so an interrupted run is simply run again. Refused in production.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

use clap::Args;
use foundation::ids::StructureId;
use foundation::tenancy::{DepartementCode, Territory};
use futures::StreamExt;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The journal of what the seeded mandates' acts wrote.
mod journal;

#[derive(Args, Debug)]
pub struct SeedArgs {
    /// Nombre total de mandats, répartis entre les territoires selon leur population.
    #[arg(long, default_value_t = 10_000_000)]
    mandates: u64,
    /// Nombre total d'aidants (un compte professionnel chacun, cinq par structure environ).
    #[arg(long, default_value_t = 50_000)]
    aidants: u64,
    /// Mandats de la plus grande structure de chaque territoire (au plus la moitié des siens).
    #[arg(long, default_value_t = 100_000)]
    largest_structure: u64,
    /// Territoires à peupler (répétable) ; par défaut tous ceux qui sont servis.
    #[arg(long = "departement")]
    departements: Vec<String>,
    /// Territoires peuplés en même temps (une connexion chacun).
    #[arg(long, default_value_t = 2)]
    parallel: usize,
}

/// Approximate populations in thousands (INSEE census orders of magnitude, rounded): the
/// weights that spread the national figures over the territories.
#[rustfmt::skip]
const POPULATION: [(&str, u32); 101] = [
    ("01", 660), ("02", 530), ("03", 335), ("04", 165), ("05", 140), ("06", 1100),
    ("07", 330), ("08", 270), ("09", 155), ("10", 310), ("11", 375), ("12", 280),
    ("13", 2050), ("14", 700), ("15", 145), ("16", 350), ("17", 655), ("18", 300),
    ("19", 240), ("2A", 160), ("2B", 180), ("21", 535), ("22", 600), ("23", 115),
    ("24", 410), ("25", 545), ("26", 520), ("27", 600), ("28", 430), ("29", 915),
    ("30", 750), ("31", 1430), ("32", 190), ("33", 1650), ("34", 1200), ("35", 1090),
    ("36", 220), ("37", 610), ("38", 1270), ("39", 260), ("40", 420), ("41", 330),
    ("42", 765), ("43", 230), ("44", 1450), ("45", 680), ("46", 175), ("47", 330),
    ("48", 77), ("49", 820), ("50", 495), ("51", 565), ("52", 170), ("53", 305),
    ("54", 730), ("55", 185), ("56", 760), ("57", 1045), ("58", 200), ("59", 2610),
    ("60", 830), ("61", 280), ("62", 1460), ("63", 665), ("64", 690), ("65", 230),
    ("66", 480), ("67", 1150), ("68", 765), ("69", 1900), ("70", 235), ("71", 550),
    ("72", 565), ("73", 440), ("74", 840), ("75", 2130), ("76", 1255), ("77", 1430),
    ("78", 1450), ("79", 375), ("80", 570), ("81", 390), ("82", 260), ("83", 1090),
    ("84", 560), ("85", 690), ("86", 440), ("87", 370), ("88", 360), ("89", 335),
    ("90", 140), ("91", 1310), ("92", 1630), ("93", 1660), ("94", 1410), ("95", 1250),
    ("971", 380), ("972", 355), ("973", 290), ("974", 870), ("976", 300),
];

#[rustfmt::skip]
const CATEGORIES: [&str; 10] = [
    "papiers", "famille", "social", "travail", "logement",
    "transports", "argent", "justice", "etranger", "loisirs",
];
#[rustfmt::skip]
const GIVEN: [&str; 24] = [
    "Marie", "Jean", "Nadia", "Pierre", "Fatou", "Louis", "Sarah", "Ahmed",
    "Julie", "Marc", "Emma", "Paul", "Léa", "Hugo", "Inès", "Noah",
    "Chloé", "Adam", "Zoé", "Yanis", "Aïcha", "Gérard", "Monique", "Rémi",
];
#[rustfmt::skip]
const FAMILY: [&str; 40] = [
    "MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS",
    "MOREAU", "LAURENT", "SIMON", "MICHEL", "LEFEBVRE", "LEROY", "ROUX", "DAVID",
    "BERTRAND", "MOREL", "FOURNIER", "GIRARD", "BONNET", "DUPONT", "LAMBERT", "FONTAINE",
    "ROUSSEAU", "VINCENT", "MULLER", "FAURE", "ANDRE", "MERCIER", "BLANC", "GUERIN",
    "BOYER", "GARNIER", "CHEVALIER", "FRANCOIS", "LEGRAND", "GAUTHIER", "GARCIA", "N'DIAYE",
];
/// Durations (days) and their share of mandates, per thousand.
const DURATIONS: [(i64, u64); 4] = [(1, 50), (31, 150), (182, 250), (365, 550)];

/// What one territory receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub mandates: u64,
    pub aidants: u64,
    pub structures: u64,
    pub usagers: u64,
}

/// Spreads the national figures over `territories` by population, largest remainders so that
/// the totals are exact; every territory gets at least one aidant and one structure.
pub fn shares(territories: &[DepartementCode], mandates: u64, aidants: u64) -> Vec<Share> {
    let weights: Vec<u64> = territories
        .iter()
        .map(|d| {
            POPULATION
                .iter()
                .find(|(c, _)| *c == d.as_str())
                .map_or(300, |(_, p)| u64::from(*p))
        })
        .collect();
    let m = apportion(&weights, mandates);
    let a = apportion(&weights, aidants);
    m.into_iter()
        .zip(a)
        .map(|(mandates, aidants)| {
            let aidants = aidants.max(1);
            Share {
                mandates,
                aidants,
                structures: (aidants / 5).max(1),
                // Some people hold several mandates (renewals, several structures).
                usagers: (mandates * 4).div_ceil(5),
            }
        })
        .collect()
}

fn apportion(weights: &[u64], total: u64) -> Vec<u64> {
    let sum: u64 = weights.iter().sum::<u64>().max(1);
    let mut parts: Vec<(u64, u64, usize)> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let exact = u128::from(*w) * u128::from(total);
            (
                (exact / u128::from(sum)) as u64,
                (exact % u128::from(sum)) as u64,
                i,
            )
        })
        .collect();
    let mut left = total - parts.iter().map(|p| p.0).sum::<u64>();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|a, b| parts[*b].1.cmp(&parts[*a].1).then(a.cmp(b)));
    for i in order {
        if left == 0 {
            break;
        }
        parts[i].0 += 1;
        left -= 1;
    }
    parts.sort_by_key(|p| p.2);
    parts.into_iter().map(|p| p.0).collect()
}

/// SplitMix64: deterministic, fast, no dependency; a territory's data is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(
            (u128::from(self.next()) << 64 | u128::from(self.next())).to_be_bytes(),
        )
        .into_uuid()
    }
}

pub async fn run(pool: &PgPool, args: &SeedArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        matches!(
            std::env::var("AC_ENVIRONMENT").as_deref(),
            Ok("development" | "test")
        ),
        "le peuplement de mesure est refusé en production \
         (AC_ENVIRONMENT=development pour un poste local)"
    );
    anyhow::ensure!(
        args.mandates >= 1 && args.mandates <= 100_000_000,
        "--mandates : entre 1 et 100 000 000"
    );
    anyhow::ensure!(
        args.aidants >= 1 && args.aidants <= 1_000_000,
        "--aidants : entre 1 et 1 000 000"
    );
    let served: Vec<String> = sqlx::query_scalar(
        "SELECT departement_code FROM platform.departement_schemas WHERE status = 'ready'
         ORDER BY departement_code",
    )
    .fetch_all(pool)
    .await?;
    let all: Vec<DepartementCode> = served
        .iter()
        .filter_map(|c| DepartementCode::parse(c).ok())
        .collect();
    let territories: Vec<DepartementCode> = if args.departements.is_empty() {
        all.clone()
    } else {
        let mut chosen = Vec::new();
        for c in &args.departements {
            let d = DepartementCode::parse(c)?;
            anyhow::ensure!(
                served.iter().any(|s| s == d.as_str()),
                "le territoire {d} n'est pas servi : `tenant-admin migrate` d'abord"
            );
            chosen.push(d);
        }
        chosen
    };
    anyhow::ensure!(
        !territories.is_empty(),
        "aucun territoire servi : `tenant-admin migrate` d'abord"
    );
    // The national figures are spread over every served territory, whichever are seeded now:
    // a territory seeded on its own (or again) gets the share it has in the whole.
    let national = shares(&all, args.mandates, args.aidants);
    let shares: Vec<Share> = territories
        .iter()
        .map(|d| national[all.iter().position(|a| a == d).unwrap_or_default()])
        .collect();
    let rows = |s: &Share| s.usagers + s.mandates * 3 + s.aidants * 2 + s.structures;
    let entries = |s: &Share| s.mandates * journal::PER_MANDATE_ESTIMATE;
    let total: u64 = shares.iter().map(|s| rows(s) + entries(s)).sum();
    anyhow::ensure!(
        (1..=16).contains(&args.parallel),
        "--parallel : entre 1 et 16"
    );
    let progress = std::sync::Mutex::new(Progress::new(total));
    let progress = &progress;
    let tenancy = &crate::tenancy(pool).await?;
    let work = territories
        .iter()
        .zip(&shares)
        .map(|(d, share)| async move {
            let territory = tenancy.unguarded(*d).await?;
            if already_seeded(&territory).await? {
                lock(progress).skip(*d, rows(share));
            } else {
                seed_territory(pool, &territory, share, args.largest_structure, progress).await?;
            }
            // The journal after the rows it tells of, in a transaction of its own (the
            // administrator's): a territory seeded before it, or stopped in between, gets it now.
            let written = journal::seed(pool, &territory).await?;
            lock(progress).journal(*d, entries(share), written);
            Ok::<(), anyhow::Error>(())
        });
    let mut running = futures::stream::iter(work).buffer_unordered(args.parallel);
    // The first failure stops the run; what was committed stays, the rest is rolled back.
    while let Some(result) = running.next().await {
        result?;
    }
    lock(progress).done();
    Ok(())
}

fn lock(progress: &std::sync::Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    progress.lock().unwrap_or_else(|e| e.into_inner())
}

async fn already_seeded(territory: &Territory) -> anyhow::Result<bool> {
    let mut tx = territory.begin().await?;
    let seeded = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM usagers WHERE fc_sub = $1)")
        .bind(format!("seed-{}-0", territory.departement().as_str()))
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(seeded)
}

/// A commune code of the département (its first: enough for a structure's address).
fn commune_of(d: DepartementCode) -> String {
    if d.as_str().len() == 3 {
        format!("{}01", d.as_str())
    } else {
        format!("{}001", d.as_str())
    }
}

/// Escapes a value for COPY's text format (names may hold an apostrophe, never a tab).
fn text(v: &str) -> String {
    v.replace('\\', "\\\\").replace(['\t', '\n'], " ")
}

async fn seed_territory(
    pool: &PgPool,
    territory: &Territory,
    share: &Share,
    largest: u64,
    progress: &std::sync::Mutex<Progress>,
) -> anyhow::Result<()> {
    let d = territory.departement();
    let code = d.as_str();
    let mut rng = Rng(code.bytes().fold(0x5EED_u64, |h, b| h * 131 + u64::from(b)));
    lock(progress).territory(d);
    // The platform's part first, in its own transaction, and idempotent (the same identifiers
    // every run): the territory's council, owner of the seeded structures, and the aidants'
    // accounts. Then the territory's rows, all in one transaction of its own role.
    let mut platform = pool.begin().await?;
    let tenant: Uuid = match sqlx::query_scalar(
        "SELECT id FROM platform.tenants WHERE kind = 'departement' AND departement_code = $1",
    )
    .bind(code)
    .fetch_optional(&mut *platform)
    .await?
    {
        Some(id) => id,
        None => {
            sqlx::query_scalar(
                "INSERT INTO platform.tenants (id, kind, name, departement_code)
                 VALUES ($1, 'departement', $2, $3) RETURNING id",
            )
            .bind(Uuid::now_v7())
            .bind(format!("Conseil départemental — {}", d.name()))
            .bind(code)
            .fetch_one(&mut *platform)
            .await?
        }
    };
    let structures: Vec<Uuid> = (0..share.structures).map(|_| rng.uuid()).collect();
    // Aidants, round-robin over the structures, each with the aidant role there.
    let aidants: Vec<Uuid> = (0..share.aidants).map(|_| rng.uuid()).collect();
    let (mut emails, mut names, mut domains) = (Vec::new(), Vec::new(), Vec::new());
    for (i, _) in aidants.iter().enumerate() {
        let given = GIVEN[rng.below(GIVEN.len() as u64) as usize];
        let family = FAMILY[rng.below(FAMILY.len() as u64) as usize];
        emails.push(format!(
            "seed-aidant-{}-{i}@aidants.seed.test",
            code.to_ascii_lowercase()
        ));
        names.push(format!("{given} {family}"));
        domains.push(
            StructureId::from_uuid(structures[i % structures.len()])
                .domain()
                .to_string(),
        );
    }
    sqlx::query(
        "INSERT INTO platform.professionals (id, email, display_name)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(&aidants)
    .bind(&emails)
    .bind(&names)
    .execute(&mut *platform)
    .await?;
    sqlx::query(
        "INSERT INTO platform.role_assignments (professional_id, role, domain, departement_code)
         SELECT p, 'aidant', dom, $3 FROM unnest($1::uuid[], $2::text[]) AS x(p, dom)
         ON CONFLICT DO NOTHING",
    )
    .bind(&aidants)
    .bind(&domains)
    .bind(code)
    .execute(&mut *platform)
    .await?;
    platform.commit().await?;
    lock(progress).add(share.aidants * 2);

    let mut tx = territory.begin().await?;
    // Structures: the first is the territory's largest France Services.
    let commune = commune_of(d);
    let mut buf = String::new();
    for (i, id) in structures.iter().enumerate() {
        let (kind, fs) = if i == 0 || i % 4 == 1 {
            ("france_services", "t")
        } else if i % 4 == 2 {
            ("ccas", "f")
        } else {
            ("association", "f")
        };
        let _ = writeln!(
            buf,
            "{id}\t{tenant}\t{}\t{kind}\t{commune}\t{fs}",
            text(&format!("Structure {} n° {}", d.name(), i + 1))
        );
    }
    copy(
        &mut tx,
        "COPY structures (id, tenant_id, name, kind, commune_code, france_services) FROM STDIN",
        &buf,
    )
    .await?;
    lock(progress).add(share.structures);
    // Usagers, in batches.
    let usagers: Vec<Uuid> = (0..share.usagers).map(|_| rng.uuid()).collect();
    for chunk in usagers.chunks(20_000).enumerate() {
        let (n, ids) = chunk;
        buf.clear();
        for (j, id) in ids.iter().enumerate() {
            let i = n * 20_000 + j;
            let given = GIVEN[rng.below(GIVEN.len() as u64) as usize];
            let family = FAMILY[rng.below(FAMILY.len() as u64) as usize];
            let family = if i % 3 == 0 {
                family.to_owned()
            } else {
                format!("{family}-{}", i % 997)
            };
            let birth = format!(
                "{}-{:02}-{:02}",
                1930 + rng.below(75),
                1 + rng.below(12),
                1 + rng.below(28)
            );
            let gender = if rng.below(2) == 0 { "female" } else { "male" };
            let search = format!("{} {}", family.to_lowercase(), given.to_lowercase());
            let _ = writeln!(
                buf,
                "{id}\tseed-{code}-{i}\t{}\t{}\t{birth}\t{gender}\t{commune}\t99100\t{}",
                text(given),
                text(&family),
                text(&search)
            );
        }
        copy(
            &mut tx,
            "COPY usagers (id, fc_sub, given_name, family_name, birthdate, gender, birthplace, birthcountry, search_name) FROM STDIN",
            &buf,
        )
        .await?;
        lock(progress).add(ids.len() as u64);
    }
    // Mandates and their authorisations: half at most in the largest structure.
    let in_largest = largest.min(share.mandates / 2);
    let now = time::OffsetDateTime::now_utc();
    let mut done = 0u64;
    while done < share.mandates {
        let batch = (share.mandates - done).min(20_000);
        let mut mandates = String::new();
        let mut auths = String::new();
        let mut auth_rows = 0u64;
        for k in 0..batch {
            let i = done + k;
            let s = if i < in_largest || structures.len() == 1 {
                0
            } else {
                1 + rng.below(structures.len() as u64 - 1) as usize
            };
            let structure = structures[s];
            // An aidant of that structure (round-robin assignment above).
            let per = (aidants.len() / structures.len()).max(1);
            let a = (s + structures.len() * rng.below(per as u64) as usize) % aidants.len();
            let usager = usagers[(i % share.usagers) as usize];
            let id = rng.uuid();
            let roll = rng.below(1000);
            let mut acc = 0;
            let days = DURATIONS
                .iter()
                .find(|(_, per_mille)| {
                    acc += per_mille;
                    roll < acc
                })
                .map_or(365, |(d, _)| *d);
            // Created over the last three years; recent ones more often (the service grows).
            let age_days = {
                let r = rng.below(1_000_000) as f64 / 1_000_000.0;
                (r * r * 1095.0) as i64
            };
            let created = now
                - time::Duration::days(age_days)
                - time::Duration::seconds(rng.below(86_400) as i64);
            let expires = created + time::Duration::days(days);
            let revoked = rng.below(100) < 8 && expires > now;
            let ended = if revoked {
                let at =
                    created + time::Duration::seconds(rng.below((days * 86_400) as u64) as i64);
                Some(at.min(now))
            } else {
                None
            };
            let ts = |t: time::OffsetDateTime| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            };
            let _ = writeln!(
                mandates,
                "{id}\t{structure}\t{usager}\t{}\t{}\t{days}\t{}\t2026-11-v1\t{}\t{}",
                aidants[a],
                ts(created),
                ts(expires),
                ended.map_or("\\N".into(), ts),
                if revoked { "revoked" } else { "\\N" },
            );
            let n = 1 + rng.below(3) as usize;
            let first = rng.below(CATEGORIES.len() as u64) as usize;
            for c in 0..n {
                let category = CATEGORIES[(first + c * 3) % CATEGORIES.len()];
                let _ = writeln!(
                    auths,
                    "{}\t{id}\t{structure}\t{usager}\t{category}\t{}\t{}",
                    rng.uuid(),
                    ts(expires),
                    ended.map_or("\\N".into(), ts),
                );
                auth_rows += 1;
            }
        }
        copy(
            &mut tx,
            "COPY mandates (id, structure_id, usager_id, created_by, created_at, duration_days, expires_at, legal_text_version, ended_at, ended_reason) FROM STDIN",
            &mandates,
        )
        .await?;
        copy(
            &mut tx,
            "COPY authorisations (id, mandate_id, structure_id, usager_id, category, expires_at, revoked_at) FROM STDIN",
            &auths,
        )
        .await?;
        done += batch;
        // Estimated at two authorisations a mandate: the total follows what was written.
        lock(progress).settle(batch * 3, batch + auth_rows);
    }
    // Each structure's usagers in name order, as mandate creation writes them.
    sqlx::query(
        "INSERT INTO structure_usagers
             (structure_id, usager_id, family_name, given_name, preferred_username, birthdate,
              categories, live_until)
         SELECT p.structure_id, p.usager_id, u.family_name, u.given_name, u.preferred_username,
                u.birthdate, p.c, p.l
         FROM (SELECT structure_id, usager_id,
                      coalesce(array_agg(DISTINCT category ORDER BY category)
                                   FILTER (WHERE revoked_at IS NULL AND superseded_at IS NULL), '{}') c,
                      coalesce(max(expires_at)
                                   FILTER (WHERE revoked_at IS NULL AND superseded_at IS NULL), '-infinity') l
               FROM authorisations GROUP BY structure_id, usager_id) p
         JOIN usagers u ON u.id = p.usager_id
         ON CONFLICT (structure_id, usager_id) DO NOTHING",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // The planner's statistics follow by autovacuum's analyse of the grown tables.
    lock(progress).finish_territory(d);
    Ok(())
}

async fn copy(conn: &mut PgConnection, statement: &str, data: &str) -> anyhow::Result<()> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(data.as_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// A progress bar on a terminal (one line, redrawn), a line per territory otherwise.
struct Progress {
    total: u64,
    done: u64,
    skipped: u64,
    started: Instant,
    last: Instant,
    current: String,
    tty: bool,
}

impl Progress {
    fn new(total: u64) -> Self {
        let now = Instant::now();
        Self {
            total,
            done: 0,
            skipped: 0,
            started: now,
            last: now - Duration::from_secs(1),
            current: String::new(),
            tty: std::io::stdout().is_terminal(),
        }
    }

    fn territory(&mut self, d: DepartementCode) {
        self.current = format!("{d} {}", d.name());
        self.draw(true);
    }

    fn skip(&mut self, d: DepartementCode, rows: u64) {
        self.total -= rows;
        self.skipped += 1;
        if !self.tty {
            println!("{d} {} : déjà peuplé, laissé tel quel", d.name());
        }
    }

    /// A territory's journal: `written` entries instead of the `estimated`, or none (it had
    /// entries already).
    fn journal(&mut self, d: DepartementCode, estimated: u64, written: Option<u64>) {
        match written {
            Some(n) => {
                self.settle(estimated, n);
                if !self.tty {
                    println!("{d} {} : journal de {n} entrées chaînées", d.name());
                }
            }
            None => {
                self.total -= estimated.min(self.total - self.done);
                if !self.tty {
                    println!("{d} {} : journal déjà écrit, laissé tel quel", d.name());
                }
            }
        }
    }

    /// `written` rows instead of the `estimated` counted in the total.
    fn settle(&mut self, estimated: u64, written: u64) {
        self.total = self.total + written - estimated.min(self.total + written);
        self.add(written);
    }

    fn add(&mut self, rows: u64) {
        self.done = (self.done + rows).min(self.total);
        self.draw(false);
    }

    fn finish_territory(&mut self, d: DepartementCode) {
        if !self.tty {
            println!(
                "{d} {} : fait — {} ({:.0} lignes/s)",
                d.name(),
                self.line(),
                self.rate()
            );
        }
    }

    fn rate(&self) -> f64 {
        self.done as f64 / self.started.elapsed().as_secs_f64().max(0.001)
    }

    fn line(&self) -> String {
        let pct = if self.total == 0 {
            100.0
        } else {
            self.done as f64 * 100.0 / self.total as f64
        };
        let left = if self.rate() > 0.0 {
            (self.total - self.done) as f64 / self.rate()
        } else {
            0.0
        };
        format!(
            "{pct:5.1} % · {} / {} lignes · reste {} min {:02} s",
            self.done,
            self.total,
            (left / 60.0) as u64,
            (left % 60.0) as u64
        )
    }

    fn draw(&mut self, force: bool) {
        if !self.tty || (!force && self.last.elapsed() < Duration::from_millis(200)) {
            return;
        }
        self.last = Instant::now();
        let width = 30;
        let filled = (self.done * width as u64)
            .checked_div(self.total)
            .map_or(width, |f| f as usize);
        print!(
            "\r[{}{}] {} · {}   ",
            "#".repeat(filled),
            ".".repeat(width - filled),
            self.line(),
            self.current
        );
        let _ = std::io::stdout().flush();
    }

    fn done(&mut self) {
        if self.tty {
            self.draw(true);
            println!();
        }
        println!(
            "Peuplement terminé : {} lignes en {:.1} s ({:.0} lignes/s) ; {} territoire(s) déjà peuplé(s) laissé(s) tel(s) quel(s)",
            self.done,
            self.started.elapsed().as_secs_f64(),
            self.rate(),
            self.skipped
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_figures_are_spread_exactly_and_by_population() {
        let all: Vec<DepartementCode> = DepartementCode::all().collect();
        assert_eq!(all.len(), POPULATION.len());
        let s = shares(&all, 10_000_000, 50_000);
        assert_eq!(s.iter().map(|s| s.mandates).sum::<u64>(), 10_000_000);
        assert_eq!(s.iter().map(|s| s.aidants).sum::<u64>(), 50_000);
        let of = |code: &str| s[all.iter().position(|d| d.as_str() == code).expect("code")];
        // Nord is about thirty times Lozère.
        assert!(of("59").mandates > 30 * of("48").mandates);
        assert!(of("48").structures >= 1 && of("48").aidants >= 1);
        assert!(s.iter().all(|s| s.usagers * 5 >= s.mandates * 4));
    }

    #[test]
    fn every_territory_has_a_population() {
        for d in DepartementCode::all() {
            assert!(
                POPULATION.iter().any(|(c, _)| *c == d.as_str()),
                "{d} sans population"
            );
        }
    }
}
