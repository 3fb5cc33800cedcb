//! Server-name patterns (`api.example.com`, `*.example.com`), compiled once at load time.

use serde::{Serialize, Serializer};

/// A pattern for a TLS SNI or HTTP Host: an exact name, or `*.suffix` for any name one or
/// more labels below `suffix` (not `suffix` itself). Case-insensitive; a trailing dot is
/// ignored on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    /// Lowercase, without a trailing dot.
    Exact(String),
    /// Lowercase, with its leading dot: `*.example.com` is stored as `.example.com`.
    Suffix(String),
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid server name pattern {0:?}; expected a name like \"api.example.com\" or a wildcard like \"*.example.com\" (letters, digits, '-' and '_' in dot-separated labels)")]
pub struct BadPattern(pub String);

impl NamePattern {
    /// Compiles a pattern, refusing empty labels, stray `*` and characters no host name has.
    pub fn parse(pattern: &str) -> Result<NamePattern, BadPattern> {
        let bad = || BadPattern(pattern.to_string());
        let trimmed = pattern.strip_suffix('.').unwrap_or(pattern);
        let (wild, name) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(bad());
        }
        let name = name.to_ascii_lowercase();
        Ok(if wild {
            NamePattern::Suffix(format!(".{name}"))
        } else {
            NamePattern::Exact(name)
        })
    }

    /// True when `name` (an SNI or Host, any case, maybe with a trailing dot) matches.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        match self {
            NamePattern::Exact(exact) => name.eq_ignore_ascii_case(exact),
            NamePattern::Suffix(suffix) => {
                name.len() > suffix.len()
                    && name.is_char_boundary(name.len() - suffix.len())
                    && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && !name[..name.len() - suffix.len()].ends_with('.')
            }
        }
    }
}

impl std::fmt::Display for NamePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NamePattern::Exact(name) => f.write_str(name),
            NamePattern::Suffix(suffix) => write!(f, "*{suffix}"),
        }
    }
}

impl Serialize for NamePattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matches_labels_below_the_suffix_only() {
        let p = NamePattern::parse("*.Example.com").unwrap();
        for (name, want) in [
            ("a.example.com", true),
            ("A.B.EXAMPLE.com", true),
            ("a.example.com.", true),
            ("example.com", false),
            (".example.com", false),
            ("badexample.com", false),
            ("a.example.com.evil", false),
            ("", false),
        ] {
            assert_eq!(p.matches(name), want, "{name:?}");
        }
        assert_eq!(p.to_string(), "*.example.com");
    }

    #[test]
    fn exact_is_case_insensitive_and_ignores_trailing_dot() {
        let p = NamePattern::parse("api.example.com.").unwrap();
        assert!(p.matches("API.example.COM"));
        assert!(p.matches("api.example.com."));
        assert!(!p.matches("x.api.example.com"));
        assert!(!p.matches("api.example.co"));
    }

    #[test]
    fn multibyte_names_do_not_panic() {
        let p = NamePattern::parse("*.example.com").unwrap();
        assert!(!p.matches("é.example.coé"));
        assert!(!p.matches("ééééééééééééé"));
    }

    #[test]
    fn refuses_malformed_patterns() {
        for bad in [
            "",
            "*",
            "*.",
            "a..b",
            "*foo.com",
            "foo.*.com",
            "a b.com",
            "-.*.com",
            ".",
        ] {
            assert!(NamePattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
