//! Attribute value mapping: this module owns the compiled *match pattern +
//! substitution template* pairs that turn raw LDAP attribute values into the
//! values stored in a lookup data set (e.g. `alice@corp.example.test` →
//! `corp\alice`), the per-value application of such a mapping to
//! multi-valued attributes ([`AttributeMapping`], [`MappingStats`]), the typed
//! errors raised when a mapping is compiled from configuration
//! ([`PatternError`]). The unescaped value of a DN's first RDN, which a regex
//! cannot extract correctly, is `base::dn`'s (`Dn::first_value`).
//!
//! # Semantics
//!
//! * A match pattern is a regex in `regex-automata` meta syntax (the same
//!   syntax as the `regex` crate). Matching uses *search* semantics: the
//!   pattern is unanchored unless it uses `^`/`$` (or `\A`/`\z`), and only the
//!   first leftmost-first match is used.
//! * The result of a mapping is the *rendered template*, not the input with
//!   the match replaced: text of the value outside the match never appears in
//!   the output unless the template inserts it.
//! * With a match pattern and no template, the result is the whole match
//!   (group 0). Without a match pattern the value is copied unchanged; giving
//!   a template without a match pattern is a compile error
//!   ([`PatternError::SubstituteWithoutPattern`]).
//! * Template syntax:
//!   * `$N` inserts group `N`, where `N` is the *greedy* run of ASCII digits
//!     after the `$` (`$10` is group 10, never group 1 followed by `0`;
//!     leading zeros are allowed: `$01` is group 1);
//!   * `${N}` inserts group `N`, `${name}` inserts the named group `name`
//!     (everything up to the next `}` is the name; `${1}0` is group 1
//!     followed by a literal `0`);
//!   * `$$` is a literal `$`;
//!   * a `$` that does not start one of the above — at the end of the
//!     template, or followed by any other character (`$x`, `$-`, `$ `,
//!     `$\`) — is a literal `$` (so `$1$` renders machine accounts like
//!     `WS01$`; note that `$user` is the literal text `$user`, write
//!     `${user}` for a named group);
//!   * every other character, including `\`, is literal.
//! * Compile errors (rejected when the mapping is built from config, never
//!   at apply time): an invalid regex (with the byte position when the regex
//!   parser reports one), a regex whose compiled NFA exceeds
//!   [`DEFAULT_SIZE_LIMIT`], an unterminated `${` or an empty `${}` (with the
//!   byte position of the `$`), and a reference to a group index not in the
//!   pattern or to an unknown group name (the message names the group and
//!   the number of groups the pattern has).
//! * A group that exists but did not participate in the match inserts the
//!   empty string.
//!
//! # Performance
//!
//! A [`Pattern`] is compiled once; applying it runs one
//! [`meta::Regex::search_slots`] call with a stack-allocated slot buffer sized
//! to the highest group the template references (so a template that only
//! needs group 0 never runs a capture engine), computes the exact output
//! length, and makes exactly one allocation: the output `String`
//! ([`Pattern::apply_into`] makes none when the buffer has room). The regex
//! search cache comes from the regex's internal pool, whose owner-thread fast
//! path is a single atomic compare, so a single-threaded caller pays no
//! locking (a caller-owned cache measured only a few percent faster: not worth the
//! API).
//! A trailing "rest of the value" (`.*`, `.*$`, `.*?$`, as in
//! `^CN=([^,]*),.*$`) is not run through the capture engine: for inputs
//! without a newline the search stops at the end of the part before it (see
//! `PrefixRegex`). `Pattern` is `Send + Sync` and cheap to clone.

use std::fmt;

use regex_automata::{
    Input, PatternID,
    meta::{self, BuildError},
    util::{primitives::NonMaxUsize, syntax},
};
use regex_syntax::hir::{Class, Hir, HirKind, Look};
use smallvec::{SmallVec, smallvec};

/// Upper bound, in bytes, on the heap size of a compiled match pattern's
/// NFA. Configuration cannot make the process allocate more than this per
/// pattern for the automaton itself (e.g. `(?:\w{100}){100}` is rejected).
pub const DEFAULT_SIZE_LIMIT: usize = 2 * (1 << 20);

/// Slots kept on the stack when applying a pattern: enough for a template
/// that references groups up to `$7`; more groups spill to the heap.
const INLINE_SLOTS: usize = 16;

