//! The HTTP/1.x response side of the `http` check, as a pure push parser.
//!
//! [`Response`] is fed the bytes of a response as they arrive and says, as
//! early as it can, whether the check passed: a status other than the
//! expected one fails on the status line alone; the expected status passes
//! as soon as the status line is in when no body is expected; otherwise the
//! body is decoded (`Transfer-Encoding: chunked`, `Content-Length`, or up to
//! the end of the connection) and the check passes as soon as it contains
//! the expected text.
//!
//! It never holds more than what it was fed: the caller bounds that (the
//! checker stops at [`MAX_RESPONSE`] bytes and calls [`Response::limit`]), so
//! a hostile or broken server cannot make it grow without end. No I/O and no
//! clock here: the caller owns the socket and the timeout.

/// The most bytes of one response the checker reads (status line, headers
/// and body on the wire, chunk framing included).
pub const MAX_RESPONSE: usize = 64 * 1024;

/// Where the parser is, for the reason of a timeout or an early close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing received yet.
    Nothing,
    /// Inside the status line.
    StatusLine,
    /// Inside the header fields.
    Headers,
    /// Inside the body.
    Body,
}

impl Phase {
    /// What the check was waiting for, for a reason string (with a
    /// leading space).
    pub fn waiting_for(self) -> &'static str {
        match self {
            Phase::Nothing => " waiting for a response",
            Phase::StatusLine => " reading the status line",
            Phase::Headers => " reading the headers",
            Phase::Body => " reading the body",
        }
    }
}

/// How the body ends.
#[derive(Debug)]
enum Framing {
    /// No body (204, 304, 1xx).
    Empty,
    /// `Content-Length`: this many bytes still to come.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunked),
    /// Up to the end of the connection.
    Close,
}

#[derive(Debug)]
enum Stage {
    /// Collecting the status line and header fields (kept in `head`).
    Head,
    /// Decoding the body into `body`.
    Body(Framing),
}

/// A verdict: `Ok(description)` or `Err(reason)`, both for people.
pub type Verdict = Result<String, String>;

/// The parser for one response. See the module doc.
#[derive(Debug)]
pub struct Response<'a> {
    expect_status: u16,
    expect_body: Option<&'a str>,
    stage: Stage,
    /// The status line and headers seen so far (never more than was fed).
    head: Vec<u8>,
    /// The status, once the status line is parsed.
    status: Option<u16>,
    /// Decoded body so far.
    body: Vec<u8>,
    /// `body[..searched]` is known not to hold the expected text, except
    /// for a match straddling the boundary (searching restarts a little before).
    searched: usize,
}

impl<'a> Response<'a> {
    /// A parser expecting `expect_status` and, if given, a body containing
    /// `expect_body`.
    pub fn new(expect_status: u16, expect_body: Option<&'a str>) -> Self {
        Response {
            expect_status,
            expect_body,
            stage: Stage::Head,
            head: Vec::new(),
            status: None,
            body: Vec::new(),
            searched: 0,
        }
    }

    /// Where the parser is.
    pub fn phase(&self) -> Phase {
        match self.stage {
            Stage::Body(_) => Phase::Body,
            Stage::Head if self.head.is_empty() => Phase::Nothing,
            Stage::Head if self.status.is_none() => Phase::StatusLine,
            Stage::Head => Phase::Headers,
        }
    }

    /// Feeds the next bytes; `Some` once the verdict is known.
    pub fn feed(&mut self, data: &[u8]) -> Option<Verdict> {
        match &mut self.stage {
            Stage::Head => {
                let start = self.head.len();
                self.head.extend_from_slice(data);
                self.parse_head(start)
            }
            Stage::Body(_) => self.feed_body(data),
        }
    }

    /// The connection ended (orderly close) before a verdict.
    pub fn eof(&mut self) -> Verdict {
        match &self.stage {
            Stage::Head if self.head.is_empty() => {
                Err("http: connection closed without a response".into())
            }
            Stage::Head if self.status.is_none() => Err(format!(
                "http: connection closed inside the status line {}",
                quote(&self.head)
            )),
            Stage::Head => Err("http: connection closed inside the headers".into()),
            Stage::Body(Framing::Close) => self.lacks(""),
            Stage::Body(_) => self.lacks(" (connection closed before the end of the body)"),
        }
    }

