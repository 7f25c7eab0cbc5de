//! The demo's training: an organisation with its trainer, a past and a coming session, and
//! habilitation files of the demo structure at every step of the path.

use foundation::ids::{ProfessionalId, StructureId};
use habilitation_desk::accounts;
use sqlx::PgPool;
use uuid::Uuid;

/// The demo's training organisation (its trainer is `tom.formateur@…`).
pub(super) async fn demo_training_organisation(pool: &PgPool) -> anyhow::Result<Uuid> {
    Ok(sqlx::query_scalar(
        "INSERT INTO platform.training_organisations (id, name) VALUES ($1, 'Formateurs de la démonstration')
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
    )
    .bind(Uuid::now_v7())
    .fetch_one(pool)
    .await?)
}

/// A demo session of the organisation, found by title or created `days` from today.
async fn demo_session(
    pool: &PgPool,
    organisation: Uuid,
    title: &str,
    days: i32,
) -> anyhow::Result<Uuid> {
    if let Some(id) = sqlx::query_scalar(
        "SELECT id FROM platform.training_sessions WHERE organisation_id = $1 AND title = $2",
    )
    .bind(organisation)
    .bind(title)
    .fetch_optional(pool)
    .await?
    {
        return Ok(id);
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO platform.training_sessions (id, organisation_id, title, first_day, second_day, mode, address, region_code, capacity)
         VALUES ($1, $2, $3, (now() AT TIME ZONE 'Europe/Paris')::date + $4, (now() AT TIME ZONE 'Europe/Paris')::date + $4 + 1,
                 'in_person', '12 rue des Formations, 33000 Bordeaux', '75', 12)",
    )
    .bind(id)
    .bind(organisation)
    .bind(title)
    .bind(days)
    .execute(pool)
    .await?;
    Ok(id)
}

/// Where a demo file stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DemoStage {
    ToTrain,
    Registered,
    Trained,
    Pix,
    Charter,
    Active,
    Withdrawn,
}

