//! Soak (`infra/run soak [--minutes 30]`): the platform's own binary (release build, local
//! stack) under a steady mixed load — logins (code, e-mailed link, confirmation; each from
//! its own address behind a trusted proxy), mandate lists, mandate creations (recap and TOTP
//! code), identity-provider flows (five requests each) and the mail the logins send. Every
//! minute: the platform's resident memory, its open database connections, each kind's count,
//! errors and latency, the e-mails delivered. At the end, the table and the trend of memory
//! and connections. Exits non-zero on any error, or when memory grows more than 10 % from the
//! fifth minute to the last.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use foundation::auth::{secrets, session, totp};
use foundation::ids::{ProfessionalId, StructureId};
use load_tests::oidc::{self, Worker};
use load_tests::{ms, percentile};
use test_support::database::TestDatabase;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    /// Length of the run.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// The platform's binary (release build of `aidants-connect`).
    #[arg(long)]
    binary: PathBuf,
}

const KINDS: [&str; 4] = ["connexions", "listes", "créations", "parcours FI"];
const LOGIN: usize = 0;
const LIST: usize = 1;
const CREATION: usize = 2;
const FLOW: usize = 3;

/// Per second: lists, creations, identity-provider flows; a login every 5 s.
const LISTS_EVERY: Duration = Duration::from_millis(100);
const CREATIONS_EVERY: Duration = Duration::from_secs(1);
const FLOWS_PER_DESK_EVERY: Duration = Duration::from_secs(4);
const DESKS: usize = 8;
const LOGINS_EVERY: Duration = Duration::from_secs(5);
/// Each creating aidant creates once every 40 s (a TOTP code serves once per 30 s step).
const CREATORS: usize = 40;
const LOGGERS: usize = 20;

#[derive(Default, Clone)]
struct Minute {
    done: [u64; 4],
    errors: [u64; 4],
    times: [Vec<Duration>; 4],
    rss_mib: f64,
    connections: i64,
    mails: i64,
    pending: i64,
}

#[derive(Clone)]
struct Stats {
    started: Instant,
    minutes: Arc<Mutex<Vec<Minute>>>,
    first_errors: Arc<Mutex<Vec<String>>>,
}

impl Stats {
    fn record(&self, kind: usize, took: Duration, outcome: anyhow::Result<()>) {
        let minute = (self.started.elapsed().as_secs() / 60) as usize;
        let mut minutes = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        if minutes.len() <= minute {
            minutes.resize(minute + 1, Minute::default());
        }
        match outcome {
            Ok(()) => {
                minutes[minute].done[kind] += 1;
                minutes[minute].times[kind].push(took);
            }
            Err(e) => {
                minutes[minute].errors[kind] += 1;
                let mut first = self.first_errors.lock().unwrap_or_else(|e| e.into_inner());
                if first.len() < 10 {
                    first.push(format!("{} : {e}", KINDS[kind]));
                }
            }
        }
    }
}

struct Aidant {
    id: ProfessionalId,
    email: String,
    seed: Vec<u8>,
}

async fn aidant(db: &TestDatabase, structure: StructureId, label: &str) -> anyhow::Result<Aidant> {
    let settings = foundation::config::Settings::default();
    let cipher = secrets::SeedCipher::new(
        &settings.security.totp_key,
        settings.security.totp_key_version,
    )?;
    let (id, email, seed) =
        load_tests::aidant_with_factor(&db.admin, &cipher, structure, label).await?;
    Ok(Aidant { id, email, seed })
}

fn code_now(seed: &[u8]) -> String {
    totp::code_at(seed, 30, OffsetDateTime::now_utc().unix_timestamp() as u64)
}

fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// The whole login of `who`, from its own address: code, e-mailed link, confirmation.
async fn login(http: &reqwest::Client, base: &str, who: &Aidant, n: usize) -> anyhow::Result<()> {
    let address = format!("10.{}.{}.{}", n / 65_536 % 256, n / 256 % 256, n % 256 + 1);
    let resp = http
        .get(format!("{base}/connexion"))
        .header("x-forwarded-for", &address)
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "/connexion {}", resp.status());
    let csrf = set_cookie(&resp, "ac_csrf").ok_or_else(|| anyhow::anyhow!("pas de cookie"))?;
    resp.bytes().await?;
    let known = test_support::maildev::mails_to(&who.email).await.len();
    let resp = http
        .post(format!("{base}/connexion"))
        .header("x-forwarded-for", &address)
        .header("cookie", format!("ac_csrf={csrf}"))
        .header("origin", base)
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", who.email.as_str()),
            ("code", code_now(&who.seed).as_str()),
            ("suite", "/compte"),
        ])
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "envoi du code {}", resp.status());
    // The link opens only in the browser that asked for it (its cookie).
    let mut cookies = format!("ac_csrf={csrf}");
    for set in resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        if let Some(pair) = set.split(';').next()
            && !pair.starts_with("ac_csrf=")
        {
            cookies.push_str("; ");
            cookies.push_str(pair);
        }
    }
    resp.bytes().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let link = loop {
        let mails = test_support::maildev::mails_to(&who.email).await;
        if mails.len() > known {
            let text = mails
                .last()
                .and_then(|m| m["text"].as_str())
                .unwrap_or_default();
            break text
                .split_whitespace()
                .find(|w| w.contains("/connexion/lien"))
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("courriel sans lien"))?;
        }
        anyhow::ensure!(Instant::now() < deadline, "aucun courriel en 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let resp = http
        .get(&link)
        .header("x-forwarded-for", &address)
        .header("cookie", &cookies)
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "lien {}", resp.status());
    let html = resp.text().await?;
    let token = oidc::csrf_of(&html).ok_or_else(|| anyhow::anyhow!("pas de jeton"))?;
    let jeton = oidc::param(&link, "jeton").ok_or_else(|| anyhow::anyhow!("pas de jeton"))?;
    let resp = http
        .post(format!("{base}/connexion/lien"))
        .header("x-forwarded-for", &address)
        .header("cookie", &cookies)
        .header("origin", base)
        .form(&[("csrf", token.as_str()), ("jeton", jeton.as_str())])
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 303, "confirmation {}", resp.status());
    anyhow::ensure!(set_cookie(&resp, "ac_session").is_some(), "pas de session");
    Ok(())
}

/// One creation by recap submission: a draft (identity captured) written directly, then the
/// aidant's recap with its code.
async fn creation(
    http: &reqwest::Client,
    base: &str,
    admin: &sqlx::PgPool,
    structure: StructureId,
    who: &Aidant,
    cookie: &str,
) -> anyhow::Result<Duration> {
    let sub = format!("soak-{}", Uuid::new_v4().simple());
    let draft =
        test_support::drafts::identified(admin, structure, who.id, cookie, &sub, 30).await?;
    let csrf = secrets::new_token();
    let started = Instant::now();
    let resp = http
        .post(format!("{base}/mandats/preparation/{draft}"))
        .header("cookie", format!("ac_session={cookie}; ac_csrf={csrf}"))
        .header("origin", base)
        .form(&[
            ("csrf", csrf.as_str()),
            ("code", code_now(&who.seed).as_str()),
            ("declaration", "oui"),
        ])
        .send()
        .await?;
    let location = resp
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(
        resp.status() == 303 && location.ends_with("?message=cree"),
        "création {} {location}",
        resp.status()
    );
    Ok(started.elapsed())
}

/// Every `every`, `op` in a task of its own (a slow answer does not slow the rate).
fn steady<F, Fut>(stats: &Stats, until: Instant, every: Duration, kind: usize, op: F)
where
    F: Fn(usize) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Option<Duration>>> + Send + 'static,
{
    let stats = stats.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n = 0;
        while Instant::now() < until {
            tick.tick().await;
            let (stats, fut) = (stats.clone(), op(n));
            tokio::spawn(async move {
                let started = Instant::now();
                let outcome = tokio::time::timeout(Duration::from_secs(60), fut).await;
                let took = started.elapsed();
                match outcome {
                    Ok(Ok(measured)) => stats.record(kind, measured.unwrap_or(took), Ok(())),
                    Ok(Err(e)) => stats.record(kind, took, Err(e)),
                    Err(_) => {
                        stats.record(kind, took, Err(anyhow::anyhow!("pas de réponse en 60 s")))
                    }
                }
            });
            n += 1;
        }
    });
}

fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let num: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = TestDatabase::with_departements(&["33"]).await;
    let (ctx, structure) = load_tests::bench_structure(&db, "France Services d'endurance").await?;
    let (desks, secret) = oidc::desks(&db, &ctx, structure, DESKS, 300).await?;
    let mut creators = Vec::new();
    for n in 0..CREATORS {
        let who = aidant(&db, structure, &format!("createur-{n}")).await?;
        let mut conn = db.admin.acquire().await?;
        let cookie = session::open(&mut conn, who.id, OffsetDateTime::now_utc(), false).await?;
        creators.push((who, cookie.value_str().to_owned()));
    }
    let mut loggers = Vec::new();
    for n in 0..LOGGERS {
        loggers.push(aidant(&db, structure, &format!("connexion-{n}")).await?);
    }
    let binary = args.binary.display().to_string();
    // A known port, so that the public address (forms' Origin) is the real one.
    let port = test_support::free_port().to_string();
    let public = format!("http://127.0.0.1:{port}");
    let service = test_support::service_binary::start_with(
        &binary,
        &db,
        &[
            ("AC_HTTP__PORT", port.as_str()),
            ("AC_HTTP__PUBLIC_URL", public.as_str()),
            ("AC_DATABASE__MAX_CONNECTIONS", "20"),
            ("AC_HTTP__TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    let base = format!("http://127.0.0.1:{}", service.port);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    println!(
        "Endurance : {} min ; par seconde 10 listes, 1 création, 2 parcours du fournisseur d'identité (5 requêtes), une connexion toutes les 5 s",
        args.minutes
    );
    let stats = Stats {
        started: Instant::now(),
        minutes: Arc::default(),
        first_errors: Arc::default(),
    };
    let until = stats.started + Duration::from_secs(args.minutes * 60);

    let (desks, creators, loggers) = (Arc::new(desks), Arc::new(creators), Arc::new(loggers));
    {
        let (http, base, desks) = (http.clone(), base.clone(), desks.clone());
        steady(&stats, until, LISTS_EVERY, LIST, move |n| {
            let (http, base, desks) = (http.clone(), base.clone(), desks.clone());
            async move {
                let w: &Worker = &desks[n % desks.len()];
                let resp = http
                    .get(format!("{base}/mandats"))
                    .header("cookie", format!("ac_session={}", w.cookie))
                    .send()
                    .await?;
                anyhow::ensure!(resp.status() == 200, "/mandats {}", resp.status());
                resp.bytes().await?;
                Ok(None)
            }
        });
    }
    {
        let (http, base, creators) = (http.clone(), base.clone(), creators.clone());
        let admin = db.admin.clone();
        steady(&stats, until, CREATIONS_EVERY, CREATION, move |n| {
            let (http, base, creators, admin) =
                (http.clone(), base.clone(), creators.clone(), admin.clone());
            async move {
                let (who, cookie) = &creators[n % creators.len()];
                Ok(Some(
                    creation(&http, &base, &admin, structure, who, cookie).await?,
                ))
            }
        });
    }
    {
        let (http, base, loggers) = (http.clone(), base.clone(), loggers.clone());
        steady(&stats, until, LOGINS_EVERY, LOGIN, move |n| {
            let (http, base, loggers) = (http.clone(), base.clone(), loggers.clone());
            async move {
                login(&http, &base, &loggers[n % loggers.len()], n % loggers.len()).await?;
                Ok(None)
            }
        });
    }
    for (i, _) in desks.iter().enumerate() {
        let (http, base, secret, desks, stats) = (
            http.clone(),
            base.clone(),
            secret.clone(),
            desks.clone(),
            stats.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLOWS_PER_DESK_EVERY / 2);
            let mut csrf = None;
            let mut n = (i as u64) << 32;
            while Instant::now() < until {
                tick.tick().await;
                let started = Instant::now();
                let outcome = oidc::flow(&http, &base, &secret, &desks[i], n, &mut csrf).await;
                stats.record(FLOW, started.elapsed(), outcome.map(|_| ()));
                n += 1;
            }
        });
    }

    // Every minute: memory, connections, mail.
    let mut minute = 0usize;
    while Instant::now() < until {
        let next = stats.started + Duration::from_secs((minute as u64 + 1) * 60);
        tokio::time::sleep_until(next.into()).await;
        let rss = service.resident_kib() as f64 / 1024.0;
        let (connections, mails, pending): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND usename <> current_user),
                    (SELECT count(*) FROM platform.outbox WHERE sent_at > now() - interval '1 minute')
                  + (SELECT count(*) FROM dep_33.outbox WHERE sent_at > now() - interval '1 minute'),
                    (SELECT count(*) FROM platform.outbox WHERE sent_at IS NULL)
                  + (SELECT count(*) FROM dep_33.outbox WHERE sent_at IS NULL)",
        )
        .fetch_one(&db.admin)
        .await?;
        let mut minutes = stats.minutes.lock().unwrap_or_else(|e| e.into_inner());
        if minutes.len() <= minute {
            minutes.resize(minute + 1, Minute::default());
        }
        let m = &mut minutes[minute];
        (m.rss_mib, m.connections, m.mails, m.pending) = (rss, connections, mails, pending);
        let line = format!(
            "minute {:>2} : {:>6.1} Mio, {:>2} connexions, {} listes, {} créations, {} parcours, {} connexions d'aidants, {} messages envoyés, erreurs {}",
            minute + 1,
            rss,
            connections,
            m.done[LIST],
            m.done[CREATION],
            m.done[FLOW],
            m.done[LOGIN],
            mails,
            m.errors.iter().sum::<u64>()
        );
        drop(minutes);
        eprintln!("{line}");
        minute += 1;
    }
    // The operations still in flight finish (or fail) within their 60 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    report(&stats, args.minutes as usize)
}

