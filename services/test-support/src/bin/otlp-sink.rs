//! The local stack's OTLP receiver: accepts traces on 127.0.0.1 and prints one line per span
//! (name and route), so a developer can watch them in `.data/logs/otlp-sink.log`.

use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 0)]
    port: u16,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let (port, spans) = test_support::otlp::start(args.port).await?;
    println!("OTLP receiver on http://127.0.0.1:{port}/v1/traces");
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let drained: Vec<_> = std::mem::take(&mut *spans.lock().unwrap_or_else(|e| e.into_inner()));
        for span in drained {
            println!(
                "span {} route={}",
                span.name,
                span.attribute("http.route").unwrap_or("-")
            );
        }
    }
}
