//! The stand-in Yeti admin API (`idbridge_e2e::yeti`) as a process, for `bench/connector.py
//! --portal yeti`: `cargo run --release -p idbridge-e2e --example yeti_standin -- USER PASSWORD`
//! prints its base URL and serves until killed. Admin JWTs live 600 s, as in Yeti's
//! distributed configuration.

use std::io::Write as _;
use std::time::Duration;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let username = args.next().unwrap_or_else(|| "bench".to_owned());
    let password = args.next().unwrap_or_else(|| "bench-secret".to_owned());
    let yeti = idbridge_e2e::yeti::YetiStandIn::start(&username, &password, Duration::from_secs(600)).await;
    println!("{}", yeti.base);
    std::io::stdout().flush().unwrap();
    std::future::pending::<()>().await;
}
