//! TCP with deadlines and the fewest system calls per request on a kept connection.
//!
//! A read waits inside `recv`, bounded by the socket's receive timeout (`SO_RCVTIMEO`),
//! which is set again only when a request's deadline is clearly nearer than the timeout
//! already set (an eighth of the time left): requests with the usual timeout set it once
//! per connection, and a read never waits much past its deadline. So the answer costs one
//! `recv`, not a `poll` and a `recv`. Writes never wait in the kernel: they pass
//! `MSG_DONTWAIT` (and `MSG_NOSIGNAL`: the host program may not ignore SIGPIPE), and a full
//! send buffer is waited for in `poll` with exactly the time left. Whether a kept
//! connection is still usable is one `recv(MSG_PEEK | MSG_DONTWAIT)`.

use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags, recv, sendmsg};

/// A connected TCP socket. `Write` never waits (it reports `WouldBlock`); `Read` waits at
/// most as long as [`Socket::read_deadline`] last allowed.
#[derive(Debug)]
pub(crate) struct Socket {
    stream: TcpStream,
    /// The receive timeout the socket has, if any was set.
    read_wait: Option<Duration>,
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
                    return Ok(Socket {
                        stream,
                        read_wait: None,
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
        matches!(
            recv(
                &self.stream,
                &mut [0u8; 1],
                RecvFlags::PEEK | RecvFlags::DONTWAIT
            ),
            Err(rustix::io::Errno::AGAIN)
        )
    }

    /// Makes the next reads wait at most until about `deadline` (an eighth of the time left
    /// later at most), or reports `TimedOut` when it has passed.
    pub(crate) fn read_deadline(&mut self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        if self.read_wait.is_none_or(|wait| wait > left + left / 8) {
            self.stream.set_read_timeout(Some(left))?;
            self.read_wait = Some(left);
        }
        Ok(())
    }

    /// Waits until the socket can be written, or reports `TimedOut` when `deadline` has
    /// passed first. An error or hang-up counts as ready: the next write reports it.
    pub(crate) fn wait_writable(&self, deadline: Instant) -> io::Result<()> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let left = Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            });
            let mut fds = [PollFd::new(&self.stream, PollFlags::OUT)];
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_writable(deadline)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what is there (0 at the end of the stream), waiting for it until about
    /// `deadline` (see [`Socket::read_deadline`]).
    pub(crate) fn read_by(&mut self, into: &mut [u8], deadline: Instant) -> io::Result<usize> {
        loop {
            self.read_deadline(deadline)?;
            match self.read(into) {
                Err(e) if is_wait_over(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

/// A read's receive timeout ran out (the caller checks its deadline and may read again).
pub(crate) fn is_wait_over(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.stream).read(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        Ok(sendmsg(
            &self.stream,
            bufs,
            &mut SendAncillaryBuffer::default(),
            flags,
        )?)
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
    fn a_nearer_deadline_shortens_the_wait_a_farther_one_keeps_it() {
        let (mut s, _peer) = pair();
        s.read_deadline(in_ms(5000)).unwrap();
        let set = s.read_wait.unwrap();
        // Slightly less time left, as on the next request: the timeout is not set again.
        s.read_deadline(in_ms(4900)).unwrap();
        assert_eq!(s.read_wait, Some(set));
        // Much less: it is, and the read gives up near its deadline, not after 5 s.
        let started = Instant::now();
        let err = s.read_by(&mut [0u8; 4], in_ms(200)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_millis(400), "{took:?}");
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
