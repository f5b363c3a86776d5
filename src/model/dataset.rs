//! Lookup data sets: named columns with exactly one key column, unique keys, case sensitivity
//! fixed at creation, rows with single- or multi-valued cells, and the membership indexes the
//! policies search in.
//!
//! A [`DataSet`] is immutable once built: a refresh builds a new one beside the old and the
//! engine swaps snapshots. A [`MemberIndex`] answers "is this value in these columns?" without
//! allocating: values are folded into a stack buffer (Unicode simple case folding, so
//! `CORP\Alice` finds `corp\alice` and `ΟΔΥΣΣΕΥΣ` finds `οδυσσευς`), hashed once, and compared
//! against one contiguous arena of folded bytes.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;
use smallvec::SmallVec;

/// The most columns a data set may have (Imperva allows far fewer; this bounds hostile input).
pub const MAX_COLUMNS: usize = 64;

/// Errors building a data set from rows.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DataSetError {
    #[error("data set must have at least one column")]
    NoColumns,
    #[error("data set has {0} columns; at most {MAX_COLUMNS} are allowed")]
    TooManyColumns(usize),
    #[error("column name {0:?} is used twice")]
    DuplicateColumn(String),
    #[error("column name must not be empty")]
    EmptyColumnName,
    #[error("exactly one column must be the key, found {0}")]
    KeyCount(usize),
    #[error("unknown column {0:?}")]
    UnknownColumn(String),
    #[error("row has no value for key column {0:?}")]
    MissingKey(String),
    #[error("key column {column:?} must hold a single value, got {count}")]
    MultiValuedKey { column: String, count: usize },
    #[error("duplicate key {0:?}")]
    DuplicateKey(String),
    #[error("no row has key {0:?}; nothing was deleted")]
    KeyToDeleteMissing(String),
}

/// One column of a data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub key: bool,
}

/// The shape of a data set: its columns, which one is the key, and whether lookups fold case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    columns: Vec<Column>,
    key: usize,
    case_sensitive: bool,
}

impl Schema {
    pub fn new(columns: Vec<Column>, case_sensitive: bool) -> Result<Schema, DataSetError> {
        if columns.is_empty() {
            return Err(DataSetError::NoColumns);
        }
        if columns.len() > MAX_COLUMNS {
            return Err(DataSetError::TooManyColumns(columns.len()));
        }
        for (i, c) in columns.iter().enumerate() {
            if c.name.is_empty() {
                return Err(DataSetError::EmptyColumnName);
            }
            if columns[..i]
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(&c.name))
            {
                return Err(DataSetError::DuplicateColumn(c.name.clone()));
            }
        }
        let keys: Vec<usize> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.key)
            .map(|(i, _)| i)
            .collect();
        match keys.as_slice() {
            [key] => Ok(Schema {
                key: *key,
                columns,
                case_sensitive,
            }),
            other => Err(DataSetError::KeyCount(other.len())),
        }
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    pub fn key_column(&self) -> &Column {
        &self.columns[self.key]
    }

    pub fn key_index(&self) -> usize {
        self.key
    }

    pub fn case_sensitive(&self) -> bool {
        self.case_sensitive
    }

    /// Position of a column by name (column names match case-insensitively, as in Imperva).
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// One cell: a single value or a list of values (a multi-valued attribute such as `memberOf`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cell {
    #[default]
    Empty,
    One(Box<str>),
    Many(Box<[Box<str>]>),
}

impl Cell {
    pub fn from_values(mut values: Vec<String>) -> Cell {
        match values.len() {
            0 => Cell::Empty,
            1 => Cell::One(values.swap_remove(0).into_boxed_str()),
            _ => Cell::Many(values.into_iter().map(String::into_boxed_str).collect()),
        }
    }

    pub fn values(&self) -> &[Box<str>] {
        match self {
            Cell::Empty => &[],
            Cell::One(v) => std::slice::from_ref(v),
            Cell::Many(vs) => vs,
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Cell::Empty)
    }
}

/// A row: one cell per schema column, in schema order.
pub type Row = Box<[Cell]>;

/// An immutable data set: schema plus rows with unique keys.
///
/// A data set is *loaded* once its rows came from somewhere (a list, a file, a pull, a write,
/// or persisted last good rows). [`DataSet::unknown`] is the other kind: a set that has never
/// loaded, which holds no rows but is not "empty" — decisions it could change are errors
/// (see [`crate::decide`]).
#[derive(Debug, Clone)]
pub struct DataSet {
    name: String,
    schema: Schema,
    rows: Vec<Row>,
    fingerprint: u64,
    loaded: bool,
}

/// Equal when name, schema and rows (in order) are; the fingerprints are compared first, so
/// two different sets of 100,000 rows are told apart without reading their rows.
impl PartialEq for DataSet {
    fn eq(&self, other: &DataSet) -> bool {
        self.fingerprint == other.fingerprint
            && self.loaded == other.loaded
            && self.name == other.name
            && self.schema == other.schema
            && self.rows == other.rows
    }
}

impl Eq for DataSet {}

/// Builds a [`DataSet`] row by row, enforcing key presence and uniqueness.
pub struct DataSetBuilder {
    name: String,
    schema: Schema,
    rows: Vec<Row>,
    keys: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
}

