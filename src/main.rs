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
        /// Print the API's JSON (`GET /api/v1/status`) as it is.
        #[arg(long, conflicts_with = "rate")]
        json: bool,
        /// Connections, packets and bytes per second of each service and
        /// real (as `ipvsadm -L -n --rate`), measured over --interval.
        #[arg(long)]
        rate: bool,
        /// The interval --rate measures over, in seconds (0.1 to 60).
        #[arg(long, default_value_t = 1.0, value_parser = parse_interval, requires = "rate")]
        interval: f64,
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
    /// Print the shell commands that prepare a Linux real server for a
    /// VIP (DR/TUN: the VIP on lo, ARP kept quiet, the tunnel device;
    /// NAT: the default route through the balancer). Pipe into `sh -e`.
    RealSetup {
        /// The VIP's name.
        #[arg(long)]
        vip: String,
        /// The real the commands are for, when its VIP's reals differ
        /// (NAT reals on different subnets).
        #[arg(long)]
        real: Option<std::net::IpAddr>,
        /// The balancer's TOML configuration file.
        #[arg(long, short, default_value = "/etc/ferrolb/ferrolb.toml")]
        config: PathBuf,
    },
    /// Re-read the configuration file of the running daemon.
    Reload {
        #[command(flatten)]
        api: Api,
    },
    /// Write the man pages (DIR/man) and the shell completions
    /// (DIR/completions) generated from these definitions (packaging).
    #[command(hide = true)]
    GenAssets {
        /// Where to write them.
        dir: PathBuf,
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
    /// The CA certificate (PEM) that signed the daemon's [admin] tls_cert:
    /// speak HTTPS and check the daemon's certificate; also read from
    /// FERROLB_CACERT.
    #[arg(long, env = "FERROLB_CACERT")]
    cacert: Option<PathBuf>,
}

impl Api {
    fn remote(&self) -> control::api::Remote {
        control::api::Remote {
            addr: self.admin.clone(),
            token: self.token.clone(),
            cacert: self.cacert.clone(),
        }
    }
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
        Command::Status {
            json,
            rate,
            interval,
            api,
        } => cli_result(status(&api, json, rate.then_some(interval))),
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
        Command::RealSetup { vip, real, config } => cli_result(
            control::config::load(&config)
                .map_err(|e| e.to_string())
                .and_then(|c| control::realsetup::script(&c, &vip, real))
                .map(|s| print!("{s}")),
        ),
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
        Command::GenAssets { dir } => cli_result(gen_assets(&dir)),
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

/// `ferrolb status`: the table, the JSON, or the rates over `rate` seconds.
fn status(api: &Api, json: bool, rate: Option<f64>) -> Result<(), String> {
    let remote = api.remote();
    if json {
        let body = control::admin::fetch_status_json(&remote)?;
        println!("{}", body.trim_end());
        return Ok(());
    }
    let first = control::admin::fetch_status(&remote)?;
    let Some(secs) = rate else {
        print!("{}", control::admin::table::render(&first));
        return Ok(());
    };
    let t0 = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs_f64(secs));
    let second = control::admin::fetch_status(&remote)?;
    let secs = t0.elapsed().as_secs_f64();
    print!(
        "{}",
        control::admin::table::render_rates(&first, &second, secs)
    );
    Ok(())
}

/// `ferrolb gen-assets DIR`: `ferrolb.1` and `ferrolb-SUBCOMMAND.1` in
/// DIR/man, bash, zsh and fish completions in DIR/completions.
fn gen_assets(dir: &std::path::Path) -> Result<(), String> {
    use clap::CommandFactory;
    let fail = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let man = dir.join("man");
    let comp = dir.join("completions");
    for d in [&man, &comp] {
        std::fs::create_dir_all(d).map_err(|e| fail(&d.display().to_string(), e))?;
    }
    let cmd = Cli::command();
    let mut pages = vec![("ferrolb".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("ferrolb-{}", sub.get_name());
        pages.push((
            name.clone(),
            sub.clone().display_name(&name).bin_name(&name),
        ));
    }
    for (name, c) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(c.version(VERSION))
            .render(&mut out)
            .map_err(|e| fail(&name, e))?;
        let path = man.join(format!("{name}.1"));
        std::fs::write(&path, out).map_err(|e| fail(&path.display().to_string(), e))?;
    }
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, "ferrolb.bash"),
        (Shell::Zsh, "_ferrolb"),
        (Shell::Fish, "ferrolb.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "ferrolb", &mut out);
        let path = comp.join(file);
        std::fs::write(&path, out).map_err(|e| fail(&path.display().to_string(), e))?;
    }
    Ok(())
}

fn parse_interval(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(s) if (0.1..=60.0).contains(&s) => Ok(s),
        _ => Err(format!("{v:?} is not a number of seconds from 0.1 to 60")),
    }
}

fn parse_prefix(v: &str) -> Result<(std::net::IpAddr, u8), String> {
    control::admin::conns::parse_prefix(v).map_err(|e| e.replace("client=", ""))
}

fn conns(api: &Api, req: control::admin::conns::ConnsRequest) -> Result<(), String> {
    let all = control::admin::conns::fetch(&api.remote(), req)?;
    print!("{}", control::admin::conns::render(&all));
    Ok(())
}

/// POSTs to the daemon and prints its answer.
fn post(api: &Api, path: &str) -> Result<(), String> {
    control::admin::post(&api.remote(), path).map(|msg| println!("{msg}"))
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
