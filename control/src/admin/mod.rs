//! The admin API's routes, what they answer, and its client side.
//!
//! [`route`] maps a request to a [`Backend`] (the daemon, or a fake in
//! tests): `GET /` the status page, `GET /api/v1/status` the [`Status`] as
//! JSON, `GET /metrics` the OpenMetrics text, `POST /api/v1/reload` and
//! `POST /api/v1/vips/NAME/reals/ADDR/{drain,enable,disable}` a
//! [`Command`]. A refused command is a [`CommandError`] whose variant sets
//! the HTTP status. The HTTP server itself is [`crate::api`].

pub mod conns;
pub mod metrics;
pub mod status;
pub mod table;

use crate::api::Response;
pub use status::Status;

/// What an operator does to a real.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// No new flows; established flows continue.
    Drain,
    /// Back to normal.
    Enable,
    /// No traffic; its flows are rescheduled on their next packet.
    Disable,
}

impl Action {
    /// The action's name in URLs and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Action::Drain => "drain",
            Action::Enable => "enable",
            Action::Disable => "disable",
        }
    }

    /// The action named `s`.
    pub fn parse(s: &str) -> Option<Action> {
        [Action::Drain, Action::Enable, Action::Disable]
            .into_iter()
            .find(|a| a.name() == s)
    }
}

/// What an operator does to the whole node (`[announce]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    /// Withdraw every VIP and stay so.
    Drain,
    /// Announce again what the node can serve.
    Enable,
}

impl NodeAction {
    /// The action's name in URLs and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            NodeAction::Drain => "drain",
            NodeAction::Enable => "enable",
        }
    }
}

/// A change the API asks of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Drain or enable the node.
    Node(NodeAction),
    /// Manual failover of the VRRP pair (`[ha]`): take over, release,
    /// or back to the election.
    Ha(crate::vrrp::Manual),
    /// Re-read the configuration file.
    Reload,
    /// Drain, enable or disable the reals of `vip` matching `real`.
    Real {
        /// The VIP's name.
        vip: String,
        /// `ADDR`, or `ADDR:PORT` (`[ADDR]:PORT` for IPv6).
        real: String,
        /// What to do.
        action: Action,
    },
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No service has that name.
    #[error("no VIP named {vip:?} (VIPs: {known})")]
    NoVip {
        /// The name asked for.
        vip: String,
        /// The names there are, comma-separated.
        known: String,
    },
    /// The service has no such real.
    #[error("VIP {vip:?} has no real {real}")]
    NoReal {
        /// The VIP's name.
        vip: String,
        /// The real asked for.
        real: String,
    },
    /// The real is not written as an address.
    #[error("{0:?} is not an address (ADDR or ADDR:PORT)")]
    BadAddress(String),
    /// The file on disk is not a valid configuration; nothing changed.
    #[error("reload rejected, the running configuration is unchanged:\n{0}")]
    InvalidConfig(String),
    /// The configuration is valid but its forwarding tables could not be
    /// built; nothing changed.
    #[error("{0}")]
    Tables(String),
    /// The daemon is stopping.
    #[error("ferrolb is stopping")]
    Stopping,
    /// The configuration has no `[announce]`: nothing to drain.
    #[error("this node announces nothing: the configuration has no [announce]")]
    NoAnnounce,
    /// The new configuration changes what only a restart applies; nothing
    /// changed.
    #[error("reload rejected: {0}")]
    NeedsRestart(String),
    /// The configuration has no `[ha]`: no pair to fail over.
    #[error("this node is not in a VRRP pair: the configuration has no [ha]")]
    NoHa,
    /// The control loop did not take the command in time.
    #[error("the control loop did not answer in 10 s")]
    Timeout,
    /// A worker did not answer a listing in time (it is stuck, or not
    /// polling).
    #[error("worker {0} did not answer the listing in 1 s")]
    WorkerSilent(usize),
}

