//! `cargo bench --bench dataplane`: the pktgen-style dataplane benchmark
//! of `scripts/bench.sh` (as root: namespaces, DPDK), which prints its
//! table. Under `cargo test` (no `--bench` argument) it only checks that
//! the script parses and that the capture generator writes a valid pcap.

use std::process::Command;

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let bench = std::env::args().any(|a| a == "--bench");
    if bench {
        let st = Command::new("bash")
            .arg(format!("{root}/scripts/bench.sh"))
            .args(std::env::args().skip(1).filter(|a| a == "--sweep"))
            .status()
            .expect("running scripts/bench.sh");
        std::process::exit(st.code().unwrap_or(1));
    }
    let st = Command::new("bash")
        .args(["-n", &format!("{root}/scripts/bench.sh")])
        .status()
        .expect("bash");
    assert!(st.success(), "scripts/bench.sh does not parse");
    let out = std::env::temp_dir().join(format!("ferrolb-bench-smoke-{}.pcap", std::process::id()));
    let st = Command::new("python3")
        .arg(format!("{root}/scripts/mkpcap.py"))
        .args(["est", "16"])
        .arg(&out)
        .status()
        .expect("python3");
    assert!(st.success(), "mkpcap.py failed");
    let data = std::fs::read(&out).expect("capture written");
    let _ = std::fs::remove_file(&out);
    // pcap: 24-byte header with the microsecond magic, then 16 records of
    // 16-byte record headers and 64-byte frames (60 on the wire + FCS-less
    // padding as the generator writes them).
    assert_eq!(&data[..4], &0xa1b2_c3d4u32.to_le_bytes(), "pcap magic");
    let mut off = 24;
    let mut n = 0;
    while off + 16 <= data.len() {
        let caplen = u32::from_le_bytes(data[off + 8..off + 12].try_into().unwrap()) as usize;
        assert!((60..=64).contains(&caplen), "frame of {caplen} bytes");
        off += 16 + caplen;
        n += 1;
    }
    assert_eq!((n, off), (16, data.len()), "16 whole records");
    println!("dataplane bench: script parses, capture generator writes 16 frames (run `sudo cargo bench --bench dataplane` for figures)");
}
