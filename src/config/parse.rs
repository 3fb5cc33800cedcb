//! Stage one with every shape problem: serde stops at the first unknown field or wrong
//! type, so after each such error on a one-line `key = value` the line is blanked (byte
//! offsets stay put) and the file is read again, until it deserializes or an error cannot
//! be stepped over. Syntax errors are reported once: what follows them means nothing.

use serde::de::DeserializeOwned;

use super::problem::{Doc, Problem};

/// Enough for any hand-written file; a bound so a pathological one cannot loop long.
const MAX_ERRORS_PER_FILE: usize = 50;

/// Deserializes `doc`, pushing every shape problem found; `None` when there was any.
pub(crate) fn parse_all<T: DeserializeOwned>(doc: &Doc, out: &mut Vec<Problem>) -> Option<T> {
    // A valid file is parsed once (reloads of large policies are mostly parsing); only a
    // broken one is parsed again to tell syntax errors from shape errors.
    if let Ok(value) = toml::from_str::<T>(doc.text) {
        return Some(value);
    }
    if let Err(e) = toml::from_str::<toml::Table>(doc.text) {
        out.push(doc.toml_error(&e));
        return None;
    }
    let mut text = doc.text.to_string();
    let mut found: Vec<Problem> = Vec::new();
    loop {
        let err = match toml::from_str::<T>(&text) {
            Ok(value) if found.is_empty() => return Some(value),
            Ok(_) => break,
            Err(e) => e,
        };
        let problem = doc.toml_error(&err);
        let repeated = found.contains(&problem);
        if !repeated {
            found.push(problem);
        }
        let blanked = err
            .span()
            .and_then(|span| blank_key_value_line(&text, span.start));
        match blanked {
            Some(next) if !repeated && found.len() < MAX_ERRORS_PER_FILE => {
                // Only carry on while the file is still TOML (a multi-line value is not).
                if toml::from_str::<toml::Table>(&next).is_err() {
                    break;
                }
                text = next;
            }
            _ => break,
        }
    }
    out.extend(found);
    None
}

/// `text` with the line holding `offset` replaced by spaces, when that line is a whole
/// `key = value` (not a table header, not part of a multi-line value).
fn blank_key_value_line(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let end = text
        .get(offset..)?
        .find('\n')
        .map_or(text.len(), |i| offset + i);
    let line = text.get(start..end)?;
    let trimmed = line.trim_start();
    if trimmed.starts_with('[') || !trimmed.contains('=') {
        return None;
    }
    let mut next = String::with_capacity(text.len());
    next.push_str(&text[..start]);
    next.extend(line.chars().map(|c| if c == '\r' { c } else { ' ' }));
    // Keep byte offsets: a multi-byte character becomes as many spaces as it had bytes.
    let pad = line.len() - line.chars().count();
    next.push_str(&" ".repeat(pad));
    next.push_str(&text[end..]);
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blanking_keeps_offsets_and_skips_headers() {
        let text = "a = 1\nbé = 2\n[t]\nc = 3\n";
        let next = blank_key_value_line(text, 7).unwrap();
        assert_eq!(next.len(), text.len());
        assert_eq!(next, "a = 1\n       \n[t]\nc = 3\n");
        assert_eq!(blank_key_value_line(text, 15), None);
    }
}
