//! The configuration loader (`control::config::parse`) on arbitrary text.
//!
//! Checks: no panic; a refused file has at least one error, and every
//! error names the file and carries a message; an accepted one survives
//! the snapshot builder's validation of its services.
#![no_main]

use forwarder::service::RealState;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match control::config::parse(FILE, text) {
        Ok(cfg) => {
            // What the loader accepts, the snapshot builder must accept
            // too (a reload would otherwise pass `check` and then fail).
            if cfg.vips.len() <= 4 {
                let up = |_: &str, _: std::net::IpAddr, _: u16| RealState::Up;
                if let Err(e) = control::snapshot::build(&cfg, 1, &[], &up, true) {
                    panic!("accepted config refused by the snapshot builder: {e}");
                }
            }
        }
        Err(errs) => {
            assert!(!errs.0.is_empty(), "refused without an error");
            for e in &errs.0 {
                assert_eq!(e.file, FILE);
                assert!(
                    !e.message.trim().is_empty(),
                    "error without a message: {e:?}"
                );
                if let Some(l) = e.line {
                    assert!(
                        l >= 1 && l <= text.lines().count().max(1) + 1,
                        "line {l} of {e:?}"
                    );
                }
                assert!(!e.to_string().is_empty());
            }
        }
    }
});