impl CommandError {
    /// The HTTP status that answers it.
    pub fn http_status(&self) -> u16 {
        match self {
            CommandError::NoVip { .. } | CommandError::NoReal { .. } => 404,
            CommandError::BadAddress(_)
            | CommandError::InvalidConfig(_)
            | CommandError::Tables(_) => 400,
            CommandError::NoAnnounce | CommandError::NoHa | CommandError::NeedsRestart(_) => 409,
            CommandError::Stopping | CommandError::Timeout | CommandError::WorkerSilent(_) => 503,
        }
    }
}

/// What the routes need from the daemon.
pub trait Backend: Send + Sync {
    /// The figures in force.
    fn status(&self) -> Status;
    /// Carries out a command; `Ok` holds the message for the operator.
    fn command(&self, cmd: Command) -> Result<String, CommandError>;
    /// A page of the flows in the connection tables.
    fn conns(&self, req: &conns::ConnsRequest) -> Result<conns::ConnsPage, CommandError>;
}

fn text(code: u16, body: impl Into<String>) -> Response {
    let mut b = body.into();
    b.push('\n');
    (code, "text/plain", b.into_bytes())
}

/// Answers one request.
pub fn route(method: &str, path: &str, backend: &dyn Backend) -> Response {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    if (method, path) == ("GET", "/api/v1/conns") {
        let req = match conns::parse_query(query) {
            Ok(r) => r,
            Err(e) => return text(400, e),
        };
        return match backend.conns(&req) {
            Ok(page) => (
                200,
                "application/json",
                serde_json::to_vec_pretty(&page).unwrap_or_default(),
            ),
            Err(e) => text(e.http_status(), e.to_string()),
        };
    }
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(unescape)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let cmd = match (method, segs.as_slice()) {
        ("GET", [""]) => {
            return (
                200,
                crate::page::CONTENT_TYPE,
                crate::page::status_page().to_vec(),
            )
        }
        ("GET", ["api", "v1", "status"]) => {
            let body = serde_json::to_vec_pretty(&backend.status()).unwrap_or_default();
            return (200, "application/json", body);
        }
        ("GET", ["metrics"]) => {
            let body = metrics::render(&backend.status()).into_bytes();
            return (200, metrics::CONTENT_TYPE, body);
        }
        ("POST", ["api", "v1", "reload"]) => Command::Reload,
        ("POST", ["api", "v1", "node", action]) => match *action {
            "drain" => Command::Node(NodeAction::Drain),
            "enable" => Command::Node(NodeAction::Enable),
            other => return text(404, format!("unknown action {other:?} (drain, enable)")),
        },
        ("POST", ["api", "v1", "ha", action]) => match *action {
            "takeover" => Command::Ha(crate::vrrp::Manual::Takeover),
            "release" => Command::Ha(crate::vrrp::Manual::Release),
            "auto" => Command::Ha(crate::vrrp::Manual::Auto),
            other => {
                return text(
                    404,
                    format!("unknown action {other:?} (takeover, release, auto)"),
                )
            }
        },
        ("POST", ["api", "v1", "vips", vip, "reals", real, action]) => {
            let Some(action) = Action::parse(action) else {
                return text(
                    404,
                    format!("unknown action {action:?} (drain, enable, disable)"),
                );
            };
            Command::Real {
                vip: vip.to_string(),
                real: real.to_string(),
                action,
            }
        }
        (_, ["api", "v1", "reload"]) | (_, ["api", "v1", "vips" | "node" | "ha", ..]) => {
            return text(405, "use POST")
        }
        _ => return text(404, format!("no route {method} {path}")),
    };
    match backend.command(cmd) {
        Ok(msg) => text(200, msg),
        Err(e) => text(e.http_status(), e.to_string()),
    }
}

/// Percent-decodes a path segment (names and IPv6 addresses in URLs).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a path segment.
pub fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.:[]".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The path that applies `action` to `real` of `vip`.
pub fn real_path(vip: &str, real: &str, action: Action) -> String {
    format!(
        "/api/v1/vips/{}/reals/{}/{}",
        escape(vip),
        escape(real),
        action.name()
    )
}

