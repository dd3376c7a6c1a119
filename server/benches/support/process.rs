//! Small helpers shared by the benches that drive a real `gradelab serve` process.

/// The environment variable `name` parsed as `T`, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB; 0 when unreadable.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The resident memory of `pid` in KiB once it has settled: sampled every half second until
/// two samples in a row are within 1 MiB (the allocator returns freed pages with a delay),
/// at most `max_wait`.
#[allow(dead_code)] // Not every bench that includes this module measures memory.
pub async fn settled_rss_kib(pid: u32, max_wait: std::time::Duration) -> u64 {
    let deadline = std::time::Instant::now() + max_wait;
    let mut last = status_kib(pid, "VmRSS:");
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let now = status_kib(pid, "VmRSS:");
        if now.abs_diff(last) < 1024 || std::time::Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}
