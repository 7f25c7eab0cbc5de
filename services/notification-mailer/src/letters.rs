//! Printed letters, the channel of usagers with neither e-mail nor mobile phone. A letter waits
//! in its territory's outbox (with the structure that holds the mandate) until the daily batch:
//! per structure, one PDF with one A4 page per letter (address placed for a window envelope),
//! stored encrypted in the document vault under the structure's tenant, and the letters marked
//! sent with the batch, all in one transaction. The structure prints and posts the batch.
//!
//! Rows are locked with `FOR UPDATE SKIP LOCKED`, so two replicas never put a letter in two
//! batches; if anything fails before commit, the stored object is removed and the letters stay
//! pending for the next run.

use document_vault_bridge::vault::{Retention, Vault};
use foundation::app::Platform;
use foundation::ids::{StructureId, TenantId};
use foundation::pdf::{BOLD, LEFT, Page, REGULAR, document};
use foundation::tenancy::{DepartementCode, Tenancy, Territory};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::templates;

/// Letters in one batch at most (a larger backlog makes several batches).
pub const BATCH_MAX: i64 = 200;
/// How long a batch stays downloadable in the vault.
pub const BATCH_RETENTION_DAYS: i64 = foundation::outbox::LETTER_BATCH_RETENTION_DAYS;
/// The vault's document kind of a batch.
pub const DOCUMENT_KIND: &str = "letter_batch";

/// A batch written by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub id: Uuid,
    pub structure_id: StructureId,
    pub document_id: Uuid,
    pub letters: i32,
}

/// One letter ready to print.
pub struct Letter {
    pub address: String,
    pub subject: String,
    pub body: String,
}

/// The batch's PDF: one page per letter, the sender top left, the address where a French
/// window envelope (DL, window on the right) shows it, then the date, subject and text.
pub fn batch_pdf(structure: &str, date: &str, letters: &[Letter]) -> Vec<u8> {
    let pages = letters
        .iter()
        .map(|letter| {
            let mut page = Page::new();
            page.text(BOLD, 10.0, LEFT, 790.0, structure);
            page.text(REGULAR, 9.0, LEFT, 777.0, "via Aidants Connect");
            for (i, line) in letter.address.lines().take(6).enumerate() {
                page.text(REGULAR, 11.0, 330.0, 700.0 - 14.0 * i as f32, line.trim());
            }
            page.text(REGULAR, 10.0, 330.0, 590.0, &format!("Le {date}"));
            page.y = 560.0;
            page.heading(&format!("Objet : {}", letter.subject), 11.0);
            page.y -= 6.0;
            for paragraph in letter.body.split("\n\n") {
                let paragraph = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
                if !paragraph.is_empty() {
                    page.paragraph(&paragraph, 10.5);
                    page.y -= 4.0;
                }
            }
            page
        })
        .collect();
    document("Courriers Aidants Connect à imprimer", pages)
}

type PendingRow = (Uuid, String, String, Value);

