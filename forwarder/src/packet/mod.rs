//! Packet views (filled in by the packet module work).