/// Why a mapping could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The match pattern is not a valid regex. `message` is the regex
    /// parser's message, which for syntax errors includes a caret diagram.
    #[error("invalid match pattern{}: {message}", fmt_position(*.position))]
    InvalidRegex {
        /// Byte offset in the match pattern where the error was detected,
        /// when the regex parser reports one.
        position: Option<usize>,
        /// The regex engine's description of the problem.
        message: String,
    },
    /// The compiled match pattern would exceed the size limit.
    #[error("match pattern is too large: its compiled form exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit, in bytes.
        limit: usize,
    },
    /// The substitution template is malformed.
    #[error("invalid substitution template at byte {position}: {message}")]
    Template {
        /// Byte offset in the template of the `$` that starts the bad
        /// reference.
        position: usize,
        /// What is wrong.
        message: String,
    },
    /// The substitution template references a group the match pattern does
    /// not have.
    #[error(
        "substitution template references group {group} at byte {position}, but the match pattern {}",
        describe_groups(*.group_count, .group_names)
    )]
    UnknownGroup {
        /// The reference as written in the template (`$10`, `${user}`).
        group: String,
        /// Byte offset of the reference in the template.
        position: usize,
        /// Number of capture groups of the pattern, not counting group 0
        /// (valid indexes are `0..=group_count`).
        group_count: usize,
        /// Names of the pattern's named groups, in index order.
        group_names: Vec<String>,
    },
    /// A substitution template was given without a match pattern.
    #[error("a substitution template requires a match pattern")]
    SubstituteWithoutPattern,
}

impl PatternError {
    /// Byte offset of the error in the match pattern ([`Self::InvalidRegex`])
    /// or in the template ([`Self::Template`], [`Self::UnknownGroup`]), when
    /// known.
    pub fn position(&self) -> Option<usize> {
        match self {
            Self::InvalidRegex { position, .. } => *position,
            Self::Template { position, .. } | Self::UnknownGroup { position, .. } => {
                Some(*position)
            }
            Self::TooLarge { .. } | Self::SubstituteWithoutPattern => None,
        }
    }
}

fn fmt_position(position: Option<usize>) -> String {
    match position {
        Some(p) => format!(" at byte {p}"),
        None => String::new(),
    }
}

fn describe_groups(group_count: usize, names: &[String]) -> String {
    let plural = if group_count == 1 { "" } else { "s" };
    let mut s = format!("has {group_count} capture group{plural} (valid: $0 to ${group_count}");
    if names.is_empty() {
        s.push_str(", no named groups)");
    } else {
        s.push_str(", named: ");
        s.push_str(&names.join(", "));
        s.push(')');
    }
    s
}

/// One element of a parsed substitution template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// `Template::literals[start..end]`.
    Literal { start: usize, end: usize },
    /// Capture group by index (0 = whole match).
    Group(usize),
}

/// A substitution template parsed against a regex's groups.
#[derive(Debug, Clone)]
struct Template {
    /// The template as written.
    source: Box<str>,
    /// All literal text of the template, concatenated.
    literals: Box<str>,
    pieces: Box<[Piece]>,
    /// Highest group index referenced (0 when none or only `$0`).
    max_group: usize,
}

impl Template {
    /// The implicit template of a pattern without substitute: group 0.
    fn whole_match() -> Self {
        Template {
            source: Box::from("$0"),
            literals: Box::from(""),
            pieces: Box::new([Piece::Group(0)]),
            max_group: 0,
        }
    }

    fn parse(source: &str, groups: &meta::Regex) -> Result<Self, PatternError> {
        let info = groups.group_info();
        let group_len = info.group_len(PatternID::ZERO);
        let unknown = |group: String, position: usize| PatternError::UnknownGroup {
            group,
            position,
            group_count: group_len.saturating_sub(1),
            group_names: info
                .pattern_names(PatternID::ZERO)
                .flatten()
                .map(str::to_owned)
                .collect(),
        };

        let bytes = source.as_bytes();
        let mut literals = String::new();
        let mut pieces: Vec<Piece> = Vec::new();
        let mut max_group = 0;
        // Start of the pending literal run in `source`.
        let mut lit_start = 0;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                i += 1;
                continue;
            }
            // `$` and what follows it are ASCII, so every index used to slice
            // below is a char boundary; `get` keeps this panic-free anyway.
            let (index, reference, next) = match bytes.get(i + 1) {
                Some(b'$') => {
                    // Keep the first `$` in the literal run, drop the second.
                    push_literal(&mut literals, &mut pieces, source.get(lit_start..=i));
                    i += 2;
                    lit_start = i;
                    continue;
                }
                Some(d) if d.is_ascii_digit() => {
                    let end = bytes[i + 1..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .map_or(bytes.len(), |n| i + 1 + n);
                    let digits = source.get(i + 1..end).unwrap_or("");
                    (parse_index(digits), source.get(i..end).unwrap_or(""), end)
                }
                Some(b'{') => {
                    let Some(close) = bytes[i + 2..].iter().position(|&b| b == b'}') else {
                        return Err(PatternError::Template {
                            position: i,
                            message: "unterminated `${` (missing `}`)".to_owned(),
                        });
                    };
                    let close = i + 2 + close;
                    let inner = source.get(i + 2..close).unwrap_or("");
                    let reference = source.get(i..=close).unwrap_or("");
                    let index = if inner.is_empty() {
                        return Err(PatternError::Template {
                            position: i,
                            message: "empty group reference `${}`".to_owned(),
                        });
                    } else if inner.bytes().all(|b| b.is_ascii_digit()) {
                        parse_index(inner)
                    } else {
                        match info.to_index(PatternID::ZERO, inner) {
                            Some(index) => Some(index),
                            None => return Err(unknown(reference.to_owned(), i)),
                        }
                    };
                    (index, reference, close + 1)
                }
                // `$` at the end or before any other character: literal.
                _ => {
                    i += 1;
                    continue;
                }
            };
            let index = match index {
                Some(index) if index < group_len => index,
                _ => return Err(unknown(reference.to_owned(), i)),
            };
            push_literal(&mut literals, &mut pieces, source.get(lit_start..i));
            pieces.push(Piece::Group(index));
            max_group = max_group.max(index);
            i = next;
            lit_start = next;
        }
        push_literal(&mut literals, &mut pieces, source.get(lit_start..));
        Ok(Template {
            source: Box::from(source),
            literals: literals.into_boxed_str(),
            pieces: pieces.into_boxed_slice(),
            max_group,
        })
    }

    /// Exact byte length of the rendering, `None` on (theoretical) overflow.
    #[inline]
    fn rendered_len(&self, input: &str, slots: &[Option<NonMaxUsize>]) -> Option<usize> {
        let mut len: usize = 0;
        for piece in self.pieces.iter() {
            let n = match *piece {
                Piece::Literal { start, end } => end - start,
                Piece::Group(g) => group_str(input, slots, g).len(),
            };
            len = len.checked_add(n)?;
        }
        Some(len)
    }

    #[inline]
    fn render_into(&self, input: &str, slots: &[Option<NonMaxUsize>], out: &mut String) {
        for piece in self.pieces.iter() {
            let s = match *piece {
                Piece::Literal { start, end } => self.literals.get(start..end).unwrap_or(""),
                Piece::Group(g) => group_str(input, slots, g),
            };
            out.push_str(s);
        }
    }
}

