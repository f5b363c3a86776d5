//! Metrics as data: the families a subsystem owns, a registry that holds them, and the one
//! renderer of the Prometheus text format.
//!
//! A subsystem declares its families (a [`Desc`]: name, help, type) and the counters behind
//! them in a struct of its own that implements [`Collect`], and finds it with
//! [`Registry::get`] (made and registered on first use; the server registers every
//! subsystem's at start, so a family is listed before its first sample). `/metrics` is
//! [`Registry::render`]: every family, grouped by its owner's module path, then the gauges
//! read from state when scraped. Nothing outside this file writes exposition text.
//!
//! Recording is a relaxed atomic add, cheap enough for the decision path: fixed label values
//! are slots of an array ([`Slots`]); labels made at run time are keys of a sharded map hashed
//! with foldhash ([`CounterMap`]), looked up before anything is allocated.

use std::any::{Any, TypeId};
use std::fmt::{Display, Write};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use dashmap::DashMap;

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// What a family is: its name, its help line, its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

impl Desc {
    pub const fn counter(name: &'static str, help: &'static str) -> Desc {
        Desc {
            name,
            help,
            kind: Kind::Counter,
        }
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> Desc {
        Desc {
            name,
            help,
            kind: Kind::Gauge,
        }
    }

    pub const fn histogram(name: &'static str, help: &'static str) -> Desc {
        Desc {
            name,
            help,
            kind: Kind::Histogram,
        }
    }
}

/// Something that shows families in an exposition: a subsystem's metrics, or one family.
pub trait Collect: Send + Sync + 'static {
    fn collect(&self, out: &mut Exposition<'_>);
}

/// The Prometheus text being written: a family's `# HELP` and `# TYPE`, then its samples.
pub struct Exposition<'a> {
    out: &'a mut String,
}

impl Exposition<'_> {
    pub fn family(&mut self, desc: &Desc) {
        let Desc { name, help, kind } = desc;
        let _ = writeln!(
            self.out,
            "# HELP {name} {help}\n# TYPE {name} {}",
            kind.as_str()
        );
    }

    /// One sample of `name` (a family's name, or a histogram's `_bucket`, `_sum`, `_count`);
    /// label values are escaped.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.out.push_str(&label_set(labels));
        let _ = writeln!(self.out, " {value}");
    }

    /// Samples of `name` made at run time, listed in the order of their label sets as written
    /// (so the same series always stand in the same place).
    pub fn sorted_samples<'l>(
        &mut self,
        name: &str,
        series: impl Iterator<Item = (Vec<(&'l str, &'l str)>, u64)>,
    ) {
        let mut lines: Vec<(String, u64)> =
            series.map(|(labels, n)| (label_set(&labels), n)).collect();
        lines.sort();
        for (labels, n) in lines {
            let _ = writeln!(self.out, "{name}{labels} {n}");
        }
    }
}

/// `{name="value",…}` with the values escaped; empty for no labels.
fn label_set(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// Escapes a label value (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Entry {
    type_id: TypeId,
    /// The owner's path (`warden::sync::metrics::SyncMetrics`): families are listed in its
    /// order, so grouped by subsystem and the same whenever each was registered.
    owner: &'static str,
    any: Arc<dyn Any + Send + Sync>,
    collect: Arc<dyn Collect>,
}

/// The metrics of one warden: each subsystem's, by type.
#[derive(Default)]
pub struct Registry {
    entries: RwLock<Vec<Entry>>,
}

