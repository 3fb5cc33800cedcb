//! splice(2) through a pipe: socket -> pipe -> socket without the bytes entering user space
//! (Linux). Safe wrappers from nix; the sockets' non-blocking mode and tokio's readiness
//! decide when to call.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{splice, OFlag, SpliceFFlags};
use nix::unistd::pipe2;

/// One direction's pipe: what `fill` moves in, `drain` moves out.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

impl Pipe {
    /// `None` when no pipe can be had (out of file descriptors): the caller copies instead.
    pub fn new() -> Option<Pipe> {
        let (read, write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).ok()?;
        Some(Pipe { read, write })
    }

    /// Moves up to `len` bytes from `socket` into the pipe; 0 at end of stream.
    pub fn fill(&self, socket: impl AsFd, len: usize) -> io::Result<usize> {
        splice(socket, None, &self.write, None, len, FLAGS).map_err(io::Error::from)
    }

    /// Moves up to `len` bytes from the pipe into `socket`.
    pub fn drain(&self, socket: impl AsFd, len: usize) -> io::Result<usize> {
        splice(&self.read, None, socket, None, len, FLAGS).map_err(io::Error::from)
    }
}
