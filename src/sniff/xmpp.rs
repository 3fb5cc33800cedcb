//! XMPP client stream header (RFC 6120 §4.2, §4.7-4.8): an optional XML declaration, then
//! the `<stream:stream` start tag whose attributes bind the `stream` prefix to
//! `http://etherx.jabber.org/streams`. `<?xml` alone opens any XML document.

use super::parse::{ensure, literal, verdict, Stop};
use super::Verdict;

const STREAMS_NS: &[u8] = b"http://etherx.jabber.org/streams";
/// The declaration and the stream header's attributes fit in this.
const MAX_TAG: usize = 2048;

/// The stream header at the start of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(stream_header(buf))
}

fn stream_header(buf: &[u8]) -> Result<(), Stop> {
    let rest = match literal(buf, b"<?xml ") {
        Ok(decl) => after_declaration(decl)?,
        Err(Stop::NoMatch) => buf,
        Err(Stop::NeedMore) => return Err(Stop::NeedMore),
    };
    let rest = literal(skip_space(rest), b"<stream:stream ")?;
    let end = rest.iter().take(MAX_TAG).position(|&b| b == b'>');
    let attributes = match end {
        Some(end) => &rest[..end],
        None if rest.len() >= MAX_TAG => return Err(Stop::NoMatch),
        None => return tag_so_far(rest),
    };
    ensure(
        attributes.iter().all(|&b| b != b'<')
            && attributes
                .windows(STREAMS_NS.len())
                .any(|w| w == STREAMS_NS),
    )
}

/// `version='1.0' ...?>`: the bytes after the declaration's end.
fn after_declaration(decl: &[u8]) -> Result<&[u8], Stop> {
    let end = decl.windows(2).take(MAX_TAG).position(|w| w == b"?>");
    match end {
        Some(end) => {
            ensure(decl[..end].iter().all(|&b| b != b'<' && b != b'>'))?;
            Ok(&decl[end + 2..])
        }
        None if decl.len() > MAX_TAG => Err(Stop::NoMatch),
        None => {
            ensure(decl.iter().all(|&b| b != b'<' && b != b'>'))?;
            Err(Stop::NeedMore)
        }
    }
}

/// An unfinished start tag: wait, unless it already holds a byte no tag may.
fn tag_so_far(tag: &[u8]) -> Result<(), Stop> {
    ensure(tag.iter().all(|&b| b != b'<'))?;
    Err(Stop::NeedMore)
}

fn skip_space(buf: &[u8]) -> &[u8] {
    let n = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &buf[n..]
}
