//! `tenant-admin demo`: the demo territory (Gironde), its council, a commune tenant and a few
//! structures, so a newcomer has something to look at after `infra/run up`. Idempotent.

use foundation::ids::{MandateId, ProfessionalId, StructureId, TenantId};
use foundation::tenancy::tenants::{self, TenantError, TenantKind};
use foundation::tenancy::{CommuneCode, DepartementCode};
use habilitation_desk::accounts;
use habilitation_desk::structures::{NewStructure, create_structure};
use policies::{Domain, Role};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// The demo's training organisation, sessions and habilitation files at every step.
mod guardian;
mod training;
use training::{demo_training, demo_training_organisation};

pub const DEMO_DEPARTEMENT: &str = "33";

async fn ensure_tenant(pool: &PgPool, kind: TenantKind, name: &str) -> anyhow::Result<TenantId> {
    match tenants::create_tenant(pool, &kind, name).await {
        Ok(t) => Ok(t.id),
        Err(TenantError::Duplicate(_)) => {
            let all = tenants::list_tenants(pool).await?;
            let code = match &kind {
                TenantKind::Departement(d) => d.to_string(),
                TenantKind::Commune(c) => c.to_string(),
            };
            all.into_iter()
                .find(|t| t.commune_code.as_deref().unwrap_or(&t.departement_code) == code)
                .map(|t| t.id)
                .ok_or_else(|| anyhow::anyhow!("tenant de démonstration introuvable"))
        }
        Err(e) => Err(e.into()),
    }
}

/// The delegates of the demo's guardian service (demo accounts).
const DELEGATES: [&str; 2] = [
    "gael.delegue@demo.aidantsconnect.test",
    "diane.deleguee@demo.aidantsconnect.test",
];

pub async fn run(pool: &PgPool, app_role: &str) -> anyhow::Result<()> {
    // Absent means production (as for the services): the demo needs an explicit
    // `AC_ENVIRONMENT=development` (or `test`).
    anyhow::ensure!(
        matches!(
            std::env::var("AC_ENVIRONMENT").as_deref(),
            Ok("development" | "test")
        ),
        "les données de démonstration sont refusées en production \
         (AC_ENVIRONMENT=development pour un poste local)"
    );
    let gironde = DepartementCode::parse(DEMO_DEPARTEMENT)?;
    foundation::tenancy::migrate::migrate_platform(pool, app_role).await?;
    let report = foundation::tenancy::migrate::provision_departement(
        pool,
        app_role,
        &crate::tenant_login()?,
        gironde,
        &foundation::tenancy::migrate::DEPARTEMENT_MIGRATIONS,
    )
    .await?;
    report
        .result
        .map_err(|e| anyhow::anyhow!("schéma de la Gironde : {e}"))?;

    let council = ensure_tenant(
        pool,
        TenantKind::Departement(gironde),
        "Conseil départemental de la Gironde",
    )
    .await?;
    let bordeaux = CommuneCode::parse("33063")?;
    let city = ensure_tenant(
        pool,
        TenantKind::Commune(bordeaux.clone()),
        "Ville de Bordeaux",
    )
    .await?;

    let merignac = ensure_tenant(
        pool,
        TenantKind::Commune(CommuneCode::parse("33281")?),
        "Ville de Mérignac",
    )
    .await?;
    let tenancy = crate::tenancy(pool).await?;
    let tenant = tenancy.unguarded(gironde).await?;
    let structures = [
        (
            city,
            "France Services Bordeaux Bastide",
            "france_services",
            "33063",
            "2 rue de la Benauge",
            true,
        ),
        (
            city,
            "CCAS de Bordeaux",
            "ccas",
            "33063",
            "4 rue Claude Bonnier",
            false,
        ),
        (
            council,
            "Maison du Département des Solidarités de Mérignac",
            "departement",
            "33281",
            "12 avenue de la Somme",
            false,
        ),
        (
            council,
            "Mairie de Pessac",
            "mairie",
            "33318",
            "Place de la Cinquième République",
            false,
        ),
        (
            merignac,
            "CCAS de Mérignac",
            "ccas",
            "33281",
            "60 avenue du Maréchal de Lattre de Tassigny",
            false,
        ),
        (
            council,
            "Service mandataire de l'UDAF de la Gironde",
            "association",
            "33063",
            "52 rue du Commandant Arnould",
            false,
        ),
    ];
    let mut ids = Vec::new();
    for (tenant_id, name, kind, commune, address, france_services) in structures {
        let id = create_structure(
            &tenant,
            &NewStructure {
                tenant_id,
                name: name.into(),
                kind: kind.into(),
                commune: CommuneCode::parse(commune)?,
                address: address.into(),
                france_services,
            },
        )
        .await?;
        ids.push(id);
    }
    println!(
        "territoire de démonstration prêt : Gironde (33), 3 tenants (le département, Bordeaux, Mérignac), {} structures",
        structures.len()
    );
    let organisation = demo_training_organisation(pool).await?;
    demo_accounts(pool, council, city, &ids, organisation).await?;
    demo_requests(pool, &tenant).await?;
    demo_training(pool, &tenant, ids[0], organisation).await?;
    demo_mandates(pool, &tenant, ids[0]).await?;
    demo_history(&tenant, &ids).await?;
    guardian::demo_measures(pool, &tenant, ids[5], &DELEGATES).await?;
    // Chained and signed at once, so that `journal verify` holds before the platform's own
    // checkpoint job has run.
    let tenancy = crate::tenancy(pool).await?;
    foundation::journal::seal_from_platform(&tenancy, gironde).await?;
    let settings = foundation::config::Settings::load()?;
    let key = foundation::journal::CheckpointKey::from_base64(
        secrecy::ExposeSecret::expose_secret(&settings.security.journal_signing_key),
    )?;
    let mut tx = tenant.begin().await?;
    foundation::journal::checkpoint(&mut tx, &key).await?;
    tx.commit().await?;
    Ok(())
}