/// Makes the batches of one territory's pending letters. Returns the batches written.
pub async fn batch_territory(
    tenancy: &Tenancy,
    vault: &Vault,
    departement: DepartementCode,
) -> anyhow::Result<Vec<Batch>> {
    let ctx = tenancy.unguarded(departement).await?;
    let mut tx = ctx.begin().await?;
    let structures: Vec<(StructureId, TenantId, String)> = sqlx::query_as(
        "SELECT s.id, s.tenant_id, s.name FROM structures s
         WHERE EXISTS (SELECT 1 FROM outbox o WHERE o.structure_id = s.id
                        AND o.channel = 'letter' AND o.sent_at IS NULL)
         ORDER BY s.id",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut batches = Vec::new();
    for (structure, tenant, name) in structures {
        while let Some(batch) =
            batch_structure(tenancy, vault, &ctx, structure, tenant, &name).await?
        {
            batches.push(batch);
        }
    }
    Ok(batches)
}

async fn batch_structure(
    tenancy: &Tenancy,
    vault: &Vault,
    ctx: &Territory,
    structure: StructureId,
    tenant: TenantId,
    name: &str,
) -> anyhow::Result<Option<Batch>> {
    let mut tx = ctx.begin().await?;
    let rows: Vec<PendingRow> = sqlx::query_as(
        "SELECT id, recipient, template, payload FROM outbox
         WHERE channel = 'letter' AND sent_at IS NULL AND structure_id = $1
           AND attempts < $2
         ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED",
    )
    .bind(structure)
    .bind(foundation::outbox::MAX_ATTEMPTS)
    .bind(BATCH_MAX)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut letters = Vec::new();
    let mut ids = Vec::new();
    for (id, address, template, payload) in rows {
        match templates::render(&template, &payload) {
            Ok(rendered) => {
                ids.push(id);
                letters.push(Letter {
                    address,
                    subject: rendered.subject,
                    body: rendered.text,
                });
            }
            // Never printable: a dead letter for the operators, like a refused e-mail.
            Err(e) => {
                sqlx::query("UPDATE outbox SET attempts = $2, last_error = $3 WHERE id = $1")
                    .bind(id)
                    .bind(foundation::outbox::MAX_ATTEMPTS)
                    .bind(e.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    if letters.is_empty() {
        // Only unprintable letters this round (now dead letters): look at the next ones.
        tx.commit().await?;
        return Box::pin(batch_structure(
            tenancy, vault, ctx, structure, tenant, name,
        ))
        .await;
    }
    let now = OffsetDateTime::now_utc();
    let pdf = batch_pdf(name, &date(now), &letters);
    let mut conn = tenancy.platform_pool().acquire().await?;
    let upload = vault.upload(&mut conn, tenant, &pdf).await?;
    drop(conn);
    let batch = Uuid::now_v7();
    let recorded: Result<(), sqlx::Error> = async {
        vault
            .record(
                &mut tx,
                &upload,
                DOCUMENT_KIND,
                Retention::Days(BATCH_RETENTION_DAYS),
            )
            .await?;
        sqlx::query(
            "INSERT INTO letter_batches (id, structure_id, document_id, letter_count)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(batch)
        .bind(structure)
        .bind(upload.id)
        .bind(letters.len() as i32)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL,
                               letter_batch_id = $2
             WHERE id = ANY($1)",
        )
        .bind(&ids)
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = recorded {
        vault.discard(&upload).await;
        return Err(e.into());
    }
    tracing::info!(letters = letters.len(), "letters: batch ready to print");
    Ok(Some(Batch {
        id: batch,
        structure_id: structure,
        document_id: upload.id,
        letters: letters.len() as i32,
    }))
}

fn date(at: OffsetDateTime) -> String {
    format!("{:02}/{:02}/{}", at.day(), u8::from(at.month()), at.year())
}

/// The daily batch of every served territory.
pub fn letter_batches(vault: Vault) -> foundation::jobs::Job {
    foundation::jobs::Job::new(
        "letter_batches",
        std::time::Duration::from_secs(24 * 3600),
        move |platform: Platform| {
            let vault = vault.clone();
            async move {
                let (platform, vault) = (&platform, &vault);
                foundation::jobs::each_territory(platform, |departement| async move {
                    let batches = batch_territory(&platform.tenancy, vault, departement).await?;
                    Ok(batches.iter().map(|b| b.letters as u64).sum())
                })
                .await
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_has_one_page_per_letter_with_address_subject_and_text() {
        let letter = |who: &str| Letter {
            address: format!("{who}\n12 rue des Lilas\n33130 Bègles"),
            subject: "Aidants Connect : votre mandat a été utilisé".into(),
            body: "Bonjour,\n\nLe 23/11/2026, le CCAS a utilisé\nvotre mandat.".into(),
        };
        let pdf = batch_pdf(
            "CCAS de Bègles",
            "24/11/2026",
            &[letter("Angela DUBOIS"), letter("Jean MARTIN")],
        );
        assert!(String::from_utf8_lossy(&pdf).contains("/Count 2"));
        let text = foundation::pdf::shown_text(&pdf);
        let first = text.find("Angela DUBOIS").expect("première lettre");
        let second = text.find("Jean MARTIN").expect("seconde lettre");
        assert!(first < second);
        for expected in [
            "CCAS de Bègles",
            "33130 Bègles",
            "Le 24/11/2026",
            "Objet : Aidants Connect : votre mandat a été utilisé",
            "Le 23/11/2026, le CCAS a utilisé votre mandat.",
        ] {
            assert!(text.contains(expected), "{expected} absent : {text}");
        }
    }
}
