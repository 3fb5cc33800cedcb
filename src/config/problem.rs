//! Validation problems, each with the `FILE:LINE:COL` where it was found.

use std::fmt;
use std::ops::Range;

/// One thing wrong with a configuration or policy file. Lines and columns are 1-based
/// (columns count characters); a problem with a whole file (unreadable, missing) is at 1:1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Every problem found, in file order and then position order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct Problems(pub Vec<Problem>);

fn lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A file being validated: its display name and text, for turning byte spans into
/// positions.
pub(crate) struct Doc<'a> {
    pub file: String,
    pub text: &'a str,
}

impl Doc<'_> {
    /// A problem at the start of `span`.
    pub fn at(&self, span: Range<usize>, message: impl Into<String>) -> Problem {
        let (line, col) = position(self.text, span.start);
        Problem {
            file: self.file.clone(),
            line,
            col,
            message: message.into(),
        }
    }

    /// A problem with the file as a whole.
    pub fn whole(&self, message: impl Into<String>) -> Problem {
        whole_file(&self.file, message)
    }

    /// A TOML syntax or shape error, at its span when it has one.
    pub fn toml_error(&self, err: &toml::de::Error) -> Problem {
        // toml's messages may run over several lines ("invalid array\nexpected `]`").
        let message = err
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        match err.span() {
            Some(span) => self.at(span, message),
            None => self.whole(message),
        }
    }
}

/// A problem with `file` as a whole (1:1).
pub(crate) fn whole_file(file: &str, message: impl Into<String>) -> Problem {
    Problem {
        file: file.to_string(),
        line: 1,
        col: 1,
        message: message.into(),
    }
}

/// 1-based line and character column of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(position(text, 0), (1, 1));
        assert_eq!(position(text, 4), (1, 5));
        assert_eq!(position(text, 6), (2, 1));
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(position(text, 12), (2, 6));
        assert_eq!(position(text, 999), (3, 1));
    }

    #[test]
    fn problems_display_one_per_line() {
        let p = Problems(vec![
            whole_file("a.toml", "first"),
            Problem {
                file: "b.toml".into(),
                line: 3,
                col: 7,
                message: "second".into(),
            },
        ]);
        assert_eq!(p.to_string(), "a.toml:1:1: first\nb.toml:3:7: second");
    }
}
