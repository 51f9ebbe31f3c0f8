//! The `ferrolb` command: run the balancer, validate configurations.

mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use control::admin::Action;

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (DPDK ",
    env!("FERROLB_DPDK_VERSION"),
    ", git ",
    env!("FERROLB_GIT"),
    ")"
);

/// ferrolb: a DPDK Layer-4 load balancer.
#[derive(Parser)]
#[command(name = "ferrolb", version = VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run in the foreground; SIGTERM/SIGINT stop it, SIGHUP reloads.
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration: exit 0, or 1 with every error found.
    Check {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Services, real servers, states, weights, flows and packets.
    Status {
        #[command(flatten)]
        api: Api,
    },
    /// The flows in the connection tables (like ipvsadm -L -c -n):
    /// protocol, time to expiry, state, client, VIP, real, worker.
    Conns {
        /// Only this VIP (by name).
        #[arg(long)]
        vip: Option<String>,
        /// Only flows to this real (address).
        #[arg(long)]
        real: Option<std::net::IpAddr>,
        /// Only clients in this prefix (ADDR or ADDR/LEN).
        #[arg(long, value_parser = parse_prefix)]
        client: Option<(std::net::IpAddr, u8)>,
        /// At most this many flows.
        #[arg(long, default_value_t = control::admin::conns::DEFAULT_LIMIT)]
        limit: usize,
        #[command(flatten)]
        api: Api,
    },
    /// Drain, enable or disable a real server of a VIP.
    Real {
        /// drain: no new flows, established ones continue; enable: back to
        /// normal; disable: no traffic, its flows move on their next packet.
        #[arg(value_enum)]
        action: RealAction,
        /// The VIP's name.
        vip: String,
        /// The real's address (ADDR, or ADDR:PORT / [ADDR]:PORT).
        real: String,
        #[command(flatten)]
        api: Api,
    },
    /// Withdraw every VIP from the routers ([announce]), or announce
    /// them again; established connections continue either way.
    Node {
        /// drain: withdraw every VIP and stay so; enable: announce again.
        #[arg(value_enum)]
        action: NodeArg,
        #[command(flatten)]
        api: Api,
    },
    /// Manual failover of a VRRP pair ([ha]): takeover makes this node
    /// MASTER now and keeps it so; release makes it BACKUP now and keeps
    /// it so; auto returns to the election. Kept until the next restart.
    Ha {
        /// takeover, release or auto.
        #[arg(value_enum)]
        action: HaArg,
        #[command(flatten)]
        api: Api,
    },
    /// Re-read the configuration file of the running daemon.
    Reload {
        #[command(flatten)]
        api: Api,
    },
}

/// How to reach the daemon's admin API.
#[derive(clap::Args)]
struct Api {
    /// The admin API address ([admin].listen).
    #[arg(long, default_value = control::config::DEFAULT_ADMIN)]
    admin: String,
    /// Bearer token ([admin].token), also read from FERROLB_TOKEN.
    #[arg(long, env = "FERROLB_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum NodeArg {
    Drain,
    Enable,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum HaArg {
    Takeover,
    Release,
    Auto,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RealAction {
    Drain,
    Enable,
    Disable,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match control::config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: OK ({} port(s), {} VIP(s), {} worker(s){})",
                    config.display(),
                    c.ports.len(),
                    c.vips.len(),
                    c.dataplane.workers,
                    if c.ha.is_some() { ", HA" } else { "" }
                );
                ExitCode::SUCCESS
            }
            Err(errs) => {
                for e in &errs.0 {
                    eprintln!("error: {e}");
                }
                eprintln!("{}: {} error(s)", config.display(), errs.0.len());
                ExitCode::FAILURE
            }
        },
        Command::Status { api } => cli_result(
            control::admin::fetch_status(&api.admin, api.token.as_deref())
                .map(|s| print!("{}", control::admin::table::render(&s))),
        ),
        Command::Real {
            action,
            vip,
            real,
            api,
        } => {
            let action = match action {
                RealAction::Drain => Action::Drain,
                RealAction::Enable => Action::Enable,
                RealAction::Disable => Action::Disable,
            };
            let path = control::admin::real_path(&vip, &real, action);
            cli_result(post(&api, &path))
        }
        Command::Reload { api } => cli_result(post(&api, "/api/v1/reload")),
        Command::Node { action, api } => {
            let action = match action {
                NodeArg::Drain => "drain",
                NodeArg::Enable => "enable",
            };
            cli_result(post(&api, &format!("/api/v1/node/{action}")))
        }
        Command::Conns {
            vip,
            real,
            client,
            limit,
            api,
        } => cli_result(conns(
            &api,
            control::admin::conns::ConnsRequest {
                vip,
                real,
                client,
                limit,
                cursor: (0, 0),
            },
        )),
        Command::Ha { action, api } => {
            let action = match action {
                HaArg::Takeover => "takeover",
                HaArg::Release => "release",
                HaArg::Auto => "auto",
            };
            cli_result(post(&api, &format!("/api/v1/ha/{action}")))
        }
        Command::Run { config } => {
            init_logging();
            match run::run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// POSTs to the daemon and prints its answer.
fn parse_prefix(v: &str) -> Result<(std::net::IpAddr, u8), String> {
    control::admin::conns::parse_prefix(v).map_err(|e| e.replace("client=", ""))
}

fn conns(api: &Api, req: control::admin::conns::ConnsRequest) -> Result<(), String> {
    let all = control::admin::conns::fetch(&api.admin, api.token.as_deref(), req)?;
    print!("{}", control::admin::conns::render(&all));
    Ok(())
}

fn post(api: &Api, path: &str) -> Result<(), String> {
    control::admin::post(&api.admin, api.token.as_deref(), path).map(|msg| println!("{msg}"))
}

fn cli_result(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERROLB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
