//! Full against incremental pulls of a large group, and decision latency while a full pull
//! runs: a measurement for BENCHMARKS.md, not a test. `scripts/bench-dirsync` sets it up
//! (a private Samba DC with a 100,000-member group) and runs it:
//!
//! ```text
//! cargo run --release --example dirsync_bench -- CONFIG SAMBA_PID [ROUNDS]
//! ```
//!
//! CONFIG names one directory and one `incremental = true` data set on the group; the DC's
//! `WARDEN_TEST_*` variables (its `env` file) let the program change the group with
//! `ldapmodify`. Per pull it prints the wall time, the bytes the DC wrote (`wchar` of
//! `/proc/<pid>/io`: its TLS-wrapped answers, plus a little logging), and the CPU the DC spent
//! (`utime + stime` of the samba processes under SAMBA_PID, `/proc/<pid>/stat`). The pulls:
//! a full one, an incremental one after 10 removals from the group, one after the 10 are put
//! back, and a full one again, ROUNDS times (default 3). Then one thread decides for members
//! of the group in a loop, first while nothing else runs and then while a full pull runs, and
//! the p50 / p99 / max of both phases are printed.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use warden::config::Config;
use warden::decide::Request;
use warden::runtime::Warden;
use warden::sync::refresh;

type Error = Box<dyn std::error::Error>;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ; 100 on Linux).
const TICKS: f64 = 100.0;

/// Bytes `pid` has written (`wchar` of `/proc/<pid>/io`): for the DC, its LDAP answers over
/// TLS (Samba writes sockets with `writev`), plus a little logging.
fn written(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("wchar: ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// `(pid, ppid, utime + stime)` of every process.
fn processes() -> Vec<(u32, u32, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the `(comm)`, which may hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid = f.get(1)?.parse().ok()?;
        let cpu = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some((pid, ppid, cpu))
    })
    .collect()
}

/// CPU ticks and bytes written of `root` and all its descendants.
fn dc_usage(root: u32) -> (u64, u64) {
    let all = processes();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(all.iter().filter(|p| p.1 == parent).map(|p| p.0));
        i += 1;
    }
    let ticks = all
        .iter()
        .filter(|p| tree.contains(&p.0))
        .map(|p| p.2)
        .sum();
    (ticks, tree.iter().map(|p| written(*p)).sum())
}

fn env(key: &str) -> Result<String, Error> {
    std::env::var(key).map_err(|_| format!("{key} is not set: source the DC's env file").into())
}

/// Adds or deletes `member` values of `group` with ldapmodify.
fn change_members(group: &str, op: &str, members: &[String]) -> Result<(), Error> {
    let mut ldif = format!("dn: {group}\nchangetype: modify\n{op}: member\n");
    for m in members {
        ldif.push_str(&format!("member: {m}\n"));
    }
    let mut child = Command::new("ldapmodify")
        .env("LDAPTLS_CACERT", env("WARDEN_TEST_LDAP_CA")?)
        .args(["-x", "-H", &env("WARDEN_TEST_LDAPS_URL")?])
        .args(["-D", &env("WARDEN_TEST_BIND_DN")?])
        .args(["-y", &env("WARDEN_TEST_BIND_PASSWORD_FILE")?])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(ldif.as_bytes())?;
    if !child.wait()?.success() {
        return Err(format!("ldapmodify {op} failed").into());
    }
    Ok(())
}

struct Cost {
    took: Duration,
    bytes: u64,
    dc_cpu: f64,
}

async fn measure<F: std::future::Future<Output = ()>>(samba: u32, f: F) -> Cost {
    let (t0, (c0, b0)) = (Instant::now(), dc_usage(samba));
    f.await;
    let (c1, b1) = dc_usage(samba);
    Cost {
        took: t0.elapsed(),
        bytes: b1 - b0,
        dc_cpu: (c1 - c0) as f64 / TICKS,
    }
}

fn percentiles(mut ns: Vec<u64>) -> String {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 * q) as usize).min(ns.len() - 1)];
    format!(
        "p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs over {} decisions",
        at(0.5) as f64 / 1e3,
        at(0.99) as f64 / 1e3,
        at(1.0) as f64 / 1e3,
        ns.len()
    )
}

