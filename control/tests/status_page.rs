//! The status page in a real browser: Debian's headless Chromium loads the
//! page from `control::api::Server`, the page fetches a canned
//! `/api/v1/status`, and the screenshot must show the state colours of the
//! four reals (up, drain, disabled, down) while the DOM must carry their
//! addresses and states. Chromium is required: without it this test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use control::api::{Handler, Server};
use control::page;

const CHROMIUM: &str = "/usr/bin/chromium";
const TIMEOUT: Duration = Duration::from_secs(60);
const MIN_PIXELS: usize = 500;
/// The disconnected banner, as the DOM serialises it once shown.
const BANNER: &str = "<div id=\"banner\" role=\"alert\" class=\"show\">";

const STATUS: &str = r#"{"generation":7,"reloads":2,"last_reload_error":null,"flows":29,
 "vips":[{"name":"web-frontend","address":"192.0.2.100","protocol":"tcp","port":80,"mode":"dr",
   "scheduler":"maglev","persistence":null,
   "packets_in":174321,"bytes_in":98765432,"packets_out":0,"bytes_out":0,"new_flows":1029,"active_flows":29,
   "reals":[
    {"address":"192.0.2.21","port":80,"weight":3,"state":"up","packets":91234,"bytes":4311000,"new_flows":612,"active_flows":19},
    {"address":"192.0.2.22","port":80,"weight":1,"state":"drain","packets":54000,"bytes":3100000,"new_flows":301,"active_flows":10},
    {"address":"192.0.2.23","port":80,"weight":1,"state":"disabled","packets":0,"bytes":0,"new_flows":0,"active_flows":0},
    {"address":"192.0.2.24","port":80,"weight":2,"state":"down","packets":29087,"bytes":1200000,"new_flows":116,"active_flows":0}]}],
 "workers":[{"worker":0,"rx":174345,"tx":174321,"forwarded":174297,"answered":24,"to_kernel":12,"from_kernel":12,
   "polls":9000000,"idle_polls":8700000,"busy_cycles":123456789,"flows":29,"generation":7}],
 "drops":{"malformed":0,"not_ours":24},
 "neighbours":[{"ip":"192.0.2.21","mac":"02:00:00:00:00:21","permanent":false},
   {"ip":"192.0.2.1","mac":"02:00:00:00:00:01","permanent":true}]}"#;

/// Serves the page at `/` and [`STATUS`] (or a 500 while `fail` is set) at
/// `/api/v1/status`.
fn server(fail: Arc<AtomicBool>) -> Server {
    let h: Arc<Handler> = Arc::new(move |m: &str, p: &str, _b: &[u8]| match (m, p) {
        ("GET", "/") => (200, page::CONTENT_TYPE, page::status_page().to_vec()),
        ("GET", "/api/v1/status") if fail.load(Ordering::Relaxed) => {
            (500, "text/plain", b"boom\n".to_vec())
        }
        ("GET", "/api/v1/status") => (200, "application/json", STATUS.as_bytes().to_vec()),
        _ => (404, "text/plain", b"not found\n".to_vec()),
    });
    Server::start("127.0.0.1:0".parse().unwrap(), None, h).expect("start API server")
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf()
}

/// A fresh, empty directory under target/tmp.
fn fresh_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("chromium-{tag}-{}-{nanos}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs headless Chromium on `url` with `extra` arguments, bounded by
/// [`TIMEOUT`]; returns its stdout.
fn chromium(url: &str, extra: &[String], tag: &str) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: this test needs Debian's headless Chromium \
         (apt-get install -y chromium; scripts/setup installs it)"
    );
    let profile = fresh_dir(tag);
    let out_path = profile.with_extension("stdout");
    let err_path = profile.with_extension("stderr");
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--force-color-profile=srgb",
            "--hide-scrollbars",
            "--window-size=1200,900",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {CHROMIUM}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium ({tag}) still running after {TIMEOUT:?}; killed. stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&profile);
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    assert!(
        status.success(),
        "chromium ({tag}) failed: {status}\n{stderr}"
    );
    stdout
}

/// Counts the pixels of each colour of `colours` in the PNG at `path`.
fn count_colours(path: &Path, colours: &[[u8; 3]]) -> (Vec<usize>, u32, u32) {
    let mut dec = png::Decoder::new(std::fs::File::open(path).unwrap());
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let mut counts = vec![0; colours.len()];
    for px in buf[..info.buffer_size()].chunks_exact(step) {
        for (i, c) in colours.iter().enumerate() {
            if px[..3] == c[..] {
                counts[i] += 1;
            }
        }
    }
    (counts, info.width, info.height)
}

