//! Configuration written by tired people, and an admin API facing hostile
//! clients, against a running ferrolb (one `net_null` port, in a network
//! namespace of its own so its admin port is private):
//!
//! * a table of broken files: `ferrolb check` and `ferrolb run` exit 1
//!   naming each problem (file, line, key) without a panic, and the same
//!   file on reload is refused while the running configuration stays;
//! * a burst of malformed HTTP (garbage, oversized heads and bodies, bad
//!   lengths, unknown routes, clients that trickle or vanish): the right
//!   status for each, and the daemon keeps answering.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn config(id: &str) -> String {
    format!(
        r#"[dataplane]
eal_args = ["-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--file-prefix=fla{id}",
            "--vdev=net_null0"]
workers = 1
idle_sleep = "1ms"

[[port]]
name = "lan"
device = "net_null0"
addresses = ["192.0.2.2/24"]

[[vip]]
name = "web"
address = "192.0.2.100"
protocol = "tcp"
port = 80
mode = "dr"
  [[vip.real]]
  address = "192.0.2.21"
  weight = 1
"#
    )
}

/// One broken file: what to change in the valid one, then the key and
/// message expected, and a piece of text on the offending line.
struct Case {
    desc: &'static str,
    edit: fn(&str) -> String,
    key: &'static str,
    msg: &'static str,
    line_marker: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            desc: "syntax error",
            edit: |c| c.replace("[[vip]]", "[[vip]"),
            key: "",
            msg: "",
            line_marker: "[[vip]",
        },
        Case {
            desc: "unknown key",
            edit: |c| c.replace("workers = 1", "workers = 1\ncolour = \"blue\""),
            key: "dataplane.colour",
            msg: "unknown key",
            line_marker: "colour",
        },
        Case {
            desc: "bad prefix",
            edit: |c| c.replace("192.0.2.2/24", "192.0.2.2/33"),
            key: "port[0].addresses[0]",
            msg: "",
            line_marker: "192.0.2.2/33",
        },
        Case {
            desc: "bad address",
            edit: |c| c.replace("address = \"192.0.2.21\"", "address = \"192.0.2.321\""),
            key: "vip[0].real[0].address",
            msg: "is not an IPv4 or IPv6 address",
            line_marker: "192.0.2.321",
        },
        Case {
            desc: "duplicate VIP",
            edit: |c| {
                format!(
                    "{c}\n[[vip]]\nname = \"web2\"\naddress = \"192.0.2.100\" # again\nprotocol = \"tcp\"\nport = 80\n  [[vip.real]]\n  address = \"192.0.2.22\"\n"
                )
            },
            key: "vip[1].address",
            msg: "another VIP",
            line_marker: "# again",
        },
        Case {
            desc: "DR with port translation",
            edit: |c| c.replace("  weight = 1", "  port = 8080"),
            key: "vip[0].real[0].port",
            msg: "cannot translate",
            line_marker: "port = 8080",
        },
        Case {
            desc: "real outside every port's subnet, no gateway",
            edit: |c| c.replace("192.0.2.21", "203.0.113.21"),
            key: "vip[0].real[0].address",
            msg: "is not inside any port's prefix",
            line_marker: "203.0.113.21",
        },
        Case {
            desc: "negative weight",
            edit: |c| c.replace("weight = 1", "weight = -1"),
            key: "vip[0].real[0].weight",
            msg: "out of range",
            line_marker: "weight = -1",
        },
        Case {
            desc: "huge weight",
            edit: |c| c.replace("weight = 1", "weight = 10000000000"),
            key: "vip[0].real[0].weight",
            msg: "out of range",
            line_marker: "weight = 10000000000",
        },
        Case {
            desc: "zero health interval",
            edit: |c| {
                c.replace(
                    "mode = \"dr\"",
                    "mode = \"dr\"\n  [vip.health]\n  type = \"tcp\"\n  interval = \"0s\"",
                )
            },
            key: "vip[0].health.interval",
            msg: "longer than zero",
            line_marker: "interval = \"0s\"",
        },
        Case {
            desc: "HA without anything to float",
            edit: |c| {
                let head = &c[..c.find("[[vip]]").unwrap()];
                format!("{head}[ha]\nvrid = 9\n")
            },
            key: "ha",
            msg: "nothing to float",
            line_marker: "[ha]",
        },
        Case {
            desc: "admin on the network without a token",
            edit: |c| format!("{c}\n[admin]\nlisten = \"0.0.0.0:9080\"\n"),
            key: "admin.listen",
            msg: "token",
            line_marker: "0.0.0.0:9080",
        },
    ]
}

