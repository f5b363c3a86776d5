//! A fault-injecting TCP proxy between warden and the real DC: passes bytes through, delays
//! the DC's answers, or lets through a budget of the DC's bytes and then cuts every
//! connection and refuses new ones — the DC dying in the middle of a refresh or a sync.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Faults {
    /// Milliseconds to hold each chunk from the DC.
    delay_ms: AtomicU64,
    /// DC bytes still let through before everything is cut; negative: no budget.
    budget: AtomicI64,
    /// Cut: existing connections closed, new ones refused.
    down: AtomicBool,
    /// DC bytes forwarded in total.
    forwarded: AtomicU64,
}

/// Both ends of every proxied connection, so that a cut can close them all.
type Open = Arc<Mutex<Vec<TcpStream>>>;

pub struct FaultProxy {
    pub addr: SocketAddr,
    faults: Arc<Faults>,
    open: Open,
}

impl FaultProxy {
    /// Listens on `target`'s own address (the one the DC's certificate names, so it still
    /// verifies through the proxy) and forwards to `target`.
    pub fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind((target.ip(), 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let faults = Arc::new(Faults::default());
        faults.budget.store(-1, Ordering::SeqCst);
        let open = Arc::new(Mutex::new(Vec::new()));
        let (f, o) = (Arc::clone(&faults), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if f.down.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                o.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump(c2, s2, None));
                let (f, o) = (Arc::clone(&f), Arc::clone(&o));
                std::thread::spawn(move || pump(server, client, Some((f, o))));
            }
        });
        FaultProxy { addr, faults, open }
    }

    /// The URL warden should use instead of the DC's.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://{}", self.addr)
    }

    /// Holds every chunk the DC sends for `delay`.
    pub fn delay(&self, delay: Duration) {
        self.faults
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Lets `bytes` more of the DC's bytes through, then cuts everything.
    pub fn cut_after(&self, bytes: u64) {
        self.faults.budget.store(bytes as i64, Ordering::SeqCst);
    }

    /// Cuts every connection now and refuses new ones.
    pub fn cut(&self) {
        cut_all(&self.faults, &self.open);
    }

    /// Back to passing everything through, at once.
    pub fn heal(&self) {
        self.faults.delay_ms.store(0, Ordering::SeqCst);
        self.faults.budget.store(-1, Ordering::SeqCst);
        self.faults.down.store(false, Ordering::SeqCst);
    }

    /// DC bytes forwarded so far.
    pub fn forwarded(&self) -> u64 {
        self.faults.forwarded.load(Ordering::SeqCst)
    }

    pub fn is_down(&self) -> bool {
        self.faults.down.load(Ordering::SeqCst)
    }
}

fn cut_all(faults: &Faults, open: &Mutex<Vec<TcpStream>>) {
    faults.down.store(true, Ordering::SeqCst);
    for s in open.lock().unwrap().drain(..) {
        let _ = s.shutdown(Shutdown::Both);
    }
}

/// Copies `from` → `to`; for the DC's direction, applies the faults.
fn pump(mut from: TcpStream, mut to: TcpStream, faults: Option<(Arc<Faults>, Open)>) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        if let Some((f, open)) = &faults {
            if f.down.load(Ordering::SeqCst) {
                break;
            }
            let delay = f.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                std::thread::sleep(Duration::from_millis(delay));
            }
            let budget = f.budget.load(Ordering::SeqCst);
            if budget >= 0 {
                let allowed = (budget as usize).min(n);
                f.budget.fetch_sub(allowed as i64, Ordering::SeqCst);
                chunk = &buf[..allowed];
                if allowed < n || budget as usize == allowed {
                    let _ = to.write_all(chunk);
                    f.forwarded.fetch_add(allowed as u64, Ordering::SeqCst);
                    cut_all(f, open);
                    break;
                }
            }
            f.forwarded.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