/// Times decisions for `corp\bu<i>` until `stop`; returns each one's nanoseconds.
fn decide_until(warden: &Warden, stop: &AtomicBool, members: usize) -> Vec<u64> {
    let names: Vec<String> = (1..=members.min(10_000))
        .map(|i| format!("corp\\bu{i}"))
        .collect();
    let mut out = Vec::with_capacity(1 << 20);
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut request = Request::new("orders");
        request.db_user.push(&names[i % names.len()]);
        let t = Instant::now();
        std::hint::black_box(warden.engine().decide(&request));
        out.push(t.elapsed().as_nanos() as u64);
        i += 1;
        if out.len() % 1024 == 0 {
            // Leave the core to the pull now and then, as a server's request rate would.
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    out
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let config_path = args
        .get(1)
        .ok_or("usage: dirsync_bench CONFIG SAMBA_PID [ROUNDS]")?;
    let samba: u32 = args.get(2).ok_or("SAMBA_PID missing")?.parse()?;
    let rounds: usize = args.get(3).map_or(Ok(3), |r| r.parse())?;
    let config = Config::load(std::path::Path::new(config_path)).map_err(|e| e.to_string())?;
    let ds = config
        .data_sets
        .first()
        .cloned()
        .ok_or("the configuration has no data set")?;
    let warden = Arc::new(Warden::open(config)?);
    let directory = warden
        .directories()
        .values()
        .next()
        .cloned()
        .ok_or("the configuration has no directory")?;
    let warden::config::Source::Ldap(source) = &ds.source else {
        return Err("the data set is not an ldap one".into());
    };
    let group =
        warden::sync::pull::watched_dn(&source.filter).ok_or("no memberOf in the filter")?;
    let ou = group
        .split_once(',')
        .map(|(_, ou)| ou.to_owned())
        .ok_or("group DN")?;
    let changed: Vec<String> = (1..=10).map(|i| format!("CN=bu{i},{ou}")).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let report = |label: &str, c: &Cost, rows: usize| {
        println!(
            "{label:<34} {:>9.3} s {:>12} bytes from the DC {:>8.2} s DC CPU   ({rows} rows)",
            c.took.as_secs_f64(),
            c.bytes,
            c.dc_cpu
        );
    };
    let rows = || warden.data_set(&ds.name).map_or(0, |d| d.len());
    for round in 1..=rounds {
        println!("round {round}");
        let pulled = |full: bool| {
            let (warden, directory, ds) = (&warden, &directory, &ds);
            async move {
                let (_, result) = if full {
                    refresh::full(warden, directory, ds).await
                } else {
                    refresh::changes(warden, directory, ds).await
                };
                if let Err(e) = result {
                    eprintln!("pull failed: {e}");
                }
            }
        };
        let c = rt.block_on(measure(samba, pulled(true)));
        report("full pull", &c, rows());
        change_members(&group, "delete", &changed)?;
        let c = rt.block_on(measure(samba, pulled(false)));
        report("incremental, 10 members removed", &c, rows());
        change_members(&group, "add", &changed)?;
        let c = rt.block_on(measure(samba, pulled(false)));
        report("incremental, 10 members added", &c, rows());
        let c = rt.block_on(measure(samba, pulled(false)));
        report("incremental, no change", &c, rows());
    }
    let members = rows();
    let stop = Arc::new(AtomicBool::new(false));
    let idle = {
        let (warden, stop2) = (Arc::clone(&warden), Arc::clone(&stop));
        let t = std::thread::spawn(move || decide_until(&warden, &stop2, members));
        std::thread::sleep(Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
        t.join().map_err(|_| "decider panicked")?
    };
    stop.store(false, Ordering::Relaxed);
    let during = {
        let (warden2, stop2) = (Arc::clone(&warden), Arc::clone(&stop));
        let t = std::thread::spawn(move || decide_until(&warden2, &stop2, members));
        rt.block_on(async {
            let (_, r) = refresh::full(&warden, &directory, &ds).await;
            if let Err(e) = r {
                eprintln!("pull failed: {e}");
            }
        });
        stop.store(true, Ordering::Relaxed);
        t.join().map_err(|_| "decider panicked")?
    };
    println!("decisions, idle:                 {}", percentiles(idle));
    println!("decisions, during a full pull:   {}", percentiles(during));
    Ok(())
}