/// A demo request: reference, structure, kind, SIRET, commune, postal code, state, days since
/// submission, a reviewer's message, the refusal reason.
type DemoRequest<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    Option<i32>,
    Option<&'a str>,
    Option<&'a str>,
);

/// The demo's issuer: a verified address, so that a newcomer can ask a link at `/demande` and
/// find these requests.
pub const DEMO_ISSUER: &str = "demandeuse@demo.aidantsconnect.test";

/// Structure requests in every state (the issuer `demandeuse@…` filed them; invented
/// structures, SIRET and addresses), and two rollout waves: Gironde open for a month, Landes and
/// Lot-et-Garonne planned. Two were submitted two days ago, so that the national team's weekly
/// digest (sent to `nadia.nationale@…` when the platform starts, then on Mondays) lists them.
async fn demo_requests(
    pool: &PgPool,
    tenant: &foundation::tenancy::Territory,
) -> anyhow::Result<()> {
    let issuer: Uuid = sqlx::query_scalar(
        "INSERT INTO platform.issuers (id, email, verified_at) VALUES ($1, $2, now())
         ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(DEMO_ISSUER)
    .fetch_one(pool)
    .await?;
    for (name, opens_on, opened, codes) in [
        ("Vague 1 — Gironde", "2026-10-15", true, &["33"][..]),
        (
            "Vague 2 — Landes et Lot-et-Garonne",
            "2027-03-01",
            false,
            &["40", "47"][..],
        ),
    ] {
        let wave: Uuid = sqlx::query_scalar(
            "INSERT INTO platform.rollout_waves (id, name, opens_on, opened_at)
             VALUES ($1, $2, $3::date, CASE WHEN $4 THEN now() - interval '30 days' END)
             ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        )
        .bind(Uuid::now_v7())
        .bind(name)
        .bind(opens_on)
        .bind(opened)
        .fetch_one(pool)
        .await?;
        sqlx::query(
            "INSERT INTO platform.rollout_wave_departements (departement_code, wave_id)
             SELECT unnest($1::text[]), $2 ON CONFLICT (departement_code) DO NOTHING",
        )
        .bind(codes)
        .bind(wave)
        .execute(pool)
        .await?;
    }
    let accepted_structure: Option<StructureId> = {
        let mut tx = tenant.begin().await?;
        let id = sqlx::query_scalar("SELECT id FROM structures WHERE name = 'CCAS de Bordeaux'")
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        id
    };
    let requests: [DemoRequest; 6] = [
        (
            "HAB-33-DEMO0001",
            "Association Lien Social Talence",
            "association",
            "90000000100011",
            "33522",
            "33400",
            "submitted",
            Some(2),
            None,
            None,
        ),
        (
            "HAB-33-DEMO0002",
            "CCAS de Lormont",
            "ccas",
            "90000000200019",
            "33249",
            "33310",
            "submitted",
            Some(2),
            None,
            None,
        ),
        (
            "HAB-33-DEMO0003",
            "Médiathèque de Pessac",
            "mediation_numerique",
            "90000000300017",
            "33318",
            "33600",
            "draft",
            None,
            None,
            None,
        ),
        (
            "HAB-33-DEMO0004",
            "Espace social du Grand Parc",
            "association",
            "90000000400015",
            "33063",
            "33300",
            "changes_requested",
            Some(9),
            Some(
                "Merci de préciser le statut des deux aidants listés : sont-ils salariés de l'association ?",
            ),
            None,
        ),
        (
            "HAB-33-DEMO0005",
            "CCAS de Bordeaux",
            "ccas",
            "90000000500013",
            "33063",
            "33000",
            "accepted",
            Some(40),
            None,
            None,
        ),
        (
            "HAB-33-DEMO0006",
            "Club informatique de Mérignac",
            "association",
            "90000000600011",
            "33281",
            "33700",
            "refused",
            Some(20),
            None,
            Some(
                "Les accompagnants du club sont bénévoles : le dispositif n'habilite que des professionnels.",
            ),
        ),
    ];
    let mut tx = tenant.begin().await?;
    for (reference, name, kind, siret, commune, postal, status, days, message, reason) in requests {
        if status == "accepted" && accepted_structure.is_none() {
            continue;
        }
        let id: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO structure_requests (id, reference, structure_name, structure_kind, siret,
                 commune_code, postal_code, issuer_email, issuer_id, status, address, mission, opening_hours,
                 referent_first_name, referent_last_name, referent_email, referent_phone, referent_is_aidant,
                 first_submitted_at, submitted_at, decided_at, refusal_reason, structure_id, accounts_done_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '1 rue de la Démonstration',
                 'Accueil des habitants et accompagnement aux démarches en ligne.',
                 'Du lundi au vendredi, 9 h - 12 h et 14 h - 17 h',
                 'Régine', 'Référente', 'regine.referente@demo.aidantsconnect.test', '+33556000000', false,
                 now() - make_interval(days => $11), now() - make_interval(days => $11),
                 CASE WHEN $10 IN ('accepted', 'refused') THEN now() - make_interval(days => $11 - 5) END,
                 $12, $13, CASE WHEN $10 = 'accepted' THEN now() END)
             ON CONFLICT (reference) DO NOTHING RETURNING id",
        )
        .bind(Uuid::now_v7())
        .bind(reference)
        .bind(name)
        .bind(kind)
        .bind(siret)
        .bind(commune)
        .bind(postal)
        .bind(DEMO_ISSUER)
        .bind(issuer)
        .bind(status)
        .bind(days)
        .bind(reason)
        .bind((status == "accepted").then_some(accepted_structure).flatten())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            continue;
        };
        sqlx::query(
            "INSERT INTO platform.request_index (request_id, reference, departement_code, issuer_id)
             VALUES ($1, $2, '33', $3) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(reference)
        .bind(issuer)
        .execute(pool)
        .await?;
        for (first, last, email) in [
            ("Anne", "Martin", "anne.martin"),
            ("Bruno", "Petit", "bruno.petit"),
        ] {
            sqlx::query(
                "INSERT INTO request_aidants (id, request_id, first_name, last_name, email, profession, employment, employer)
                 VALUES ($1, $2, $3, $4, $5, 'Agent d''accueil', 'employee', $6)",
            )
            .bind(Uuid::now_v7())
            .bind(id)
            .bind(first)
            .bind(last)
            .bind(format!("{email}.{}@demo.aidantsconnect.test", &reference[7..]).to_lowercase())
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        if status != "draft" {
            for c in habilitation_desk::requests::form::COMMITMENTS {
                sqlx::query(
                    "INSERT INTO request_commitments (request_id, code, text_version) VALUES ($1, $2, $3)",
                )
                .bind(id)
                .bind(c.code)
                .bind(c.version)
                .execute(&mut *tx)
                .await?;
            }
        }
        if let Some(message) = message {
            let nadia: Option<ProfessionalId> = sqlx::query_scalar(
                "SELECT id FROM platform.professionals WHERE email = 'nadia.nationale@demo.aidantsconnect.test'",
            )
            .fetch_optional(pool)
            .await?;
            if let Some(nadia) = nadia {
                sqlx::query(
                    "INSERT INTO request_messages (id, request_id, author, professional_id, body)
                     VALUES ($1, $2, 'reviewer', $3, $4)",
                )
                .bind(Uuid::now_v7())
                .bind(id)
                .bind(nadia)
                .bind(message)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    tx.commit().await?;
    println!(
        "demandes d'habilitation de démonstration : {DEMO_ISSUER} (brouillon, déposées, modifications demandées, acceptée, refusée) ; vagues : Gironde ouverte, Landes et Lot-et-Garonne prévues"
    );
    Ok(())
}

/// A month of figures for the Bastide and the CCAS of Bordeaux — a steady week-day pattern, a
/// burst of creations at the Bastide yesterday — so that the charts have a shape and the
/// hourly anomaly job has something to raise. Aggregates only (`stats_daily` and the tenants'
/// monthly table, the rows the statistics job writes): the journal holds only what really happened. Idempotent.
async fn demo_history(
    tenant: &foundation::tenancy::Territory,
    structures: &[StructureId],
) -> anyhow::Result<()> {
    let mut tx = tenant.begin().await?;
    for (structure, scale) in [(structures[0], 3), (structures[1], 1)] {
        sqlx::query(
            "INSERT INTO stats_daily (day, structure_id, category, created, used, revoked)
             SELECT d::date, $1, c.code,
                    CASE WHEN c.code = '' THEN $2 * (1 + (extract(day FROM d)::int % 3)) ELSE 0 END,
                    CASE WHEN c.code = '' THEN 0 ELSE $2 * (1 + (extract(day FROM d)::int + c.n) % 4) END,
                    CASE WHEN c.code = '' AND extract(day FROM d)::int % 9 = 0 THEN 1 ELSE 0 END
             FROM generate_series((now() AT TIME ZONE 'Europe/Paris')::date - 35, (now() AT TIME ZONE 'Europe/Paris')::date - 2, interval '1 day') d,
                  (VALUES ('', 0), ('social', 1), ('logement', 2), ('travail', 3), ('argent', 4)) AS c(code, n)
             WHERE extract(isodow FROM d) < 6
             ON CONFLICT (day, structure_id, category) DO NOTHING",
        )
        .bind(structure)
        .bind(scale)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO stats_daily (day, structure_id, category, created, used, revoked)
         VALUES ((now() AT TIME ZONE 'Europe/Paris')::date - 1, $1, '', 40, 0, 0)
         ON CONFLICT (day, structure_id, category) DO NOTHING",
    )
    .bind(structures[0])
    .execute(&mut *tx)
    .await?;
    habilitation_desk::statistics::rebuild_tenant_months(&mut tx).await?;
    tx.commit().await?;
    println!(
        "historique de démonstration : un mois de chiffres (Bastide, CCAS de Bordeaux) et une rafale de créations hier à la Bastide (alerte)"
    );
    Ok(())
}

/// Usagers and mandates of the France Services Bastide, made by Alice: live, expiring soon,
/// expired, revoked — so that the list, its filters and a revocation can be walked through.
/// Identities are invented; their FranceConnect `sub` is marked as demo data.
async fn demo_mandates(
    pool: &PgPool,
    tenant: &foundation::tenancy::Territory,
    structure: StructureId,
) -> anyhow::Result<()> {
    use mandate_service::categories::by_code;
    use mandate_service::franceconnect::Identity;
    use mandate_service::mandates::{self, NewMandate};
    use time::{Duration, OffsetDateTime};
    let alice = sqlx::query_scalar("SELECT id FROM platform.professionals WHERE email = $1")
        .bind("alice.aidant@demo.aidantsconnect.test")
        .fetch_one(pool)
        .await?;
    // (given names, family name, birth date, gender, birthplace, categories, duration, age in
    // days, revoked)
    type DemoPerson<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a [&'a str],
        i32,
        i64,
        bool,
    );
    let people: [DemoPerson; 6] = [
        (
            "Josette",
            "MARTIN",
            "1948-03-12",
            "female",
            "33063",
            &["social", "logement"],
            365,
            20,
            false,
        ),
        (
            "Ahmed",
            "BENALI",
            "1975-11-02",
            "male",
            "33281",
            &["travail", "argent"],
            182,
            170,
            false,
        ),
        (
            "Lucie",
            "FONTAINE",
            "1990-06-30",
            "female",
            "33318",
            &["famille"],
            31,
            3,
            false,
        ),
        (
            "Gérard",
            "LEROY",
            "1939-01-21",
            "male",
            "33522",
            &["papiers", "transports"],
            31,
            60,
            false,
        ),
        (
            "Fatou",
            "DIALLO",
            "1982-09-15",
            "female",
            "",
            &["social", "etranger"],
            365,
            90,
            true,
        ),
        (
            "Marc-Antoine",
            "DUPRÉ",
            "1961-04-04",
            "male",
            "33063",
            &["logement"],
            182,
            10,
            false,
        ),
    ];
    let now = OffsetDateTime::now_utc();
    let mut created = 0;
    for (i, (given, family, birthdate, gender, place, cats, days, age, revoked)) in
        people.into_iter().enumerate()
    {
        let identity = Identity {
            sub: format!("demo-usager-{i}"),
            given_name: given.into(),
            family_name: family.into(),
            preferred_username: None,
            birthdate: birthdate.into(),
            gender: gender.into(),
            birthplace: place.into(),
            birthcountry: if place.is_empty() {
                "99350".into()
            } else {
                "99100".into()
            },
            email: None,
        };
        let key = format!("demo:{i}");
        let mut tx = tenant.begin().await?;
        // Run again on a database that has them, the demo leaves its people as they are.
        let made: Option<MandateId> =
            sqlx::query_scalar("SELECT id FROM mandates WHERE idempotency_key = $1")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await?;
        if made.is_some() {
            continue;
        }
        let usager = mandates::upsert_usager(&mut tx, &identity, structure, alice).await?;
        // Receipts of their mandates' uses: Josette by SMS (a number of the range ARCEP keeps
        // for fiction), Marc-Antoine by letter; the others have no contact.
        let (phone, address) = match i {
            0 => (Some("+33639980001"), None),
            5 => (
                None,
                Some("M. Marc-Antoine DUPRÉ\n8 quai de Queyries\n33100 Bordeaux"),
            ),
            _ => (None, None),
        };
        if phone.is_some() || address.is_some() {
            sqlx::query(
                "INSERT INTO usager_contacts (usager_id, structure_id, phone, postal_address, updated_by)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (usager_id, structure_id) DO UPDATE
                 SET phone = excluded.phone, postal_address = excluded.postal_address",
            )
            .bind(usager)
            .bind(structure)
            .bind(phone)
            .bind(address)
            .bind(alice)
            .execute(&mut *tx)
            .await?;
        }
        let mandate = mandates::create(
            &mut tx,
            &NewMandate {
                id: MandateId::new_v7(),
                structure,
                aidant: alice,
                usager,
                categories: cats.iter().filter_map(|c| by_code(c)).collect(),
                duration_days: days,
                renewal_of: None,
                idempotency_key: Some(key),
                language: None,
                attestation: None,
            },
            now - Duration::days(age),
        )
        .await?;
        if revoked {
            match mandates::revoke(&mut tx, structure, mandate, None, Some(alice), now).await {
                Ok(_) | Err(mandates::MandateError::NothingLive) => {}
                Err(e) => anyhow::bail!("démonstration : {e}"),
            }
        }
        tx.commit().await?;
        created += 1;
    }
    println!(
        "mandats de démonstration : {created} personnes accompagnées par Alice Aidant (France Services Bordeaux Bastide)"
    );
    Ok(())
}

/// Demo professionals with known TOTP keys, printed so that a newcomer can add them to an
/// authenticator app (or compute codes with `oathtool --totp -b KEY`).
async fn demo_accounts(
    pool: &PgPool,
    council: TenantId,
    city: TenantId,
    structures: &[StructureId],
    organisation: Uuid,
) -> anyhow::Result<()> {
    let settings = foundation::config::Settings::load()?;
    let cipher = foundation::auth::secrets::SeedCipher::new(
        &settings.security.totp_key,
        settings.security.totp_key_version,
    )?;
    let (bastide, ccas, udaf) = (structures[0], structures[1], structures[5]);
    type Grants<'a> = Vec<(Role, Domain, Option<&'a str>)>;
    let demo: [(&str, &str, Grants); 9] = [
        (
            "alice.aidant@demo.aidantsconnect.test",
            "Alice Aidant",
            vec![
                (Role::Aidant, bastide.domain(), Some("33")),
                (Role::Aidant, ccas.domain(), Some("33")),
            ],
        ),
        (
            "remi.referent@demo.aidantsconnect.test",
            "Rémi Référent",
            vec![
                (Role::Referent, bastide.domain(), Some("33")),
                (Role::Aidant, bastide.domain(), Some("33")),
            ],
        ),
        (
            "teo.territoire@demo.aidantsconnect.test",
            "Téo Territoire",
            vec![(Role::TerritoryAdmin, council.domain(), None)],
        ),
        (
            "nadia.nationale@demo.aidantsconnect.test",
            "Nadia Nationale",
            vec![(Role::NationalAdmin, Domain::National, None)],
        ),
        (
            "tom.formateur@demo.aidantsconnect.test",
            "Tom Formateur",
            vec![(Role::Trainer, Domain::Organisation(organisation), None)],
        ),
        (
            "bea.bordeaux@demo.aidantsconnect.test",
            "Béa Bordeaux",
            vec![(Role::TerritoryAdmin, city.domain(), None)],
        ),
        (
            "alix.auditrice@demo.aidantsconnect.test",
            "Alix Auditrice",
            vec![(Role::Auditor, council.domain(), None)],
        ),
        (
            DELEGATES[0],
            "Gaël Délégué",
            vec![
                (Role::Referent, udaf.domain(), Some("33")),
                (Role::Aidant, udaf.domain(), Some("33")),
            ],
        ),
        (
            DELEGATES[1],
            "Diane Déléguée",
            vec![(Role::Aidant, udaf.domain(), Some("33"))],
        ),
    ];
    println!("comptes de démonstration (adresse e-mail + code TOTP de la clé indiquée) :");
    for (email, name, roles) in demo {
        let seed =
            Sha256::digest(format!("aidants-connect-demo:{email}").as_bytes())[..20].to_vec();
        let mut tx = pool.begin().await?;
        let existing: Option<ProfessionalId> =
            sqlx::query_scalar("SELECT id FROM platform.professionals WHERE email = $1")
                .bind(email)
                .fetch_optional(&mut *tx)
                .await?;
        if existing.is_none() {
            let id = accounts::create_professional(&mut tx, email, name).await?;
            for (role, domain, departement) in &roles {
                accounts::grant_role(&mut tx, id, *role, *domain, *departement).await?;
            }
            let factor = Uuid::now_v7();
            let (ciphertext, nonce) = cipher.encrypt_for(&seed, factor.as_bytes());
            sqlx::query(
                "INSERT INTO platform.second_factors
                     (id, professional_id, kind, seed_ciphertext, seed_nonce, key_version, confirmed_at, aad_bound)
                 VALUES ($1, $2, 'app', $3, $4, $5, now(), true)",
            )
            .bind(factor)
            .bind(id)
            .bind(ciphertext)
            .bind(nonce)
            .bind(cipher.version())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        println!(
            "  {email:<42} clé TOTP {}",
            foundation::auth::totp::seed_base32(&seed)
        );
    }
    Ok(())
}
