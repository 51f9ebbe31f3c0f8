//! The TCP / UDP / ICMP state machine of a flow, and its timeouts.

/// Whether a deadline `expiry` has passed at `now` (wrap-around safe).
#[inline]
pub const fn is_expired(expiry: u32, now: u32) -> bool {
    (now.wrapping_sub(expiry) as i32) >= 0
}

/// Transport protocol of a flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum L4 {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// ICMP / ICMPv6 echo; the echo identifier goes in the port fields.
    Icmp,
}

impl L4 {
    #[inline]
    pub(super) const fn code(self) -> u8 {
        match self {
            L4::Tcp => 0,
            L4::Udp => 1,
            L4::Icmp => 2,
        }
    }
    #[inline]
    pub(super) const fn from_code(c: u8) -> Self {
        match c {
            0 => L4::Tcp,
            1 => L4::Udp,
            _ => L4::Icmp,
        }
    }
}

impl From<crate::service::Proto> for L4 {
    fn from(p: crate::service::Proto) -> Self {
        match p {
            crate::service::Proto::Tcp => L4::Tcp,
            crate::service::Proto::Udp => L4::Udp,
        }
    }
}

/// Connection state (TCP states as seen by a balancer, plus one state for
/// each connectionless protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Client SYN seen, handshake not finished (half-open).
    SynRecv = 0,
    /// Handshake finished (or flow picked up mid-stream).
    Established = 1,
    /// Client sent FIN.
    FinWait = 2,
    /// Real sent FIN first (NAT: reply side seen).
    CloseWait = 3,
    /// Both sides sent FIN.
    TimeWait = 4,
    /// RST seen.
    Close = 5,
    /// UDP flow.
    Udp = 6,
    /// ICMP flow.
    Icmp = 7,
}

/// Number of [`State`]s (size of [`ConnTable::by_state`](super::ConnTable::by_state)).
pub const N_STATES: usize = 8;

impl State {
    /// All states, in `repr` order.
    pub const ALL: [State; N_STATES] = [
        State::SynRecv,
        State::Established,
        State::FinWait,
        State::CloseWait,
        State::TimeWait,
        State::Close,
        State::Udp,
        State::Icmp,
    ];

    /// The state of code `v & 7` (a match LLVM folds to nothing: the
    /// codes are the discriminants).
    #[inline(always)]
    pub(super) const fn from_u8(v: u8) -> Self {
        match v & 7 {
            0 => State::SynRecv,
            1 => State::Established,
            2 => State::FinWait,
            3 => State::CloseWait,
            4 => State::TimeWait,
            5 => State::Close,
            6 => State::Udp,
            _ => State::Icmp,
        }
    }

    /// State of a new flow from its first packet: SYN -> `SynRecv`; a TCP
    /// packet without SYN (a flow picked up mid-stream, e.g. after a
    /// failover) -> `Established` (`FinWait` / `Close` for FIN / RST).
    pub const fn initial(proto: L4, flags: TcpFlags) -> Self {
        match proto {
            L4::Udp => State::Udp,
            L4::Icmp => State::Icmp,
            L4::Tcp => {
                if flags.has(TcpFlags::RST) {
                    State::Close
                } else if flags.has(TcpFlags::SYN) {
                    State::SynRecv
                } else if flags.has(TcpFlags::FIN) {
                    State::FinWait
                } else {
                    State::Established
                }
            }
        }
    }

    /// The state after a packet with `flags` in direction `dir`.
    ///
    /// RST (either side) -> `Close`. Client: SYN after `Close`/`TimeWait`
    /// reopens (`SynRecv`); FIN -> `FinWait` (or `TimeWait` after the real's
    /// FIN); ACK in `SynRecv` -> `Established`. Reply (NAT): FIN ->
    /// `CloseWait` (or `TimeWait` after the client's FIN). UDP/ICMP never
    /// change.
    pub const fn next(self, dir: Dir, flags: TcpFlags) -> Self {
        use State::*;
        match self {
            Udp | Icmp => return self,
            _ => {}
        }
        if flags.has(TcpFlags::RST) {
            return Close;
        }
        match dir {
            Dir::Client => {
                if flags.has(TcpFlags::SYN) && !flags.has(TcpFlags::ACK) {
                    return match self {
                        Close | TimeWait => SynRecv,
                        s => s,
                    };
                }
                if flags.has(TcpFlags::FIN) {
                    return match self {
                        SynRecv | Established => FinWait,
                        CloseWait => TimeWait,
                        s => s,
                    };
                }
                if flags.has(TcpFlags::ACK) {
                    return match self {
                        SynRecv => Established,
                        s => s,
                    };
                }
                self
            }
            Dir::Reply => {
                if flags.has(TcpFlags::FIN) {
                    return match self {
                        SynRecv | Established => CloseWait,
                        FinWait => TimeWait,
                        s => s,
                    };
                }
                self
            }
        }
    }

    /// Whether this is one of the TCP states.
    pub const fn is_tcp(self) -> bool {
        (self as u8) <= State::Close as u8
    }

    /// Whether this is a half-open or closing TCP state (not active).
    pub const fn is_tcp_inactive(self) -> bool {
        !matches!(self, State::Established | State::Udp | State::Icmp)
    }
}

/// TCP flags byte as on the wire (offset 13 of the TCP header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// No flag (non-TCP packets).
    pub const NONE: TcpFlags = TcpFlags(0);

    /// Whether any of the bits in `mask` is set.
    #[inline]
    pub const fn has(self, mask: u8) -> bool {
        self.0 & mask != 0
    }
}

/// Direction of a packet relative to the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client -> VIP.
    Client,
    /// Real -> client (NAT replies).
    Reply,
}

/// Idle timeouts per state, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// `SynRecv`.
    pub syn_recv: u32,
    /// `Established`.
    pub established: u32,
    /// `FinWait`.
    pub fin_wait: u32,
    /// `CloseWait`.
    pub close_wait: u32,
    /// `TimeWait`.
    pub time_wait: u32,
    /// `Close`.
    pub close: u32,
    /// UDP.
    pub udp: u32,
    /// ICMP.
    pub icmp: u32,
}

impl Timeouts {
    /// IPVS-like defaults with `hz` ticks per second: SYN_RECV 30 s,
    /// ESTABLISHED 900 s, FIN_WAIT 120 s, CLOSE_WAIT 60 s, TIME_WAIT 120 s,
    /// CLOSE 10 s, UDP 300 s, ICMP 60 s.
    pub const fn ipvs(hz: u32) -> Self {
        Self {
            syn_recv: 30 * hz,
            established: 900 * hz,
            fin_wait: 120 * hz,
            close_wait: 60 * hz,
            time_wait: 120 * hz,
            close: 10 * hz,
            udp: 300 * hz,
            icmp: 60 * hz,
        }
    }

    /// The timeout of `s` (capped at 2^31 - 1 for wrap-safe comparisons).
    #[inline]
    pub const fn for_state(&self, s: State) -> u32 {
        let t = match s {
            State::SynRecv => self.syn_recv,
            State::Established => self.established,
            State::FinWait => self.fin_wait,
            State::CloseWait => self.close_wait,
            State::TimeWait => self.time_wait,
            State::Close => self.close,
            State::Udp => self.udp,
            State::Icmp => self.icmp,
        };
        if t > i32::MAX as u32 {
            i32::MAX as u32
        } else {
            t
        }
    }
}

impl Default for Timeouts {
    /// [`Timeouts::ipvs`] with 1 tick = 1 second.
    fn default() -> Self {
        Self::ipvs(1)
    }
}
