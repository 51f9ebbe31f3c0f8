//! Test hosts for end-to-end tests: network namespaces, veth pairs and
//! bridges made by the test and removed when it ends (also when it fails),
//! and a ferrolb process that is killed if the test panics.
//!
//! Only documentation address ranges are used, and only inside the
//! namespaces. Every wait is bounded.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Declares each named lab test, a `fn(workers: u16)`, twice: in module
/// `one_worker` with one worker and in `two_workers` with two workers and
/// two queues per port ([`with_workers`]).
#[macro_export]
macro_rules! on_one_and_two_workers {
    ($($name:ident),* $(,)?) => {
        mod one_worker {
            $(#[test]
            fn $name() {
                super::$name(1)
            })*
        }
        mod two_workers {
            $(#[test]
            fn $name() {
                super::$name(2)
            })*
        }
    };
}

/// End-to-end tests run one at a time (two cores; busy-polling workers).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails loudly unless the test runs as root (namespaces, DPDK).
pub fn require_root() {
    // SAFETY-free: geteuid has no preconditions, but avoid libc in tests:
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "end-to-end tests need root (network namespaces, DPDK): run them with sudo or as README says"
    );
}

/// A short id unique to this process and call, for names of at most 15
/// characters.
pub fn uid() -> String {
    format!(
        "{}{}",
        std::process::id() % 10000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command; returns (success, stdout+stderr).
pub fn try_run(cmd: &str) -> (bool, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("sh runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        let _ = try_run(&format!("ip netns del {name} 2>/dev/null"));
        run(&format!("ip netns add {name}"));
        run(&format!("ip -n {name} link set lo up"));
        Netns {
            name: name.to_string(),
        }
    }

    /// Runs `cmd` inside the namespace.
    pub fn exec(&self, cmd: &str) -> String {
        run(&format!(
            "ip netns exec {} sh -c '{}'",
            self.name,
            cmd.replace('\'', "'\\''")
        ))
    }

    /// Runs `cmd` inside the namespace; (success, output).
    pub fn try_exec(&self, cmd: &str) -> (bool, String) {
        try_run(&format!(
            "ip netns exec {} sh -c '{}'",
            self.name,
            cmd.replace('\'', "'\\''")
        ))
    }

    /// The MAC of an interface in this namespace.
    pub fn mac(&self, iface: &str) -> String {
        std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
            .ok()
            .filter(|_| false) // /sys shows the caller's namespace: ask ip instead
            .unwrap_or_else(|| {
                let out = run(&format!("ip -n {} -o link show dev {iface}", self.name));
                out.split_whitespace()
                    .skip_while(|w| *w != "link/ether")
                    .nth(1)
                    .expect("interface has a MAC")
                    .to_string()
            })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = try_run(&format!("ip netns del {}", self.name));
    }
}

/// Joins two namespaces by a veth pair `a_if` (in `a`) — `b_if` (in `b`).
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    run(&format!(
        "ip link add {a_if} netns {} type veth peer name {b_if} netns {}",
        a.name, b.name
    ));
    run(&format!("ip -n {} link set {a_if} up", a.name));
    run(&format!("ip -n {} link set {b_if} up", b.name));
    // The kernel's checksum offload would leave partial checksums that a
    // packet socket (af_packet PMD) forwards as they are.
    let _ = try_run(&format!(
        "ip netns exec {} ethtool -K {a_if} tx off >/dev/null 2>&1",
        a.name
    ));
    let _ = try_run(&format!(
        "ip netns exec {} ethtool -K {b_if} tx off >/dev/null 2>&1",
        b.name
    ));
}

/// `config`, written for one worker (`"-l", "0-1"`, `workers = 1` or no
/// `workers` key, one queue per af_packet port), made to run `workers`
/// workers: the main lcore and the workers mapped onto the machine's CPUs
/// in turn (`--lcores=0@0,1@1,2@0` on two CPUs), and one queue pair per
/// worker on every af_packet port. Keep `idle_sleep` in such configs:
/// several polling lcores share a CPU.
pub fn with_workers(config: &str, workers: u16) -> String {
    if workers <= 1 {
        return config.to_string();
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let lcores: Vec<String> = (0..=usize::from(workers))
        .map(|l| format!("{l}@{}", l % cpus))
        .collect();
    let lcores = format!("\"--lcores={}\"", lcores.join(","));
    assert!(
        config.contains(r#""-l", "0-1""#),
        "with_workers: the config has no \"-l\", \"0-1\" to replace"
    );
    let mut c = config.replace(r#""-l", "0-1""#, &lcores);
    let mut out = String::with_capacity(c.len() + 64);
    let mut rest = c.as_str();
    while let Some(at) = rest.find("--vdev=net_af_packet") {
        let end = at
            + rest[at..]
                .find('"')
                .expect("vdev argument ends with a quote");
        out.push_str(&rest[..end]);
        out.push_str(&format!(",qpairs={workers}"));
        rest = &rest[end..];
    }
    out.push_str(rest);
    c = out;
    if c.contains("workers = 1") {
        c.replacen("workers = 1", &format!("workers = {workers}"), 1)
    } else {
        c.replacen(
            "[dataplane]\n",
            &format!("[dataplane]\nworkers = {workers}\n"),
            1,
        )
    }
}

/// The balancer's status JSON, read from inside its namespace on the
/// default admin address.
pub fn status_json(ns: &Netns) -> serde_json::Value {
    let s = ns.exec("curl -s -m 3 http://127.0.0.1:9080/api/v1/status");
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("status JSON: {e}: {s}"))
}

/// With several workers: the status shows `workers` workers, every one of
/// them received frames, and, when `crossed`, frames were handed from
/// one worker to another (the lab made both directions of flows land on
/// different workers). Proves a two-worker run really ran two.
pub fn check_workers(ns: &Netns, workers: u16, crossed: bool) {
    if workers <= 1 {
        return;
    }
    // Workers publish their counters every few hundred passes.
    let mut last = serde_json::Value::Null;
    let ok = wait_for(Duration::from_secs(3), || {
        last = status_json(ns);
        let w = last["workers"].as_array().cloned().unwrap_or_default();
        let sum = |k: &str| w.iter().map(|x| x[k].as_u64().unwrap_or(0)).sum::<u64>();
        w.len() == usize::from(workers)
            && w.iter().all(|x| x["rx"].as_u64().unwrap_or(0) > 0)
            && (!crossed || (sum("handoffs_out") > 0 && sum("handoffs_in") > 0))
    });
    assert!(
        ok,
        "expected {workers} busy workers{}: {}",
        if crossed { " handing frames over" } else { "" },
        last["workers"]
    );
    assert_eq!(
        last["drops"]["handoff_full"].as_u64(),
        Some(0),
        "hand-off rings overflowed"
    );
}

/// Waits until `f` holds, checking every 50 ms, at most `limit`.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The ferrolb binary under test.
pub fn ferrolb_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferrolb")
}

/// A running `ferrolb run` inside a namespace; killed on drop.
pub struct Ferrolb {
    child: Option<Child>,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl Ferrolb {
    /// Writes `config` to a file and starts ferrolb on it inside `ns`.
    pub fn start(ns: &Netns, config: &str) -> Ferrolb {
        let dir = std::env::temp_dir().join(format!("ferrolb-test-{}", uid()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cfg = dir.join("ferrolb.toml");
        std::fs::File::create(&cfg)
            .and_then(|mut f| f.write_all(config.as_bytes()))
            .expect("write config");
        let log = dir.join("ferrolb.log");
        let logf = std::fs::File::create(&log).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, ferrolb_bin(), "run", "--config"])
            .arg(&cfg)
            .env("FERROLB_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup"))
            .stderr(logf)
            .spawn()
            .expect("spawn ferrolb");
        Ferrolb {
            child: Some(child),
            log,
            config: cfg,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (bounded), panicking with the
    /// log otherwise. Also fails at once if the process exits.
    pub fn wait_log(&mut self, needle: &str, limit: Duration) {
        self.wait_log_count(needle, 1, limit);
    }

    /// Waits until the log contains `needle` at least `n` times (bounded).
    pub fn wait_log_count(&mut self, needle: &str, n: usize, limit: Duration) {
        let ok = wait_for(limit, || {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "ferrolb exited ({st}) before logging {needle:?}:\n{}",
                        self.log_text()
                    );
                }
            }
            self.log_text().matches(needle).count() >= n
        });
        assert!(
            ok,
            "ferrolb did not log {needle:?} {n} time(s) within {limit:?}:\n{}",
            self.log_text()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends `signal` (`TERM`, `HUP`...) and goes on.
    pub fn signal(&self, signal: &str) {
        let c = self.child.as_ref().expect("running");
        run(&format!("kill -{signal} {}", c.id()));
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `kill -9`, as a crash: nothing is cleaned up.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` and waits (bounded) for exit: (status, time taken).
    pub fn signal_and_wait(&mut self, signal: &str, limit: Duration) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        let t0 = Instant::now();
        run(&format!("kill -{signal} {}", child.id()));
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return (st, t0.elapsed());
            }
            if t0.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ferrolb did not exit within {limit:?} of SIG{signal}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, and a clean exit within 10 s (panics with the log
    /// otherwise).
    pub fn stop(&mut self) {
        let (st, _) = self.signal_and_wait("TERM", Duration::from_secs(10));
        assert!(
            st.success(),
            "ferrolb exited with {st}:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Ferrolb {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- ferrolb log ({}) ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// A Linux bridge in a namespace of its own: the lab's switch.
pub struct Switch {
    pub ns: Netns,
    pub id: String,
    ports: u32,
}

impl Switch {
    pub fn new(id: &str) -> Switch {
        let ns = Netns::new(&format!("fls{id}"));
        ns.exec("ip link add br0 type bridge && ip link set br0 up");
        // No IGMP/MLD snooping surprises; forward immediately.
        let _ = ns.try_exec("echo 0 > /sys/class/net/br0/bridge/multicast_snooping");
        Switch {
            ns,
            id: id.to_string(),
            ports: 0,
        }
    }

    /// Plugs `host` into the bridge with interface `iface` on its side.
    pub fn plug(&mut self, host: &Netns, iface: &str) {
        self.ports += 1;
        let sw_if = format!("s{}p{}", self.id, self.ports);
        veth(&self.ns, &sw_if, host, iface);
        self.ns.exec(&format!("ip link set {sw_if} master br0"));
    }
}

/// Makes `ns` a direct-routing real server for `vips` (held on lo, never
/// announced: arp_ignore=1, arp_announce=2).
pub fn dr_real(ns: &Netns, iface: &str, vips: &[&str]) {
    ns.exec(&format!(
        "sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
         net.ipv4.conf.{iface}.arp_ignore=1 net.ipv4.conf.{iface}.arp_announce=2"
    ));
    for v in vips {
        let plen = if v.contains(':') { 128 } else { 32 };
        let nodad = if v.contains(':') { " nodad" } else { "" };
        ns.exec(&format!("ip addr add {v}/{plen} dev lo{nodad}"));
    }
}

/// An nginx inside a namespace, stopped on drop. Every answer names the
/// server and echoes the client's address: `NAME from CLIENT`.
pub struct Nginx {
    ns_name: String,
    dir: PathBuf,
}

impl Nginx {
    /// nginx on `port` answering every path with `<name> from <client>`.
    pub fn start(ns: &Netns, name: &str, port: u16) -> Nginx {
        let loc = format!(
            "location / {{ default_type text/plain; return 200 \"{name} from $remote_addr\\n\"; }}"
        );
        Nginx::with_locations(ns, port, &loc)
    }

    /// nginx on `port` with only `/ready.txt` (`ready`); 404 elsewhere: a
    /// readiness endpoint apart from the service.
    pub fn readiness(ns: &Netns, port: u16) -> Nginx {
        Nginx::with_locations(
            ns,
            port,
            "location = /ready.txt { default_type text/plain; return 200 \"ready\\n\"; } location / { return 404; }",
        )
    }

    /// nginx on `port` with the `location` blocks `locations`.
    pub fn with_locations(ns: &Netns, port: u16, locations: &str) -> Nginx {
        let dir = std::env::temp_dir().join(format!("ferrolb-nginx-{}", uid()));
        std::fs::create_dir_all(&dir).expect("nginx dir");
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\ndaemon on;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n access_log {d}/access.log;\n client_body_temp_path {d};\n proxy_temp_path {d};\n\
             fastcgi_temp_path {d};\n uwsgi_temp_path {d};\n scgi_temp_path {d};\n keepalive_timeout 120s;\n\
             keepalive_requests 100000;\n\
             server {{ listen {port} reuseport; listen [::]:{port} reuseport;\n\
             {locations} }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("nginx conf");
        ns.exec(&format!("nginx -c {d}/nginx.conf"));
        Nginx {
            ns_name: ns.name.clone(),
            dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.dir.join("nginx.pid")).unwrap_or_default();
        if let Ok(pid) = pid.trim().parse::<u32>() {
            let _ = try_run(&format!("kill -QUIT {pid}"));
            let _ = wait_for(Duration::from_secs(3), || {
                !std::path::Path::new(&format!("/proc/{pid}")).exists()
            });
            let _ = try_run(&format!("kill -9 {pid} 2>/dev/null"));
        }
        let _ = &self.ns_name;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `n` curl requests from `ns` to `url` (each a new connection);
/// returns how many answers each server name gave, and failures.
pub fn curl_spread(
    ns: &Netns,
    url: &str,
    n: usize,
    extra: &str,
) -> (std::collections::BTreeMap<String, usize>, usize) {
    let script =
        format!("for i in $(seq 1 {n}); do curl -s -m 3 {extra} {url} || echo FAILED; echo; done");
    let out = ns.exec(&script);
    let mut m = std::collections::BTreeMap::new();
    let mut failed = 0;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        if line.contains("FAILED") {
            failed += 1;
            continue;
        }
        let name = line.split_whitespace().next().unwrap_or("").to_string();
        *m.entry(name).or_insert(0) += 1;
    }
    (m, failed)
}

/// A process a test runs beside the lab (clients, echo servers, capture),
/// killed and reaped when dropped, also when the test fails.
pub struct Proc(Option<Child>);

impl Proc {
    /// Runs `program args...` in `ns`, its output discarded.
    pub fn spawn(ns: &Netns, program: &str, args: &[&str]) -> Proc {
        let c = Command::new("ip")
            .args(["netns", "exec", &ns.name, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning a background process");
        Proc(Some(c))
    }

    /// Wraps a process the caller started.
    pub fn from_child(c: Child) -> Proc {
        Proc(Some(c))
    }

    /// The running process.
    pub fn get(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }

    /// Hands the process over (to wait for its output).
    pub fn take(mut self) -> Child {
        self.0.take().expect("running")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A scratch directory under the temporary directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A new, empty directory named after `what` and a unique id.
    pub fn new(what: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("ferrolb-{what}-{}", uid()));
        std::fs::create_dir_all(&p).expect("scratch directory");
        Scratch(p)
    }

    /// Writes `text` to `name` in it; its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("scratch file");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `[dataplane]` section of a test lab: DPDK on 4 KiB pages with the
/// EAL file prefix `prefix`, one worker that backs off `idle_sleep` when
/// idle (the test machine has two cores), and a `net_af_packet` device
/// on each of `ifaces` (`net_af_packet0` on the first). [`with_workers`]
/// turns it into several workers.
pub fn dataplane(prefix: &str, ifaces: &[&str], idle_sleep: &str) -> String {
    let vdevs: Vec<String> = ifaces
        .iter()
        .enumerate()
        .map(|(i, f)| format!("\"--vdev=net_af_packet{i},iface={f}\""))
        .collect();
    format!(
        "[dataplane]\neal_args = [\"-l\", \"0-1\", \"--no-huge\", \"-m\", \"256\", \"--no-pci\", \
         \"--file-prefix={prefix}\",\n            {}]\nworkers = 1\nidle_sleep = \"{idle_sleep}\"\n",
        vdevs.join(", ")
    )
}

/// A node of the `[announce]` labs: port `lan` at `addr`/24 on `eth0`
/// (with `gateway`), a DR VIP 192.0.2.100:80 over `reals` (Maglev; checked
/// by TCP every 200 ms when `checked`), announced in kernel table 250
/// with a drain time of 2 s.
pub fn announce_node(
    prefix: &str,
    addr: &str,
    gateway: Option<&str>,
    reals: &[&str],
    checked: bool,
) -> String {
    let dp = dataplane(prefix, &["eth0"], "200us");
    let gw = gateway
        .map(|g| format!("gateway = \"{g}\"\n"))
        .unwrap_or_default();
    let health = if checked {
        "  [vip.health]\n  type = \"tcp\"\n  interval = \"200ms\"\n  timeout = \"150ms\"\n  rise = 1\n  fall = 1\n"
    } else {
        ""
    };
    let reals: String = reals
        .iter()
        .map(|r| format!("  [[vip.real]]\n  address = \"{r}\"\n"))
        .collect();
    format!(
        "\n{dp}\n[[port]]\nname = \"lan\"\ndevice = \"net_af_packet0\"\naddresses = [\"{addr}/24\"]\n{gw}\n\
         [[vip]]\nname = \"web\"\naddress = \"192.0.2.100\"\nport = 80\nmode = \"dr\"\nscheduler = \"maglev\"\n{health}{reals}\n\
         [announce]\ntable = 250\ndrain_time = \"2s\"\n"
    )
}

/// The single node of the announce and BGP labs: 192.0.2.2, no gateway,
/// one checked real 192.0.2.21 ([`announce_node`]).
pub fn announce_lab_node(id: &str) -> String {
    announce_node(&format!("fl{id}"), "192.0.2.2", None, &["192.0.2.21"], true)
}

/// FRR daemons in `ns`, each `(daemon, configuration)`, zebra first:
/// in the foreground as FRR's user, in a path space of their own (their
/// sockets in `/var/run/frr/<space>`, removed with the returned
/// directory), their output in `dir/<daemon>.log`.
pub fn frr(
    ns: &Netns,
    dir: &Scratch,
    space: &str,
    daemons: &[(&str, &str)],
) -> (Vec<Proc>, Scratch) {
    let rundir = format!("/var/run/frr/{space}");
    std::fs::create_dir_all(&rundir).expect("FRR run directory");
    let guard = Scratch(rundir.clone().into());
    run(&format!("chown frr:frr {rundir}"));
    let mut procs = Vec::new();
    for (daemon, conf) in daemons {
        let conf = dir.file(&format!("{daemon}.conf"), conf);
        let log = std::fs::File::create(dir.0.join(format!("{daemon}.log"))).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(format!("/usr/lib/frr/{daemon}"))
            .args(["-N", space, "-f"])
            .arg(&conf)
            .args(["-i", &format!("{rundir}/{daemon}.pid")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("FRR daemon");
        procs.push(Proc::from_child(child));
        if *daemon == "zebra" {
            // The others connect to zebra's socket once it is there.
            let sock = format!("{rundir}/zserv.api");
            assert!(
                wait_for(Duration::from_secs(10), || std::path::Path::new(&sock)
                    .exists()),
                "zebra made no socket at {sock}: {}",
                std::fs::read_to_string(dir.0.join("zebra.log")).unwrap_or_default()
            );
        }
    }
    (procs, guard)
}

/// BIRD 2 in `ns` with configuration `conf`, in the foreground, its
/// configuration and control socket (`dir/<name>.ctl`, for `birdc -s`) in
/// `dir`.
pub fn bird(ns: &Netns, dir: &Scratch, name: &str, conf: &str) -> Proc {
    let c = dir
        .file(&format!("{name}.conf"), conf)
        .display()
        .to_string();
    let sock = dir.0.join(format!("{name}.ctl")).display().to_string();
    Proc::spawn(ns, "bird", &["-f", "-c", &c, "-s", &sock])
}

/// A client that opens a keep-alive connection, reads one answer, then
/// waits: prints `RST|EOF|DATA|TIMEOUT <real> <seconds waited>`.
pub const IDLE_CLIENT: &str = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], 80), timeout=3)
s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
data = b""
while not data.endswith(b"\n") or b"\r\n\r\n" not in data:
    data += s.recv(4096)
name = data.split(b"\r\n\r\n", 1)[1].split()[0].decode()
s.settimeout(float(sys.argv[2]))
t0 = time.time()
try:
    got = s.recv(1)
    print("EOF" if got == b"" else "DATA", name, round(time.time() - t0, 2))
except ConnectionResetError:
    print("RST", name, round(time.time() - t0, 2))
except socket.timeout:
    print("TIMEOUT", name, round(time.time() - t0, 2))
"#;

/// wrk against `url` from `ns` for `secs` seconds with `conns` keep-alive
/// connections (timeout 3 s), its report written to `out`.
pub fn wrk(ns: &Netns, url: &str, out: &std::path::Path, secs: u64, conns: u32) -> Proc {
    let c = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(["wrk", "-t1", &format!("-c{conns}"), &format!("-d{secs}s")])
        .args(["--timeout", "3s", url])
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wrk (package wrk)");
    Proc::from_child(c)
}

/// What a wrk run reported: requests, socket errors (connect, read,
/// write, timeout) summed, non-2xx answers, and the report itself.
pub struct WrkRun {
    pub requests: u64,
    pub errors: u64,
    pub non_2xx: u64,
    pub report: String,
}

pub fn wrk_wait(mut p: Proc, out: &std::path::Path, limit: Duration) -> WrkRun {
    assert!(
        wait_for(limit, || p.get().try_wait().ok().flatten().is_some()),
        "wrk did not finish"
    );
    WrkRun::parse(std::fs::read_to_string(out).unwrap_or_default())
}

impl WrkRun {
    /// The figures of a wrk report.
    pub fn parse(report: String) -> WrkRun {
        let num_after = |key: &str| -> Vec<u64> {
            report
                .lines()
                .find(|l| l.contains(key))
                .map(|l| {
                    l.replace(',', " ")
                        .split_whitespace()
                        .filter_map(|w| w.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        WrkRun {
            requests: num_after("requests in").first().copied().unwrap_or(0),
            errors: num_after("Socket errors").iter().sum(),
            non_2xx: num_after("Non-2xx").first().copied().unwrap_or(0),
            report,
        }
    }
}

/// `tcp_reset_on_idle` RSTs the workers of the balancer in `ns` have
/// sent, once their published counters show `want` (they publish a few
/// times a second; waits at most 3 s).
pub fn idle_resets_sent(ns: &Netns, want: u64) -> u64 {
    let sent = || -> u64 {
        status_json(ns)["workers"]
            .as_array()
            .map(|ws| ws.iter().filter_map(|w| w["idle_resets"].as_u64()).sum())
            .unwrap_or(0)
    };
    wait_for(Duration::from_secs(3), || sent() >= want);
    sent()
}
