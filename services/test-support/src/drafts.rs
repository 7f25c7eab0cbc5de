//! A mandate draft as the creation flow leaves it once FranceConnect has identified the person:
//! what benchmarks and fault tests submit the recap of, without driving FranceConnect.

use foundation::auth::secrets;
use foundation::ids::{ProfessionalId, StructureId};
use serde_json::json;
use uuid::Uuid;

/// Writes a draft in territory 33 for `aidant` of `structure`, bound to the session whose
/// cookie value is `session_token`, for « social » and « logement », 365 days, the identity
/// of Angela Dubois under the FranceConnect subject `sub`; valid `minutes`.
pub async fn identified(
    admin: &sqlx::PgPool,
    structure: StructureId,
    aidant: ProfessionalId,
    session_token: &str,
    sub: &str,
    minutes: i32,
) -> Result<Uuid, sqlx::Error> {
    let draft = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO dep_33.mandate_drafts (id, structure_id, aidant_id, session_hash, categories, duration_days,
                                           state_hash, nonce, identity, expires_at)
         VALUES ($1, $2, $3, $4, ARRAY['social','logement'], 365, $5, 'n', $6,
                 now() + make_interval(mins => $7))",
    )
    .bind(draft)
    .bind(structure)
    .bind(aidant)
    .bind(secrets::token_hash(session_token))
    .bind(secrets::token_hash(&Uuid::new_v4().to_string()))
    .bind(json!({
        "sub": sub,
        "given_name": "Angela Claire Louise", "family_name": "DUBOIS", "preferred_username": null,
        "birthdate": "1962-08-24", "gender": "female", "birthplace": "75107", "birthcountry": "99100",
        "email": null
    }))
    .bind(minutes)
    .execute(admin)
    .await?;
    Ok(draft)
}
