//! `rampart up`: N workers and a gateway on this machine, stopped together.

use crate::children::{Managed, listening_address};
use anyhow::{Context as _, bail};
use std::{path::PathBuf, time::Duration};

/// How long each process may take to finish its work after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// Options of `rampart up`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// Public REST address of the gateway [default: the config file's, else 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,

    /// Admin address of the gateway [default: the config file's, else 127.0.0.1:9901].
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,

    /// Number of worker processes; each listens on a free loopback port.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,

    /// Directory for Rampart's data (created if missing).
    #[arg(long, value_name = "DIR", default_value = "./data")]
    data_dir: PathBuf,

    /// Gateway config file; its `workers` key is replaced by the workers started here.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Starts everything, prints where it listens, and stops everything on Ctrl-C or SIGTERM, or
/// when any process exits on its own.
pub(crate) async fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create the data directory {}", args.data_dir.display()))?;
    let stop = rampart_common::shutdown::signal();
    let mut children: Vec<Managed> = Vec::new();
    let started = start_all(&args, &mut children).await;
    let outcome = match started {
        Ok(()) => supervise(&mut children, stop).await,
        Err(error) => Err(error),
    };
    // The gateway first, so it stops taking requests before the workers it sends them to go.
    for child in children.iter_mut().rev() {
        child.stop(STOP_GRACE).await;
    }
    println!("rampart: stopped");
    outcome
}

async fn start_all(args: &UpArgs, children: &mut Vec<Managed>) -> anyhow::Result<()> {
    let mut worker_urls = Vec::new();
    let mut worker_admins = Vec::new();
    // Workers read whatever the gateway may send them: its body limit plus the envelope.
    let message_limit = rampart_proto::limits::message_bytes(gateway_config(args.config.as_deref())?.max_body_bytes);
    for index in 1..=args.workers {
        let name = format!("worker-{index}");
        let worker_args = [
            "worker",
            "--listen",
            "127.0.0.1:0",
            "--exit-with-parent",
            "--max-message-bytes",
            &message_limit.to_string(),
        ]
        .map(String::from);
        let (child, line) = Managed::start(&name, &worker_args).await?;
        children.push(child);
        let address = listening_address(&line).with_context(|| format!("{name} printed no address: {line}"))?;
        worker_urls.push(format!("http://{address}"));
        worker_admins.push(line.split_once("(admin ").map_or("?", |(_, rest)| rest.trim_end_matches(')')).to_owned());
    }
    let mut gateway_args = vec!["gateway".to_owned(), "--exit-with-parent".to_owned()];
    gateway_args.extend(["--workers".to_owned(), worker_urls.join(",")]);
    if let Some(config) = &args.config {
        gateway_args.extend(["--config".to_owned(), config.display().to_string()]);
    }
    if !config_names_a_store(args.config.as_deref())? {
        let store = args.data_dir.join("rampart.db");
        gateway_args.extend(["--store".to_owned(), format!("sqlite://{}", store.display())]);
    }
    if let Some(listen) = &args.listen {
        gateway_args.extend(["--listen".to_owned(), listen.clone()]);
    }
    if let Some(admin_listen) = &args.admin_listen {
        gateway_args.extend(["--admin-listen".to_owned(), admin_listen.clone()]);
    }
    let (gateway, line) = Managed::start("gateway", &gateway_args).await?;
    children.push(gateway);
    let public = listening_address(&line).context("the gateway printed no address")?;
    let admin = line.split_once("(admin ").map_or("?", |(_, rest)| rest.trim_end_matches(')'));
    println!("rampart is up");
    println!("  REST API  http://{public}");
    println!("  admin     http://{admin}");
    println!("  workers   {}", worker_urls.join(", "));
    println!("  worker admin (metrics, profiles) {}", worker_admins.join(", "));
    println!("  data      {}", args.data_dir.display());
    if !config_names_a_store(args.config.as_deref())? {
        println!("  job store sqlite://{}", args.data_dir.join("rampart.db").display());
    }
    println!("try: curl 'http://{public}/api/process?data=hello'");
    println!("Ctrl-C stops everything.");
    Ok(())
}

/// The gateway's configuration as the config file (if any) gives it.
fn gateway_config(config: Option<&std::path::Path>) -> anyhow::Result<rampart_gateway::config::GatewayConfig> {
    Ok(match config {
        Some(path) => rampart_gateway::config::GatewayConfig::from_file(path)?,
        None => rampart_gateway::config::GatewayConfig::default(),
    })
}

/// Whether the config file sets its own job store; otherwise the store goes in the data dir.
fn config_names_a_store(config: Option<&std::path::Path>) -> anyhow::Result<bool> {
    Ok(gateway_config(config)?.store != rampart_gateway::config::GatewayConfig::default().store)
}

/// Waits for Ctrl-C or SIGTERM, or for a child to exit on its own (an error).
async fn supervise(children: &mut [Managed], stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    let waits = children.iter_mut().map(|child| {
        Box::pin(async move {
            let status = child.wait().await;
            (child.name.clone(), status)
        })
    });
    tokio::select! {
        () = stop => Ok(()),
        ((name, status), _, _) = futures_util::future::select_all(waits) => {
            let status = status.map_or_else(|error| error.to_string(), |status| status.to_string());
            bail!("{name} exited on its own ({status}); stopping the rest")
        }
    }
}