/// POSTs to the daemon at `api`; its answer, or why it refused.
pub fn post(api: &crate::api::Remote, path: &str) -> Result<String, String> {
    let (code, body) = api.request("POST", path)?;
    if code != 200 {
        return Err(body.trim().to_string());
    }
    Ok(body.trim().to_string())
}

/// The body of `GET /api/v1/status` as the daemon wrote it
/// (`ferrolb status --json`).
pub fn fetch_status_json(api: &crate::api::Remote) -> Result<String, String> {
    let (code, body) = api.request("GET", "/api/v1/status")?;
    if code != 200 {
        return Err(format!(
            "the admin API on {} answered {code}: {}",
            api.addr,
            body.trim()
        ));
    }
    Ok(body)
}

/// The daemon's status, read from the admin API at `api`.
pub fn fetch_status(api: &crate::api::Remote) -> Result<Status, String> {
    let body = fetch_status_json(api)?;
    serde_json::from_str(&body).map_err(|e| {
        format!(
            "the admin API on {} answered something that is not a status: {e}",
            api.addr
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records the commands it gets and answers from a script.
    struct Fake {
        got: Mutex<Vec<Command>>,
        answer: fn(&Command) -> Result<String, CommandError>,
    }

    impl Backend for Fake {
        fn status(&self) -> Status {
            Status {
                generation: 42,
                ..Status::default()
            }
        }
        fn command(&self, cmd: Command) -> Result<String, CommandError> {
            let r = (self.answer)(&cmd);
            self.got.lock().unwrap().push(cmd);
            r
        }
        fn conns(&self, req: &conns::ConnsRequest) -> Result<conns::ConnsPage, CommandError> {
            if req.vip.as_deref() == Some("nope") {
                return Err(CommandError::NoVip {
                    vip: "nope".into(),
                    known: "web".into(),
                });
            }
            Ok(conns::ConnsPage {
                conns: vec![conns::ConnStatus {
                    protocol: "tcp".into(),
                    vip: req.vip.clone().unwrap_or_default(),
                    worker: req.limit,
                    ..conns::ConnStatus::default()
                }],
                next: Some("1:0".into()),
            })
        }
    }

    #[test]
    fn conns_take_their_filters_from_the_query_and_refuse_bad_ones() {
        let f = fake(|_| Ok(String::new()));
        let r = route("GET", "/api/v1/conns?vip=web&limit=7", &f);
        assert_eq!(r.0, 200, "{}", body(&r));
        let page: conns::ConnsPage = serde_json::from_slice(&r.2).unwrap();
        assert_eq!(
            (page.conns[0].vip.as_str(), page.conns[0].worker),
            ("web", 7)
        );
        assert_eq!(page.next.as_deref(), Some("1:0"));
        let r = route("GET", "/api/v1/conns?limit=x", &f);
        assert_eq!(r.0, 400);
        assert!(body(&r).contains("limit"), "{}", body(&r));
        let r = route("GET", "/api/v1/conns?vip=nope", &f);
        assert_eq!(r.0, 404);
        assert_eq!(route("POST", "/api/v1/conns", &f).0, 404);
        // Other routes ignore a query string.
        assert_eq!(route("GET", "/api/v1/status?pretty=1", &f).0, 200);
    }

    fn fake(answer: fn(&Command) -> Result<String, CommandError>) -> Fake {
        Fake {
            got: Mutex::new(Vec::new()),
            answer,
        }
    }

    fn body(r: &Response) -> String {
        String::from_utf8_lossy(&r.2).into_owned()
    }

    #[test]
    fn reads_answer_status_json_metrics_and_the_page() {
        let f = fake(|_| Ok(String::new()));
        let r = route("GET", "/api/v1/status", &f);
        assert_eq!((r.0, r.1), (200, "application/json"));
        let back: Status = serde_json::from_slice(&r.2).unwrap();
        assert_eq!(back.generation, 42);
        let r = route("GET", "/metrics", &f);
        assert_eq!(r.0, 200);
        assert!(body(&r).contains("ferrolb_config_generation 42"));
        assert_eq!(route("GET", "/", &f).0, 200);
        assert!(f.got.lock().unwrap().is_empty(), "reads change nothing");
    }

    #[test]
    fn commands_reach_the_backend_decoded() {
        let f = fake(|_| Ok("done".into()));
        let r = route(
            "POST",
            "/api/v1/vips/my%20web/reals/%5B2001:db8::1%5D:80/drain",
            &f,
        );
        assert_eq!((r.0, body(&r).as_str()), (200, "done\n"));
        let r = route("POST", "/api/v1/reload", &f);
        assert_eq!(r.0, 200);
        assert_eq!(
            *f.got.lock().unwrap(),
            vec![
                Command::Real {
                    vip: "my web".into(),
                    real: "[2001:db8::1]:80".into(),
                    action: Action::Drain
                },
                Command::Reload
            ]
        );
    }

    #[test]
    fn refusals_map_to_status_codes_by_variant() {
        for (err, code) in [
            (
                CommandError::NoVip {
                    vip: "x".into(),
                    known: "web".into(),
                },
                404,
            ),
            (
                CommandError::NoReal {
                    vip: "web".into(),
                    real: "192.0.2.9".into(),
                },
                404,
            ),
            (CommandError::BadAddress("nope".into()), 400),
            (CommandError::InvalidConfig("line 3".into()), 400),
            (CommandError::Stopping, 503),
            (CommandError::Timeout, 503),
        ] {
            assert_eq!(err.http_status(), code, "{err}");
        }
        let f = fake(|_| {
            Err(CommandError::NoReal {
                vip: "web".into(),
                real: "192.0.2.9".into(),
            })
        });
        let r = route("POST", "/api/v1/vips/web/reals/192.0.2.9/enable", &f);
        assert_eq!(
            (r.0, body(&r).as_str()),
            (404, "VIP \"web\" has no real 192.0.2.9\n")
        );
    }

    #[test]
    fn node_actions_reach_the_backend_and_without_announce_are_refused() {
        let f = fake(|c| match c {
            Command::Node(NodeAction::Enable) => Err(CommandError::NoAnnounce),
            _ => Ok("ok".into()),
        });
        assert_eq!(route("POST", "/api/v1/node/drain", &f).0, 200);
        let r = route("POST", "/api/v1/node/enable", &f);
        assert_eq!(r.0, 409);
        assert!(body(&r).contains("no [announce]"));
        assert_eq!(route("POST", "/api/v1/node/explode", &f).0, 404);
        assert_eq!(route("GET", "/api/v1/node/drain", &f).0, 405);
        assert_eq!(
            *f.got.lock().unwrap(),
            vec![
                Command::Node(NodeAction::Drain),
                Command::Node(NodeAction::Enable)
            ]
        );
    }

    #[test]
    fn wrong_method_unknown_action_and_unknown_route() {
        let f = fake(|_| Ok(String::new()));
        assert_eq!(route("GET", "/api/v1/reload", &f).0, 405);
        assert_eq!(route("DELETE", "/api/v1/vips/web/reals/a/drain", &f).0, 405);
        let r = route("POST", "/api/v1/vips/web/reals/192.0.2.1/explode", &f);
        assert_eq!(r.0, 404);
        assert!(body(&r).contains("unknown action \"explode\""));
        assert_eq!(route("GET", "/nothing/here", &f).0, 404);
        assert!(f.got.lock().unwrap().is_empty());
    }

    #[test]
    fn escape_and_unescape_round_trip() {
        for s in ["web", "my web/1", "[2001:db8::1]:80", "ünï%", ""] {
            assert_eq!(unescape(&escape(s)), s);
        }
        assert_eq!(unescape("%zz%4"), "%zz%4", "bad escapes stay as they are");
        assert_eq!(unescape("%aü%"), "%aü%", "never cut a character in two");
        assert_eq!(
            real_path("a b", "192.0.2.1:80", Action::Disable),
            "/api/v1/vips/a%20b/reals/192.0.2.1:80/disable"
        );
    }
}