/// Checks that `err` names `file`, the case's line and key, and message.
fn names_the_problem(case: &Case, text: &str, file: &str, err: &str) {
    assert!(!err.contains("panicked"), "{}: {err}", case.desc);
    let line = text
        .lines()
        .position(|l| l.contains(case.line_marker))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{}: marker not in the file", case.desc));
    let want = if case.key.is_empty() {
        format!("{file}:{line}")
    } else {
        format!("{file}:{line}: {}: ", case.key)
    };
    assert!(
        err.lines()
            .any(|l| l.contains(&want) && l.contains(case.msg)),
        "{}: wanted {want:?} and {:?} on one line of:\n{err}",
        case.desc,
        case.msg
    );
}

#[test]
fn broken_configs_are_named_by_check_and_run_and_refused_by_reload() {
    require_root();
    let _g = serial();
    let id = uid();
    let ns = Netns::new(&format!("flad{id}"));
    ns.exec("ip link set lo up");
    let valid = config(&id);
    let mut f = Ferrolb::start(&ns, &valid);
    f.wait_log("ferrolb running", Duration::from_secs(30));
    let status = |ns: &Netns| ns.exec(&format!("{} status", ferrolb_bin()));
    // The generation in force (health results may have republished it).
    let generation = |s: &str| {
        s.split_whitespace()
            .skip_while(|w| *w != "generation")
            .nth(1)
            .unwrap_or("")
            .trim_end_matches(',')
            .to_string()
    };
    // Past the first health results, which republish once.
    f.wait_log("real server up", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let before = status(&ns);
    let gen0 = generation(&before);
    assert!(!gen0.is_empty(), "{before}");
    let path = f.config.display().to_string();

    let dir = std::env::temp_dir().join(format!("ferrolb-broken-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, case) in cases().iter().enumerate() {
        let text = (case.edit)(&valid);
        assert_ne!(text, valid, "{}: the edit changed nothing", case.desc);
        let file = dir.join(format!("case{i}.toml"));
        std::fs::write(&file, &text).unwrap();
        let fname = file.display().to_string();
        // check: exit 1, the problem named.
        let out = Command::new(ferrolb_bin())
            .args(["check", "--config", &fname])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", case.desc);
        names_the_problem(case, &text, &fname, &err);
        // run: exit 1 before DPDK starts.
        let out = Command::new(ferrolb_bin())
            .args(["run", "--config", &fname])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", case.desc);
        names_the_problem(case, &text, &fname, &err);
        assert!(!err.contains("EAL:"), "{}: DPDK started: {err}", case.desc);
        // reload: refused, the running configuration untouched.
        std::fs::write(&f.config, &text).unwrap();
        let (ok, out) = ns.try_exec(&format!("{} reload", ferrolb_bin()));
        assert!(!ok, "{}: reload accepted:\n{out}", case.desc);
        assert!(out.contains("reload rejected"), "{}: {out}", case.desc);
        names_the_problem(case, &text, &path, &out);
        let now = status(&ns);
        assert_eq!(generation(&now), gen0, "{}: {now}", case.desc);
        assert!(now.contains("192.0.2.100:80"), "{}: {now}", case.desc);
        eprintln!("{:>45}: check, run and reload refused it", case.desc);
    }
    let _ = std::fs::remove_dir_all(&dir);
    // The valid file again: the next reload is taken.
    std::fs::write(&f.config, &valid).unwrap();
    let out = ns.exec(&format!("{} reload", ferrolb_bin()));
    let after = status(&ns);
    assert_ne!(generation(&after), gen0, "{out}\n{after}");
    assert!(out.contains("reloaded"), "{out}");
    assert!(
        f.log_text().matches("reload rejected").count() >= cases().len(),
        "{}",
        f.log_text()
    );
    f.stop();
}

/// Hostile HTTP clients, from Python inside the namespace: prints one
/// `name code` line per probe, then how long a status request took while
/// slow clients held connections.
const HOSTILE: &str = r#"
import socket, sys, time, random
A = ("127.0.0.1", 9080)
def probe(name, data, read=True, timeout=8):
    s = socket.create_connection(A, timeout=timeout)
    try:
        s.sendall(data)
        if not read:
            return
        r = b""
        while True:
            try:
                c = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                break
            if not c:
                break
            r += c
        code = r.split(b" ")[1].decode() if r.startswith(b"HTTP/1.1 ") else "none"
        print(name, code, flush=True)
    finally:
        s.close()
random.seed(7)
probe("garbage", bytes(random.getrandbits(8) for _ in range(300)) + b"\r\n\r\n")
probe("binary_zeros", b"\x00" * 64 + b"\r\n\r\n")
probe("huge_head", b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n")
probe("huge_body", b"POST /api/v1/reload HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n")
probe("bad_length", b"POST /api/v1/reload HTTP/1.1\r\nContent-Length: abc\r\n\r\n")
probe("negative_length", b"POST /api/v1/reload HTTP/1.1\r\nContent-Length: -5\r\n\r\n")
probe("unknown_route", b"GET /etc/passwd HTTP/1.1\r\n\r\n")
probe("traversal", b"GET /../../etc/passwd HTTP/1.1\r\n\r\n")
probe("unknown_vip", b"POST /api/v1/vips/nope/reals/192.0.2.21/drain HTTP/1.1\r\n\r\n")
probe("wrong_method", b"GET /api/v1/reload HTTP/1.1\r\n\r\n")
probe("no_path", b"GET\r\n\r\n")
probe("percent_garbage", b"POST /api/v1/vips/%zz%/reals/%%%/drain HTTP/1.1\r\n\r\n")
# Clients that connect and vanish, or send half a request and close.
for i in range(200):
    probe("vanish", b"GET /api/v1/sta" if i % 2 else b"", read=False)
# Random mutations of a valid request.
valid = b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
for i in range(300):
    b = bytearray(valid)
    for _ in range(random.randint(1, 8)):
        b[random.randrange(len(b))] = random.getrandbits(8)
    try:
        probe("mutated", bytes(b) + b"\r\n\r\n", timeout=8)
    except OSError as e:
        print("mutated error", e, flush=True)
# Slow clients hold connections; status must still answer at once.
slow = []
for i in range(8):
    s = socket.create_connection(A, timeout=10)
    s.sendall(b"GET /api/v1/status HTTP/1.1\r\n")
    slow.append(s)
time.sleep(0.3)
t = time.time()
probe("status_while_slow", b"GET /api/v1/status HTTP/1.1\r\n\r\n")
print("status_time %.3f" % (time.time() - t), flush=True)
for s in slow:
    s.close()
"#;

#[test]
fn the_admin_api_survives_a_burst_of_malformed_requests() {
    require_root();
    let _g = serial();
    let id = uid();
    let ns = Netns::new(&format!("flah{id}"));
    ns.exec("ip link set lo up");
    let mut f = Ferrolb::start(&ns, &config(&id));
    f.wait_log("ferrolb running", Duration::from_secs(30));
    let script = std::env::temp_dir().join(format!("ferrolb-hostile-{id}.py"));
    std::fs::write(&script, HOSTILE).unwrap();
    let t0 = Instant::now();
    let out = ns.exec(&format!("/usr/bin/python3 {}", script.display()));
    let _ = std::fs::remove_file(&script);
    eprintln!("hostile clients took {:?}", t0.elapsed());
    let code = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or("missing")
            .to_string()
    };
    eprintln!(
        "{}",
        out.lines()
            .filter(|l| !l.starts_with("mutated") && !l.starts_with("vanish"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    // Random bytes may happen to read as "METHOD PATH": 400 or 404.
    assert!(["400", "404"].contains(&code("garbage").as_str()), "{out}");
    // A head past 64 KiB: ferrolb's 413, or hyper's 431 when its buffer
    // limit comes first.
    assert!(
        ["413", "431"].contains(&code("huge_head").as_str()),
        "{out}"
    );
    for (name, want) in [
        ("binary_zeros", "400"),
        ("huge_body", "413"),
        ("bad_length", "400"),
        ("negative_length", "400"),
        ("unknown_route", "404"),
        ("traversal", "404"),
        ("unknown_vip", "404"),
        ("wrong_method", "405"),
        ("no_path", "400"),
        ("status_while_slow", "200"),
    ] {
        assert_eq!(code(name), want, "{name}:\n{out}");
    }
    let mutated: Vec<&str> = out.lines().filter(|l| l.starts_with("mutated")).collect();
    let answered = mutated
        .iter()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|c| c.len() == 3))
        .count();
    eprintln!(
        "mutated requests: {} sent, {answered} answered with a status; {}",
        mutated.len(),
        out.lines()
            .find(|l| l.starts_with("status_time"))
            .unwrap_or("")
    );
    assert_eq!(mutated.len(), 300, "{out}");
    assert_eq!(answered, 300, "{out}");
    let t: f64 = code("status_time").parse().unwrap_or(99.0);
    assert!(
        t < 1.0,
        "status took {t} s while slow clients were connected"
    );
    // Still alive and answering; the log shows no panic.
    let s = ns.exec(&format!("{} status", ferrolb_bin()));
    assert!(s.contains("192.0.2.100:80"), "{s}");
    assert!(!f.log_text().contains("panicked"), "{}", f.log_text());
    f.stop();
}

/// A throw-away CA and a server certificate for 127.0.0.1 signed by it
/// (openssl, P-256), and a second CA that signed nothing of ferrolb's.
fn make_pki(dir: &std::path::Path) {
    let d = dir.display();
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    for cmd in [
        format!("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {d}/ca.key -out {d}/ca.pem -days 2 -subj /CN=ferrolb-test-ca"),
        format!("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {d}/other.key -out {d}/other.pem -days 2 -subj /CN=someone-else"),
        format!("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {d}/srv.key -out {d}/srv.csr -subj /CN=ferrolb-admin"),
        format!("openssl x509 -req -in {d}/srv.csr -CA {d}/ca.pem -CAkey {d}/ca.key -CAcreateserial -out {d}/srv.pem -days 2 -extfile {}", ext.display()),
    ] {
        run(&format!("{cmd} 2>&1"));
    }
}

/// `[admin] tls_cert` / `tls_key`: the API, /metrics and the status page
/// over HTTPS, tested with curl and the CLI against a throw-away CA. A
/// certificate from another CA, no token, a wrong token and plain HTTP to
/// the TLS port each get a clear refusal, and the daemon keeps serving. A
/// non-loopback `listen` without a token or without TLS is refused at
/// load, naming what is missing.
#[test]
fn the_admin_api_over_https_refuses_what_it_should_and_keeps_serving() {
    require_root();
    let _g = serial();
    let id = uid();
    let ns = Netns::new(&format!("flt{id}"));
    let dir = Scratch::new("pki");
    make_pki(&dir.0);
    let d = dir.0.display().to_string();
    let admin = |listen: &str, extra: &str| {
        format!("{}\n[admin]\nlisten = \"{listen}\"\n{extra}", config(&id))
    };
    let tls = format!("tls_cert = \"{d}/srv.pem\"\ntls_key = \"{d}/srv.key\"\n");
    // What `check` says of non-loopback addresses.
    for (extra, want) in [
        (
            "".to_string(),
            "set [admin].token and [admin].tls_cert / tls_key",
        ),
        (
            "token = \"s3cret\"\n".to_string(),
            "set [admin].tls_cert / tls_key",
        ),
        (tls.clone(), "set [admin].token,"),
        (
            format!("token = \"s3cret\"\ntls_cert = \"{d}/srv.pem\"\n"),
            "admin.tls_key: is required",
        ),
        (
            format!(
                "token = \"s3cret\"\ntls_cert = \"{d}/srv.pem\"\ntls_key = \"{d}/other.key\"\n"
            ),
            "do not go together",
        ),
        (
            format!("token = \"s3cret\"\ntls_cert = \"{d}/nope.pem\"\ntls_key = \"{d}/srv.key\"\n"),
            "admin.tls_cert: cannot read",
        ),
    ] {
        let f = dir.file("check.toml", &admin("0.0.0.0:9443", &extra));
        let (ok, out) = try_run(&format!("{} check --config {}", ferrolb_bin(), f.display()));
        assert!(!ok && out.contains(want), "{extra}: {out}");
    }
    let f = dir.file(
        "check.toml",
        &admin("0.0.0.0:9443", &format!("token = \"s3cret\"\n{tls}")),
    );
    let (ok, out) = try_run(&format!("{} check --config {}", ferrolb_bin(), f.display()));
    assert!(ok, "token and TLS: {out}");

    let mut lb = Ferrolb::start(
        &ns,
        &admin("127.0.0.1:9443", &format!("token = \"s3cret\"\n{tls}")),
    );
    lb.wait_log("ferrolb running", Duration::from_secs(30));
    assert!(lb.log_text().contains("https=true"), "{}", lb.log_text());
    let curl = |args: &str| ns.try_exec(&format!("curl -sS -m 5 {args}"));
    let auth = "-H 'Authorization: Bearer s3cret'";
    let url = "https://127.0.0.1:9443";
    // Served: status JSON, metrics, the page.
    let (ok, out) = curl(&format!("--cacert {d}/ca.pem {auth} {url}/api/v1/status"));
    assert!(ok && out.contains("\"generation\""), "{out}");
    let (ok, out) = curl(&format!("--cacert {d}/ca.pem {auth} {url}/metrics"));
    assert!(ok && out.contains("ferrolb_config_generation"), "{out}");
    let (ok, out) = curl(&format!("--cacert {d}/ca.pem {auth} {url}/"));
    assert!(
        ok && out.contains("<html"),
        "{}",
        &out[..out.len().min(200)]
    );
    // Refused: no token, a wrong one, another CA, plain HTTP.
    let code = |args: &str| {
        ns.exec(&format!(
            "curl -s -o /dev/null -w '%{{http_code}}' -m 5 {args}"
        ))
        .trim()
        .to_string()
    };
    assert_eq!(
        code(&format!("--cacert {d}/ca.pem {url}/api/v1/status")),
        "401"
    );
    assert_eq!(
        code(&format!(
            "--cacert {d}/ca.pem -H 'Authorization: Bearer s3cre' {url}/api/v1/status"
        )),
        "401"
    );
    let (ok, out) = curl(&format!(
        "--cacert {d}/other.pem {auth} {url}/api/v1/status"
    ));
    assert!(!ok && out.contains("certificate"), "another CA: {out}");
    let (ok, out) = curl(&format!("{auth} http://127.0.0.1:9443/api/v1/status"));
    assert!(ok && out.contains("speaks HTTPS"), "plain HTTP: {out}");
    // The CLI: --cacert, FERROLB_CACERT, and the same refusals.
    let cli = |args: &str| ns.try_exec(&format!("{} {args}", ferrolb_bin()));
    let (ok, out) = cli(&format!(
        "status --admin 127.0.0.1:9443 --token s3cret --cacert {d}/ca.pem"
    ));
    assert!(ok && out.contains("192.0.2.100:80"), "{out}");
    let (ok, out) = ns.try_exec(&format!(
        "FERROLB_CACERT={d}/ca.pem FERROLB_TOKEN=s3cret {} reload --admin 127.0.0.1:9443",
        ferrolb_bin()
    ));
    assert!(ok && out.contains("reloaded"), "{out}");
    let (ok, out) = cli("status --admin 127.0.0.1:9443 --token s3cret");
    assert!(
        !ok && out.contains("speaks HTTPS") && out.contains("--cacert"),
        "{out}"
    );
    let (ok, out) = cli(&format!(
        "status --admin 127.0.0.1:9443 --token s3cret --cacert {d}/other.pem"
    ));
    assert!(
        !ok && out.contains("TLS with 127.0.0.1:9443 failed"),
        "{out}"
    );
    let (ok, out) = cli(&format!(
        "status --admin 127.0.0.1:9443 --token nope --cacert {d}/ca.pem"
    ));
    assert!(!ok && out.contains("401"), "{out}");
    // Still serving, and alive.
    let (ok, out) = curl(&format!("--cacert {d}/ca.pem {auth} {url}/api/v1/status"));
    assert!(ok && out.contains("\"generation\""), "{out}");
    eprintln!("HTTPS admin API: served with the CA, refused without token, with a wrong token, another CA, plain HTTP");
    lb.stop();
}
