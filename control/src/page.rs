//! The operator status page served at `GET /`.
//!
//! One self-contained HTML document: inline CSS and vanilla JavaScript, no
//! external assets (the appliance has no internet). It polls
//! `GET /api/v1/status` once a second and renders the header (generation,
//! flows, reloads, last reload error), one card per VIP with its real
//! servers coloured by state, the worker loop counters, the non-zero drop
//! reasons and the neighbour cache. When the API stops answering, a
//! "disconnected" banner says so and the last data stays on screen, dimmed.
//!
//! All data is inserted with `textContent` (never `innerHTML`), so names
//! and error strings from the configuration cannot inject markup.
//!
//! Real-server state colours, used only for the state cells of the reals
//! tables (nothing static on the page uses them):
//! [`COLOUR_UP`] green, [`COLOUR_DRAIN`] / [`COLOUR_DISABLED`] blue,
//! [`COLOUR_DOWN`] red, [`COLOUR_OVERLOADED`] amber.

/// Background of the state cell of a real that is up.
pub const COLOUR_UP: [u8; 3] = [0x2e, 0x9d, 0x4f];
/// Background of the state cell of a real that is draining.
pub const COLOUR_DRAIN: [u8; 3] = [0x2f, 0x6f, 0xd6];
/// Background of the state cell of a real disabled by the operator.
pub const COLOUR_DISABLED: [u8; 3] = COLOUR_DRAIN;
/// Background of the state cell of a real that is down.
pub const COLOUR_DOWN: [u8; 3] = [0xd6, 0x45, 0x45];
/// Background of the state cell of a real at its `max_conns`.
pub const COLOUR_OVERLOADED: [u8; 3] = [0xd9, 0x8e, 0x04];

/// Content type to serve [`STATUS_PAGE`] with.
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// The page's bytes, for a [`crate::api::Handler`].
pub fn status_page() -> &'static [u8] {
    STATUS_PAGE.as_bytes()
}

/// The status page: HTML with inline CSS and JavaScript.
pub const STATUS_PAGE: &str = r###"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ferrolb status</title>
<style>
:root {
  --fg: #1d232b; --muted: #5d6875; --line: #d9dee4; --bg: #eef1f4; --card: #ffffff;
  --head: #1f2a36;
}
* { box-sizing: border-box; }
html, body { margin: 0; padding: 0; }
body { font: 13px/1.35 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
  color: var(--fg); background: var(--bg); }
.num, td.n, th.n { font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; }
.mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; }
header { background: var(--head); color: #e8edf2; padding: 8px 14px; display: flex;
  align-items: center; gap: 22px; flex-wrap: wrap; }
