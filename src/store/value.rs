//! What crosses the store's connection, whichever backend holds it: [`Value`]s bound to
//! placeholders (through [`ToValue`] and [`Params`], or the `params!` macro), [`Row`]s read
//! back with [`Row::get`] ([`FromValue`]), and the one error type of both backends
//! ([`DbError`]). Shared by [`super::db`] and [`super::postgres`], so neither needs the other's.

/// A value bound to a placeholder or read from a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// Errors from either backend, and from reading a row as the wrong type.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// The PostgreSQL server cannot be reached (down, restarting, network): the store is
    /// unavailable, nothing was written.
    #[error("PostgreSQL unavailable: {0}")]
    Unavailable(String),
    #[error("no row returned")]
    NoRows,
    /// A leader-only job's write under a term that no longer holds the leader lease: rolled
    /// back, nothing written.
    #[error(
        "refused: this replica no longer holds the leader lease of term {0} (another replica \
         leads, or the lease lapsed); a leader-only write was rolled back"
    )]
    Fenced(i64),
    #[error("column {column}: expected {expected}, found {found}")]
    Type {
        column: usize,
        expected: &'static str,
        found: &'static str,
    },
}

impl DbError {
    /// Whether the error says the database is unreachable rather than the request wrong.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_))
    }
}

/// A Rust value that binds to a placeholder.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(i64::from(*self))
            }
        }
    )*};
}
int_value!(i64, i32, u32, bool);

impl ToValue for usize {
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// The values of a statement's placeholders, in order.
pub trait Params {
    fn values(&self) -> Vec<Value>;
}

impl Params for &[&dyn ToValue] {
    fn values(&self) -> Vec<Value> {
        self.iter().map(|v| v.to_value()).collect()
    }
}

impl<T: ToValue, const N: usize> Params for [T; N] {
    fn values(&self) -> Vec<Value> {
        self.iter().map(ToValue::to_value).collect()
    }
}

impl Params for Vec<Value> {
    fn values(&self) -> Vec<Value> {
        self.clone()
    }
}

/// `params![a, b]`: placeholder values of mixed types.
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        &[$(&$p as &dyn $crate::store::db::ToValue),*] as &[&dyn $crate::store::db::ToValue]
    };
}
pub(crate) use params;

/// A Rust value a column reads as.
pub trait FromValue: Sized {
    fn from_value(value: &Value, column: usize) -> Result<Self, DbError>;
}

fn found(value: &Value) -> &'static str {
    match value {
        Value::Null => "NULL",
        Value::Int(_) => "an integer",
        Value::Text(_) => "text",
        Value::Blob(_) => "bytes",
    }
}

fn mismatch<T>(value: &Value, column: usize, expected: &'static str) -> Result<T, DbError> {
    Err(DbError::Type {
        column,
        expected,
        found: found(value),
    })
}

impl FromValue for i64 {
    fn from_value(value: &Value, column: usize) -> Result<i64, DbError> {
        match value {
            Value::Int(n) => Ok(*n),
            other => mismatch(other, column, "an integer"),
        }
    }
}

impl FromValue for u64 {
    fn from_value(value: &Value, column: usize) -> Result<u64, DbError> {
        match value {
            Value::Int(n) if *n >= 0 => Ok(n.unsigned_abs()),
            other => mismatch(other, column, "a non-negative integer"),
        }
    }
}

impl FromValue for bool {
    fn from_value(value: &Value, column: usize) -> Result<bool, DbError> {
        match value {
            Value::Int(n) => Ok(*n != 0),
            other => mismatch(other, column, "a boolean"),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value, column: usize) -> Result<String, DbError> {
        match value {
            Value::Text(s) => Ok(s.clone()),
            other => mismatch(other, column, "text"),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value, column: usize) -> Result<Vec<u8>, DbError> {
        match value {
            Value::Blob(b) => Ok(b.clone()),
            other => mismatch(other, column, "bytes"),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value, column: usize) -> Result<Option<T>, DbError> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other, column).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub(crate) Vec<Value>);

impl Row {
    /// Column `index` (from 0) as a `T`.
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, DbError> {
        T::from_value(self.0.get(index).unwrap_or(&Value::Null), index)
    }
}

/// `.optional()` on a one-row read: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>, DbError>;
}

impl<T> OptionalExtension<T> for Result<T, DbError> {
    fn optional(self) -> Result<Option<T>, DbError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
