//! Finds the system DPDK with pkg-config, generates bindings with bindgen,
//! and compiles C wrappers for DPDK's `static inline` functions (rx/tx
//! burst, mbuf alloc/free, ...) so Rust can call them.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=helpers.c");

    let dpdk = match pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => {
            eprintln!(
                "\n\nerror: DPDK (>= 22.11) was not found by pkg-config: {e}\n\
                 On Debian install it with:  apt-get install libdpdk-dev pkg-config clang libclang-dev\n\
                 (or run scripts/setup.sh, which installs everything ferrolb needs)\n\n"
            );
            std::process::exit(1);
        }
    };

    // The same flags for bindgen and for cc: include paths, `-include
    // rte_config.h` and the machine flags Debian's DPDK was built with.
    let mut cflags: Vec<String> = Vec::new();
    for p in &dpdk.include_paths {
        cflags.push(format!("-I{}", p.display()));
    }
    // The pkg-config crate keeps only -I/-L/-l: ask for the other cflags.
    let out = std::process::Command::new("pkg-config")
        .args(["--cflags-only-other", "libdpdk"])
        .output()
        .expect("pkg-config answered above");
    let other = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = other.split_whitespace();
    while let Some(flag) = it.next() {
        if flag == "-include" {
            if let Some(f) = it.next() {
                cflags.push("-include".into());
                cflags.push(f.into());
            }
        } else {
            cflags.push(flag.into());
        }
    }

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let wrap_src = out_dir.join("static_fns.c");

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&cflags)
        .allowlist_function("rte_.*|ferrolb_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*|rte_.*")
        // Packed headers that bindgen cannot lay out: keep them opaque.
        .opaque_type("rte_l2tpv2_.*")
        .opaque_type("rte_gtp_psc.*")
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4")
        .blocklist_function("rte_.*_v[0-9]+") // versioned symbols
        .derive_default(true)
        .derive_debug(false)
        .layout_tests(true)
        .generate_comments(false)
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrap_src)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| panic!("bindgen failed on DPDK headers: {e}"));
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .expect("write bindings");

    let mut build = cc::Build::new();
    build
        .file(wrap_src.with_extension("c"))
        .file("helpers.c")
        .include(env::current_dir().expect("cwd"))
        .warnings(false)
        .opt_level(3);
    for f in &cflags {
        build.flag(f);
    }
    build.compile("dpdk_wrappers");

    // Link DPDK after the wrappers, with every library pkg-config names.
    for lib in &dpdk.libs {
        println!("cargo:rustc-link-lib={lib}");
    }
    // Bus drivers are plugins not named by libdpdk.pc; vdev hot-plug
    // (rte_vdev_init, for the exception-path TAPs) lives in one of them.
    println!("cargo:rustc-link-lib=rte_bus_vdev");
    for p in &dpdk.link_paths {
        println!("cargo:rustc-link-search=native={}", p.display());
    }
}