header h1 { font-size: 16px; margin: 0 8px 0 0; letter-spacing: .5px; }
header .kv { display: flex; flex-direction: column; }
header .k { font-size: 10px; text-transform: uppercase; letter-spacing: .6px; color: #9fb0c2; }
header .v { font-size: 15px; font-weight: 600; font-variant-numeric: tabular-nums; }
header .v.warn-h { color: #ffb1a6; }
header .spacer { flex: 1; }
header .updated { font-size: 11px; color: #9fb0c2; text-align: right; }
#reload-error { display: none; margin: 8px 14px 0; padding: 6px 10px; border-radius: 4px;
  background: #fdecec; border: 1px solid #c62828; color: #b71c1c; font-weight: 600; }
#reload-error.show { display: block; }
#banner { display: none; background: #8b1a1a; color: #fff; padding: 8px 14px; font-weight: 700;
  letter-spacing: .3px; }
#banner.show { display: block; }
body.stale main { opacity: .45; }
main { padding: 10px 14px 20px; }
h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .8px; color: var(--muted);
  margin: 14px 0 6px; }
.vips { display: grid; grid-template-columns: repeat(auto-fit, minmax(620px, 1fr)); gap: 10px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 5px; overflow: hidden; }
.card-head { display: flex; align-items: baseline; gap: 10px; padding: 7px 10px;
  border-bottom: 1px solid var(--line); flex-wrap: wrap; }
.card-head .name { font-size: 15px; font-weight: 700; }
.card-head .addr { font-size: 13px; }
.tag { display: inline-block; padding: 0 6px; border-radius: 3px; background: #e4e9ef; color: #33404d;
  font-size: 11px; font-weight: 600; text-transform: uppercase; letter-spacing: .4px; }
.card-head .health { margin-left: auto; font-size: 12px; color: var(--muted); }
.card-head .health.bad { color: #b71c1c; font-weight: 700; }
.stats { display: grid; grid-template-columns: repeat(6, 1fr); border-bottom: 1px solid var(--line); }
.stat { padding: 5px 10px; border-right: 1px solid var(--line); }
.stat:last-child { border-right: 0; }
.stat .k { font-size: 10px; text-transform: uppercase; letter-spacing: .5px; color: var(--muted); }
.stat .v { font-size: 15px; font-weight: 600; font-variant-numeric: tabular-nums; }
.stat .r { font-size: 11px; color: var(--muted); font-variant-numeric: tabular-nums; }
.spark { display: flex; align-items: flex-end; gap: 1px; height: 18px; margin-top: 2px; }
.spark i { display: block; width: 3px; min-height: 1px; background: var(--muted); }
table { border-collapse: collapse; width: 100%; }
th { font-size: 10px; text-transform: uppercase; letter-spacing: .5px; color: var(--muted);
  font-weight: 600; text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
  background: #f6f8fa; white-space: nowrap; }
td { padding: 3px 8px; border-bottom: 1px solid #edf0f3; height: 24px; }
tr:last-child td { border-bottom: 0; }
td.state { width: 112px; padding: 0; }
td.state span { display: block; line-height: 24px; text-align: center; color: #fff; font-weight: 700;
  font-size: 11px; letter-spacing: .8px; text-transform: uppercase; }
.st-up { background: #2e9d4f; }
.st-drain, .st-disabled, .st-removed { background: #2f6fd6; }
.st-down { background: #d64545; }
.st-overloaded { background: #d98e04; }
.st-unknown { background: #7b8794; }
tr.r-down td:not(.state) { background: #fdf1f1; }
tr.r-disabled td:not(.state), tr.r-drain td:not(.state) { color: #56606b; }
.box { background: var(--card); border: 1px solid var(--line); border-radius: 5px; overflow: hidden; }
.row2 { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
.drops { display: flex; flex-wrap: wrap; gap: 6px; padding: 8px 10px; }
.drop { border: 1px solid #e0b4b4; background: #fff6f6; border-radius: 3px; padding: 2px 8px; }
.drop b { font-variant-numeric: tabular-nums; margin-left: 6px; }
.none { color: var(--muted); padding: 8px 10px; }
.warn { color: #b71c1c; font-weight: 700; }
</style>
</head>
<body>
<div id="banner" role="alert"></div>
<header>
  <h1>ferrolb</h1>
  <div class="kv"><span class="k">Generation</span><span class="v" id="h-generation">–</span></div>
  <div class="kv"><span class="k">Flows</span><span class="v" id="h-flows">–</span></div>
  <div class="kv"><span class="k">Reloads</span><span class="v" id="h-reloads">–</span></div>
  <div class="kv"><span class="k">VIPs</span><span class="v" id="h-vips">–</span></div>
  <div class="kv"><span class="k">Reals up</span><span class="v" id="h-reals">–</span></div>
  <div class="kv"><span class="k">Drops</span><span class="v" id="h-drops">–</span></div>
  <span class="spacer"></span>
  <div class="updated" id="h-updated">connecting…</div>
</header>
<div id="reload-error" role="alert"></div>
<main>
  <h2>Virtual services</h2>
  <div class="vips" id="vips"><div class="none">waiting for /api/v1/status…</div></div>
  <h2>Workers</h2>
  <div class="box" id="workers"></div>
  <div class="row2">
    <div><h2>Drops</h2><div class="box" id="drops"></div></div>
    <div><h2>Neighbours</h2><div class="box" id="neighbours"></div></div>
  </div>
</main>
<script>
"use strict";
(function () {
  var API = "/api/v1/status";
  var PERIOD_MS = 1000;
  var TIMEOUT_MS = 2500;
  var STATES = { up: "up", down: "down", drain: "drain", disabled: "disabled", overloaded: "overloaded", removed: "removed" };
  var SPARK_N = 40;     // samples a sparkline keeps (one per poll)
  var spark = {};       // key -> the last SPARK_N rates
  var prev = null;      // { t: ms, v: { key: counter } } of the previous sample
  var cur = null;
  var lastOk = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function isNum(n) { return typeof n === "number" && isFinite(n); }
  function num(n) { return isNum(n) ? n.toLocaleString("en-US") : "–"; }
  function human(n, units, base) {
    if (!isNum(n)) return "–";
    var i = 0, v = n;
    while (Math.abs(v) >= base && i < units.length - 1) { v /= base; i++; }
    var s = i === 0 ? String(Math.round(v)) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0);
    return s + (units[i] ? " " + units[i] : "");
  }
  function bytes(n) { return human(n, ["B", "KiB", "MiB", "GiB", "TiB", "PiB"], 1024); }
  function rateStr(n, unit) { return isNum(n) ? human(n, ["", "k", "M", "G", "T"], 1000) + unit : ""; }
  function hostport(a, p) {
    a = String(a === undefined || a === null ? "?" : a);
    return (a.indexOf(":") >= 0 ? "[" + a + "]" : a) + ":" + (p === undefined || p === null ? "*" : p);
  }
  // Per-second rate of a counter since the previous sample (null on the first).
  function rate(key, value) {
    if (!isNum(value)) return null;
    cur.v[key] = value;
    if (!prev || !(key in prev.v)) return null;
    var dt = (cur.t - prev.t) / 1000;
    var d = value - prev.v[key];
    if (dt <= 0 || d < 0) return null;
    return d / dt;
  }
  // A bar sparkline of the rates of `key` (the newest `r` appended): one
  // bar per poll, heights relative to the largest shown.
  function sparkline(key, r, title) {
    var h = spark[key] || (spark[key] = []);
    if (isNum(r)) { h.push(r); if (h.length > SPARK_N) h.shift(); }
    var box = el("span", "spark");
    box.setAttribute("data-key", key);
    box.setAttribute("data-samples", String(h.length));
    box.title = title + " over the last " + h.length + " s";
    var max = 0;
    h.forEach(function (x) { if (x > max) max = x; });
    h.forEach(function (x) {
      var b = el("i");
      b.style.height = (max > 0 ? Math.round(100 * x / max) : 0) + "%";
      b.setAttribute("data-v", String(Math.round(x)));
      box.appendChild(b);
    });
    return box;
  }
  function cell(tr, text, cls) { var td = el("td", cls, text); tr.appendChild(td); return td; }
  function headRow(table, cols) {
    var thead = el("thead"), tr = el("tr");
    cols.forEach(function (c) {
      var th = el("th", c.charAt(0) === ">" ? "n" : null, c.charAt(0) === ">" ? c.slice(1) : c);
      tr.appendChild(th);
    });
    thead.appendChild(tr);
    table.appendChild(thead);
  }
  function stat(parent, k, v, r, title) {
    var d = el("div", "stat");
    d.appendChild(el("div", "k", k));
    var vv = el("div", "v", v);
    if (title) vv.title = title;
    d.appendChild(vv);
    d.appendChild(el("div", "r", r || "\u00a0"));
    parent.appendChild(d);
    return d;
  }

  function renderHeader(s) {
    $("h-generation").textContent = num(s.generation);
    $("h-flows").textContent = num(s.flows);
    $("h-reloads").textContent = num(s.reloads);
    var vips = Array.isArray(s.vips) ? s.vips : [];
    $("h-vips").textContent = num(vips.length);
    var up = 0, total = 0;
    vips.forEach(function (v) {
      (Array.isArray(v.reals) ? v.reals : []).forEach(function (r) { total++; if (r.state === "up") up++; });
    });
    var hr = $("h-reals");
    hr.textContent = up + " / " + total;
    hr.className = "v" + (up < total ? " warn-h" : "");
    var drops = 0;
    if (s.drops && typeof s.drops === "object") {
      Object.keys(s.drops).forEach(function (k) { if (isNum(s.drops[k])) drops += s.drops[k]; });
    }
    $("h-drops").textContent = num(drops);
    var err = $("reload-error");
    if (s.last_reload_error !== null && s.last_reload_error !== undefined && s.last_reload_error !== "") {
      err.textContent = "Last reload failed: " + String(s.last_reload_error);
      err.className = "show";
    } else {
      err.textContent = "";
      err.className = "";
    }
    document.title = (up < total ? "(" + (total - up) + " not up) " : "") +
      "ferrolb · gen " + num(s.generation) + " · " + num(s.flows) + " flows";
  }

  function renderVip(v) {
    var key = "vip/" + v.name + "/" + v.address + "/" + v.port + "/" + v.protocol;
    var card = el("section", "card");
    var head = el("div", "card-head");
    head.appendChild(el("span", "name", v.name));
    head.appendChild(el("span", "addr mono", hostport(v.address, v.port) + "/" + (v.protocol || "?")));
    head.appendChild(el("span", "tag", v.mode));
    head.appendChild(el("span", "tag", v.scheduler));
    if (v.persistence !== null && v.persistence !== undefined) {
      var p = typeof v.persistence === "object" ? JSON.stringify(v.persistence) : v.persistence;
      head.appendChild(el("span", "tag", "persist " + p));
    }
    var reals = Array.isArray(v.reals) ? v.reals : [];
    var up = 0, byState = {};
    reals.forEach(function (r) {
      var st = String(r.state);
      if (st === "up") up++;
      else byState[st] = (byState[st] || 0) + 1;
    });
    var parts = [up + " of " + reals.length + " reals up"];
    Object.keys(byState).sort().forEach(function (st) { parts.push(byState[st] + " " + st); });
    if (reals.length > 0 && up === 0) parts.push("NO CAPACITY");
    head.appendChild(el("span", "health" + (up === 0 ? " bad" : ""), parts.join(" · ")));
    card.appendChild(head);

    var stats = el("div", "stats");
    var pin = rate(key + "/pin", v.packets_in), bin = rate(key + "/bin", v.bytes_in);
    var pout = rate(key + "/pout", v.packets_out), bout = rate(key + "/bout", v.bytes_out);
    var nf = rate(key + "/nf", v.new_flows);
    stat(stats, "Packets in", num(v.packets_in), rateStr(pin, " pps"))
      .appendChild(sparkline(key + "/pin", pin, "packets in per second"));
    stat(stats, "Bytes in", bytes(v.bytes_in), rateStr(bin === null ? null : bin * 8, " bit/s"), num(v.bytes_in) + " B");
    stat(stats, "Packets out", num(v.packets_out), rateStr(pout, " pps"))
      .appendChild(sparkline(key + "/pout", pout, "packets out per second"));
    stat(stats, "Bytes out", bytes(v.bytes_out), rateStr(bout === null ? null : bout * 8, " bit/s"), num(v.bytes_out) + " B");
    stat(stats, "Active flows", num(v.active_flows), "");
    stat(stats, "New flows", num(v.new_flows), rateStr(nf, " /s"))
      .appendChild(sparkline(key + "/nf", nf, "new flows per second"));
    card.appendChild(stats);

    var t = el("table");
    headRow(t, ["State", "Real", ">Weight", ">Active", ">New", ">Packets", ">pps", ">Bytes", ">bit/s"]);
    var tb = el("tbody");
    if (reals.length === 0) {
      var tr0 = el("tr");
      var td0 = cell(tr0, "no real servers configured", "none");
      td0.colSpan = 9;
      tb.appendChild(tr0);
    }
    reals.forEach(function (r) {
      var st = Object.prototype.hasOwnProperty.call(STATES, r.state) ? STATES[r.state] : "unknown";
      var rk = key + "/real/" + r.address + "/" + r.port;
      var tr = el("tr", "r-" + st);
      var sc = cell(tr, null, "state");
      sc.appendChild(el("span", "st-" + st, st === "unknown" ? String(r.state) : st));
      cell(tr, hostport(r.address, r.port), "mono");
      cell(tr, num(r.weight), "n");
      cell(tr, num(r.active_flows), "n");
      cell(tr, num(r.new_flows), "n");
      cell(tr, num(r.packets), "n");
      cell(tr, rateStr(rate(rk + "/p", r.packets), ""), "n");
      cell(tr, bytes(r.bytes), "n").title = num(r.bytes) + " B";
      var br = rate(rk + "/b", r.bytes);
      cell(tr, rateStr(br === null ? null : br * 8, ""), "n");
      tb.appendChild(tr);
    });
    t.appendChild(tb);
    card.appendChild(t);
    return card;
  }

  function renderWorkers(s) {
    var box = $("workers");
    var ws = Array.isArray(s.workers) ? s.workers : [];
    if (ws.length === 0) { box.replaceChildren(el("div", "none", "no workers reported")); return; }
    var t = el("table");
    headRow(t, ["Worker", ">RX", ">RX pps", ">TX", ">Forwarded", ">Answered", ">To kernel", ">From kernel",
      ">Polls", ">Idle %", ">Busy cycles", ">Flows", ">Generation"]);
    var tb = el("tbody");
    ws.forEach(function (w) {
      var k = "worker/" + w.worker;
      var tr = el("tr");
      cell(tr, w.worker);
      cell(tr, num(w.rx), "n");
      cell(tr, rateStr(rate(k + "/rx", w.rx), ""), "n");
      cell(tr, num(w.tx), "n");
      cell(tr, num(w.forwarded), "n");
      cell(tr, num(w.answered), "n");
      cell(tr, num(w.to_kernel), "n");
      cell(tr, num(w.from_kernel), "n");
      cell(tr, num(w.polls), "n");
      var dp = rate(k + "/polls", w.polls), di = rate(k + "/idle", w.idle_polls);
      var idle = null;
      if (dp !== null && di !== null && dp > 0) idle = 100 * di / dp;
      else if (isNum(w.polls) && w.polls > 0 && isNum(w.idle_polls)) idle = 100 * w.idle_polls / w.polls;
      cell(tr, idle === null ? "–" : idle.toFixed(1), "n");
      cell(tr, num(w.busy_cycles), "n");
      cell(tr, num(w.flows), "n");
      var g = cell(tr, num(w.generation), "n");
      if (isNum(s.generation) && isNum(w.generation) && w.generation !== s.generation) {
        g.className = "n warn";
        g.title = "this worker has not picked up generation " + s.generation + " yet";
      }
      tb.appendChild(tr);
    });
    t.appendChild(tb);
    box.replaceChildren(t);
  }

  function renderDrops(s) {
    var box = $("drops");
    var d = s.drops && typeof s.drops === "object" ? s.drops : {};
    var keys = Object.keys(d).filter(function (k) { return isNum(d[k]) && d[k] !== 0; });
    keys.sort(function (a, b) { return d[b] - d[a]; });
    if (keys.length === 0) { box.replaceChildren(el("div", "none", "no drops")); return; }
    var wrap = el("div", "drops");
    keys.forEach(function (k) {
      var c = el("span", "drop", k.replace(/_/g, " "));
      c.appendChild(el("b", null, num(d[k])));
      var r = rate("drop/" + k, d[k]);
      if (r) c.appendChild(el("span", null, " (" + rateStr(r, "/s") + ")"));
      wrap.appendChild(c);
    });
    box.replaceChildren(wrap);
  }

  function renderNeighbours(s) {
    var box = $("neighbours");
    var ns = Array.isArray(s.neighbours) ? s.neighbours : [];
    if (ns.length === 0) { box.replaceChildren(el("div", "none", "no neighbours")); return; }
    var t = el("table");
    headRow(t, ["IP", "MAC", "Kind"]);
    var tb = el("tbody");
    ns.forEach(function (n) {
      var tr = el("tr");
      cell(tr, n.ip, "mono");
      cell(tr, n.mac, "mono");
      cell(tr, n.permanent ? "permanent" : "learned");
      tb.appendChild(tr);
    });
    t.appendChild(tb);
    box.replaceChildren(t);
  }

  function render(s) {
    cur = { t: Date.now(), v: {} };
    renderHeader(s);
    var vips = Array.isArray(s.vips) ? s.vips : [];
    var box = $("vips");
    if (vips.length === 0) box.replaceChildren(el("div", "none", "no virtual services configured"));
    else box.replaceChildren.apply(box, vips.map(renderVip));
    renderWorkers(s);
    renderDrops(s);
    renderNeighbours(s);
    prev = cur;
  }

  function connected() {
    lastOk = new Date();
    $("banner").className = "";
    document.body.className = "";
    $("h-updated").textContent = "updated " + lastOk.toLocaleTimeString();
  }
  function disconnected(why) {
    var b = $("banner");
    b.textContent = "DISCONNECTED — " + API + ": " + why +
      (lastOk ? " — showing data from " + lastOk.toLocaleTimeString() : " — no data yet") +
      " — retrying every second";
    b.className = "show";
    document.body.className = "stale";
    $("h-updated").textContent = "disconnected";
    prev = null;
  }

  function poll() {
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctl) ctl.abort(); }, TIMEOUT_MS);
    fetch(API, { cache: "no-store", signal: ctl ? ctl.signal : undefined })
      .then(function (resp) {
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.json();
      })
      .then(function (s) {
        if (!s || typeof s !== "object") throw new Error("not a status object");
        render(s);
        connected();
      })
      .catch(function (e) {
        disconnected(e && e.name === "AbortError" ? "timed out" : String(e && e.message ? e.message : e));
      })
      .then(function () {
        clearTimeout(timer);
        setTimeout(poll, PERIOD_MS);
      });
  }
  poll();
})();
</script>
</body>
</html>
"###;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_self_contained_and_escapes() {
        let p = STATUS_PAGE;
        assert!(p.starts_with("<!DOCTYPE html>"));
        for bad in [
            "<link",
            "src=",
            "@import",
            "url(",
            "http://",
            "https://",
            "innerHTML",
        ] {
            assert!(!p.contains(bad), "page contains {bad:?}");
        }
        assert!(p.contains("/api/v1/status"));
        assert_eq!(status_page(), p.as_bytes());
    }

    #[test]
    fn state_colours_are_only_in_the_state_classes() {
        for c in [
            COLOUR_UP,
            COLOUR_DRAIN,
            COLOUR_DISABLED,
            COLOUR_DOWN,
            COLOUR_OVERLOADED,
        ] {
            let hex = format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2]);
            let uses: Vec<_> = STATUS_PAGE
                .lines()
                .filter(|l| l.contains(&hex))
                .map(str::trim)
                .collect();
            assert_eq!(uses.len(), 1, "{hex}: {uses:?}");
            assert!(uses[0].starts_with(".st-"), "{hex}: {uses:?}");
        }
    }
}