impl Registry {
    /// The metrics of type `T`, made and registered on first use.
    pub fn get<T: Collect + Default>(&self) -> Arc<T> {
        let id = TypeId::of::<T>();
        let found = |entries: &[Entry]| {
            entries
                .iter()
                .find(|e| e.type_id == id)
                .and_then(|e| Arc::clone(&e.any).downcast::<T>().ok())
        };
        if let Some(t) = found(&self.entries.read().unwrap_or_else(PoisonError::into_inner)) {
            return t;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = found(&entries) {
            return t;
        }
        let t = Arc::new(T::default());
        entries.push(Entry {
            type_id: id,
            owner: std::any::type_name::<T>(),
            any: Arc::clone(&t) as Arc<dyn Any + Send + Sync>,
            collect: Arc::clone(&t) as Arc<dyn Collect>,
        });
        t
    }

    /// Registers `T` now, so that its families are listed before their first sample.
    pub fn register<T: Collect + Default>(&self) {
        self.get::<T>();
    }

    /// The exposition: every registered family, then `now`'s (gauges read from state as it
    /// is when scraped), then `# EOF`.
    pub fn render(&self, now: impl FnOnce(&mut Exposition<'_>)) -> String {
        let mut text = String::with_capacity(4096);
        let mut collectors: Vec<(&'static str, Arc<dyn Collect>)> = self
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|e| (e.owner, Arc::clone(&e.collect)))
            .collect();
        collectors.sort_by_key(|(owner, _)| *owner);
        let mut out = Exposition { out: &mut text };
        for (_, c) in &collectors {
            c.collect(&mut out);
        }
        now(&mut out);
        text.push_str("# EOF\n");
        text
    }
}

/// A counter without labels.
pub struct Counter {
    desc: &'static Desc,
    n: AtomicU64,
}

impl Counter {
    pub const fn new(desc: &'static Desc) -> Counter {
        Counter {
            desc,
            n: AtomicU64::new(0),
        }
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.n.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.n.load(Ordering::Relaxed)
    }
}

impl Collect for Counter {
    fn collect(&self, out: &mut Exposition<'_>) {
        out.family(self.desc);
        out.sample(self.desc.name, &[], self.get());
    }
}

/// The label values of a [`CounterMap`]'s key, in the order of its label names.
pub trait LabelValues: Hash + Eq + Send + Sync + 'static {
    fn label_values(&self) -> Vec<String>;
}

impl LabelValues for &'static str {
    fn label_values(&self) -> Vec<String> {
        vec![(*self).to_owned()]
    }
}

impl LabelValues for String {
    fn label_values(&self) -> Vec<String> {
        vec![self.clone()]
    }
}

impl LabelValues for (String, &'static str) {
    fn label_values(&self) -> Vec<String> {
        vec![self.0.clone(), self.1.to_owned()]
    }
}

impl LabelValues for (&'static str, &'static str) {
    fn label_values(&self) -> Vec<String> {
        vec![self.0.to_owned(), self.1.to_owned()]
    }
}

impl LabelValues for (&'static str, u16) {
    fn label_values(&self) -> Vec<String> {
        vec![self.0.to_owned(), self.1.to_string()]
    }
}

/// A family whose series are made at run time, one per key (a data set, a route and
/// status…): a counter, or a gauge [`CounterMap::set`] to the last value. Listed in the order
/// of their labels.
pub struct CounterMap<K: LabelValues> {
    desc: &'static Desc,
    labels: &'static [&'static str],
    series: DashMap<K, AtomicU64, foldhash::fast::RandomState>,
}

