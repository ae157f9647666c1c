//! What the benchmark ran on: CPU model and flags, and the peak memory of a process.

use serde::Serialize;

/// The CPU, as far as the system tells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuInfo {
    /// The model name (`/proc/cpuinfo`'s `model name`), when known.
    pub model: Option<String>,
    /// Logical CPUs this process may use.
    pub logical_cpus: usize,
    /// Feature flags (`/proc/cpuinfo`'s `flags`, or `Features` on ARM); empty when unknown.
    pub flags: Vec<String>,
}

/// Flags that decide which kernels run, shown beside the table.
const KERNEL_FLAGS: [&str; 8] = [
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "asimddp",
];

impl CpuInfo {
    /// This machine's CPU.
    pub fn detect() -> CpuInfo {
        let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let mut info = CpuInfo::parse(&text);
        info.logical_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        info
    }

    /// The model and flags of the first processor described in `/proc/cpuinfo` text.
    pub fn parse(cpuinfo: &str) -> CpuInfo {
        let field = |names: &[&str]| {
            cpuinfo.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                names
                    .contains(&key.trim())
                    .then(|| value.trim().to_string())
            })
        };
        let flags = field(&["flags", "Features"])
            .map(|f| f.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        CpuInfo {
            model: field(&["model name"]),
            logical_cpus: 0,
            flags,
        }
    }

    /// The flags among those that select kernels.
    pub fn kernel_flags(&self) -> Vec<&str> {
        KERNEL_FLAGS
            .into_iter()
            .filter(|f| self.flags.iter().any(|g| g == f))
            .collect()
    }
}

/// The peak resident set of this process in bytes: `VmHWM` on Linux, `ru_maxrss` on other Unix
/// systems; `None` where neither is available.
pub fn peak_rss_bytes() -> Option<u64> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        return vm_hwm_bytes(&status);
    }
    max_rss_bytes()
}

/// `VmHWM` of `/proc/<pid>/status` text, in bytes.
pub fn vm_hwm_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

#[cfg(unix)]
fn max_rss_bytes() -> Option<u64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let max_rss = u64::try_from(getrusage(UsageWho::RUSAGE_SELF).ok()?.max_rss()).ok()?;
    // macOS reports bytes, the other systems kilobytes.
    Some(if cfg!(target_os = "macos") {
        max_rss
    } else {
        max_rss * 1024
    })
}

#[cfg(not(unix))]
fn max_rss_bytes() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_gives_the_first_model_and_its_flags() {
        let text =
            "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 fma avx512f\n\n\
                    processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n";
        let info = CpuInfo::parse(text);
        assert_eq!(info.model.as_deref(), Some("AMD EPYC 9R14"));
        assert_eq!(info.flags, ["fpu", "avx2", "fma", "avx512f"]);
        assert_eq!(info.kernel_flags(), ["avx2", "fma", "avx512f"]);
        assert_eq!(
            CpuInfo::parse(""),
            CpuInfo {
                model: None,
                logical_cpus: 0,
                flags: vec![]
            }
        );
    }

    #[test]
    fn vm_hwm_is_read_in_bytes() {
        let status = "Name:\tbitnet\nVmPeak:\t  999 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(vm_hwm_bytes(status), Some(1234 * 1024));
        assert_eq!(vm_hwm_bytes("VmHWM: 12 MB\n"), None);
        assert_eq!(vm_hwm_bytes("Name: x\n"), None);
    }

    #[test]
    fn this_process_has_a_peak_rss() {
        if cfg!(unix) {
            assert!(peak_rss_bytes().unwrap() > 0);
        }
    }
}