/// Appends `text` to the literal store, merging with a preceding literal.
fn push_literal(literals: &mut String, pieces: &mut Vec<Piece>, text: Option<&str>) {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return;
    };
    let start = literals.len();
    literals.push_str(text);
    let end = literals.len();
    match pieces.last_mut() {
        Some(Piece::Literal { end: last_end, .. }) => *last_end = end,
        _ => pieces.push(Piece::Literal { start, end }),
    }
}

/// Parses a run of ASCII digits; `None` if it overflows `usize` (or is not
/// all digits).
fn parse_index(digits: &str) -> Option<usize> {
    digits.chars().try_fold(0usize, |acc, c| {
        acc.checked_mul(10)?
            .checked_add(usize::try_from(c.to_digit(10)?).ok()?)
    })
}

/// The text of group `g`, or `""` if it did not participate (or is out of
/// range, which compile-time validation rules out).
#[inline]
fn group_str<'h>(input: &'h str, slots: &[Option<NonMaxUsize>], g: usize) -> &'h str {
    let start = slots.get(g * 2).copied().flatten();
    let end = slots.get(g * 2 + 1).copied().flatten();
    match (start, end) {
        (Some(s), Some(e)) => input.get(s.get()..e.get()).unwrap_or(""),
        _ => "",
    }
}

/// A compiled match pattern plus substitution template.
///
/// See the [module documentation](self) for the exact semantics.
#[derive(Clone)]
pub struct Pattern {
    /// The full match pattern.
    regex: meta::Regex,
    /// The pattern without a trailing `.*` / `.*$`, when it has one.
    prefix: Option<PrefixRegex>,
    /// The full pattern as byte searches, when it has that shape.
    split: Option<SplitMatcher>,
    source: Box<str>,
    template: Template,
    /// Number of slots to ask the regex for: `2 * (max_group + 1)`.
    slots_len: usize,
    /// Whether the user gave a template (for `Debug`/accessors only).
    has_substitute: bool,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pattern")
            .field("match_pattern", &self.source)
            .field("substitute", &self.substitute())
            .finish()
    }
}

impl Pattern {
    /// Compiles a match pattern and an optional substitution template
    /// (`None` = the whole match), with the [`DEFAULT_SIZE_LIMIT`].
    pub fn compile(match_pattern: &str, substitute: Option<&str>) -> Result<Self, PatternError> {
        Self::compile_with_size_limit(match_pattern, substitute, DEFAULT_SIZE_LIMIT)
    }

