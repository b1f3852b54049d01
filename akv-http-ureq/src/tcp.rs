//! TCP for ureq with the fewest system calls per request on a kept-alive connection.
//!
//! ureq's own TCP transport sets the socket's timeouts again whenever the remaining time
//! changes (on every request with a global timeout) and checks a pooled connection by
//! switching the socket to non-blocking and back (two `ioctl`s and a read, twice per
//! request). This one keeps the socket non-blocking from the start: a write or read that can
//! go on at once is one system call; one that would block waits in `poll` with exactly the
//! time left, so timeouts are honoured to the millisecond without touching socket options;
//! the liveness check is one `recv(MSG_PEEK)`; and a request goes out in one `send`.
//!
//! ureq hands over a request's head and its body separately (two TLS records). Sent as they
//! come, that is two segments, and on loopback each costs the sender the receiver's network
//! processing too. Output is therefore held until the transport is asked for input (a client
//! always reads after it writes: the response, the TLS handshake's reply, a proxy's answer),
//! or until enough is held to fill segments anyway.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use ureq::Error;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle,
    Transport,
};

/// Opens plain TCP connections when no earlier connector in the chain (a CONNECT proxy)
/// already made one.
#[derive(Debug, Default)]
pub(crate) struct LeanTcpConnector;

impl<In: Transport> Connector<In> for LeanTcpConnector {
    type Out = Either<In, LeanTcpTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        if let Some(transport) = chained {
            return Ok(Some(Either::A(transport)));
        }
        let stream = connect_any(&details.addrs, details.timeout)?;
        // Once per connection, never per request.
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let stream = Arc::new(stream);
        (details.register_shutdown)(Arc::downgrade(&stream) as Weak<dyn ShutdownHandle>)?;
        let config = details.config;
        Ok(Some(Either::B(LeanTcpTransport::new(
            stream,
            LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
        ))))
    }
}

/// Tries the addresses in order, sharing the time between those left.
fn connect_any(addrs: &[SocketAddr], timeout: NextTimeout) -> Result<TcpStream, Error> {
    let deadline = deadline_of(timeout);
    let mut last = None;
    for (i, addr) in addrs.iter().enumerate() {
        let result = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Timeout(timeout.reason));
                }
                let share = (left / (addrs.len() - i) as u32).max(Duration::from_millis(10));
                TcpStream::connect_timeout(addr, share.min(left))
            }
            None => TcpStream::connect(addr),
        };
        match result {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == io::ErrorKind::TimedOut => Error::Timeout(timeout.reason),
        Some(e) => Error::Io(e),
        None => Error::HostNotFound,
    })
}

/// When the timeout runs out, or `None` when there is none.
fn deadline_of(timeout: NextTimeout) -> Option<Instant> {
    timeout.not_zero().map(|after| Instant::now() + *after)
}

/// Held output beyond this is sent at once: a few full segments, so holding saves nothing.
const HOLD_AT_MOST: usize = 16 * 1024;

/// A non-blocking TCP connection.
#[derive(Debug)]
pub(crate) struct LeanTcpTransport {
    stream: Arc<TcpStream>,
    buffers: LazyBuffers,
    /// Output accepted but not yet sent (see the module comment), and the earliest write
    /// deadline it came with.
    held: Vec<u8>,
    held_until: Option<(Instant, ureq::Timeout)>,
}

impl LeanTcpTransport {
    fn new(stream: Arc<TcpStream>, buffers: LazyBuffers) -> LeanTcpTransport {
        LeanTcpTransport {
            stream,
            buffers,
            held: Vec::new(),
            held_until: None,
        }
    }

    /// Sends everything held, waiting for room at most until its write deadline.
    fn flush_held(&mut self) -> Result<(), Error> {
        let until = self.held_until.take();
        let mut sent = 0;
        let result = loop {
            if sent == self.held.len() {
                break Ok(());
            }
            match (&*self.stream).write(&self.held[sent..]) {
                Ok(0) => break Err(Error::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match wait_until(&self.stream, PollFlags::OUT, until.map(|(at, _)| at)) {
                        Ok(true) => {}
                        Ok(false) => {
                            let reason = until.map_or(ureq::Timeout::SendRequest, |(_, r)| r);
                            break Err(Error::Timeout(reason));
                        }
                        Err(e) => break Err(Error::Io(e)),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e.into()),
            }
        };
        self.held.clear();
        result
    }
}

/// Waits until the socket is ready for `flags`, at most for `timeout`.
fn wait(stream: &TcpStream, flags: PollFlags, timeout: NextTimeout) -> Result<(), Error> {
    match wait_until(stream, flags, deadline_of(timeout)) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::Timeout(timeout.reason)),
        Err(e) => Err(Error::Io(e)),
    }
}

