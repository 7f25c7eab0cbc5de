//! What the benchmarks share: percentiles of measured durations and timed HTTP GETs.

pub mod oidc;

use std::time::{Duration, Instant};

use futures::StreamExt;

/// The `p` percentile (0 to 1) of durations sorted ascending.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// `n` GETs of `url` (with the session cookie when given), `concurrency` at a time; each must
/// answer 200 with a body holding one of `expected`. Their durations, sorted.
pub async fn timed_gets(
    client: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    expected: &[&str],
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Duration>> {
    let times = futures::stream::iter(0..n)
        .map(|_| async move {
            let started = Instant::now();
            let mut req = client.get(url);
            if let Some(c) = cookie {
                req = req.header("cookie", format!("ac_session={c}"));
            }
            let resp = req.send().await?;
            anyhow::ensure!(resp.status() == 200, "{url} : statut {}", resp.status());
            let body = resp.text().await?;
            anyhow::ensure!(
                expected.iter().any(|e| body.contains(e)),
                "{url} : aucun de {expected:?}"
            );
            Ok::<Duration, anyhow::Error>(started.elapsed())
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let mut out: Vec<Duration> = times.into_iter().collect::<Result<_, _>>()?;
    out.sort();
    Ok(out)
}
