//! `tenant-admin territories place`: which node of a Citus cluster holds each territory, and
//! the move of one territory to another node while the platform keeps serving it
//! (`foundation::tenancy::citus`, docs/OPERATIONS.md « Citus »).

use std::time::{Duration, Instant};

use clap::Args;
use foundation::journal::{self, Event, NewEntry};
use foundation::tenancy::DepartementCode;
use foundation::tenancy::citus::{self, TransferMode};
use serde_json::json;
use sqlx::PgPool;

#[derive(Args)]
pub struct PlaceArgs {
    /// Le territoire à déplacer (sans --vers : où il est).
    #[arg(long)]
    departement: Option<String>,
    /// Numéro du nœud de destination (colonne « nœud » de la liste).
    #[arg(long = "vers", alias = "to", requires = "departement")]
    to: Option<i32>,
    /// Bloque les écritures du territoire pendant toute la copie (sinon seulement à la bascule).
    #[arg(long)]
    bloquer_ecritures: bool,
}

fn human(bytes: i64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} Gio", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} Mio", b as f64 / (1u64 << 20) as f64),
        b => format!("{} Kio", b / 1024),
    }
}

pub async fn run(pool: &PgPool, args: &PlaceArgs) -> anyhow::Result<()> {
    // Parse before touching the database.
    let departement = args
        .departement
        .as_deref()
        .map(DepartementCode::parse)
        .transpose()?;
    let mut conn = pool.acquire().await?;
    anyhow::ensure!(
        citus::enabled(&mut conn).await?,
        "cette base n'utilise pas Citus : tous les territoires sont sur le même serveur PostgreSQL"
    );
    drop(conn);
    let nodes = citus::nodes(pool).await?;
    let placements = citus::placements(pool).await?;
    let Some(to) = args.to else {
        println!("nœud\tadresse\tétat\tterritoires");
        for node in &nodes {
            let held = placements.iter().filter(|p| p.node.id == node.id).count();
            let state = if node.active { "actif" } else { "inactif" };
            let role = if node.coordinator {
                " (coordinateur)"
            } else {
                ""
            };
            println!(
                "{}\t{}:{}{role}\t{state}\t{held}",
                node.id, node.host, node.port
            );
        }
        println!();
        println!("territoire\tnœud\ttaille");
        for p in placements
            .iter()
            .filter(|p| departement.is_none_or(|d| d == p.departement))
        {
            println!(
                "{}\t{}\t{}",
                p.departement.as_str(),
                p.node.id,
                human(p.bytes)
            );
        }
        if let Some(d) = departement
            && !placements.iter().any(|p| p.departement == d)
        {
            anyhow::bail!(
                "le territoire {} n'est pas distribué (pas encore provisionné ?)",
                d.as_str()
            );
        }
        return Ok(());
    };
    let departement = departement.expect("clap: --vers requires --departement");
    let target = nodes.iter().find(|n| n.id == to).ok_or_else(|| {
        let known: Vec<String> = nodes.iter().map(|n| n.id.to_string()).collect();
        anyhow::anyhow!(
            "nœud {to} inconnu ; nœuds de la base : {}",
            known.join(", ")
        )
    })?;
    anyhow::ensure!(target.active, "le nœud {to} est inactif");
    let from = placements
        .iter()
        .find(|p| p.departement == departement)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "le territoire {} n'est pas distribué (pas encore provisionné ?)",
                departement.as_str()
            )
        })?;
    if from.node.id == target.id {
        println!(
            "le territoire {} est déjà sur le nœud {to} : rien à faire",
            departement.as_str()
        );
        return Ok(());
    }
    let mode = if args.bloquer_ecritures {
        TransferMode::BlockWrites
    } else {
        TransferMode::Online
    };
    println!(
        "déplacement du territoire {} ({}) du nœud {} vers le nœud {to}{}",
        departement.as_str(),
        human(from.bytes),
        from.node.id,
        if args.bloquer_ecritures {
            ", écritures bloquées pendant la copie"
        } else {
            " ; le territoire reste servi, ses écritures n'attendent que la bascule"
        }
    );
    let started = Instant::now();
    let moving = citus::move_schema(pool, departement, target, mode);
    tokio::pin!(moving);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let result = loop {
        tokio::select! {
            r = &mut moving => break r,
            _ = tick.tick() => {
                let progress = citus::move_progress(pool).await.unwrap_or_default();
                let (source, copied) = progress
                    .iter()
                    .fold((0, 0), |(s, c), (_, src, dst)| (s + src, c + dst));
                if source > 0 {
                    eprintln!(
                        "  {:>5.1} s  copié {} sur {} ({} tables)",
                        started.elapsed().as_secs_f64(),
                        human(copied),
                        human(source),
                        progress.len()
                    );
                }
            }
        }
    };
    if let Err(e) = result {
        anyhow::bail!(
            "le déplacement a échoué ; le territoire {} reste sur le nœud {} ({e})",
            departement.as_str(),
            from.node.id
        );
    }
    let elapsed = started.elapsed();
    // The move is an act on the territory: its journal says when and where.
    let tenancy = crate::tenancy(pool).await?;
    let territory = tenancy.unguarded(departement).await?;
    let mut tx = territory.begin().await?;
    journal::append(
        &mut tx,
        NewEntry::new(Event::TerritoryMoved).details(json!({
            "from_node": from.node.id,
            "to_node": target.id,
            "mode": if args.bloquer_ecritures { "block_writes" } else { "online" },
            "seconds": elapsed.as_secs_f64(),
        })),
    )
    .await?;
    tx.commit().await?;
    journal::seal_from_platform(&tenancy, departement).await?;
    println!(
        "territoire {} déplacé vers le nœud {to} en {:.1} s",
        departement.as_str(),
        elapsed.as_secs_f64()
    );
    Ok(())
}