/// Waits until the socket is ready for `flags` (true) or `deadline` has passed (false).
fn wait_until(stream: &TcpStream, flags: PollFlags, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let left = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                Some(Timespec::try_from(left).unwrap_or(Timespec {
                    tv_sec: i64::MAX,
                    tv_nsec: 0,
                }))
            }
            None => None,
        };
        let mut fds = [PollFd::new(stream, flags)];
        match poll(&mut fds, left.as_ref()) {
            Ok(0) => return Ok(false),
            // Readable, writable, or an error or hang-up the next read or write reports.
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn check(timeout: NextTimeout) -> Result<NextTimeout, Error> {
    if timeout.after.is_zero() {
        Err(Error::Timeout(timeout.reason))
    } else {
        Ok(timeout)
    }
}

impl Transport for LeanTcpTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let timeout = check(timeout.for_write())?;
        if let Some(at) = deadline_of(timeout) {
            if self.held_until.is_none_or(|(earlier, _)| at < earlier) {
                self.held_until = Some((at, timeout.reason));
            }
        }
        self.held
            .extend_from_slice(&self.buffers.output()[..amount]);
        if self.held.len() >= HOLD_AT_MOST {
            self.flush_held()?;
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let timeout = check(timeout.for_read())?;
        if !self.held.is_empty() {
            self.flush_held()?;
            // The answer to what just left cannot be here yet: wait before the first read
            // rather than spend a read on learning that.
            wait(&self.stream, PollFlags::IN, timeout)?;
        }
        loop {
            let input = self.buffers.input_append_buf();
            match (&*self.stream).read(input) {
                Ok(n) => {
                    self.buffers.input_appended(n);
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait(&self.stream, PollFlags::IN, timeout)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Open means: nothing to read yet (the server neither closed nor sent anything we did
    /// not ask for). One `recv(MSG_PEEK)` on the non-blocking socket.
    fn is_open(&mut self) -> bool {
        match self.stream.peek(&mut [0u8; 1]) {
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            Ok(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn pair() -> (LeanTcpTransport, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let timeout = NextTimeout {
            after: Duration::from_secs(2).into(),
            ..NextTimeout::default()
        };
        let stream = connect_any(&[addr], timeout).unwrap();
        stream.set_nonblocking(true).unwrap();
        let (peer, _) = listener.accept().unwrap();
        let transport = LeanTcpTransport::new(Arc::new(stream), LazyBuffers::new(4096, 4096));
        (transport, peer)
    }

    fn within(ms: u64) -> NextTimeout {
        NextTimeout {
            after: Duration::from_millis(ms).into(),
            ..NextTimeout::default()
        }
    }

    #[test]
    fn reads_writes_timeouts_and_liveness() {
        let (mut t, mut peer) = pair();
        assert!(t.is_open());
        // A head and a body: held until the transport is asked for input, then one send.
        t.buffers().output()[..5].copy_from_slice(b"hello");
        t.transmit_output(5, within(1000)).unwrap();
        t.buffers().output()[..3].copy_from_slice(b", x");
        t.transmit_output(3, within(1000)).unwrap();
        peer.set_nonblocking(true).unwrap();
        let mut got = [0u8; 8];
        assert_eq!(
            peer.read(&mut got).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );

        // Nothing arrives: the read gives up when the time is spent, not before.
        let started = Instant::now();
        let err = t.await_input(within(150)).unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert_eq!(peer.read(&mut got).unwrap(), 8, "sent as one");
        assert_eq!(&got, b"hello, x");
        peer.set_nonblocking(false).unwrap();

        peer.write_all(b"world").unwrap();
        assert!(t.await_input(within(1000)).unwrap());
        assert_eq!(t.buffers().input(), b"world");

        // Bytes nobody asked for, then a close: not reusable.
        peer.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_open());
        let (mut t, peer) = pair();
        drop(peer);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_open());
    }

    #[test]
    fn large_output_is_not_held() {
        let (mut t, mut peer) = pair();
        let chunk = 4096;
        for round in 0..(HOLD_AT_MOST / chunk) {
            t.buffers().output()[..chunk].fill(round as u8);
            t.transmit_output(chunk, within(1000)).unwrap();
        }
        let mut got = vec![0u8; HOLD_AT_MOST];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got[HOLD_AT_MOST - 1], (HOLD_AT_MOST / chunk - 1) as u8);
    }

    #[test]
    fn refused_connections_are_io_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = connect_any(&[addr], within(1000)).unwrap_err();
        assert!(
            matches!(&err, Error::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused),
            "{err}"
        );
    }
}