    /// [`MAX_RESPONSE`] bytes were fed without a verdict.
    pub fn limit(&mut self) -> Verdict {
        let kib = MAX_RESPONSE / 1024;
        match self.stage {
            Stage::Head if self.status.is_none() => Err(format!(
                "http: no status line in the first {kib} KiB of the response"
            )),
            Stage::Head => Err(format!(
                "http: headers longer than the {kib} KiB read limit"
            )),
            Stage::Body(_) => self.lacks(&format!(" in the first {kib} KiB of the response")),
        }
    }

    fn lacks(&self, detail: &str) -> Verdict {
        let want = self.expect_body.unwrap_or_default();
        Err(format!("http: body lacks {want:?}{detail}"))
    }

    fn success(&self) -> Verdict {
        let status = self.status.unwrap_or(self.expect_status);
        Ok(match self.expect_body {
            Some(b) => format!("http: status {status}, body has {b:?}"),
            None => format!("http: status {status}"),
        })
    }

    /// Parses what `head` holds; `start` is where the new bytes begin.
    fn parse_head(&mut self, start: usize) -> Option<Verdict> {
        if self.status.is_none() {
            // Fail fast on something that is not HTTP at all.
            let n = self.head.len().min(5);
            if self.head[..n] != b"HTTP/"[..n] {
                let line = self.head.split(|b| *b == b'\n').next().unwrap_or_default();
                return Some(Err(malformed_status(trim_cr(line))));
            }
            let eol = self.head.iter().position(|b| *b == b'\n')?;
            let line = trim_cr(&self.head[..eol]);
            let status = match parse_status_line(line) {
                Some(s) => s,
                None => return Some(Err(malformed_status(line))),
            };
            self.status = Some(status);
            if status != self.expect_status {
                return Some(Err(format!(
                    "http: status {status}, expected {}",
                    self.expect_status
                )));
            }
            if self.expect_body.is_none() {
                return Some(self.success());
            }
        }
        // Look for the empty line that ends the header section; it may
        // straddle the previous feed, so back up three bytes.
        let from = start.saturating_sub(3);
        let end = find(&self.head[from..], b"\n\r\n")
            .map(|i| (from + i + 1, 2))
            .into_iter()
            .chain(find(&self.head[from..], b"\n\n").map(|i| (from + i + 1, 1)))
            .min_by_key(|(at, _)| *at);
        let (blank, blank_len) = end?;
        let framing = match self.framing(blank) {
            Ok(f) => f,
            Err(e) => return Some(Err(e)),
        };
        let rest = self.head.split_off(blank + blank_len);
        self.stage = Stage::Body(framing);
        self.feed_body(&rest)
    }

    /// Reads the header fields in `head[..end]` (status line included).
    fn framing(&self, end: usize) -> Result<Framing, String> {
        let status = self.status.unwrap_or(self.expect_status);
        let mut length: Option<u64> = None;
        let mut chunked = false;
        for raw in self.head[..end].split(|b| *b == b'\n').skip(1) {
            let line = trim_cr(raw);
            if line.is_empty() {
                continue;
            }
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                return Err(format!("http: malformed header line {}", quote(line)));
            };
            let name = &line[..colon];
            let value = String::from_utf8_lossy(&line[colon + 1..]);
            let value = value.trim();
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // The last coding decides (RFC 9112 6.3).
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            } else if name.eq_ignore_ascii_case(b"content-length") {
                let n: u64 = value
                    .parse()
                    .map_err(|_| format!("http: invalid Content-Length {value:?}"))?;
                if length.is_some_and(|l| l != n) {
                    return Err("http: conflicting Content-Length headers".into());
                }
                length = Some(n);
            }
        }
        Ok(if status < 200 || status == 204 || status == 304 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked(Chunked::default())
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::Close
        })
    }

    fn feed_body(&mut self, data: &[u8]) -> Option<Verdict> {
        let Stage::Body(framing) = &mut self.stage else {
            return None;
        };
        let done = match framing {
            Framing::Empty => true,
            Framing::Close => {
                self.body.extend_from_slice(data);
                false
            }
            Framing::Length(left) => {
                let take = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                self.body.extend_from_slice(&data[..take]);
                *left -= take as u64;
                *left == 0
            }
            Framing::Chunked(c) => match c.feed(data, &mut self.body) {
                Ok(done) => done,
                Err(e) => return Some(Err(e)),
            },
        };
        let want = self.expect_body.unwrap_or_default().as_bytes();
        let from = self.searched.saturating_sub(want.len());
        if find(&self.body[from..], want).is_some() {
            return Some(self.success());
        }
        self.searched = self.body.len();
        done.then(|| self.lacks(""))
    }
}

