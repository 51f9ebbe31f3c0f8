//! Ethernet II frames with up to two 802.1Q / 802.1ad VLAN tags.
//!
//! ```text
//!  0      6      12         14        16         18        20      22
//!  | dst  | src  | TPID/type | TCI     | TPID/type | TCI    | type  |
//! ```
//!
//! A tag is recognised by TPID `0x8100` (802.1Q) or `0x88A8` (802.1ad S-tag).
//! A third tag is refused as malformed. The FCS is not part of the frame.

use super::{array6, be16, malformed, need, put16, Layer, MacAddr, Result};

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    /// EtherType, or the TPID of the first tag.
    pub const TYPE: usize = 12;
    /// TCI of the outer tag, when there is one.
    pub const TCI1: usize = 14;
    /// Inner EtherType (or TPID) after one tag.
    pub const TYPE2: usize = 16;
    /// TCI of the inner tag.
    pub const TCI2: usize = 18;
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of one VLAN tag.
pub const TAG_LEN: usize = 4;
/// Minimum frame length without FCS; shorter frames are padded.
pub const MIN_FRAME_LEN: usize = 60;

/// An EtherType value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP.
    pub const ARP: EtherType = EtherType(0x0806);
    /// IPv6.
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// 802.1Q VLAN tag (C-tag).
    pub const VLAN: EtherType = EtherType(0x8100);
    /// 802.1ad service tag (S-tag, "QinQ").
    pub const QINQ: EtherType = EtherType(0x88a8);

    /// Whether this value introduces a VLAN tag.
    #[inline]
    pub const fn is_vlan_tag(self) -> bool {
        self.0 == Self::VLAN.0 || self.0 == Self::QINQ.0
    }
}

impl From<EtherType> for u16 {
    #[inline]
    fn from(t: EtherType) -> u16 {
        t.0
    }
}

#[inline(always)]
fn is_tag(t: u16) -> bool {
    EtherType(t).is_vlan_tag()
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
    /// 14, 18 or 22; validated by `new_checked`.
    header_len: usize,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it. The header length is derived
    /// from the tags present (a third tag is ignored).
    ///
    /// # Panics
    /// If the buffer is shorter than 14 bytes; accessors panic later if it
    /// is shorter than the tags announce.
    pub fn new_unchecked(buffer: T) -> Self {
        let b = buffer.as_ref();
        let header_len = if !is_tag(be16(b, field::TYPE)) {
            HEADER_LEN
        } else if b.len() >= field::TYPE2 + 2 && is_tag(be16(b, field::TYPE2)) {
            HEADER_LEN + 2 * TAG_LEN
        } else {
            HEADER_LEN + TAG_LEN
        };
        EthernetFrame { buffer, header_len }
    }

    /// Wraps a buffer after checking that the header and its tags are
    /// complete and that there are at most two tags.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        let len = b.len();
        need(Layer::Ethernet, HEADER_LEN, len)?;
        let mut header_len = HEADER_LEN;
        if is_tag(be16(b, field::TYPE)) {
            header_len += TAG_LEN;
            need(Layer::Ethernet, header_len, len)?;
            if is_tag(be16(b, field::TYPE2)) {
                header_len += TAG_LEN;
                need(Layer::Ethernet, header_len, len)?;
                if is_tag(be16(b, field::TCI2 + 2)) {
                    return malformed(Layer::Ethernet, "more than two VLAN tags");
                }
            }
        }
        Ok(EthernetFrame { buffer, header_len })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Header length including tags: 14, 18 or 22.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Number of VLAN tags: 0, 1 or 2.
    #[inline]
    pub fn tag_count(&self) -> usize {
        (self.header_len - HEADER_LEN) / TAG_LEN
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        MacAddr(array6(self.buffer.as_ref(), field::DST.start))
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> MacAddr {
        MacAddr(array6(self.buffer.as_ref(), field::SRC.start))
    }

    /// The EtherType of the payload, after any tags.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType(be16(self.buffer.as_ref(), self.header_len - 2))
    }

    /// The outer tag's VLAN id (12 bits), if the frame is tagged.
    #[inline]
    pub fn vlan(&self) -> Option<u16> {
        if self.header_len > HEADER_LEN {
            Some(be16(self.buffer.as_ref(), field::TCI1) & 0x0fff)
        } else {
            None
        }
    }

    /// The inner tag's VLAN id, if the frame has two tags.
    #[inline]
    pub fn inner_vlan(&self) -> Option<u16> {
        if self.header_len > HEADER_LEN + TAG_LEN {
            Some(be16(self.buffer.as_ref(), field::TCI2) & 0x0fff)
        } else {
            None
        }
    }

    /// The outer tag's priority code point (0..=7), if tagged.
    #[inline]
    pub fn vlan_pcp(&self) -> Option<u8> {
        if self.header_len > HEADER_LEN {
            Some(self.buffer.as_ref()[field::TCI1] >> 5)
        } else {
            None
        }
    }

    /// Everything after the header (and tags), including Ethernet padding.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len..]
    }
}