fn report(stats: &Stats, minutes: usize) -> anyhow::Result<()> {
    let all = stats
        .minutes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let rows: Vec<&Minute> = all.iter().take(minutes).collect();
    println!();
    println!(
        "| min | mémoire (Mio) | connexions PG | connexions d'aidants | listes p50 / p99 (ms) | créations p99 (ms) | parcours FI p99 (ms) | messages envoyés | erreurs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let p = |m: &Minute, kind: usize, q: f64| {
        let mut t = m.times[kind].clone();
        t.sort();
        if t.is_empty() {
            0.0
        } else {
            ms(percentile(&t, q))
        }
    };
    for (i, m) in rows.iter().enumerate() {
        println!(
            "| {} | {:.1} | {} | {} | {} : {:.1} / {:.1} | {} : {:.0} | {} : {:.0} | {} | {} |",
            i + 1,
            m.rss_mib,
            m.connections,
            m.done[LOGIN],
            m.done[LIST],
            p(m, LIST, 0.5),
            p(m, LIST, 0.99),
            m.done[CREATION],
            p(m, CREATION, 0.99),
            m.done[FLOW],
            p(m, FLOW, 0.99),
            m.mails,
            m.errors.iter().sum::<u64>()
        );
    }
    let errors: u64 = all.iter().map(|m| m.errors.iter().sum::<u64>()).sum();
    let done: u64 = all.iter().map(|m| m.done.iter().sum::<u64>()).sum();
    // Trend after the warm-up (from minute 3): least squares, per 10 minutes.
    let steady: Vec<(f64, f64)> = rows
        .iter()
        .enumerate()
        .skip(2)
        .map(|(i, m)| (i as f64, m.rss_mib))
        .collect();
    let conns: Vec<(f64, f64)> = rows
        .iter()
        .enumerate()
        .skip(2)
        .map(|(i, m)| (i as f64, m.connections as f64))
        .collect();
    let rss_slope = slope(&steady) * 10.0;
    let conn_slope = slope(&conns) * 10.0;
    let fifth = rows.get(4).map(|m| m.rss_mib).unwrap_or_default();
    let last = rows.last().map(|m| m.rss_mib).unwrap_or_default();
    let growth = if fifth > 0.0 {
        (last - fifth) / fifth * 100.0
    } else {
        0.0
    };
    println!();
    println!(
        "{done} opérations, {errors} erreurs ; mémoire {fifth:.1} Mio à la 5e minute, {last:.1} Mio à la dernière ({growth:+.1} %), pente {rss_slope:+.2} Mio / 10 min ; connexions : pente {conn_slope:+.2} / 10 min"
    );
    for e in stats
        .first_errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        println!("erreur : {e}");
    }
    anyhow::ensure!(errors == 0, "{errors} erreurs pendant l'endurance");
    anyhow::ensure!(
        minutes < 5 || growth <= 10.0,
        "la mémoire a crû de {growth:.1} % entre la 5e minute et la dernière"
    );
    Ok(())
}
