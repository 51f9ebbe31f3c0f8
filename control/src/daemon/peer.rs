//! Whether the HA peer balances the same service set as this node.
//!
//! Every connection-sync datagram carries its sender's service-set
//! fingerprint (`forwarder::sync`), hellos included, so each node of a pair
//! with `[ha].sync_peer` hears its peer's about once a second. The workers
//! keep the last one they heard; this tracker takes the one from the worker
//! that heard the peer last, compares it with ours and says when the
//! verdict changes, for the log.

use std::time::{Duration, Instant};

/// After this long without a datagram from the peer its service set is
/// unknown (hellos leave every second).
pub(super) const SILENT_AFTER: Duration = Duration::from_secs(5);

/// What this node knows of its peer's service set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing heard recently (or the peer speaks sync version 1).
    Unknown,
    /// The same fingerprint as ours.
    Same,
    /// Another fingerprint.
    Differs,
}

impl Verdict {
    /// The word the status and `ferrolb status` show.
    pub(super) fn name(self) -> &'static str {
        match self {
            Verdict::Unknown => "unknown",
            Verdict::Same => "same",
            Verdict::Differs => "differs",
        }
    }
}

/// The peer's fingerprint as last heard, and the verdict.
#[derive(Debug)]
pub(super) struct PeerConfig {
    /// Per worker: datagrams it had received at the last look.
    seen: Vec<u64>,
    /// The peer's fingerprint, when it was last heard.
    peer: Option<(u64, Instant)>,
    verdict: Verdict,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            seen: Vec::new(),
            peer: None,
            verdict: Verdict::Unknown,
        }
    }
}

impl PeerConfig {
    /// Takes the workers' `(datagrams received, last fingerprint heard)`
    /// and our fingerprint at `now`; returns the new verdict when it
    /// changed.
    pub(super) fn observe(
        &mut self,
        workers: &[(u64, u64)],
        ours: u64,
        now: Instant,
    ) -> Option<Verdict> {
        self.seen.resize(workers.len(), 0);
        for (seen, &(datagrams, fp)) in self.seen.iter_mut().zip(workers) {
            if datagrams > *seen && fp != 0 {
                self.peer = Some((fp, now));
            }
            *seen = datagrams;
        }
        let verdict = match self.peer {
            Some((_, at)) if now.duration_since(at) > SILENT_AFTER => Verdict::Unknown,
            Some((fp, _)) if fp == ours => Verdict::Same,
            Some(_) => Verdict::Differs,
            None => Verdict::Unknown,
        };
        let changed = verdict != self.verdict;
        self.verdict = verdict;
        changed.then_some(verdict)
    }

    /// The verdict.
    pub(super) fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// The peer's fingerprint while it is current.
    pub(super) fn peer(&self) -> Option<u64> {
        match self.verdict {
            Verdict::Unknown => None,
            _ => self.peer.map(|(fp, _)| fp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_follows_the_worker_that_heard_the_peer_last() {
        let t0 = Instant::now();
        let mut p = PeerConfig::default();
        assert_eq!(
            p.observe(&[(0, 0), (0, 0)], 7, t0),
            None,
            "unknown at first"
        );
        assert_eq!(p.verdict(), Verdict::Unknown);
        // Worker 1 hears a peer with our set.
        assert_eq!(p.observe(&[(0, 0), (1, 7)], 7, t0), Some(Verdict::Same));
        assert_eq!(p.peer(), Some(7));
        // Worker 0 hears it again with another set: worker 1's older
        // value does not count, it heard nothing new.
        assert_eq!(p.observe(&[(1, 9), (1, 7)], 7, t0), Some(Verdict::Differs));
        assert_eq!(p.peer(), Some(9));
        assert_eq!(p.observe(&[(1, 9), (1, 7)], 7, t0), None, "no change");
        // We reload to the peer's set.
        assert_eq!(p.observe(&[(1, 9), (1, 7)], 9, t0), Some(Verdict::Same));
        // A version 1 peer (fingerprint 0) says nothing about its set.
        assert_eq!(p.observe(&[(5, 0), (1, 7)], 9, t0), None);
        // Silence.
        let later = t0 + SILENT_AFTER + Duration::from_millis(1);
        assert_eq!(
            p.observe(&[(5, 0), (1, 7)], 9, later),
            Some(Verdict::Unknown)
        );
        assert_eq!(p.peer(), None);
        // More workers than before (a restart of the data plane) is fine.
        assert_eq!(
            p.observe(&[(5, 0), (1, 7), (1, 9)], 9, later),
            Some(Verdict::Same)
        );
    }
}