    /// Like [`Pattern::compile`] with an explicit NFA size limit in bytes.
    pub fn compile_with_size_limit(
        match_pattern: &str,
        substitute: Option<&str>,
        size_limit: usize,
    ) -> Result<Self, PatternError> {
        let hir = syntax::parse_with(match_pattern, &syntax::Config::new())
            .map_err(|e| syntax_error(&e))?;
        let mut builder = meta::Regex::builder();
        builder.configure(meta::Config::new().nfa_size_limit(Some(size_limit)));
        let regex = builder.build_from_hir(&hir).map_err(build_error)?;
        let prefix = match strip_any_tail(&hir) {
            Some((prefix_hir, any_char)) => Some(PrefixRegex {
                regex: builder.build_from_hir(&prefix_hir).map_err(build_error)?,
                split: SplitMatcher::from_hir(&prefix_hir),
                any_char,
            }),
            None => None,
        };
        let template = match substitute {
            Some(t) => Template::parse(t, &regex)?,
            None => Template::whole_match(),
        };
        let slots_len = (template.max_group + 1) * 2;
        Ok(Pattern {
            split: SplitMatcher::from_hir(&hir),
            regex,
            prefix,
            source: Box::from(match_pattern),
            template,
            slots_len,
            has_substitute: substitute.is_some(),
        })
    }

    /// The match pattern as written.
    pub fn match_pattern(&self) -> &str {
        &self.source
    }

    /// The substitution template as written, `None` if the whole match is
    /// used.
    pub fn substitute(&self) -> Option<&str> {
        self.has_substitute.then_some(&*self.template.source)
    }

    /// Number of capture groups of the match pattern, not counting group 0.
    pub fn group_count(&self) -> usize {
        // Not `captures_len`: a group the parser removed (`(a){0}`) keeps its number, so
        // later groups are numbered past it.
        self.regex
            .group_info()
            .group_len(PatternID::ZERO)
            .saturating_sub(1)
    }

    /// Finds the first match, filling `slots`; `false` if there is none.
    #[inline]
    fn search(&self, input: &str, slots: &mut [Option<NonMaxUsize>]) -> bool {
        // The stripped tail matches from anywhere to the end of an input it
        // can cover, so the match is the prefix's, extended to the end.
        if let Some(prefix) = &self.prefix
            && (prefix.any_char || memchr::memchr(b'\n', input.as_bytes()).is_none())
        {
            let found = match &prefix.split {
                Some(split) => split.search(input, slots),
                None => prefix
                    .regex
                    .search_slots(&Input::new(input), slots)
                    .is_some(),
            };
            if !found {
                return false;
            }
            if let Some(end) = slots.get_mut(1) {
                *end = NonMaxUsize::new(input.len());
            }
            return true;
        }
        match &self.split {
            Some(split) => split.search(input, slots),
            None => self.regex.search_slots(&Input::new(input), slots).is_some(),
        }
    }

    /// Applies the mapping: `None` if the pattern does not match `input`,
    /// otherwise the rendered template. Allocates only the returned string.
    #[inline]
    pub fn apply(&self, input: &str) -> Option<String> {
        let mut slots: SmallVec<[Option<NonMaxUsize>; INLINE_SLOTS]> =
            smallvec![None; self.slots_len];
        if !self.search(input, &mut slots) {
            return None;
        }
        let mut out = String::with_capacity(self.template.rendered_len(input, &slots).unwrap_or(0));
        self.template.render_into(input, &slots, &mut out);
        Some(out)
    }

    /// Applies the mapping, appending the rendered template to `out`.
    /// Returns `false` (leaving `out` untouched) if the pattern does not
    /// match.
    #[inline]
    pub fn apply_into(&self, input: &str, out: &mut String) -> bool {
        let mut slots: SmallVec<[Option<NonMaxUsize>; INLINE_SLOTS]> =
            smallvec![None; self.slots_len];
        if !self.search(input, &mut slots) {
            return false;
        }
        if let Some(len) = self.template.rendered_len(input, &slots) {
            out.reserve(len);
        }
        self.template.render_into(input, &slots, out);
        true
    }
}

/// Converts a regex parse error, keeping the parser's position and message
/// (which has a caret diagram).
fn syntax_error(err: &regex_syntax::Error) -> PatternError {
    let position = match err {
        regex_syntax::Error::Parse(e) => Some(e.span().start.offset),
        regex_syntax::Error::Translate(e) => Some(e.span().start.offset),
        _ => None,
    };
    PatternError::InvalidRegex {
        position,
        message: err.to_string(),
    }
}

/// Converts a regex build error (after parsing succeeded).
fn build_error(err: BuildError) -> PatternError {
    if let Some(limit) = err.size_limit() {
        return PatternError::TooLarge { limit };
    }
    if let Some(syntax_err) = err.syntax_error() {
        return syntax_error(syntax_err);
    }
    // Other NFA build failures: the useful text is in the source chain.
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    PatternError::InvalidRegex {
        position: None,
        message,
    }
}

