//! Name resolution that costs nothing on a warm connection. Our own exchange asks only when
//! it opens a connection; ureq (used through proxies) asks before every request, and its
//! default resolver runs `getaddrinfo` on a new thread whenever a timeout is set: a thread and
//! a lookup per request. This one answers IP literals at once and keeps looked-up addresses for a short
//! time ([`KEEP_FOR`]), so that a lookup happens when a connection is opened after that time,
//! never per request, while a vault's DNS change (a regional failover) is still followed.
//! Addresses of a host are dropped when a connection to it fails.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use ureq::Error;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long looked-up addresses are used. Azure's DNS answers for vault hosts live for
/// minutes; a shorter time here follows a failover sooner.
pub(crate) const KEEP_FOR: Duration = Duration::from_secs(30);

/// Stack of the thread a timed lookup runs on (glibc's resolver needs far less).
const LOOKUP_STACK: usize = 256 * 1024;

#[derive(Debug)]
struct Entry {
    host: String,
    port: u16,
    addrs: Vec<SocketAddr>,
    until: Instant,
}

/// A resolver with a short-lived address cache, shared by the clones of one transport.
#[derive(Debug, Default)]
pub(crate) struct CachingResolver {
    /// A handful of hosts at most (a vault or two and a token service): a list is enough.
    entries: Mutex<Vec<Entry>>,
}

/// Why no address was found.
#[derive(Debug)]
pub(crate) enum LookupError {
    /// The name has no address, or the lookup failed.
    NotFound(std::io::Error),
    /// The lookup did not answer in time.
    Timeout,
}

impl CachingResolver {
    /// Forgets what was looked up for `host` (after a connection to it failed).
    pub(crate) fn forget(&self, host: &str) {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|e| e.host != host);
    }

    /// The addresses of `host` (a name, or an IP literal with or without brackets): at once
    /// for a literal or for a name looked up less than [`KEEP_FOR`] ago, else by a lookup
    /// that gives up after `timeout`.
    pub(crate) fn addrs(
        &self,
        host: &str,
        port: u16,
        timeout: Option<Duration>,
    ) -> Result<Vec<SocketAddr>, LookupError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let now = Instant::now();
        if let Some(addrs) = self.cached(host, port, now) {
            return Ok(addrs);
        }
        let addrs = look_up(host, port, timeout)?;
        if addrs.is_empty() {
            return Err(LookupError::NotFound(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{host} has no address"),
            )));
        }
        self.remember(host, port, &addrs, now);
        Ok(addrs)
    }

    fn cached(&self, host: &str, port: u16, now: Instant) -> Option<Vec<SocketAddr>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .find(|e| e.host == host && e.port == port && now < e.until)
            .map(|e| e.addrs.clone())
    }

    fn remember(&self, host: &str, port: u16, addrs: &[SocketAddr], now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|e| !(e.host == host && e.port == port) && now < e.until);
        entries.push(Entry {
            host: host.to_owned(),
            port,
            addrs: addrs.to_vec(),
            until: now + KEEP_FOR,
        });
    }
}

/// For ureq, which serves the connections through a proxy (it asks before every request).
impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        let host = uri
            .host()
            .ok_or_else(|| Error::BadUri(format!("{uri} has no host")))?;
        let port = uri
            .port_u16()
            .or(match uri.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            })
            .ok_or_else(|| Error::BadUri(format!("{uri} has no known port")))?;
        let found = match self.addrs(host, port, timeout.not_zero().map(|d| *d)) {
            Ok(found) => found,
            Err(LookupError::Timeout) => return Err(Error::Timeout(timeout.reason)),
            Err(LookupError::NotFound(_)) => return Err(Error::HostNotFound),
        };
        let mut addrs = self.empty();
        for addr in config.ip_family().keep_wanted(found.into_iter()) {
            if addrs.try_push(addr).is_err() {
                break; // as many as ureq keeps
            }
        }
        if addrs.is_empty() {
            return Err(Error::HostNotFound);
        }
        Ok(addrs)
    }
}

/// `getaddrinfo` within the timeout. A lookup that does not answer in time is abandoned on
/// its thread; that happens only when the cache has nothing, not per request.
fn look_up(
    host: &str,
    port: u16,
    timeout: Option<Duration>,
) -> Result<Vec<SocketAddr>, LookupError> {
    let target = (host.to_owned(), port);
    let Some(limit) = timeout else {
        return target
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(LookupError::NotFound);
    };
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("akv-resolve".into())
        .stack_size(LOOKUP_STACK)
        .spawn(move || {
            let _ = tx.send(target.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
        })
        .map_err(LookupError::NotFound)?;
    match rx.recv_timeout(limit) {
        Ok(result) => result.map_err(LookupError::NotFound),
        Err(RecvTimeoutError::Timeout) => Err(LookupError::Timeout),
        Err(RecvTimeoutError::Disconnected) => Err(LookupError::NotFound(std::io::Error::other(
            "the lookup thread ended without an answer",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(r: &CachingResolver, uri: &str) -> Result<Vec<SocketAddr>, Error> {
        let uri: Uri = uri.parse().unwrap();
        let timeout = NextTimeout {
            after: Duration::from_secs(5).into(),
            ..NextTimeout::default()
        };
        r.resolve(&uri, &Config::default(), timeout)
            .map(|a| a.iter().copied().collect())
    }

    #[test]
    fn literals_answer_at_once_and_names_are_kept_then_forgotten() {
        let r = CachingResolver::default();
        assert_eq!(
            resolve(&r, "https://127.0.0.1:8443/keys").unwrap(),
            ["127.0.0.1:8443".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve(&r, "http://[::1]/x").unwrap(),
            ["[::1]:80".parse::<SocketAddr>().unwrap()]
        );
        assert!(
            r.entries.lock().unwrap().is_empty(),
            "literals are not cached"
        );

        let found = resolve(&r, "https://localhost:9/").unwrap();
        assert!(found.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
        assert_eq!(r.entries.lock().unwrap().len(), 1);
        // Kept: the second answer comes from the cache (checked by its deadline not moving).
        let until = r.entries.lock().unwrap()[0].until;
        assert_eq!(resolve(&r, "https://localhost:9/").unwrap(), found);
        assert_eq!(r.entries.lock().unwrap()[0].until, until);
        r.forget("localhost");
        assert!(r.entries.lock().unwrap().is_empty());
    }

    #[test]
    fn expired_addresses_are_looked_up_again() {
        let r = CachingResolver::default();
        let stale = Instant::now() - Duration::from_secs(1);
        let addrs = vec!["10.9.9.9:443".parse().unwrap()];
        r.entries.lock().unwrap().push(Entry {
            host: "localhost".into(),
            port: 443,
            addrs,
            until: stale,
        });
        let found = resolve(&r, "https://localhost/").unwrap();
        assert!(found.iter().all(|a| a.ip().is_loopback()), "{found:?}");
    }
}