#[test]
fn status_page_renders_live_api_data_in_chromium() {
    let fail = Arc::new(AtomicBool::new(false));
    let srv = server(Arc::clone(&fail));
    let url = format!("http://{}/", srv.addr());

    // 1. Screenshot: the state colours come only from the API's reals.
    let png_path = target_dir().join("status_page.png");
    let _ = std::fs::remove_file(&png_path);
    chromium(
        &url,
        &[format!("--screenshot={}", png_path.display())],
        "shot",
    );
    assert!(png_path.exists(), "no screenshot at {}", png_path.display());
    println!("status page screenshot: {}", png_path.display());
    let (counts, w, h) = count_colours(
        &png_path,
        &[page::COLOUR_UP, page::COLOUR_DRAIN, page::COLOUR_DOWN],
    );
    println!(
        "{w}x{h}: green {}, blue {}, red {}",
        counts[0], counts[1], counts[2]
    );
    for (name, n) in ["green (up)", "blue (drain, disabled)", "red (down)"]
        .iter()
        .zip(&counts)
    {
        assert!(
            *n >= MIN_PIXELS,
            "only {n} pixels of {name} in {}",
            png_path.display()
        );
    }
    // Two blue rows (drain and disabled) against one green and one red.
    assert!(
        counts[1] > counts[0] * 3 / 2 && counts[1] > counts[2] * 3 / 2,
        "{counts:?}"
    );

    // 2. The rendered DOM carries the VIP, the four reals and their states.
    let dom = chromium(&url, &["--dump-dom".to_string()], "dom");
    for want in [
        "web-frontend",
        "192.0.2.100:80/tcp",
        "192.0.2.21:80",
        "192.0.2.22:80",
        "192.0.2.23:80",
        "192.0.2.24:80",
        ">up<",
        ">drain<",
        ">disabled<",
        ">down<",
        "class=\"st-up\"",
        "class=\"st-drain\"",
        "class=\"st-disabled\"",
        "class=\"st-down\"",
        "maglev",
        "174,321",
        "not ours",
        "02:00:00:00:00:21",
    ] {
        assert!(
            dom.contains(want),
            "{want:?} not in the rendered DOM:\n{dom}"
        );
    }
    assert!(!dom.contains(BANNER), "banner shown:\n{dom}");

    // 3. With the API failing, the page says it is disconnected.
    fail.store(true, Ordering::Relaxed);
    let dom = chromium(&url, &["--dump-dom".to_string()], "down");
    assert!(
        dom.contains(&format!("{BANNER}DISCONNECTED — /api/v1/status: HTTP 500")),
        "no disconnected banner:\n{dom}"
    );
    assert!(!dom.contains("class=\"st-up\""));
}

/// Each VIP card draws its packets-in rate as a sparkline that grows by
/// one bar per poll: with a canned status whose counter climbs faster at
/// every poll, Chromium's DOM holds a bar per poll after the first, in
/// rising order, the last one full height.
#[test]
fn sparklines_follow_each_vips_rates_live() {
    use std::sync::atomic::AtomicU64;
    let polls = Arc::new(AtomicU64::new(0));
    let p2 = Arc::clone(&polls);
    let h: Arc<Handler> = Arc::new(move |m: &str, p: &str, _b: &[u8]| match (m, p) {
        ("GET", "/") => (200, page::CONTENT_TYPE, page::status_page().to_vec()),
        ("GET", "/api/v1/status") => {
            let k = p2.fetch_add(1, Ordering::Relaxed);
            let packets = 1000 * k * (k + 1) / 2;
            let body = STATUS.replace(
                "\"packets_in\":174321",
                &format!("\"packets_in\":{packets}"),
            );
            (200, "application/json", body.into_bytes())
        }
        _ => (404, "text/plain", b"not found\n".to_vec()),
    });
    let srv = Server::start("127.0.0.1:0".parse().unwrap(), None, h).expect("server");
    let url = format!("http://{}/", srv.addr());
    let dom = chromium(
        &url,
        &[
            "--dump-dom".to_string(),
            "--virtual-time-budget=8000".to_string(),
        ],
        "spark",
    );
    let n = polls.load(Ordering::Relaxed);
    let key = "data-key=\"vip/web-frontend/192.0.2.100/80/tcp/pin\"";
    let at = dom
        .find(key)
        .unwrap_or_else(|| panic!("no packets-in sparkline after {n} polls:\n{dom}"));
    let rest = &dom[at..];
    let span = &rest[..rest.find("</span>").expect("sparkline closed")];
    let values: Vec<u64> = span
        .split("data-v=\"")
        .skip(1)
        .filter_map(|x| x.split('"').next()?.parse().ok())
        .collect();
    let heights: Vec<&str> = span
        .split("height: ")
        .skip(1)
        .filter_map(|x| x.split(';').next())
        .collect();
    println!("{n} polls; sparkline rates {values:?}, heights {heights:?}");
    assert!(values.len() >= 4, "{n} polls, bars {values:?}:\n{span}");
    // One bar per poll after the first (the last poll may still have been
    // in flight when the DOM was taken).
    assert!(
        values.len() as u64 + 2 >= n,
        "{n} polls, {} bars",
        values.len()
    );
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "rates must rise: {values:?}"
    );
    assert_eq!(heights.last(), Some(&"100%"), "{heights:?}");
    assert!(span.contains(&format!("data-samples=\"{}\"", values.len())));
}