/// `HTTP/1.x SSS[ reason]` -> `SSS`.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let (version, rest) = rest.split_at(rest.iter().position(|b| *b == b' ')?);
    if version.len() != 3 || !version[0].is_ascii_digit() || version[1] != b'.' {
        return None;
    }
    let rest = &rest[1..];
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || !matches!(rest.get(3), None | Some(b' ')) {
        return None;
    }
    let code = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    (100..=999).contains(&code).then_some(code)
}

fn malformed_status(line: &[u8]) -> String {
    format!("http: malformed status line {}", quote(line))
}

/// A short, printable rendering of bytes from the network.
fn quote(b: &[u8]) -> String {
    const MAX: usize = 64;
    let s = String::from_utf8_lossy(&b[..b.len().min(MAX)]);
    let more = if b.len() > MAX { "..." } else { "" };
    format!("{s:?}{more}")
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Index of the first `needle` in `hay` (an empty needle is at 0).
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Incremental decoder of `Transfer-Encoding: chunked` (RFC 9112 7.1).
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    /// The partial size or trailer line.
    line: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line.
    #[default]
    Size,
    /// This many data bytes still to come.
    Data(u64),
    /// The CRLF after chunk data; `true` once the CR is seen.
    DataEnd(bool),
    /// Trailer fields, up to an empty line.
    Trailer,
    /// The last chunk and trailers are in.
    Done,
}

impl Chunked {
    /// Decodes `input` into `out`; `Ok(true)` once the body is complete.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        while !input.is_empty() && self.state != ChunkState::Done {
            match self.state {
                ChunkState::Size | ChunkState::Trailer => {
                    let Some(eol) = input.iter().position(|b| *b == b'\n') else {
                        self.line.extend_from_slice(input);
                        return Ok(false);
                    };
                    self.line.extend_from_slice(&input[..eol]);
                    input = &input[eol + 1..];
                    let line = std::mem::take(&mut self.line);
                    let line = trim_cr(&line);
                    self.state = match self.state {
                        ChunkState::Size => match parse_chunk_size(line) {
                            Some(0) => ChunkState::Trailer,
                            Some(n) => ChunkState::Data(n),
                            None => {
                                return Err(format!(
                                    "http: malformed chunk size line {}",
                                    quote(line)
                                ))
                            }
                        },
                        _ if line.is_empty() => ChunkState::Done,
                        _ => ChunkState::Trailer,
                    };
                }
                ChunkState::Data(left) => {
                    let take = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd(false)
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd(cr) => {
                    self.state = match input[0] {
                        b'\r' if !cr => ChunkState::DataEnd(true),
                        b'\n' => ChunkState::Size,
                        _ => return Err("http: chunk data not followed by CRLF".into()),
                    };
                    input = &input[1..];
                }
                ChunkState::Done => {}
            }
        }
        Ok(self.state == ChunkState::Done)
    }
}

