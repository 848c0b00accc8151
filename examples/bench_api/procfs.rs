//! What Linux's `/proc` tells about this process, its threads and the
//! machine: CPU time, thread count, load average.

/// `/proc/self/stat` and `/proc/stat` count CPU time in ticks of 1/100 s (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time used so far, in seconds: by this process, and by the whole
/// machine (all cores, anything but idle and I/O wait).
#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    process: f64,
    machine: f64,
}

impl Cpu {
    pub fn now() -> Cpu {
        Cpu {
            process: process_cpu_secs(),
            machine: machine_cpu_secs(),
        }
    }

    /// Cores busy on average from `self` to `later`, `secs` apart: this
    /// process's, and the machine's.
    pub fn cores_until(self, later: Cpu, secs: f64) -> (f64, f64) {
        (
            (later.process - self.process) / secs,
            (later.machine - self.machine) / secs,
        )
    }
}

/// Busy CPU time of all cores so far, from `/proc/stat` (0 if unknown).
fn machine_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    // user nice system idle iowait irq softirq steal ...
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    total.saturating_sub(idle) as f64 / TICKS_PER_SECOND
}

/// User and system CPU time of this process so far, in seconds (0 if unknown).
fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): state is the
    // first, utime and stime the 12th and 13th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) as f64 / TICKS_PER_SECOND,
        _ => 0.0,
    }
}

/// Threads of this process right now.
pub fn process_threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The calling thread's id (`/proc/thread-self` links to `PID/task/TID`).
pub fn own_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Nanoseconds thread `tid` of this process has run on a CPU (0 if unknown).
pub fn thread_cpu_ns(tid: u32) -> u64 {
    read_schedstat(&format!("/proc/self/task/{tid}/schedstat"))
}

/// Nanoseconds the calling thread has run on a CPU (0 if unknown).
pub fn own_cpu_ns() -> u64 {
    read_schedstat("/proc/thread-self/schedstat")
}

/// The first field of a `schedstat` file: time run on a CPU, ns.
fn read_schedstat(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
