//! The admin API's request checks (`control::api::parse_head`: the head
//! parsed by httparse, the parser hyper serves with, then the checks the
//! server makes, `control::api::admit`) and router
//! (`control::admin::route`) on arbitrary bytes.
//!
//! Checks: no panic; a head is accepted or refused with a 4xx; an accepted
//! one is routed to an answer with a status of 200 to 599 and a bounded
//! body, and a listing request reaches the back end with its limit in
//! range.
#![no_main]

use control::admin::conns::{ConnsPage, ConnsRequest, MAX_LIMIT};
use control::admin::{route, Backend, Command, CommandError, Status};
use libfuzzer_sys::fuzz_target;

/// Answers every command; checks what a listing asks.
struct Fake;

impl Backend for Fake {
    fn status(&self) -> Status {
        Status::default()
    }
    fn command(&self, _cmd: Command) -> Result<String, CommandError> {
        Ok("done".into())
    }
    fn conns(&self, req: &ConnsRequest) -> Result<ConnsPage, CommandError> {
        assert!((1..=MAX_LIMIT).contains(&req.limit), "{req:?}");
        Ok(ConnsPage::default())
    }
}

fuzz_target!(|data: &[u8]| {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data.len(), |p| p + 4);
    match control::api::parse_head(&data[..end], Some("t0ken")) {
        Ok(h) => {
            assert!(h.length <= control::api::MAX_REQUEST);
            let (code, _, body) = route(&h.method, &h.path, &Fake);
            assert!((200..=599).contains(&code), "{code} for {h:?}");
            assert!(body.len() < 1 << 20, "{} bytes for {h:?}", body.len());
        }
        Err((code, _, _)) => assert!((400..=499).contains(&code), "refused with {code}"),
    }
});
