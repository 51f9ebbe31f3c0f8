//! What becomes of a frame: an [`Outcome`], or a drop with a
//! [`DropReason`].

/// Why a frame was dropped. Every drop is counted under one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Too short or inconsistent at some layer.
    Malformed = 0,
    /// 802.1Q/802.1ad tagged (no VLAN is configured).
    VlanTagged,
    /// An EtherType the balancer does not handle.
    UnknownEtherType,
    /// ARP / ND not about an address this node owns.
    ArpNotOurs,
    /// IP traffic for an address this node neither owns nor balances.
    NotOurs,
    /// The transmit queue refused the frame.
    TxFull,
    /// An mbuf chain (frames over one buffer are not supported).
    MultiSegment,
    /// A VIP with no real able to take a new flow, where no refusal could
    /// be sent (a TCP RST, or an ICMP error about an ICMP error...).
    NoReal,
    /// The connection table could not make room.
    ConnTableFull,
    /// The next hop's MAC is not known yet (a request was sent).
    NeighMiss,
    /// TTL / hop limit would reach zero.
    TtlExceeded,
    /// No port reaches the destination.
    NoRoute,
    /// An IP fragment the balancer cannot place.
    Fragment,
    /// A protocol or message the VIP does not serve.
    Unsupported,
    /// Not enough headroom to encapsulate.
    NoHeadroom,
    /// An ICMP error to a VIP about no tracked flow.
    IcmpNoFlow,
    /// A hairpin flow found no free source-NAT port.
    NoSnatPort,
    /// A datagram to the connection-sync port not from `[ha].sync_peer`.
    SyncBadSource,
    /// A connection-sync datagram with a bad header or length.
    SyncMalformed,
    /// An impossible source or addressing (RFC 1812 5.3.7 "martian"): a
    /// group or zero source MAC; an IP source that is unspecified,
    /// loopback, multicast, broadcast (limited or of a connected prefix),
    /// class E, one of this node's own addresses, or equal to the
    /// destination (land); or a unicast IP destination in a link-layer
    /// broadcast / multicast frame (RFC 1122 3.3.6).
    Martian,
    /// A TCP flag combination no TCP stack sends (no flags, SYN with FIN
    /// or RST, FIN without ACK, ...: netfilter's `tcp_valid_flags`).
    BadTcpFlags,
    /// A new flow over its VIP's `new_flow_rate_limit`.
    RateLimited,
    /// A frame for another worker ([`crate::steer`]) found its hand-off
    /// ring full.
    HandoffFull,
    /// An outbound flow (`[[outbound]]`) found no free local port.
    OutboundNoPort,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 24;
    /// All reasons, in counter order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::VlanTagged,
        DropReason::UnknownEtherType,
        DropReason::ArpNotOurs,
        DropReason::NotOurs,
        DropReason::TxFull,
        DropReason::MultiSegment,
        DropReason::NoReal,
        DropReason::ConnTableFull,
        DropReason::NeighMiss,
        DropReason::TtlExceeded,
        DropReason::NoRoute,
        DropReason::Fragment,
        DropReason::Unsupported,
        DropReason::NoHeadroom,
        DropReason::IcmpNoFlow,
        DropReason::NoSnatPort,
        DropReason::SyncBadSource,
        DropReason::SyncMalformed,
        DropReason::Martian,
        DropReason::BadTcpFlags,
        DropReason::RateLimited,
        DropReason::HandoffFull,
        DropReason::OutboundNoPort,
    ];

    /// Stable snake_case name, for metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::VlanTagged => "vlan_tagged",
            DropReason::UnknownEtherType => "unknown_ethertype",
            DropReason::ArpNotOurs => "arp_not_ours",
            DropReason::NotOurs => "not_ours",
            DropReason::TxFull => "tx_full",
            DropReason::MultiSegment => "multi_segment",
            DropReason::NoReal => "no_real",
            DropReason::ConnTableFull => "conn_table_full",
            DropReason::NeighMiss => "neigh_miss",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::NoRoute => "no_route",
            DropReason::Fragment => "fragment",
            DropReason::Unsupported => "unsupported",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::IcmpNoFlow => "icmp_no_flow",
            DropReason::NoSnatPort => "no_snat_port",
            DropReason::SyncBadSource => "sync_bad_source",
            DropReason::SyncMalformed => "sync_malformed",
            DropReason::Martian => "martian",
            DropReason::BadTcpFlags => "bad_tcp_flags",
            DropReason::RateLimited => "rate_limited",
            DropReason::HandoffFull => "handoff_full",
            DropReason::OutboundNoPort => "outbound_no_port",
        }
    }
}

/// What becomes of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Rewritten in place as a reply: send it back out the port it came in.
    Answered,
    /// For the balancer itself: hand it to the kernel (exception path).
    ToKernel,
    /// Send out data port `port` (index into the snapshot's ports).
    Forward {
        /// Output port index.
        port: u16,
    },
    /// Dropped and counted.
    Dropped(DropReason),
    /// Taken in by the data plane itself (a connection-sync datagram,
    /// applied to the tables): free the buffer.
    Consumed,
    /// Another worker owns the frame's state ([`crate::steer`]): hand it
    /// over untouched, to be decided there.
    Handoff {
        /// The worker to hand it to.
        to: u16,
        /// For a plain reply (every check of the burst path passed): its
        /// reply hash, which spares the owner a second look
        /// ([`RxFrames::reply_hint`](super::burst::RxFrames::reply_hint)).
        reply_hash: Option<u32>,
    },
}

impl Outcome {
    /// [`Outcome::Handoff`] to worker `to`, without a hint.
    #[inline]
    pub const fn handoff(to: u16) -> Outcome {
        Outcome::Handoff {
            to,
            reply_hash: None,
        }
    }
}