impl DataSetBuilder {
    pub fn new(name: impl Into<String>, schema: Schema) -> DataSetBuilder {
        DataSetBuilder {
            name: name.into(),
            schema,
            rows: Vec::new(),
            keys: HashTable::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed_da7a),
        }
    }

    pub fn with_capacity(mut self, rows: usize) -> DataSetBuilder {
        self.rows.reserve(rows);
        self.keys.reserve(rows, |_| 0);
        self
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Adds a row given as cells in schema order.
    pub fn push(&mut self, row: Vec<Cell>) -> Result<(), DataSetError> {
        if row.len() != self.schema.columns.len() {
            // Callers build rows from the schema; a length mismatch is a programming error
            // surfaced as an unknown-column error rather than a panic.
            return Err(DataSetError::UnknownColumn(format!(
                "row has {} cells for {} columns",
                row.len(),
                self.schema.columns.len()
            )));
        }
        let key_col = &self.schema.columns[self.schema.key];
        let key = match &row[self.schema.key] {
            Cell::One(k) if !k.is_empty() => k.clone(),
            Cell::Many(vs) => {
                return Err(DataSetError::MultiValuedKey {
                    column: key_col.name.clone(),
                    count: vs.len(),
                });
            }
            _ => return Err(DataSetError::MissingKey(key_col.name.clone())),
        };
        let case_sensitive = self.schema.case_sensitive;
        let mut folded = FoldBuf::new();
        let needle = folded.fold(&key, case_sensitive);
        let hash = self.hasher.hash_one(needle);
        let rows = &self.rows;
        let key_at = |i: &u32| -> &str {
            match &rows[*i as usize][self.schema.key] {
                Cell::One(k) => k,
                _ => "",
            }
        };
        let duplicate = self
            .keys
            .find(hash, |i| {
                let mut other = FoldBuf::new();
                other.fold(key_at(i), case_sensitive) == needle
            })
            .is_some();
        if duplicate {
            return Err(DataSetError::DuplicateKey(key.into_string()));
        }
        let index = u32::try_from(self.rows.len()).map_err(|_| {
            DataSetError::DuplicateKey("data set exceeds u32::MAX rows".to_string())
        })?;
        let hasher = &self.hasher;
        let key_idx = self.schema.key;
        self.keys.insert_unique(hash, index, |i| {
            let k = match &rows[*i as usize][key_idx] {
                Cell::One(k) => &**k,
                _ => "",
            };
            let mut b = FoldBuf::new();
            hasher.hash_one(b.fold(k, case_sensitive))
        });
        self.rows.push(row.into_boxed_slice());
        Ok(())
    }

    /// Adds a row given as a column-name → values map (the Imperva `records` shape).
    pub fn push_record(
        &mut self,
        record: BTreeMap<String, Vec<String>>,
    ) -> Result<(), DataSetError> {
        let mut cells = vec![Cell::Empty; self.schema.columns.len()];
        for (name, values) in record {
            let i = self
                .schema
                .column_index(&name)
                .ok_or(DataSetError::UnknownColumn(name))?;
            cells[i] = Cell::from_values(values);
        }
        self.push(cells)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn build(self) -> DataSet {
        let fingerprint = fingerprint(&self.schema, &self.rows);
        DataSet {
            name: self.name,
            schema: self.schema,
            rows: self.rows,
            fingerprint,
            loaded: true,
        }
    }
}

fn fingerprint(schema: &Schema, rows: &[Row]) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0xf1e1d).build_hasher();
    h.write_u8(u8::from(schema.case_sensitive));
    for c in &schema.columns {
        h.write(c.name.as_bytes());
        h.write_u8(u8::from(c.key));
    }
    h.write_usize(rows.len());
    for row in rows {
        for cell in row.iter() {
            h.write_usize(cell.values().len());
            for v in cell.values() {
                h.write(v.as_bytes());
                h.write_u8(0xff);
            }
        }
    }
    h.finish()
}

impl DataSet {
    pub fn empty(name: impl Into<String>, schema: Schema) -> DataSet {
        DataSetBuilder::new(name, schema).build()
    }

    /// A data set that has never loaded: no rows, and not known to have none. Its fingerprint
    /// differs from the empty set's, so loading an empty set publishes a new snapshot.
    pub fn unknown(name: impl Into<String>, schema: Schema) -> DataSet {
        let mut set = DataSet::empty(name, schema);
        let mut h = foldhash::fast::FixedState::with_seed(0x0dd).build_hasher();
        h.write_u64(set.fingerprint);
        h.write(b"unknown");
        set.fingerprint = h.finish();
        set.loaded = false;
        set
    }

    /// Whether the rows came from somewhere (see [`DataSet::unknown`]).
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A hash of schema and rows in order: equal data sets have equal fingerprints, so a refresh
    /// that changed nothing does not publish a new snapshot.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The key of a row.
    pub fn key_of<'a>(&self, row: &'a Row) -> &'a str {
        row.get(self.schema.key)
            .and_then(|c| c.values().first())
            .map_or("", |v| v)
    }

    /// Builds a data set from records (column name → values).
    pub fn from_records(
        name: impl Into<String>,
        schema: Schema,
        records: Vec<Record>,
    ) -> Result<DataSet, DataSetError> {
        let mut builder = DataSetBuilder::new(name, schema).with_capacity(records.len());
        for record in records {
            builder.push_record(record)?;
        }
        Ok(builder.build())
    }

    /// Writes the rows as `{"records":[...]}` (Imperva's shape): a single value as a string, a
    /// multi-valued cell as an array, empty cells left out.
    pub fn write_records_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"records\":[");
        for (i, row) in self.rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.write_record(row, out);
        }
        out.extend_from_slice(b"]}");
    }

    /// Writes one row as a JSON object keyed by column name.
    pub fn write_record(&self, row: &Row, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for (column, cell) in self.schema.columns.iter().zip(row.iter()) {
            let values = cell.values();
            if values.is_empty() {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            crate::base::json::json_string(&column.name, out);
            out.push(b':');
            match cell {
                Cell::Many(vs) => {
                    out.push(b'[');
                    for (j, v) in vs.iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        crate::base::json::json_string(v, out);
                    }
                    out.push(b']');
                }
                _ => crate::base::json::json_string(&values[0], out),
            }
        }
        out.push(b'}');
    }

    /// Builds the membership index over the given columns (by position).
    pub fn index(&self, columns: &[usize]) -> MemberIndex {
        self.index_mapped(columns, std::borrow::Cow::Borrowed)
    }

    /// Builds the membership index over the given columns, each value replaced by what `map`
    /// makes of it (the canonical account name, for criteria on principals).
    pub fn index_mapped<'a>(
        &'a self,
        columns: &[usize],
        map: impl Fn(&'a str) -> std::borrow::Cow<'a, str>,
    ) -> MemberIndex {
        let mut index = MemberIndex::new(self.schema.case_sensitive);
        // Sized up front: at 1M members growing by doubling rehashed the table four times and
        // left the outgrown arenas resident (BENCHMARKS.md, memory).
        let (mut values, mut bytes) = (0usize, 0usize);
        for row in &self.rows {
            for &c in columns {
                for v in row.get(c).map_or(&[][..], Cell::values) {
                    values += 1;
                    bytes += v.len();
                }
            }
        }
        index.reserve(values, bytes);
        for row in &self.rows {
            for &c in columns {
                if let Some(cell) = row.get(c) {
                    for v in cell.values() {
                        index.insert(&map(v));
                    }
                }
            }
        }
        index.shrink();
        index
    }
}