impl<'a> EthernetFrame<&'a [u8]> {
    /// The payload with the buffer's lifetime rather than the view's, so it
    /// can outlive this view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer[self.header_len..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac.0);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac.0);
    }

    /// Sets the payload's EtherType (the one after the tags). The header
    /// layout of this view does not change.
    #[inline]
    pub fn set_ethertype(&mut self, t: EtherType) {
        let off = self.header_len - 2;
        put16(self.buffer.as_mut(), off, t.0);
    }

    /// Sets the outer tag's VLAN id, keeping PCP and DEI. Returns `false`
    /// (nothing written) if the frame is untagged.
    #[inline]
    pub fn set_vlan(&mut self, id: u16) -> bool {
        if self.header_len == HEADER_LEN {
            return false;
        }
        let b = self.buffer.as_mut();
        let tci = (be16(b, field::TCI1) & 0xf000) | (id & 0x0fff);
        put16(b, field::TCI1, tci);
        true
    }

    /// Sets source to `new_src` and destination to the old source: the
    /// usual first step of answering a frame in place.
    #[inline]
    pub fn reply_addresses(&mut self, new_src: MacAddr) {
        let old_src = self.src();
        self.set_dst(old_src);
        self.set_src(new_src);
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len;
        &mut self.buffer.as_mut()[hl..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Error, Layer};

    const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0xbb];
    const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];

    fn frame(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&DST);
        f.extend_from_slice(&SRC);
        for &(tpid, tci) in tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn parses_untagged_single_and_double_tagged() {
        struct Case {
            tags: &'static [(u16, u16)],
            header_len: usize,
            vlan: Option<u16>,
            inner: Option<u16>,
        }
        let cases = [
            Case {
                tags: &[],
                header_len: 14,
                vlan: None,
                inner: None,
            },
            Case {
                tags: &[(0x8100, 0xa00a)],
                header_len: 18,
                vlan: Some(10),
                inner: None,
            },
            Case {
                tags: &[(0x88a8, 0x0064), (0x8100, 0x2fff)],
                header_len: 22,
                vlan: Some(100),
                inner: Some(0xfff),
            },
            Case {
                tags: &[(0x8100, 0x0001), (0x8100, 0x0002)],
                header_len: 22,
                vlan: Some(1),
                inner: Some(2),
            },
        ];
        for c in cases {
            let f = frame(c.tags, 0x0800, &[1, 2, 3]);
            let e = EthernetFrame::new_checked(&f[..]).unwrap();
            assert_eq!(e.dst(), MacAddr(DST));
            assert_eq!(e.src(), MacAddr(SRC));
            assert_eq!(e.header_len(), c.header_len);
            assert_eq!(e.tag_count(), c.tags.len());
            assert_eq!(e.ethertype(), EtherType::IPV4);
            assert_eq!(e.vlan(), c.vlan);
            assert_eq!(e.inner_vlan(), c.inner);
            assert_eq!(e.payload(), &[1, 2, 3]);
        }
        let f = frame(&[(0x8100, 0xa00a)], 0x86dd, &[]);
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.vlan_pcp(), Some(5));
        assert_eq!(e.ethertype(), EtherType::IPV6);
    }

    #[test]
    fn truncation_at_every_length() {
        for tags in [
            &[][..],
            &[(0x8100u16, 5u16)][..],
            &[(0x88a8, 5), (0x8100, 6)][..],
        ] {
            let f = frame(tags, 0x0806, &[]);
            for n in 0..f.len() {
                let required = if n < 14 {
                    14
                } else if n < 18 {
                    18
                } else {
                    22
                };
                assert_eq!(
                    EthernetFrame::new_checked(&f[..n]).unwrap_err(),
                    Error::Truncated {
                        layer: Layer::Ethernet,
                        required,
                        len: n
                    },
                    "tags {tags:?} len {n}"
                );
            }
            assert!(EthernetFrame::new_checked(&f[..]).is_ok());
        }
    }

    #[test]
    fn three_tags_are_malformed() {
        let f = frame(&[(0x88a8, 1), (0x8100, 2), (0x8100, 3)], 0x0800, &[0; 20]);
        assert_eq!(
            EthernetFrame::new_checked(&f[..]).unwrap_err(),
            Error::Malformed {
                layer: Layer::Ethernet,
                what: "more than two VLAN tags"
            }
        );
    }

    #[test]
    fn setters() {
        let mut f = frame(&[(0x8100, 0xe123)], 0x0800, &[9, 9]);
        let mut e = EthernetFrame::new_checked(&mut f[..]).unwrap();
        e.reply_addresses(MacAddr([0x02, 1, 2, 3, 4, 5]));
        assert_eq!(e.dst(), MacAddr(SRC));
        assert_eq!(e.src(), MacAddr([0x02, 1, 2, 3, 4, 5]));
        e.set_ethertype(EtherType::ARP);
        assert!(e.set_vlan(0x456));
        e.payload_mut()[0] = 7;
        assert_eq!(e.vlan(), Some(0x456));
        assert_eq!(e.vlan_pcp(), Some(7));
        assert_eq!(e.ethertype(), EtherType::ARP);
        assert_eq!(&f[12..], &[0x81, 0x00, 0xe4, 0x56, 0x08, 0x06, 7, 9]);

        let mut g = frame(&[], 0x0800, &[]);
        let mut e = EthernetFrame::new_checked(&mut g[..]).unwrap();
        assert!(!e.set_vlan(3));
        // Writing a TPID as the EtherType keeps this view's layout: no panic.
        e.set_ethertype(EtherType::VLAN);
        assert_eq!(e.payload(), &[] as &[u8]);
        assert_eq!(e.ethertype(), EtherType::VLAN);
    }
}