/// Habilitation files of the France Services Bastide at every step of the path — to train
/// (Anne), registered on the coming session (Bruno), trained (David), trained with Pix
/// (Chloé), trained with the charter accepted and Pix awaited (Emma), active (Alice, the demo
/// aidant, whose file was activated), withdrawn (Fabien) — so that `remi.referent@…`
/// (`/structure`), `tom.formateur@…` (`/formation`) and `nadia.nationale@…`
/// (`/national/registre`) have something to look at and act on. Invented people.
pub(super) async fn demo_training(
    pool: &PgPool,
    tenant: &foundation::tenancy::Territory,
    structure: StructureId,
    organisation: Uuid,
) -> anyhow::Result<()> {
    let coming = demo_session(
        pool,
        organisation,
        "Formation Aidants Connect (démonstration)",
        21,
    )
    .await?;
    let past = demo_session(
        pool,
        organisation,
        "Formation Aidants Connect (session passée)",
        -40,
    )
    .await?;
    let referent: ProfessionalId = sqlx::query_scalar(
        "SELECT id FROM platform.professionals WHERE email = 'remi.referent@demo.aidantsconnect.test'",
    )
    .fetch_one(pool)
    .await?;
    for (first, last, stage) in [
        ("Anne", "Martin", DemoStage::ToTrain),
        ("Bruno", "Petit", DemoStage::Registered),
        ("David", "Roux", DemoStage::Trained),
        ("Chloé", "Durand", DemoStage::Pix),
        ("Emma", "Leroy", DemoStage::Charter),
        ("Alice", "Aidant", DemoStage::Active),
        ("Fabien", "Morel", DemoStage::Withdrawn),
    ] {
        let email = match stage {
            DemoStage::Active => "alice.aidant@demo.aidantsconnect.test".to_owned(),
            _ => format!(
                "{}.{}@demo.aidantsconnect.test",
                first.to_lowercase().replace('é', "e"),
                last.to_lowercase()
            ),
        };
        // The accounts of the active and the withdrawn aidant (Alice's exists already).
        let account: Option<ProfessionalId> = match stage {
            DemoStage::Active | DemoStage::Withdrawn => {
                let mut tx = pool.begin().await?;
                let id = match sqlx::query_scalar::<_, ProfessionalId>(
                    "SELECT id FROM platform.professionals WHERE email = $1",
                )
                .bind(&email)
                .fetch_optional(&mut *tx)
                .await?
                {
                    Some(id) => id,
                    None => {
                        accounts::create_professional(&mut tx, &email, &format!("{first} {last}"))
                            .await?
                    }
                };
                tx.commit().await?;
                Some(id)
            }
            _ => None,
        };
        let mut tx = tenant.begin().await?;
        let file: Uuid = sqlx::query_scalar(
            "INSERT INTO habilitation_files (id, structure_id, first_name, last_name, email, profession, employment, employer)
             VALUES ($1, $2, $3, $4, $5, 'Conseiller numérique', 'conseiller_numerique', 'France Services Bordeaux Bastide')
             ON CONFLICT (structure_id, email) DO UPDATE SET email = EXCLUDED.email RETURNING id",
        )
        .bind(Uuid::now_v7())
        .bind(structure)
        .bind(first)
        .bind(last)
        .bind(&email)
        .fetch_one(&mut *tx)
        .await?;
        match (stage, account) {
            (DemoStage::Active, Some(id)) => {
                sqlx::query(
                    "UPDATE habilitation_files SET state = 'active', professional_id = $2 WHERE id = $1",
                )
                .bind(file)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            (DemoStage::Withdrawn, Some(id)) => {
                let withdrawn: bool = sqlx::query_scalar(
                    "SELECT state = 'withdrawn' FROM habilitation_files WHERE id = $1",
                )
                .bind(file)
                .fetch_one(&mut *tx)
                .await?;
                if !withdrawn {
                    let withdrawal = Uuid::now_v7();
                    sqlx::query(
                        "INSERT INTO habilitation_withdrawals (id, structure_id, professional_id, reason, withdrawn_by, by_national, withdrawn_at)
                         VALUES ($1, $2, $3, 'A quitté la structure (démonstration).', $4, false, now() - interval '5 days')",
                    )
                    .bind(withdrawal)
                    .bind(structure)
                    .bind(id)
                    .bind(referent)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE habilitation_files SET state = 'withdrawn', professional_id = $2, withdrawal_id = $3 WHERE id = $1",
                    )
                    .bind(file)
                    .bind(id)
                    .bind(withdrawal)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            _ => {}
        }
        tx.commit().await?;
        sqlx::query(
            "INSERT INTO platform.habilitation_file_index (file_id, departement_code, structure_id, email, display_name)
             VALUES ($1, '33', $2, $3, $4) ON CONFLICT (file_id) DO NOTHING",
        )
        .bind(file)
        .bind(structure)
        .bind(&email)
        .bind(format!("{first} {last}"))
        .execute(pool)
        .await?;
        if stage == DemoStage::ToTrain {
            continue;
        }
        let (session, status) = match stage {
            DemoStage::Registered => (coming, "registered"),
            _ => (past, "attended"),
        };
        let inserted = sqlx::query(
            "INSERT INTO platform.training_registrations (id, session_id, file_id, status, registered_by, attendance_at)
             SELECT $1, $2, $3, $4, $5, CASE WHEN $4 = 'attended' THEN now() - interval '39 days' END
             WHERE NOT EXISTS (SELECT 1 FROM platform.training_registrations WHERE file_id = $3)",
        )
        .bind(Uuid::now_v7())
        .bind(session)
        .bind(file)
        .bind(status)
        .bind(referent)
        .execute(pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            sqlx::query(
                "UPDATE platform.training_sessions SET seats_taken = seats_taken + 1 WHERE id = $1",
            )
            .bind(session)
            .execute(pool)
            .await?;
        }
        if matches!(
            stage,
            DemoStage::Pix | DemoStage::Active | DemoStage::Withdrawn
        ) {
            sqlx::query(
                "INSERT INTO platform.pix_results (file_id, score, certified_on) VALUES ($1, 512, (now() AT TIME ZONE 'Europe/Paris')::date - 30)
                 ON CONFLICT (file_id) DO NOTHING",
            )
            .bind(file)
            .execute(pool)
            .await?;
        }
        if matches!(
            stage,
            DemoStage::Charter | DemoStage::Active | DemoStage::Withdrawn
        ) {
            sqlx::query(
                "INSERT INTO platform.charter_acceptances (email, version)
                 SELECT $1, version FROM platform.charter_versions WHERE published_at <= now()
                 ORDER BY published_at DESC, version DESC LIMIT 1
                 ON CONFLICT DO NOTHING",
            )
            .bind(&email)
            .execute(pool)
            .await?;
        }
        if let Some(id) = account {
            sqlx::query(
                "INSERT INTO platform.habilitation_activations (file_id, professional_id, activated_at, synced_at)
                 VALUES ($1, $2, now() - interval '30 days', now()) ON CONFLICT (file_id) DO NOTHING",
            )
            .bind(file)
            .bind(id)
            .execute(pool)
            .await?;
        }
    }
    println!(
        "formation de démonstration : une session passée et une dans trois semaines (tom.formateur@…) ; sept dossiers d'habilitation de la France Services Bastide, un par étape (à former, inscrit, formé, Pix, charte, habilité, retiré : remi.referent@… → /structure)"
    );
    Ok(())
}
