//! splice(2) through a pipe: socket -> pipe -> socket without the bytes entering user space
//! (Linux). Safe wrappers from nix; the sockets' non-blocking mode and tokio's readiness
//! decide when to call. Pipes live in a shared pool and a connection holds one only while
//! bytes are in flight, so idle connections cost no descriptors and no pipe buffers.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, PoisonError};

use nix::fcntl::{splice, OFlag, SpliceFFlags};
use nix::unistd::pipe2;

/// One direction's pipe while it carries bytes: `fill` moves them in, `drain` out.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

/// Empty pipes kept for reuse; beyond this many, returned pipes are closed.
const POOL_MAX: usize = 1024;

static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

impl Pipe {
    /// An empty pipe from the pool, or a new one; `None` when none can be had (out of file
    /// descriptors): the caller copies instead.
    pub fn take() -> Option<Pipe> {
        if let Some(pipe) = POOL.lock().unwrap_or_else(PoisonError::into_inner).pop() {
            return Some(pipe);
        }
        let (read, write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).ok()?;
        Some(Pipe { read, write })
    }

    /// Returns an EMPTY pipe to the pool (a pipe still holding bytes must be dropped).
    pub fn give_back(self) {
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL_MAX {
            pool.push(self);
        }
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
