//! Safe wrapper over dpdk-sys (in progress).
