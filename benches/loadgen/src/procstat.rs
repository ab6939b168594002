//! CPU and memory readings: the load generator's own (getrusage) and the server's
//! (`/proc/<pid>/stat`, `/proc/<pid>/status`, `/proc/<pid>/task/*/stat`).

use std::time::Duration;

/// This process's CPU time (all threads): (user, system).
pub fn self_cpu() -> (Duration, Duration) {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

fn clock_tick_us() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000 / hz as u64
    } else {
        10_000
    }
}

/// Fields of a `/proc/.../stat` line after the command name: index 0 is field 3 (`state`).
fn stat_fields(text: &str) -> Option<Vec<&str>> {
    let close = text.rfind(')')?;
    Some(text[close + 1..].split_whitespace().collect())
}

/// A process's CPU time in µs (utime, stime), all threads, from `/proc/<pid>/stat`.
pub fn proc_cpu_us(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f = stat_fields(&text)?;
    let ut: u64 = f.get(11)?.parse().ok()?; // field 14
    let st: u64 = f.get(12)?.parse().ok()?; // field 15
    let tick = clock_tick_us();
    Some((ut * tick, st * tick))
}

/// The whole box's idle time in µs (idle + iowait, all CPUs) and the CPU count. Idle time
/// is measured precisely under NO_HZ while the busy fields are tick samples, so busy time
/// is best taken as wall time × CPUs − idle.
pub fn box_idle_us() -> Option<(u64, usize)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let cpus = text
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    Some(((v.get(3)? + v.get(4)?) * clock_tick_us(), cpus))
}

/// (VmRSS, VmHWM) in KiB.
pub fn proc_rss_kb(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Bit mask of the CPUs the process's threads last ran on (field 39 of each task's stat),
/// and the thread count.
pub fn proc_task_cpus(pid: u32) -> Option<(u64, usize)> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut mask = 0u64;
    let mut threads = 0;
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(cpu) =
            stat_fields(&text).and_then(|f| f.get(36).and_then(|c| c.parse::<u32>().ok()))
        {
            mask |= 1u64 << cpu.min(63);
            threads += 1;
        }
    }
    Some((mask, threads))
}

pub fn mask_list(mask: u64) -> String {
    let cpus: Vec<String> = (0..64)
        .filter(|i| mask & (1u64 << i) != 0)
        .map(|i| i.to_string())
        .collect();
    if cpus.is_empty() {
        "-".into()
    } else {
        cpus.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(proc_cpu_us(pid).is_some());
        assert!(box_idle_us().is_some_and(|(_, cpus)| cpus >= 1));
        let (rss, hwm) = proc_rss_kb(pid).unwrap();
        assert!(rss > 0 && hwm >= rss);
        let (mask, threads) = proc_task_cpus(pid).unwrap();
        assert!(mask != 0 && threads >= 1);
        assert_eq!(mask_list(0b101), "0,2");
    }
}