/// Folds a value into a stack buffer: unchanged for case-sensitive sets, Unicode simple case
/// folding ([`fold_char`]) otherwise. ASCII input never allocates; non-ASCII input allocates
/// only past 80 bytes (the buffer holds 120, and reserves half again the input's length, the
/// most folding can grow it).
pub struct FoldBuf {
    buf: SmallVec<[u8; 120]>,
}

impl Default for FoldBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl FoldBuf {
    pub fn new() -> FoldBuf {
        FoldBuf {
            buf: SmallVec::new(),
        }
    }

    /// Returns the folded form of `value`; borrows `value` itself when nothing needs folding.
    #[inline]
    pub fn fold<'a>(&'a mut self, value: &'a str, case_sensitive: bool) -> &'a [u8] {
        let bytes = value.as_bytes();
        if case_sensitive {
            return bytes;
        }
        if bytes.is_ascii() {
            if !bytes.iter().any(u8::is_ascii_uppercase) {
                return bytes;
            }
            self.buf.clear();
            self.buf.extend(bytes.iter().map(u8::to_ascii_lowercase));
            return &self.buf;
        }
        self.buf.clear();
        // Folding grows a character at most from two UTF-8 bytes to three (`Ⱥ` → `ⱥ`).
        self.buf.reserve(bytes.len() + bytes.len() / 2);
        let mut utf8 = [0u8; 4];
        for c in value.chars().map(fold_char) {
            if c.is_ascii() {
                self.buf.push(c as u8);
            } else {
                self.buf
                    .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
        &self.buf
    }
}

/// Unicode simple case folding of one character (CaseFolding.txt, statuses C and S): two
/// values are the same member when they are equal character by character after folding.
///
/// Simple folding, not lower case: lower case leaves the variant forms apart from the letters
/// they vary (`ς` from `σ`, the micro sign `µ` from `μ`, `ſ` from `s`, `ϐ` from `β`), so a
/// blocked `ΟΔΥΣΣΕΥΣ` would let `οδυσσευς` through, where a comparison by upper case sees one
/// name. Simple, not full: folding never changes the number of characters, so `ß` stays apart
/// from `SS`.
///
/// A character folds to its lower case (when that is one character), save the variant forms
/// in [`VARIANT_FORMS`]. Equivalently, and that is how the table was derived: to the lower case
/// of its upper case, each taken only when it is one character, except `ı` (U+0131), which
/// upper-cases to `I` but folds to itself (its folding to `i` is Turkic only, status T). That
/// recipe gave the same equivalence classes as every assigned character of Unicode 15.0's
/// CaseFolding.txt when this was written; a test recomputes it from the standard library's
/// tables over every character, so a Unicode update that adds a variant form fails the test.
#[inline]
pub fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    if in_variant_ranges(c)
        && let Ok(i) = VARIANT_FORMS.binary_search_by_key(&c, |&(from, _)| from)
    {
        return VARIANT_FORMS[i].1;
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// Whether `c` falls in the ranges [`VARIANT_FORMS`] spans: most letters are turned away by a
/// few comparisons before any table is searched.
#[inline]
fn in_variant_ranges(c: char) -> bool {
    matches!(c as u32, 0xB5 | 0x17F | 0x345 | 0x3C2..=0x3F5 | 0x1C80..=0x1C88 | 0x1E9B | 0x1FBE)
}

/// Characters that are their own lower case but fold to another letter (sorted by the first).
const VARIANT_FORMS: [(char, char); 22] = [
    ('\u{00B5}', '\u{03BC}'), // MICRO SIGN → μ
    ('\u{017F}', '\u{0073}'), // LATIN SMALL LETTER LONG S → s
    ('\u{0345}', '\u{03B9}'), // COMBINING GREEK YPOGEGRAMMENI → ι
    ('\u{03C2}', '\u{03C3}'), // GREEK SMALL LETTER FINAL SIGMA → σ
    ('\u{03D0}', '\u{03B2}'), // GREEK BETA SYMBOL → β
    ('\u{03D1}', '\u{03B8}'), // GREEK THETA SYMBOL → θ
    ('\u{03D5}', '\u{03C6}'), // GREEK PHI SYMBOL → φ
    ('\u{03D6}', '\u{03C0}'), // GREEK PI SYMBOL → π
    ('\u{03F0}', '\u{03BA}'), // GREEK KAPPA SYMBOL → κ
    ('\u{03F1}', '\u{03C1}'), // GREEK RHO SYMBOL → ρ
    ('\u{03F5}', '\u{03B5}'), // GREEK LUNATE EPSILON SYMBOL → ε
    ('\u{1C80}', '\u{0432}'), // CYRILLIC SMALL LETTER ROUNDED VE → в
    ('\u{1C81}', '\u{0434}'), // CYRILLIC SMALL LETTER LONG-LEGGED DE → д
    ('\u{1C82}', '\u{043E}'), // CYRILLIC SMALL LETTER NARROW O → о
    ('\u{1C83}', '\u{0441}'), // CYRILLIC SMALL LETTER WIDE ES → с
    ('\u{1C84}', '\u{0442}'), // CYRILLIC SMALL LETTER TALL TE → т
    ('\u{1C85}', '\u{0442}'), // CYRILLIC SMALL LETTER THREE-LEGGED TE → т
    ('\u{1C86}', '\u{044A}'), // CYRILLIC SMALL LETTER TALL HARD SIGN → ъ
    ('\u{1C87}', '\u{0463}'), // CYRILLIC SMALL LETTER TALL YAT → ѣ
    ('\u{1C88}', '\u{A64B}'), // CYRILLIC SMALL LETTER UNBLENDED UK → ꙋ
    ('\u{1E9B}', '\u{1E61}'), // LATIN SMALL LETTER LONG S WITH DOT ABOVE → ṡ
    ('\u{1FBE}', '\u{03B9}'), // GREEK PROSGEGRAMMENI → ι
];

/// Folds a value to an owned string (for display or storage keys).
pub fn fold(value: &str, case_sensitive: bool) -> String {
    let mut buf = FoldBuf::new();
    String::from_utf8_lossy(buf.fold(value, case_sensitive)).into_owned()
}

/// A set of (folded) values answering membership without allocation.
///
/// Values live in one arena, each behind its length (a LEB128 varint: one byte below 128);
/// the table holds `u32` offsets into the arena. A member costs its folded bytes, one length
/// byte and a table slot (4 bytes plus a control byte, at a load of at most 7/8).
///
/// An ASCII lookup (every ordinary principal) never writes the folded value to memory: it
/// reads the value as little-endian words, lowers them in registers and hashes them, and on a
/// candidate compares the arena with the input lowered again. That matters more than it
/// looks: hashing a freshly written fold buffer with wider or overlapping loads stalls on
/// store forwarding, which cost as much as the rest of the lookup (BENCHMARKS.md). Values that
/// need Unicode folding go through a [`FoldBuf`]; both paths hash the same folded bytes the
/// same way (`hash_folded`).
#[derive(Debug, Clone)]
pub struct MemberIndex {
    case_sensitive: bool,
    /// Each member's folded bytes, behind their length as a LEB128 varint.
    arena: Vec<u8>,
    /// Offset in `arena` of each member's length prefix.
    table: HashTable<u32>,
}

/// The hasher of every membership index. A constant rather than a field, so that a lookup
/// hashes the value while it is still loading the index (the seed needs no load).
const MEMBER_HASHER: foldhash::fast::FixedState =
    foldhash::fast::FixedState::with_seed(0x3a11_0c8e);

/// `0x01` in every byte of a word.
const LANES: u64 = u64::from_ne_bytes([1; 8]);

/// The bytes of `value` as little-endian words, the last one zero-padded.
#[inline]
fn words(value: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let (chunks, tail) = value.as_chunks::<8>();
    let last = if tail.is_empty() {
        None
    } else {
        Some(match value.last_chunk::<8>() {
            // The tail's bytes are the top of the last eight: shift them down.
            Some(last) => u64::from_le_bytes(*last) >> (8 * (8 - tail.len())),
            None => tail.iter().rev().fold(0, |w, &b| (w << 8) | u64::from(b)),
        })
    };
    chunks.iter().map(|c| u64::from_le_bytes(*c)).chain(last)
}

/// Lowers the ASCII letters of eight ASCII bytes at once (no byte may have its high bit set:
/// then no addition carries into the next byte).
#[inline(always)]
fn lower_ascii_word(w: u64) -> u64 {
    // A byte b has `b + 0x3f` ≥ 0x80 iff b ≥ b'A', and `b + 0x25` ≥ 0x80 iff b > b'Z'.
    let upper = w.wrapping_add(0x3f * LANES) & !w.wrapping_add(0x25 * LANES) & (0x80 * LANES);
    w | (upper >> 2)
}

/// `0x80` in each byte of `w` equal to the ASCII byte `b`, `0` in every other byte. Exact:
/// `(t & 0x7f) + 0x7f` reaches bit 7 exactly when a byte of `t` has a low bit set, and cannot
/// carry into the next byte; a byte with bit 7 set (not ASCII) is never equal to `b`.
#[inline(always)]
fn bytes_equal(w: u64, b: u8) -> u64 {
    let t = w ^ (u64::from(b) * LANES);
    !(((t & (0x7f * LANES)) + (0x7f * LANES)) | t) & (0x80 * LANES)
}

/// The hash of folded bytes as the table stores it: the length, then the bytes as words.
fn hash_folded(folded: &[u8]) -> u64 {
    let mut h = MEMBER_HASHER.build_hasher();
    h.write_usize(folded.len());
    for w in words(folded) {
        h.write_u64(w);
    }
    h.finish()
}

/// [`hash_folded`] of `value` ASCII-lowered, computed without writing the lowered bytes
/// anywhere; `None` if `value` is not ASCII.
#[inline]
fn hash_ascii_lowered(value: &[u8]) -> Option<u64> {
    let mut h = MEMBER_HASHER.build_hasher();
    h.write_usize(value.len());
    let mut high = 0;
    for w in words(value) {
        high |= w;
        h.write_u64(lower_ascii_word(w));
    }
    (high & (0x80 * LANES) == 0).then(|| h.finish())
}

/// [`hash_ascii_lowered`], and in the same pass over the words whether `value` is a
/// `DOMAIN\user` with no `.` before its first `\` (see
/// [`crate::base::identity::is_canonical_up_to_case`]); `None` if `value` is not ASCII.
#[inline(always)]
fn hash_ascii_lowered_account(value: &[u8]) -> Option<(u64, bool)> {
    let mut h = MEMBER_HASHER.build_hasher();
    h.write_usize(value.len());
    let (mut high, mut domain_dots, mut slash) = (0, 0, false);
    for w in words(value) {
        high |= w;
        h.write_u64(lower_ascii_word(w));
        if !slash {
            let slashes = bytes_equal(w, b'\\');
            // Every byte before the first `\` (all of this word's when it has none).
            let before = match slashes {
                0 => !0,
                s => (s & s.wrapping_neg()) - 1,
            };
            domain_dots |= bytes_equal(w, b'.') & before;
            slash = slashes != 0;
        }
    }
    (high & (0x80 * LANES) == 0).then(|| (h.finish(), slash && domain_dots == 0))
}

/// Whether `stored` (folded) equals ASCII `value` lowered: whole words, then the last eight
/// bytes again (overlapping) when the length is not a multiple of eight.
#[inline]
fn eq_ascii_lowered(stored: &[u8], value: &[u8]) -> bool {
    if stored.len() != value.len() {
        return false;
    }
    let (stored_words, stored_tail) = stored.as_chunks::<8>();
    let (value_words, value_tail) = value.as_chunks::<8>();
    let word = |c: &[u8; 8]| u64::from_le_bytes(*c);
    if !stored_words
        .iter()
        .zip(value_words)
        .all(|(s, v)| word(s) == lower_ascii_word(word(v)))
    {
        return false;
    }
    if stored_tail.is_empty() {
        return true;
    }
    match (stored.last_chunk::<8>(), value.last_chunk::<8>()) {
        (Some(s), Some(v)) => word(s) == lower_ascii_word(word(v)),
        _ => stored_tail
            .iter()
            .zip(value_tail)
            .all(|(s, v)| *s == v.to_ascii_lowercase()),
    }
}

/// The value at `at` if it is `len` bytes long. Below 128 bytes (nearly every principal) the
/// length prefix is the one byte `len`, so a probe that lands on a value of another length
/// stops at that byte, and a match needs no varint decoding.
#[inline]
fn value_of_len(arena: &[u8], at: u32, len: usize) -> Option<&[u8]> {
    let start = at as usize;
    if len < 0x80 {
        if usize::from(*arena.get(start)?) != len {
            return None;
        }
        return arena.get(start + 1..start + 1 + len);
    }
    Some(value_at(arena, at)).filter(|v| v.len() == len)
}

/// The value whose length prefix starts at `at`.
#[inline]
fn value_at(arena: &[u8], at: u32) -> &[u8] {
    let mut i = at as usize;
    let mut len = 0usize;
    let mut shift = 0u32;
    loop {
        let Some(&b) = arena.get(i) else {
            return &[];
        };
        i += 1;
        len |= usize::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    arena.get(i..i.saturating_add(len)).unwrap_or_default()
}

impl MemberIndex {
    pub fn new(case_sensitive: bool) -> MemberIndex {
        MemberIndex {
            case_sensitive,
            arena: Vec::new(),
            table: HashTable::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn case_sensitive(&self) -> bool {
        self.case_sensitive
    }

    /// Makes room for `values` more values of `bytes` bytes in all, so a build of known size
    /// neither rehashes nor leaves outgrown arenas behind.
    pub fn reserve(&mut self, values: usize, bytes: usize) {
        self.arena.reserve(bytes.saturating_add(values));
        let arena = &self.arena;
        self.table
            .reserve(values, |&at| hash_folded(value_at(arena, at)));
    }

    /// Adds a value; returns false if it (or a case variant, for folding sets) was present.
    pub fn insert(&mut self, value: &str) -> bool {
        let mut buf = FoldBuf::new();
        let folded = buf.fold(value, self.case_sensitive);
        let hash = hash_folded(folded);
        if self
            .table
            .find(hash, |&at| value_at(&self.arena, at) == folded)
            .is_some()
        {
            return false;
        }
        // Arena offsets are u32: a set beyond 4 GiB of values is refused rather than corrupted.
        let at = self.arena.len();
        let Ok(offset) = u32::try_from(at) else {
            return false;
        };
        if u32::try_from(at + 10 + folded.len()).is_err() {
            return false;
        }
        let mut len = folded.len();
        while len >= 0x80 {
            self.arena.push((len & 0x7f) as u8 | 0x80);
            len >>= 7;
        }
        self.arena.push(len as u8);
        self.arena.extend_from_slice(folded);
        let arena = &self.arena;
        self.table
            .insert_unique(hash, offset, |&a| hash_folded(value_at(arena, a)));
        true
    }

    fn shrink(&mut self) {
        self.arena.shrink_to_fit();
        let arena = &self.arena;
        self.table
            .shrink_to_fit(|&at| hash_folded(value_at(arena, at)));
    }

    /// Whether `value` is a member (folding case when the set is case-insensitive).
    #[inline]
    pub fn contains(&self, value: &str) -> bool {
        if self.table.is_empty() {
            return false;
        }
        let bytes = value.as_bytes();
        if self.case_sensitive {
            let hash = hash_folded(bytes);
            return self
                .table
                .find(hash, |&at| {
                    value_of_len(&self.arena, at, bytes.len()).is_some_and(|v| v == bytes)
                })
                .is_some();
        }
        match hash_ascii_lowered(bytes) {
            Some(hash) => self.find_ascii_lowered(hash, bytes),
            None => self.contains_folded(value),
        }
    }

    /// [`MemberIndex::contains`] of a value that is not ASCII, in a case-insensitive index:
    /// folded into a buffer first. Out of line, so that the ASCII lookup stays small enough to
    /// inline into the decision.
    #[inline(never)]
    fn contains_folded(&self, value: &str) -> bool {
        let mut buf = FoldBuf::new();
        let folded = buf.fold(value, false);
        let hash = hash_folded(folded);
        self.table
            .find(hash, |&at| value_at(&self.arena, at) == folded)
            .is_some()
    }

    /// [`MemberIndex::contains`] for an index of canonical account names, asked a principal
    /// as a client wrote it — when that needs no rewriting: a case-insensitive index asked an
    /// ASCII `DOMAIN\user` with no `.` in its domain, whose canonical name differs from it in
    /// case at most ([`crate::base::identity::is_canonical_up_to_case`]). One pass over the
    /// name both classifies and hashes it. `None` for any other name (a UPN, a DNS domain, a
    /// bare name): the caller canonicalises it and asks [`MemberIndex::contains`].
    #[inline(always)]
    pub fn contains_as_account(&self, value: &str) -> Option<bool> {
        if self.case_sensitive {
            return None;
        }
        let bytes = value.as_bytes();
        match hash_ascii_lowered_account(bytes)? {
            (hash, true) => Some(self.find_ascii_lowered(hash, bytes)),
            (_, false) => None,
        }
    }

    /// Whether the ASCII `value`, whose lowered form hashes to `hash`, is a member of this
    /// case-insensitive index.
    #[inline(always)]
    fn find_ascii_lowered(&self, hash: u64, bytes: &[u8]) -> bool {
        self.table
            .find(hash, |&at| {
                value_of_len(&self.arena, at, bytes.len())
                    .is_some_and(|v| eq_ascii_lowered(v, bytes))
            })
            .is_some()
    }

    /// Approximate heap bytes held by the index.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.table.capacity() * (std::mem::size_of::<u32>() + 1)
    }
}

/// A record in Imperva's data-set shape: column name → one value or a list of values.
pub type Record = BTreeMap<String, Vec<String>>;

/// Why a `{"records": [...]}` body could not be read.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RecordsError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("expected an object with a \"records\" array")]
    Shape,
    #[error("records[{index}] is not an object of column names to values")]
    NotObject { index: usize },
    #[error("records[{index}].{column}: a value must be a string or an array of strings")]
    Value { index: usize, column: String },
}

/// Parses `{"records": [{"user": "corp\\alice", "groups": ["a", "b"]}, ...]}`.
pub fn parse_records(json: &[u8]) -> Result<Vec<Record>, RecordsError> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| RecordsError::Json(e.to_string()))?;
    let items = value
        .get("records")
        .and_then(serde_json::Value::as_array)
        .ok_or(RecordsError::Shape)?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let obj = item.as_object().ok_or(RecordsError::NotObject { index })?;
            obj.iter()
                .map(|(column, v)| {
                    let bad = || RecordsError::Value {
                        index,
                        column: column.clone(),
                    };
                    let values = match v {
                        serde_json::Value::String(s) => vec![s.clone()],
                        serde_json::Value::Array(a) => a
                            .iter()
                            .map(|x| x.as_str().map(str::to_string).ok_or_else(bad))
                            .collect::<Result<_, _>>()?,
                        _ => return Err(bad()),
                    };
                    Ok((column.clone(), values))
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn schema(case_sensitive: bool) -> Schema {
        Schema::new(
            vec![
                Column {
                    name: "user".into(),
                    key: true,
                },
                Column {
                    name: "group".into(),
                    key: false,
                },
            ],
            case_sensitive,
        )
        .unwrap()
    }

    fn row(user: &str, groups: &[&str]) -> Vec<Cell> {
        vec![
            Cell::One(user.into()),
            Cell::from_values(groups.iter().map(|s| s.to_string()).collect()),
        ]
    }

    #[test]
    fn schema_needs_exactly_one_key() {
        let cols = |k1, k2| {
            vec![
                Column {
                    name: "a".into(),
                    key: k1,
                },
                Column {
                    name: "b".into(),
                    key: k2,
                },
            ]
        };
        assert_eq!(
            Schema::new(cols(false, false), true),
            Err(DataSetError::KeyCount(0))
        );
        assert_eq!(
            Schema::new(cols(true, true), true),
            Err(DataSetError::KeyCount(2))
        );
        assert!(Schema::new(cols(true, false), true).is_ok());
        assert_eq!(Schema::new(vec![], true), Err(DataSetError::NoColumns));
    }

    #[test]
    fn keys_are_unique_with_case_folding() {
        let mut b = DataSetBuilder::new("s", schema(false));
        b.push(row("corp\\alice", &["g"])).unwrap();
        assert_eq!(
            b.push(row("CORP\\Alice", &[])),
            Err(DataSetError::DuplicateKey("CORP\\Alice".into()))
        );
        let mut b = DataSetBuilder::new("s", schema(true));
        b.push(row("corp\\alice", &["g"])).unwrap();
        b.push(row("CORP\\Alice", &[])).unwrap();
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn key_must_be_present_and_single() {
        let mut b = DataSetBuilder::new("s", schema(false));
        assert_eq!(
            b.push(vec![Cell::Empty, Cell::Empty]),
            Err(DataSetError::MissingKey("user".into()))
        );
        assert!(matches!(
            b.push(vec![
                Cell::Many(vec!["a".into(), "b".into()].into()),
                Cell::Empty
            ]),
            Err(DataSetError::MultiValuedKey { .. })
        ));
    }

    /// The pass that hashes a principal also tells whether it may be looked up as written:
    /// exactly the ASCII names `is_canonical_up_to_case` accepts, wherever the `\` and the
    /// `.` fall across the words it reads, and then it answers as `contains` does.
    #[test]
    fn a_principal_is_looked_up_as_written_exactly_when_its_domain_has_no_dot() {
        use crate::base::identity::is_canonical_up_to_case;
        let mut names = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..10 {
            last = last
                .iter()
                .flat_map(|n| ['a', '\\', '.'].map(|c| format!("{n}{c}")))
                .collect();
            names.extend(last.iter().cloned());
        }
        names.extend(
            [
                "CORP\\Alice",
                "abcdefgh\\x.y",
                "abcdefg.\\x",
                "corp\\ölaf",
                "Corp.\\alice",
            ]
            .map(String::from),
        );
        let mut b = DataSetBuilder::new("s", schema(false));
        for n in [
            "a\\a",
            "aa\\.a",
            "corp\\alice",
            "a.\\a",
            "aaaaaaa\\aa",
            "corp\\ölaf",
        ] {
            b.push(row(n, &[])).unwrap();
        }
        let ds = b.build();
        let index = ds.index(&[0]);
        let mut hits = 0;
        for n in &names {
            let as_written = n.is_ascii() && is_canonical_up_to_case(n);
            let found = index.contains_as_account(n);
            assert_eq!(found, as_written.then(|| index.contains(n)), "{n:?}");
            hits += usize::from(found == Some(true));
        }
        assert_eq!(hits, 4);
        let mut b = DataSetBuilder::new("s", schema(true));
        b.push(row("CORP\\alice", &[])).unwrap();
        assert_eq!(
            b.build().index(&[0]).contains_as_account("CORP\\alice"),
            None
        );
    }

    #[test]
    fn index_folds_unicode_and_ascii() {
        let mut b = DataSetBuilder::new("s", schema(false));
        b.push(row("corp\\alice", &["PTR_Suspicious_Users", "Admins"]))
            .unwrap();
        b.push(row("CORP\\Ölaf", &[])).unwrap();
        let ds = b.build();
        let users = ds.index(&[0]);
        assert!(users.contains("CORP\\Alice"));
        assert!(users.contains("corp\\alice"));
        assert!(users.contains("corp\\ölaf"));
        assert!(users.contains("CORP\\ÖLAF"));
        assert!(!users.contains("corp\\bob"));
        assert!(!users.contains(""));
        let groups = ds.index(&[1]);
        assert!(groups.contains("admins"));
        assert!(!groups.contains("corp\\alice"));
        let both = ds.index(&[0, 1]);
        assert!(both.contains("admins") && both.contains("CORP\\ALICE"));
    }

    /// The word path of `contains` (ASCII values lowered in registers) hashes and compares
    /// exactly like the fold-buffer path `insert` uses, at every length around the word size,
    /// for every ASCII byte (the edges of `A..=Z` included) at several positions, and hands
    /// values that are not ASCII to Unicode folding.
    #[test]
    fn word_keys_agree_with_folding() {
        let mut values: Vec<String> = Vec::new();
        let base =
            "Corp\\User@Example[`]{Z}az09-AZ_xyz~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh";
        for len in 0..base.len() {
            values.push(base[..len].to_string());
        }
        for b in 0u8..0x80 {
            for len in [1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 128, 129, 200] {
                for at in [0, len / 2, len - 1] {
                    let mut v = vec![b'q'; len];
                    v[at] = b;
                    values.push(String::from_utf8(v).unwrap());
                }
            }
        }
        for len in [2, 8, 9, 16, 40, 64, 65] {
            for at in [0, (len - 2) / 2, len - 2] {
                let mut v = "X".repeat(len);
                v.replace_range(at..at + 2, "Ö");
                values.push(v);
            }
        }
        values.push("\u{212a}elvin".into()); // KELVIN SIGN folds to ASCII `k`.
        for case_sensitive in [false, true] {
            let mut index = MemberIndex::new(case_sensitive);
            for v in &values {
                let lowered = fold(v, false).into_bytes();
                match hash_ascii_lowered(v.as_bytes()) {
                    Some(hash) => {
                        assert!(v.is_ascii(), "{v:?}");
                        assert_eq!(hash, hash_folded(&lowered), "{v:?}");
                        assert!(eq_ascii_lowered(&lowered, v.as_bytes()), "{v:?}");
                    }
                    None => assert!(!v.is_ascii(), "{v:?}"),
                }
                index.insert(v);
            }
            // The reference answer: some value folds to what `x` folds to.
            let folded: std::collections::HashSet<String> =
                values.iter().map(|w| fold(w, case_sensitive)).collect();
            let member = |x: &str| folded.contains(&fold(x, case_sensitive));
            for v in &values {
                assert!(index.contains(v), "{v:?}");
                for probe in [v.to_uppercase(), v.to_lowercase(), format!("{v}q")] {
                    assert_eq!(index.contains(&probe), member(&probe), "{probe:?}");
                }
            }
            // An ASCII lookup finds a member that only Unicode folding made ASCII.
            assert_eq!(index.contains("KELVIN"), !case_sensitive);
        }
    }

    #[test]
    fn length_prefixes_past_one_byte() {
        let mut index = MemberIndex::new(false);
        let lens = [0, 1, 127, 128, 129, 300, 16_383, 16_384, 20_000];
        for &n in &lens {
            assert!(index.insert(&"A".repeat(n)));
            assert!(index.insert(&format!("b{}", "é".repeat(n))));
        }
        assert!(!index.insert(&"a".repeat(300)));
        index.shrink();
        assert_eq!(index.len(), 2 * lens.len());
        for &n in &lens {
            assert!(index.contains(&"a".repeat(n)));
            assert!(index.contains(&format!("B{}", "É".repeat(n))));
            assert!(!index.contains(&"c".repeat(n + 1)));
            assert!(!index.contains(&"a".repeat(n + 3)) || lens.contains(&(n + 3)));
        }
    }

    #[test]
    fn simple_case_folding_joins_variant_forms() {
        let same = [
            ("ΟΔΥΣΣΕΥΣ", "οδυσσευς"),
            ("οδυσσευσ", "οδυσσευς"),
            ("\u{b5}", "\u{3bc}"),    // MICRO SIGN, GREEK SMALL MU
            ("\u{39c}", "\u{b5}"),    // GREEK CAPITAL MU
            ("\u{17f}cott", "SCOTT"), // LATIN SMALL LONG S
            ("\u{3d0}", "\u{392}"),   // GREEK BETA SYMBOL, CAPITAL BETA
            ("\u{1e9b}", "\u{1e60}"), // LONG S WITH DOT ABOVE, CAPITAL S WITH DOT ABOVE
            ("\u{1fbe}", "\u{399}"),  // GREEK PROSGEGRAMMENI, CAPITAL IOTA
            ("\u{1c80}", "\u{412}"),  // CYRILLIC SMALL ROUNDED VE, CAPITAL VE
            ("\u{ab70}", "\u{13a0}"), // CHEROKEE SMALL A, CAPITAL A
            ("\u{1c5}", "\u{1c4}"),   // title case DŽ, capital DŽ
            ("\u{1e9e}", "\u{df}"),   // CAPITAL SHARP S, SMALL SHARP S
            ("\u{212a}", "k"),        // KELVIN SIGN
        ];
        for (a, b) in same {
            assert_eq!(fold(a, false), fold(b, false), "{a:?} {b:?}");
            assert_ne!(fold(a, true), fold(b, true), "{a:?} {b:?}");
        }
        let apart = [
            ("\u{df}", "ss"), // SHARP S: full folding only
            ("\u{131}", "i"), // DOTLESS I: Turkic folding only
            ("\u{131}", "I"),
            ("\u{130}", "i"), // CAPITAL I WITH DOT ABOVE
            ("\u{130}", "i\u{307}"),
        ];
        for (a, b) in apart {
            assert_ne!(fold(a, false), fold(b, false), "{a:?} {b:?}");
        }
    }

    /// The recipe `VARIANT_FORMS` was derived from, recomputed over every character.
    #[test]
    fn fold_char_is_the_lower_case_of_the_upper_case() {
        fn single(mut chars: impl ExactSizeIterator<Item = char>) -> Option<char> {
            if chars.len() == 1 { chars.next() } else { None }
        }
        for w in VARIANT_FORMS.windows(2) {
            assert!(w[0].0 < w[1].0, "VARIANT_FORMS must stay sorted: {w:?}");
        }
        // A form outside fold_char's quick ranges would never be looked up; the loop below
        // catches that too, and this names the cause.
        assert!(
            VARIANT_FORMS
                .iter()
                .all(|&(from, _)| in_variant_ranges(from))
        );
        for c in (0..=0x10_ffffu32).filter_map(char::from_u32) {
            let recipe = if c == '\u{131}' {
                c
            } else {
                let upper = single(c.to_uppercase()).unwrap_or(c);
                single(upper.to_lowercase()).unwrap_or(c)
            };
            assert_eq!(fold_char(c), recipe, "{c:?} (U+{:04X})", c as u32);
        }
    }

    /// The properties the check against CaseFolding.txt rested on, over every character:
    /// folding is one character, idempotent, and the same for a character, its upper case and
    /// its lower case (each where it is one character), save the two documented exceptions.
    #[test]
    fn fold_char_is_closed_over_case() {
        for c in (0..=0x10_ffffu32).filter_map(char::from_u32) {
            let f = fold_char(c);
            assert_eq!(fold_char(f), f, "{c:?}");
            assert!(
                2 * f.len_utf8() <= 3 * c.len_utf8(),
                "{c:?} grows past FoldBuf's reserve"
            );
            if c == '\u{131}' || c == '\u{130}' {
                assert_eq!(f, c);
                continue;
            }
            let mut upper = c.to_uppercase();
            if upper.len() == 1 {
                let u = upper.next().unwrap();
                assert_eq!(fold_char(u), f, "{c:?} upper {u:?}");
            }
            let mut lower = c.to_lowercase();
            if lower.len() == 1 {
                let l = lower.next().unwrap();
                assert_eq!(fold_char(l), f, "{c:?} lower {l:?}");
            }
        }
    }

    #[test]
    fn long_values_fold_too() {
        let long = "Ä".repeat(500);
        let mut idx = MemberIndex::new(false);
        idx.insert(&long);
        assert!(idx.contains(&"ä".repeat(500)));
        assert!(!idx.contains(&"ä".repeat(499)));
    }

    #[test]
    fn records_round_trip() {
        let mut b = DataSetBuilder::new("s", schema(false));
        b.push(row("corp\\alice", &["PTR_Suspicious_Users", "Admins"]))
            .unwrap();
        b.push(row("corp\\\"bob\"", &["x"])).unwrap();
        b.push(row("carol", &[])).unwrap();
        let ds = b.build();
        let mut json = Vec::new();
        ds.write_records_json(&mut json);
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(
            text.starts_with(
                r#"{"records":[{"user":"corp\\alice","group":["PTR_Suspicious_Users","Admins"]}"#
            ),
            "{text}"
        );
        let back =
            DataSet::from_records("s", schema(false), parse_records(&json).unwrap()).unwrap();
        assert_eq!(back.fingerprint(), ds.fingerprint());
        assert_eq!(back, ds);
    }

    #[test]
    fn fingerprint_tracks_content() {
        let mut a = DataSetBuilder::new("s", schema(false));
        a.push(row("x", &[])).unwrap();
        let mut b = DataSetBuilder::new("s", schema(false));
        b.push(row("x", &[])).unwrap();
        let mut c = DataSetBuilder::new("s", schema(false));
        c.push(row("y", &[])).unwrap();
        assert_eq!(a.build().fingerprint(), b.build().fingerprint());
        let mut a2 = DataSetBuilder::new("s", schema(false));
        a2.push(row("x", &[])).unwrap();
        assert_ne!(a2.build().fingerprint(), c.build().fingerprint());
    }

    #[test]
    fn equal_means_same_rows_and_loaded_state() {
        let one = |key: &str| {
            let mut b = DataSetBuilder::new("s", schema(false));
            b.push(row(key, &[])).unwrap();
            b.build()
        };
        assert_eq!(one("x"), one("x"));
        assert_ne!(one("x"), one("y"));
        assert_ne!(
            DataSet::empty("s", schema(false)),
            DataSet::unknown("s", schema(false)),
            "never loaded is not empty"
        );
        assert_eq!(
            DataSet::empty("s", schema(false)),
            DataSetBuilder::new("s", schema(false)).build()
        );
    }
}
