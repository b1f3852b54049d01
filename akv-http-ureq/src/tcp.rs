//! TCP with deadlines and the fewest system calls per request on a kept connection.
//!
//! The socket is non-blocking from the start: a write or read that can go on at once is one
//! system call, and one that would block waits in `poll` with exactly the time left, so
//! deadlines are honoured to the millisecond without setting socket options per request (a
//! blocking socket needs its timeouts set again whenever the time left changes). Whether a
//! kept connection is still usable is one `recv(MSG_PEEK)`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

/// A connected, non-blocking TCP socket. `Read` and `Write` never wait: they report
/// `WouldBlock`, and [`Socket::wait`] waits.
#[derive(Debug)]
pub(crate) struct Socket {
    stream: TcpStream,
    /// Something was sent and nothing read or waited for since: the answer cannot be here
    /// yet, so the first read reports `WouldBlock` without a system call (the caller waits,
    /// then reads: two calls where read, wait, read would be three).
    just_sent: bool,
}

impl Socket {
    /// Connects to the first of `addrs` that answers, sharing the time until `deadline`
    /// between those left. A timeout is an error of kind `TimedOut`.
    pub(crate) fn connect(addrs: &[SocketAddr], deadline: Instant) -> io::Result<Socket> {
        let mut last = None;
        for (i, addr) in addrs.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let share = (left / (addrs.len() - i) as u32).max(Duration::from_millis(10));
            match TcpStream::connect_timeout(addr, share.min(left)) {
                Ok(stream) => {
                    // Once per connection, never per request.
                    stream.set_nodelay(true)?;
                    stream.set_nonblocking(true)?;
                    return Ok(Socket {
                        stream,
                        just_sent: false,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
    }

    /// Open means: nothing to read yet (the server neither closed nor sent anything we did
    /// not ask for), so a request may be sent on it.
    pub(crate) fn is_open(&self) -> bool {
        match self.stream.peek(&mut [0u8; 1]) {
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            Ok(_) => false,
        }
    }

    /// Waits until the socket can be read (`PollFlags::IN`) or written (`OUT`), or reports
    /// `TimedOut` when `deadline` has passed first. An error or hang-up counts as ready: the
    /// next read or write reports it.
    pub(crate) fn wait(&mut self, flags: PollFlags, deadline: Instant) -> io::Result<()> {
        if flags.contains(PollFlags::IN) {
            self.just_sent = false;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let left = Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            });
            let mut fds = [PollFd::new(&self.stream, flags)];
            match poll(&mut fds, Some(&left)) {
                Ok(0) => return Err(io::ErrorKind::TimedOut.into()),
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes all of `bytes`, waiting for room at most until `deadline`.
    pub(crate) fn write_all_by(&mut self, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(PollFlags::OUT, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what is there (0 at the end of the stream), waiting for it at most until
    /// `deadline`.
    pub(crate) fn read_by(&mut self, into: &mut [u8], deadline: Instant) -> io::Result<usize> {
        loop {
            match self.read(into) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(PollFlags::IN, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if std::mem::take(&mut self.just_sent) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        (&self.stream).read(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (&self.stream).write(buf)?;
        self.just_sent |= n > 0;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = (&self.stream).write_vectored(bufs)?;
        self.just_sent |= n > 0;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn pair() -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = Socket::connect(&[addr], in_ms(2000)).unwrap();
        let (peer, _) = listener.accept().unwrap();
        (socket, peer)
    }

    fn in_ms(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[test]
    fn reads_writes_deadlines_and_liveness() {
        let (mut s, mut peer) = pair();
        assert!(s.is_open());
        s.write_all_by(b"hello", in_ms(1000)).unwrap();
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");

        // Nothing arrives: the read gives up when the time is spent, not before.
        let started = Instant::now();
        let err = s.read_by(&mut got, in_ms(150)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(150));

        peer.write_all(b"world").unwrap();
        assert_eq!(s.read_by(&mut got, in_ms(1000)).unwrap(), 5);
        assert_eq!(&got, b"world");

        // Bytes nobody asked for, then a close: not reusable.
        peer.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!s.is_open());
        let (mut s, peer) = pair();
        drop(peer);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!s.is_open());
        assert_eq!(
            s.read_by(&mut got, in_ms(1000)).unwrap(),
            0,
            "end of stream"
        );
    }

    #[test]
    fn a_full_send_buffer_waits_until_the_deadline() {
        let (mut s, _peer) = pair();
        let big = vec![0u8; 64 << 20];
        let started = Instant::now();
        let err = s.write_all_by(&big, in_ms(200)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn refused_connections_are_reported_as_such() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = Socket::connect(&[addr], in_ms(1000)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