/// A pattern whose trailing "rest of the value" (`.*`, `.*$`, `.*?$`, with or
/// without `(?s)`) was stripped.
///
/// Such a tail matches from any position to the end of any input without a
/// `\n` (of any input at all when `.` is `(?s)`), so on those inputs it
/// cannot influence which prefix match is chosen: the leftmost-first match
/// of the whole pattern is the prefix's match extended to the end of the
/// input. Searching for the prefix stops early instead of scanning the tail
/// through the capture engine, which roughly halves the cost of typical
/// `^CN=([^,]*),.*$` mappings. Inputs with a `\n` use the full pattern.
#[derive(Clone)]
struct PrefixRegex {
    regex: meta::Regex,
    /// The prefix as byte searches, when it has that shape.
    split: Option<SplitMatcher>,
    /// The tail's `.` also matches `\n`.
    any_char: bool,
}

/// An anchored pattern made of literals and runs `[^d]*` of anything but one ASCII character
/// `d`, each run followed by a literal starting with `d` (or last, and greedy):
/// `^([^@]*)@([^.]*)\.` and `^CN=([^,]*),`, the shape of nearly every attribute mapping.
///
/// Such a pattern has one possible match, found by byte searches: a run cannot cross its `d`
/// and the literal after it starts with `d`, so the run ends at the first `d` — greedy or
/// lazy alike — and the match fails if the literal is not there. A last greedy run ends at
/// the first `d` or the end of the input. `d` is ASCII, so it never occurs inside a multi-byte
/// character and every boundary is a character boundary. This skips the capture engine,
/// which costs most of a mapping; anything else keeps the regex.
#[derive(Clone, Debug)]
struct SplitMatcher {
    steps: Box<[Step]>,
}

#[derive(Clone, Debug)]
enum Step {
    /// These bytes, here.
    Literal(Box<[u8]>),
    /// Everything up to the first `stop` (or the end, when `to_end`), captured as `group`.
    Run {
        stop: u8,
        group: Option<u32>,
        to_end: bool,
    },
}

impl SplitMatcher {
    fn from_hir(hir: &Hir) -> Option<SplitMatcher> {
        let HirKind::Concat(subs) = hir.kind() else {
            return None;
        };
        let (first, rest) = subs.split_first()?;
        if *first.kind() != HirKind::Look(Look::Start) {
            return None;
        }
        let mut steps = Vec::with_capacity(rest.len());
        for (i, sub) in rest.iter().enumerate() {
            let (run, group) = match sub.kind() {
                HirKind::Literal(lit) => {
                    steps.push(Step::Literal(lit.0.clone()));
                    continue;
                }
                HirKind::Capture(cap) => (&*cap.sub, Some(cap.index)),
                _ => (sub, None),
            };
            let (stop, greedy) = run_of(run)?;
            let to_end = match rest.get(i + 1).map(Hir::kind) {
                Some(HirKind::Literal(next)) if next.0.first() == Some(&stop) => false,
                None if greedy => true,
                _ => return None,
            };
            steps.push(Step::Run {
                stop,
                group,
                to_end,
            });
        }
        Some(SplitMatcher {
            steps: steps.into_boxed_slice(),
        })
    }

    /// The match, as [`meta::Regex::search_slots`] would give it.
    #[inline]
    fn search(&self, input: &str, slots: &mut [Option<NonMaxUsize>]) -> bool {
        let bytes = input.as_bytes();
        let mut at = 0;
        for step in &self.steps {
            let Some(rest) = bytes.get(at..) else {
                return false;
            };
            match step {
                Step::Literal(lit) => {
                    if !rest.starts_with(lit) {
                        return false;
                    }
                    at += lit.len();
                }
                Step::Run {
                    stop,
                    group,
                    to_end,
                } => {
                    let end = match memchr::memchr(*stop, rest) {
                        Some(i) => at + i,
                        None if *to_end => bytes.len(),
                        None => return false,
                    };
                    if let Some(g) = group {
                        set_group(slots, *g as usize, at, end);
                    }
                    at = end;
                }
            }
        }
        set_group(slots, 0, 0, at);
        true
    }
}

/// `[^d]*` (or `[^d]*?`) for one ASCII `d`: `(d, greedy)`.
fn run_of(hir: &Hir) -> Option<(u8, bool)> {
    let HirKind::Repetition(rep) = hir.kind() else {
        return None;
    };
    if rep.min != 0 || rep.max.is_some() {
        return None;
    }
    let HirKind::Class(Class::Unicode(class)) = rep.sub.kind() else {
        return None;
    };
    let [below, above] = class.ranges() else {
        return None;
    };
    let stop = u32::from(below.end()) + 1;
    let ascii = stop < 0x80 && u32::from(above.start()) == stop + 1;
    (below.start() == '\0' && above.end() == char::MAX && ascii).then_some((stop as u8, rep.greedy))
}

/// Sets group `g`'s slots, when the caller asked for them.
#[inline]
fn set_group(slots: &mut [Option<NonMaxUsize>], g: usize, start: usize, end: usize) {
    if let Some([s, e]) = slots.get_mut(2 * g..2 * g + 2) {
        *s = NonMaxUsize::new(start);
        *e = NonMaxUsize::new(end);
    }
}