/// `1a3f[;ext...]` -> 0x1a3f; `None` if not hex or too large.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let end = line
        .iter()
        .position(|b| *b == b';' || *b == b' ' || *b == b'\t')
        .unwrap_or(line.len());
    let hex = &line[..end];
    if hex.is_empty() || hex.len() > 15 {
        return None;
    }
    let s = std::str::from_utf8(hex).ok()?;
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `parts` one after the other; the verdict and how many parts it took.
    fn run(status: u16, body: Option<&str>, parts: &[&[u8]]) -> (Verdict, usize) {
        let mut r = Response::new(status, body);
        for (i, p) in parts.iter().enumerate() {
            if let Some(v) = r.feed(p) {
                return (v, i + 1);
            }
        }
        (r.eof(), parts.len())
    }

    /// Feeds `whole` one byte at a time, to cross every boundary.
    fn bytewise(status: u16, body: Option<&str>, whole: &[u8]) -> Verdict {
        let parts: Vec<&[u8]> = whole.chunks(1).collect();
        run(status, body, &parts).0
    }

    #[test]
    fn status_lines() {
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"HTTP/1.1 200 OK", Some(200)),
            (b"HTTP/1.0 404 Not Found", Some(404)),
            (b"HTTP/1.1 503", Some(503)),
            (b"HTTP/1.1 200 ", Some(200)),
            (b"HTTP/2.0 200 OK", Some(200)),
            (b"HTTP/1.1 20 OK", None),
            (b"HTTP/1.1 2000 OK", None),
            (b"HTTP/1.1 abc OK", None),
            (b"HTTP/1.1200 OK", None),
            (b"HTTP/11 200 OK", None),
            (b"HTTP/1.1 099 OK", None),
            (b"ICY 200 OK", None),
            (b"", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_status_line(line),
                *want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn verdicts() {
        type Case<'a> = (
            &'a str,
            u16,
            Option<&'a str>,
            &'a [u8],
            Result<&'a str, &'a str>,
        );
        let cases: &[Case] = &[
            ("status only", 200, None, b"HTTP/1.1 200 OK\r\n", Ok("http: status 200")),
            ("404", 200, None, b"HTTP/1.1 404 Not Found\r\n\r\n", Err("http: status 404, expected 200")),
            ("expect 404", 404, None, b"HTTP/1.1 404 Not Found\r\n\r\n", Ok("http: status 404")),
            ("body by length", 200, Some("OK"), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK", Ok("http: status 200, body has \"OK\"")),
            ("wrong body", 200, Some("OK"), b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nFAIL", Err("http: body lacks \"OK\"")),
            ("length stops reading", 200, Some("OK"), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nNOOK", Err("http: body lacks \"OK\"")),
            ("to close", 200, Some("ready"), b"HTTP/1.0 200 OK\r\n\r\nall ready\n", Ok("http: status 200, body has \"ready\"")),
            ("to close, lacking", 200, Some("ready"), b"HTTP/1.0 200 OK\r\n\r\nnot yet\n", Err("http: body lacks \"ready\"")),
            ("bare LF", 200, Some("OK"), b"HTTP/1.1 200 OK\nContent-Length: 3\n\nOK\n", Ok("http: status 200, body has \"OK\"")),
            ("chunked", 200, Some("hello world"), b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-T: 1\r\n\r\n", Ok("http: status 200, body has \"hello world\"")),
            ("chunked lacking", 200, Some("bye"), b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Err("http: body lacks \"bye\"")),
            ("chunked wins over length", 200, Some("abc"), b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", Ok("http: status 200, body has \"abc\"")),
            ("bad chunk size", 200, Some("OK"), b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nOK\r\n0\r\n\r\n", Err("http: malformed chunk size line \"zz\"")),
            ("chunk without CRLF", 200, Some("OK"), b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nOKK\r\n0\r\n\r\n", Err("http: chunk data not followed by CRLF")),
            ("204 has no body", 204, Some("OK"), b"HTTP/1.1 204 No Content\r\n\r\nOK", Err("http: body lacks \"OK\"")),
            ("bad status", 200, None, b"HTTP/1.1 OK 200\r\n", Err("http: malformed status line \"HTTP/1.1 OK 200\"")),
            ("bad length", 200, Some("OK"), b"HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\nOK", Err("http: invalid Content-Length \"12x\"")),
            ("two lengths", 200, Some("OK"), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nOK", Err("http: conflicting Content-Length headers")),
            ("header without colon", 200, Some("OK"), b"HTTP/1.1 200 OK\r\nbroken\r\n\r\nOK", Err("http: malformed header line \"broken\"")),
            ("short body", 200, Some("OK"), b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nnope", Err("http: body lacks \"OK\" (connection closed before the end of the body)")),
            ("nothing", 200, None, b"", Err("http: connection closed without a response")),
            ("cut headers", 200, Some("OK"), b"HTTP/1.1 200 OK\r\nServer: x", Err("http: connection closed inside the headers")),
            ("cut status", 200, None, b"HTTP/1.1 2", Err("http: connection closed inside the status line \"HTTP/1.1 2\"")),
            ("empty expected body", 200, Some(""), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Ok("http: status 200, body has \"\"")),
        ];
        for (name, status, body, whole, want) in cases {
            let want = want.map(str::to_string).map_err(str::to_string);
            assert_eq!(
                run(*status, *body, &[whole]).0,
                want,
                "{name}, in one piece"
            );
            assert_eq!(
                bytewise(*status, *body, whole),
                want,
                "{name}, byte by byte"
            );
        }
    }

    #[test]
    fn decides_as_early_as_it_can() {
        // A wrong status fails on the status line; the headers never come.
        let (v, n) = run(200, None, &[b"HTTP/1.1 500 Oops\r\n", b"never read"]);
        assert_eq!(v, Err("http: status 500, expected 200".into()));
        assert_eq!(n, 1);
        // Without an expected body the status line is enough.
        let (v, n) = run(200, None, &[b"HTTP/1.1 200 OK\r\n", b"X: y\r\n\r\n"]);
        assert!(v.is_ok());
        assert_eq!(n, 1);
        // The expected text ends the read even if the body goes on.
        let (v, n) = run(200, Some("OK"), &[b"HTTP/1.1 200 OK\r\n\r\nxxOK", b"more"]);
        assert!(v.is_ok());
        assert_eq!(n, 1);
        // Straddling two reads.
        let (v, n) = run(
            200,
            Some("ready"),
            &[b"HTTP/1.1 200 OK\r\n\r\nre", b"ad", b"y!"],
        );
        assert!(v.is_ok(), "{v:?}");
        assert_eq!(n, 3);
        // Something else than HTTP fails on its first bytes.
        let (v, n) = run(200, None, &[b"\x16\x03\x01", b"rest"]);
        assert!(v.unwrap_err().starts_with("http: malformed status line"));
        assert_eq!(n, 1);
    }

    #[test]
    fn limit_reasons() {
        let mut r = Response::new(200, None);
        assert!(r.feed(b"HTTP/1.1 200").is_none());
        assert_eq!(
            r.limit(),
            Err("http: no status line in the first 64 KiB of the response".into())
        );
        let mut r = Response::new(200, Some("OK"));
        assert!(r.feed(b"HTTP/1.1 200 OK\r\nX: y").is_none());
        assert_eq!(r.phase(), Phase::Headers);
        assert_eq!(
            r.limit(),
            Err("http: headers longer than the 64 KiB read limit".into())
        );
        let mut r = Response::new(200, Some("OK"));
        assert_eq!(r.phase(), Phase::Nothing);
        assert!(r.feed(b"HTTP/1.1 200 OK\r\n\r\nxxxx").is_none());
        assert_eq!(r.phase(), Phase::Body);
        assert_eq!(
            r.limit(),
            Err("http: body lacks \"OK\" in the first 64 KiB of the response".into())
        );
    }

    #[test]
    fn chunked_decoder_across_every_split() {
        let wire = b"4\r\nWiki\r\n6;x=y\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\n";
        let want = b"Wikipedia in \r\n\r\nchunks.";
        for split in 0..=wire.len() {
            let mut c = Chunked::default();
            let mut out = Vec::new();
            let first = c.feed(&wire[..split], &mut out).unwrap();
            assert_eq!(first, split == wire.len(), "split {split}");
            assert!(c.feed(&wire[split..], &mut out).unwrap(), "split {split}");
            assert_eq!(out, want, "split {split}");
        }
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"0"), Some(0));
        assert_eq!(parse_chunk_size(b"1A"), Some(26));
        assert_eq!(parse_chunk_size(b"ff;name=value"), Some(255));
        assert_eq!(parse_chunk_size(b"10 "), Some(16));
        assert_eq!(parse_chunk_size(b""), None);
        assert_eq!(parse_chunk_size(b"-1"), None);
        assert_eq!(parse_chunk_size(b"fffffffffffffffff"), None);
    }
}
