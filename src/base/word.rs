//! Closed vocabularies written as words in configuration and on the wire (`block`, `high`,
//! `at-least-one`): one error type for a word that is not one of them, and the macro that
//! gives an enum its `FromStr` and `Display` from one table of spellings.

/// Error for a word that is not one of an enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{got:?} is not one of {expected}")]
pub struct UnknownWord {
    pub got: String,
    pub expected: &'static str,
}

macro_rules! words_impl {
    ($ty:ty, $expected:literal, { $($word:literal => $value:expr),+ $(,)? }) => {
        impl std::str::FromStr for $ty {
            type Err = $crate::base::word::UnknownWord;
            fn from_str(s: &str) -> Result<Self, $crate::base::word::UnknownWord> {
                match s {
                    $($word => Ok($value),)+
                    _ => Err($crate::base::word::UnknownWord { got: s.to_string(), expected: $expected }),
                }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use words_impl as words;