/// Splits a top-level trailing `.*` (greedy), `.*$` or `.*?$` off `hir`.
/// Returns the prefix and whether the tail's `.` matches any character.
fn strip_any_tail(hir: &Hir) -> Option<(Hir, bool)> {
    let HirKind::Concat(subs) = hir.kind() else {
        return None;
    };
    let (subs, anchored_end) = match subs.split_last() {
        Some((last, rest)) if *last.kind() == HirKind::Look(Look::End) => (rest, true),
        _ => (subs.as_slice(), false),
    };
    let (tail, prefix) = subs.split_last()?;
    let HirKind::Repetition(rep) = tail.kind() else {
        return None;
    };
    if rep.min != 0 || rep.max.is_some() || !(rep.greedy || anchored_end) {
        return None;
    }
    let HirKind::Class(Class::Unicode(class)) = rep.sub.kind() else {
        return None;
    };
    let any_char = match class.ranges() {
        [all] if all.start() == '\0' && all.end() == char::MAX => true,
        [below, above]
            if below.start() == '\0'
                && below.end() == '\t'
                && above.start() == '\u{0B}'
                && above.end() == char::MAX =>
        {
            false
        }
        _ => return None,
    };
    Some((Hir::concat(prefix.to_vec()), any_char))
}

/// Counters for [`AttributeMapping::map_values`].
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingStats {
    /// Values that produced an output value.
    pub values_mapped: u64,
    /// Values dropped because the match pattern did not match them.
    pub values_dropped: u64,
}

/// How one LDAP attribute feeds one column of a lookup data set.
#[derive(Debug, Clone)]
pub struct AttributeMapping {
    /// Lookup data set column the mapped values go to.
    pub column: String,
    /// LDAP attribute the values come from.
    pub attribute: String,
    pattern: Option<Pattern>,
}

impl AttributeMapping {
    /// Builds a mapping. With no `match_pattern` values are copied
    /// unchanged (and `substitute` must be `None`); with a match pattern and
    /// no `substitute` the whole match is used.
    pub fn new(
        column: impl Into<String>,
        attribute: impl Into<String>,
        match_pattern: Option<&str>,
        substitute: Option<&str>,
    ) -> Result<Self, PatternError> {
        let pattern = match (match_pattern, substitute) {
            (Some(p), s) => Some(Pattern::compile(p, s)?),
            (None, Some(_)) => return Err(PatternError::SubstituteWithoutPattern),
            (None, None) => None,
        };
        Ok(AttributeMapping {
            column: column.into(),
            attribute: attribute.into(),
            pattern,
        })
    }

    /// The compiled pattern, `None` for a copying mapping.
    pub fn pattern(&self) -> Option<&Pattern> {
        self.pattern.as_ref()
    }

    /// Maps one value; `None` if the match pattern does not match it.
    #[inline]
    pub fn map_one(&self, value: &str) -> Option<String> {
        match &self.pattern {
            Some(p) => p.apply(value),
            None => Some(value.to_owned()),
        }
    }