impl<K: LabelValues> CounterMap<K> {
    pub fn new(desc: &'static Desc, labels: &'static [&'static str]) -> CounterMap<K> {
        CounterMap {
            desc,
            labels,
            series: DashMap::default(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.desc.name
    }

    pub fn inc(&self, key: K) {
        self.add(key, 1);
    }

    /// Adds `n` to `key`'s series; allocates nothing once the series exists.
    pub fn add(&self, key: K, n: u64) {
        if let Some(c) = self.series.get(&key) {
            c.fetch_add(n, Ordering::Relaxed);
            return;
        }
        self.series
            .entry(key)
            .or_default()
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Sets `key`'s series to `n` (a gauge).
    pub fn set(&self, key: K, n: u64) {
        self.series
            .entry(key)
            .or_default()
            .store(n, Ordering::Relaxed);
    }

    /// Every series and its value, in no order.
    pub fn values(&self) -> Vec<(K, u64)>
    where
        K: Clone,
    {
        self.series
            .iter()
            .map(|e| (e.key().clone(), e.value().load(Ordering::Relaxed)))
            .collect()
    }
}

impl<K: LabelValues> Collect for CounterMap<K> {
    fn collect(&self, out: &mut Exposition<'_>) {
        out.family(self.desc);
        let series: Vec<(Vec<String>, u64)> = self
            .series
            .iter()
            .map(|e| (e.key().label_values(), e.value().load(Ordering::Relaxed)))
            .collect();
        out.sorted_samples(
            self.desc.name,
            series.iter().map(|(values, n)| {
                let labels = self
                    .labels
                    .iter()
                    .zip(values)
                    .map(|(l, v)| (*l, v.as_str()))
                    .collect();
                (labels, *n)
            }),
        );
    }
}

/// Label values known when the program is written (an outcome, a refusal's reason): the
/// slots of a [`Slots`] family.
pub trait Slot: Copy + Send + Sync + 'static {
    /// Every value, in the order they are listed.
    const ALL: &'static [Self];
    /// The label's name.
    const LABEL: &'static str;
    /// The value's position in [`Slot::ALL`].
    fn slot(self) -> usize;
    fn label(self) -> &'static str;
}

/// A counter family with one series per value of a [`Slot`] label: an array, no lookup.
pub struct Slots<E: Slot> {
    desc: &'static Desc,
    counts: Box<[AtomicU64]>,
    /// Whether a series at zero is listed (every reason a refusal can have), or only once
    /// counted (the outcomes seen).
    zeros: bool,
    _label: std::marker::PhantomData<E>,
}

impl<E: Slot> Slots<E> {
    pub fn new(desc: &'static Desc, zeros: bool) -> Slots<E> {
        Slots {
            desc,
            counts: E::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            zeros,
            _label: std::marker::PhantomData,
        }
    }

    pub fn inc(&self, e: E) {
        self.add(e, 1);
    }

    pub fn add(&self, e: E, n: u64) {
        if let Some(c) = self.counts.get(e.slot()) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self, e: E) -> u64 {
        self.counts
            .get(e.slot())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl<E: Slot> Collect for Slots<E> {
    fn collect(&self, out: &mut Exposition<'_>) {
        out.family(self.desc);
        for &e in E::ALL {
            let n = self.get(e);
            if n > 0 || self.zeros {
                out.sample(self.desc.name, &[(E::LABEL, e.label())], n);
            }
        }
    }
}

/// A histogram of durations over fixed upper bounds, in seconds.
pub struct Histogram {
    desc: &'static Desc,
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn new(desc: &'static Desc, bounds: &'static [f64]) -> Histogram {
        Histogram {
            desc,
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b)
            && let Some(bucket) = self.buckets.get(i)
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl Collect for Histogram {
    fn collect(&self, out: &mut Exposition<'_>) {
        let name = self.desc.name;
        out.family(self.desc);
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(self.buckets.iter()) {
            cumulative += n.load(Ordering::Relaxed);
            let le = format!("{bound:e}");
            let _ = writeln!(out.out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out.out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out.out, "{name}_sum {sum}");
        let _ = writeln!(out.out, "{name}_count {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static REQUESTS: Desc = Desc::counter("t_requests_total", "Requests by route and status.");
    static SEEN: Desc = Desc::counter("t_seen_total", "Seen.");

    #[derive(Clone, Copy)]
    enum Colour {
        Red,
        Blue,
    }

    impl Slot for Colour {
        const ALL: &'static [Colour] = &[Colour::Red, Colour::Blue];
        const LABEL: &'static str = "colour";
        fn slot(self) -> usize {
            self as usize
        }
        fn label(self) -> &'static str {
            match self {
                Colour::Red => "red",
                Colour::Blue => "blue",
            }
        }
    }

    struct Test {
        requests: CounterMap<(&'static str, u16)>,
        seen: Slots<Colour>,
    }

    impl Default for Test {
        fn default() -> Test {
            Test {
                requests: CounterMap::new(&REQUESTS, &["route", "status"]),
                seen: Slots::new(&SEEN, false),
            }
        }
    }

    impl Collect for Test {
        fn collect(&self, out: &mut Exposition<'_>) {
            self.requests.collect(out);
            self.seen.collect(out);
        }
    }

    #[test]
    fn a_registered_family_renders_in_prometheus_text() {
        let registry = Registry::default();
        registry.register::<Test>();
        let t = registry.get::<Test>();
        t.requests.inc(("/v1/\"x\"", 200));
        t.requests.add(("/a", 404), 2);
        t.seen.inc(Colour::Blue);
        assert!(Arc::ptr_eq(&t, &registry.get::<Test>()), "one per type");
        assert_eq!(
            registry.render(|_| {}),
            "# HELP t_requests_total Requests by route and status.\n\
             # TYPE t_requests_total counter\n\
             t_requests_total{route=\"/a\",status=\"404\"} 2\n\
             t_requests_total{route=\"/v1/\\\"x\\\"\",status=\"200\"} 1\n\
             # HELP t_seen_total Seen.\n\
             # TYPE t_seen_total counter\n\
             t_seen_total{colour=\"blue\"} 1\n\
             # EOF\n"
        );
    }
}
