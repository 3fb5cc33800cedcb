//! Streams the frames of a pcap or pcapng file (pcap-parser), each with its link type and
//! capture time, in constant memory.

use std::io::Read;
use std::time::Duration;

use pcap_parser::pcapng::Block;
use pcap_parser::{create_reader, PcapBlockOwned, PcapError};

use super::packet::Link;

/// Room for the largest block: tcpdump's default snap length is 262144 bytes.
const BUFFER: usize = 1 << 20;

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Capture time since the Unix epoch.
    pub at: Duration,
    /// `None`: a link type replay does not read (the frame is skipped).
    pub link: Option<Link>,
    pub data: &'a [u8],
}

/// Why a capture could not be read (to its end).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("not a pcap or pcapng file")]
    NotACapture,
    #[error("truncated: the file ends inside a record, after {0} bytes")]
    Truncated(usize),
    #[error("corrupt record after {offset} bytes: {detail}")]
    Corrupt { offset: usize, detail: String },
    #[error("read error after {0} bytes")]
    Read(usize),
}

/// Per-interface facts a pcapng file gives once and its packets refer to.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link: Option<Link>,
    /// Timestamp units per second.
    resolution: u64,
    offset: i64,
}

fn ts(seconds: u64, fraction: u64, per_second: u64) -> Duration {
    let nanos = u128::from(fraction) * 1_000_000_000 / u128::from(per_second.max(1));
    Duration::from_secs(seconds) + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// Calls `each` for every frame in order; returns the number of frames, or why the file
/// could not be read to its end (frames before the damage have been delivered).
pub fn frames<R, F>(input: R, mut each: F) -> Result<u64, CaptureError>
where
    R: Read + Send,
    F: FnMut(Frame<'_>),
{
    let mut reader = match create_reader(BUFFER, input) {
        Ok(reader) => reader,
        Err(PcapError::Eof) | Err(PcapError::HeaderNotRecognized) => {
            return Err(CaptureError::NotACapture)
        }
        Err(PcapError::ReadError) => return Err(CaptureError::Read(0)),
        Err(_) => return Err(CaptureError::NotACapture),
    };
    let mut legacy: Option<(Option<Link>, u64)> = None;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut last = Duration::ZERO;
    let mut count = 0u64;
    loop {
        let consumed = reader.consumed();
        match reader.next() {
            Ok((offset, block)) => {
                let frame = match block {
                    PcapBlockOwned::LegacyHeader(header) => {
                        let per_second = if header.is_nanosecond_precision() {
                            1_000_000_000
                        } else {
                            1_000_000
                        };
                        legacy = Some((Link::from_linktype(header.network.0), per_second));
                        None
                    }
                    PcapBlockOwned::Legacy(packet) => {
                        let (link, per_second) = legacy.unwrap_or((None, 1_000_000));
                        let at = ts(packet.ts_sec.into(), packet.ts_usec.into(), per_second);
                        Some(Frame {
                            at,
                            link,
                            data: packet.data,
                        })
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                        interfaces.clear();
                        None
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        interfaces.push(Interface {
                            link: Link::from_linktype(idb.linktype.0),
                            resolution: idb.ts_resolution().unwrap_or(1_000_000),
                            offset: idb.ts_offset(),
                        });
                        None
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let iface = interfaces.get(epb.if_id as usize).copied();
                        let link = iface.and_then(|i| i.link);
                        let at = iface.map_or(last, |i| {
                            let (s, f) = epb.decode_ts(i.offset as u64, i.resolution);
                            ts(s.into(), f.into(), i.resolution)
                        });
                        let caplen = (epb.caplen as usize).min(epb.data.len());
                        Some(Frame {
                            at,
                            link,
                            data: &epb.data[..caplen],
                        })
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => Some(Frame {
                        at: last,
                        link: interfaces.first().and_then(|i| i.link),
                        data: spb.data,
                    }),
                    PcapBlockOwned::NG(_) => None,
                };
                if let Some(frame) = frame {
                    last = frame.at;
                    count += 1;
                    each(frame);
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => return Ok(count),
            Err(PcapError::Incomplete(_)) => {
                reader.refill().map_err(|_| CaptureError::Read(consumed))?;
            }
            Err(PcapError::UnexpectedEof) => return Err(CaptureError::Truncated(consumed)),
            Err(PcapError::ReadError) => return Err(CaptureError::Read(consumed)),
            Err(err) => {
                return Err(CaptureError::Corrupt {
                    offset: consumed,
                    detail: match err {
                        PcapError::BufferTooSmall => "a record larger than 1 MiB".to_owned(),
                        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
                            format!("unparsable block ({kind:?})")
                        }
                        other => format!("{other:?}"),
                    },
                })
            }
        }
    }
}