    /// Maps the values of a (multi-valued) attribute one by one, pushing
    /// each result to `out` in order. Values the pattern does not match are
    /// dropped and counted in `stats.values_dropped`.
    pub fn map_values<'a, I>(&self, values: I, out: &mut Vec<String>, stats: &mut MappingStats)
    where
        I: IntoIterator<Item = &'a str>,
    {
        for value in values {
            match self.map_one(value) {
                Some(v) => {
                    out.push(v);
                    stats.values_mapped += 1;
                }
                None => stats.values_dropped += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seed_mappings() {
        let p = Pattern::compile(r"^([^@]*)@([^.]*)\..*$", Some(r"$2\$1")).unwrap();
        assert_eq!(
            p.apply("alice@corp.example.test").as_deref(),
            Some(r"corp\alice")
        );
        let mut out = String::from(">");
        assert!(p.apply_into("Bob.Smith@EMEA.corp.example", &mut out));
        assert_eq!(out, r">EMEA\Bob.Smith");
        assert!(!p.apply_into("noatsign", &mut out));
        assert_eq!(out, r">EMEA\Bob.Smith");
    }

    #[test]
    fn template_pieces_merge_literals() {
        let re = meta::Regex::new("(a)").unwrap();
        let t = Template::parse("x$$y$z$", &re).unwrap();
        assert_eq!(&*t.literals, "x$y$z$");
        assert_eq!(&*t.pieces, &[Piece::Literal { start: 0, end: 6 }]);
        assert_eq!(t.max_group, 0);
    }

    #[test]
    fn slots_only_up_to_max_group() {
        let p = Pattern::compile("(a)(b)(c)", Some("$2")).unwrap();
        assert_eq!(p.slots_len, 6);
        let p = Pattern::compile("(a)(b)(c)", None).unwrap();
        assert_eq!(p.slots_len, 2);
    }

    #[test]
    fn tail_stripping_applies_only_to_rest_of_value_tails() {
        let stripped = |p: &str| {
            Pattern::compile(p, None)
                .unwrap()
                .prefix
                .map(|x| x.any_char)
        };
        assert_eq!(stripped(r"^CN=([^,]*),.*$"), Some(false));
        assert_eq!(stripped(r"^([^@]*)@([^.]*)\..*$"), Some(false));
        assert_eq!(stripped(r"(?s)^CN=([^,]*),.*$"), Some(true));
        assert_eq!(stripped(r"^CN=([^,]*),.*"), Some(false));
        assert_eq!(stripped(r"^CN=([^,]*),.*?$"), Some(false));
        assert_eq!(stripped(r".*$"), Some(false));
        assert_eq!(stripped(r"^CN=([^,]*),.*?"), None);
        assert_eq!(stripped(r"^CN=([^,]*),.+$"), None);
        assert_eq!(stripped(r"^CN=([^,]*),(.*)$"), None);
        assert_eq!(stripped(r"(?m)^CN=([^,]*),.*$"), None);
        assert_eq!(stripped(r"(?R)^CN=([^,]*),.*$"), None);
        assert_eq!(stripped(r"^CN=([^,]*),[^x]*$"), None);
        assert_eq!(stripped(r"^CN=([^,]*)$"), None);
    }

    /// The prefix fast path must give exactly the slots of the full regex.
    #[test]
    fn tail_stripping_matches_full_regex() {
        let patterns = [
            r"^CN=([^,]*),.*$",
            r"^([^@]*)@([^.]*)\..*$",
            r"([^@]*)@([^.]*)\..*$",
            r"(?s)^CN=([^,]*),.*$",
            r"(?s)(a|ab)(c|bcd)?.*",
            r"^CN=([^,]*),.*",
            r"CN=([^,]*),.*?$",
            r"(a*)(b?).*$",
            r".*$",
            r"(?i)x(é|e)?.*",
            r"\b(\w+)?.*$",
            r"(?:(a)|(b)|)c?.*",
        ];
        let inputs = [
            "",
            "CN=a,b",
            "CN=a,b\n",
            "CN=a\n,b",
            "xCN=Smith\\, John,OU=x,DC=y",
            "alice@corp.example.test",
            "a@b@c.d.e",
            "@.",
            "\n@x.y",
            "abcd",
            "bbbcx",
            "XÉé x",
            "ab\ncd",
            "é€😀 \n",
        ];
        for pattern in patterns {
            let p = Pattern::compile(pattern, None).unwrap();
            assert!(p.prefix.is_some(), "{pattern} not stripped");
            let n = (p.group_count() + 1) * 2;
            for input in inputs {
                let mut fast = vec![None; n];
                let mut full = vec![None; n];
                let fast_found = p.search(input, &mut fast);
                let full_found = p
                    .regex
                    .search_slots(&Input::new(input), &mut full)
                    .is_some();
                assert_eq!(fast_found, full_found, "{pattern:?} on {input:?}");
                if full_found {
                    assert_eq!(fast, full, "{pattern:?} on {input:?}");
                }
            }
        }
    }

    /// Found by the pattern fuzz target: a group repeated zero times is removed by the parser
    /// but keeps its number, so the count (and `$2`) must include it.
    #[test]
    fn a_removed_group_keeps_its_number() {
        let p = Pattern::compile("^(a){0}(.*)", Some("<$2>")).unwrap();
        assert_eq!(p.group_count(), 2);
        assert_eq!(p.apply("xy").as_deref(), Some("<xy>"));
        assert_eq!(
            Pattern::compile("(a){0}(.*)", Some("$1|$2"))
                .unwrap()
                .apply("z")
                .as_deref(),
            Some("|z")
        );
    }

    /// Whether `p` (whole, or its prefix before a stripped `.*` tail) is matched by byte searches.
    fn byte_searched(p: &Pattern) -> bool {
        p.split.is_some() || p.prefix.as_ref().is_some_and(|x| x.split.is_some())
    }

    /// The seed's mappings take the byte-search path; shapes it cannot answer keep the regex.
    #[test]
    fn split_matcher_covers_the_seed_shapes_only() {
        let split = |pattern: &str| byte_searched(&Pattern::compile(pattern, None).unwrap());
        for yes in [
            r"^([^@]*)@([^.]*)\..*$",
            r"^CN=([^,]*),.*$",
            r"^CN=([^,]*),",
            r"\A([^@]*?)@",
            r"^([^@]*)",
            r"^corp\\",
        ] {
            assert!(split(yes), "{yes}");
        }
        for no in [
            r"([^@]*)@",         // unanchored
            r"(?i)^CN=([^,]*),", // case-insensitive literal
            r"(?m)^([^@]*)@",    // line anchor
            r"^([^@]*)x",        // the literal after the run does not start with its stop
            r"^([^@]*?)",        // a lazy last run
            r"^([^@]+)@",        // at least one
            r"^([^@é]*)@",       // two characters excluded
            r"^([^é]*)é",        // a non-ASCII stop
            r"^(CN)=",           // a captured literal
        ] {
            assert!(!split(no), "{no}");
        }
    }

    /// Random patterns of the byte-search shape and its near misses agree with the regex slot
    /// for slot on random inputs.
    #[test]
    fn split_matcher_agrees_with_the_regex() {
        let atoms = [
            "([^@]*)", "[^@]*", "([^.]*?)", "([^,]*)", "([^a]*)", "@", "\\.", ",", "CN=", "é", "a",
            "(?i:a)", ".", ".*$", ".*",
        ];
        let input_atoms = ["a", "A", "@", ".", ",", "CN=", "é", "\n", "😀", "x"];
        let mut rng = Rng(0x5EED_5EED_1234_5678);
        let mut split = 0;
        for _ in 0..3000 {
            let pattern = format!("^{}", rng.string(&atoms, 5));
            let p = Pattern::compile(&pattern, None).unwrap();
            if !byte_searched(&p) {
                continue;
            }
            split += 1;
            let n = (p.group_count() + 1) * 2;
            for _ in 0..20 {
                let input = rng.string(&input_atoms, 8);
                let mut fast = vec![None; n];
                let mut full = vec![None; n];
                let found = p.search(&input, &mut fast);
                let want = p
                    .regex
                    .search_slots(&Input::new(&input), &mut full)
                    .is_some();
                assert_eq!(found, want, "{pattern:?} on {input:?}");
                if want {
                    assert_eq!(fast, full, "{pattern:?} on {input:?}");
                }
            }
        }
        assert!(
            split > 500,
            "only {split} patterns took the byte-search path"
        );
    }

    /// Tiny deterministic PRNG (xorshift64*), to stay dependency-free.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
        }
        fn string(&mut self, alphabet: &[&str], max_len: usize) -> String {
            let len = self.below(max_len + 1);
            (0..len)
                .map(|_| alphabet[self.below(alphabet.len())])
                .collect()
        }
    }

    /// Random patterns, templates and inputs: nothing panics, and whatever
    /// compiles agrees with regex-automata's own captures + interpolation on
    /// templates whose syntax both share (`${N}`, `$$`, non-`$` literals).
    #[test]
    fn random_cases_agree_with_reference_and_never_panic() {
        let pattern_atoms = [
            "a", "b", "é", ".", "\\.", "@", ",", "(", ")", "(?:", "|", "*", "+", "?", "[^,]",
            "[^@]*", "^", "$", "\\", "{", "}", "${", "\\w", "\\b", "(?P<n>", ".*$", ".*",
        ];
        let template_atoms = ["$", "$$", "${", "}", "1", "0", "x", "\\", "é", "${n}", "{"];
        let input_atoms = ["a", "b", "é", ".", "@", ",", "\n", "\\", "$", "😀", " "];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut compiled = 0;
        for _ in 0..1500 {
            let pattern = rng.string(&pattern_atoms, 8);
            let template = rng.string(&template_atoms, 6);
            let Ok(p) = Pattern::compile(&pattern, Some(&template)) else {
                continue;
            };
            compiled += 1;
            let whole = Pattern::compile(&pattern, None).unwrap();
            let re = meta::Regex::new(&pattern).unwrap();
            // A template both engines read the same way.
            let groups = re.captures_len();
            let mut shared = String::new();
            for _ in 0..rng.below(5) {
                match rng.below(4) {
                    0 => shared.push_str(&format!("${{{}}}", rng.below(groups))),
                    1 => shared.push_str("$$"),
                    2 => shared.push_str("-\\é"),
                    _ => shared.push_str("${n}"),
                }
            }
            let shared_p = Pattern::compile(&pattern, Some(&shared));
            for _ in 0..8 {
                let input = rng.string(&input_atoms, 10);
                let _ = p.apply(&input);
                let mut caps = re.create_captures();
                re.captures(&input, &mut caps);
                let expected_whole = caps.get_match().map(|m| input[m.range()].to_owned());
                assert_eq!(
                    whole.apply(&input),
                    expected_whole,
                    "{pattern:?} on {input:?}"
                );
                match &shared_p {
                    Ok(sp) => {
                        let want = caps
                            .is_match()
                            .then(|| caps.interpolate_string(&input, &shared));
                        assert_eq!(
                            sp.apply(&input),
                            want,
                            "{pattern:?} {shared:?} on {input:?}"
                        );
                    }
                    Err(e) => assert!(
                        shared.contains("${n}") && matches!(e, PatternError::UnknownGroup { .. }),
                        "{pattern:?} {shared:?}: {e}"
                    ),
                }
            }
        }
        eprintln!("{compiled} random patterns compiled");
        assert!(compiled > 150, "only {compiled} random patterns compiled");
    }

    #[test]
    fn send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Pattern>();
        assert_send_sync::<AttributeMapping>();
    }
}
