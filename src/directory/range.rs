//! Attribute range retrieval names (`member;range=0-1499`), as Active
//! Directory returns for multi-valued attributes larger than its MaxValRange.

/// A parsed `attr;range=low-high` attribute description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RangedAttr {
    /// The description without the `range=` option (`member`, or
    /// `member;binary` if other options were present).
    pub base: String,
    /// First value index in this chunk.
    pub low: u32,
    /// Last value index in this chunk; `None` for `*` (this is the last chunk).
    pub high: Option<u32>,
}

/// Parses an attribute description returned by the server; `None` if it has
/// no (well-formed) `range=` option.
pub(crate) fn parse_range_attr(name: &str) -> Option<RangedAttr> {
    let mut parts = name.split(';');
    let first = parts.next()?;
    let mut base = String::from(first);
    let mut range = None;
    for opt in parts {
        match opt.get(..6) {
            Some(p) if p.eq_ignore_ascii_case("range=") && range.is_none() => {
                range = Some(parse_bounds(&opt[6..])?);
            }
            _ => {
                base.push(';');
                base.push_str(opt);
            }
        }
    }
    let (low, high) = range?;
    if first.is_empty() {
        return None;
    }
    Some(RangedAttr { base, low, high })
}

fn parse_bounds(s: &str) -> Option<(u32, Option<u32>)> {
    let (lo, hi) = s.split_once('-')?;
    let low = parse_u32(lo)?;
    let high = if hi == "*" {
        None
    } else {
        let h = parse_u32(hi)?;
        if h < low {
            return None;
        }
        Some(h)
    };
    Some((low, high))
}

fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// True if `returned` names the attribute `wanted` (case-insensitive), with or
/// without a range option.
pub(crate) fn same_attr(returned: &str, wanted: &str) -> bool {
    match parse_range_attr(returned) {
        Some(r) => r.base.eq_ignore_ascii_case(wanted),
        None => returned.eq_ignore_ascii_case(wanted),
    }
}

/// The attribute description requesting the window of `size` values starting at `low`
/// (`member;range=1000-1999`). Servers answer with what they have of it, possibly fewer
/// values (`member;range=1000-1499`), or `*` as the end when the window reaches the last value.
pub(crate) fn range_request(base: &str, low: u32, size: u32) -> String {
    let high = low.saturating_add(size.max(1) - 1);
    format!("{base};range={low}-{high}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn r(base: &str, low: u32, high: Option<u32>) -> Option<RangedAttr> {
        Some(RangedAttr {
            base: base.into(),
            low,
            high,
        })
    }

    #[test]
    fn parses_ad_forms() {
        assert_eq!(
            parse_range_attr("member;range=0-1499"),
            r("member", 0, Some(1499))
        );
        assert_eq!(
            parse_range_attr("member;range=1500-*"),
            r("member", 1500, None)
        );
        assert_eq!(
            parse_range_attr("memberOf;Range=0-4999"),
            r("memberOf", 0, Some(4999))
        );
        assert_eq!(
            parse_range_attr("member;RANGE=3000-3000"),
            r("member", 3000, Some(3000))
        );
        assert_eq!(
            parse_range_attr("member;binary;range=0-9"),
            r("member;binary", 0, Some(9))
        );
        assert_eq!(
            parse_range_attr("member;range=0-9;binary"),
            r("member;binary", 0, Some(9))
        );
    }

    #[test]
    fn rejects_non_ranged_and_malformed() {
        for s in [
            "member",
            "member;binary",
            "member;range=",
            "member;range=0",
            "member;range=a-9",
            "member;range=-9",
            "member;range=0-",
            "member;range=9-0",
            "member;range=0-1x",
            "member;range=+1-2",
            "member;range=0-99999999999",
            ";range=0-*",
            "",
        ] {
            assert_eq!(parse_range_attr(s), None, "{s}");
        }
    }

    #[test]
    fn same_attr_and_request() {
        assert!(same_attr("member;range=0-1499", "member"));
        assert!(same_attr("Member", "member"));
        assert!(!same_attr("memberOf", "member"));
        assert!(!same_attr("memberOf;range=0-*", "member"));
        assert_eq!(
            range_request("member", 1500, 1000),
            "member;range=1500-2499"
        );
        assert_eq!(range_request("member", 0, 1), "member;range=0-0");
        assert_eq!(
            range_request("member", u32::MAX - 1, 1000),
            "member;range=4294967294-4294967295"
        );
    }
}
