//! The per-vault circuit breaker: pure policy, `now` in, decision out. When a vault stops
//! answering (connects refused or timing out, requests hanging), every operation would wait
//! for its whole budget and hold a server thread the whole time; after a few such failures
//! the breaker makes operations on that vault fail at once instead, lets one probe through
//! after a cool-down that grows while the outage lasts, and closes at the first success.
//!
//! Only the network's failures count. Any HTTP answer (throttling, 5xx, 401) proves the vault
//! reachable: throttling keeps being handled by the retry policy within the budget.

use std::time::{Duration, Instant};

/// When to open, how long to stay open, and how long a probe may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failures of the network within `window` that open the circuit.
    pub failures_to_open: u32,
    /// The window in which they count.
    pub window: Duration,
    /// The first cool-down; each failed probe doubles it, up to `max_cooldown`.
    pub first_cooldown: Duration,
    /// The longest cool-down.
    pub max_cooldown: Duration,
    /// The longest exchange a probe may take (a healthy vault answers in milliseconds), so
    /// that a probe into a vault that still hangs holds a server thread only briefly.
    pub probe_timeout: Duration,
}

impl Default for BreakerPolicy {
    /// Chosen for TLS servers: two failures within 30 s open the circuit (with the default
    /// 5 s request timeout, one hanging operation); probes every 2 s at first, then every
    /// 10 s at most, each allowed 1 s: a vault that comes back is noticed within about 10 s,
    /// and while it stays down a probe holds a server thread for 1 s in 10.
    fn default() -> Self {
        BreakerPolicy {
            failures_to_open: 2,
            window: Duration::from_secs(30),
            first_cooldown: Duration::from_secs(2),
            max_cooldown: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(1),
        }
    }
}

/// What the breaker says about sending a request now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Send it.
    Go,
    /// Send it as the one probe, with at most this timeout, and report how it went.
    Probe {
        /// Cap of the exchange's timeout.
        timeout: Duration,
    },
    /// Do not send: the vault is unreachable; the next probe is due in `retry_in`.
    FailFast {
        /// Time until the next probe may go.
        retry_in: Duration,
        /// The failure that opened the circuit or failed the last probe.
        cause: String,
    },
}

/// How an exchange went, for the breaker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer arrived (any status).
    Reached,
    /// The network failed: no connection, or no answer in time.
    Unreachable(String),
}

/// A change of state, for the log: each is reported once, not per operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Opened after `failures` failures; operations fail fast for `cooldown`.
    Opened {
        /// Failures in the window.
        failures: u32,
        /// The last one.
        cause: String,
        /// Until the first probe.
        cooldown: Duration,
    },
    /// A probe goes out.
    Probing {
        /// Time since the circuit opened.
        outage: Duration,
    },
    /// The probe failed: open again for `cooldown`.
    Reopened {
        /// Why.
        cause: String,
        /// Until the next probe.
        cooldown: Duration,
    },
    /// The vault answered again.
    Closed {
        /// How long the circuit was open.
        outage: Duration,
        /// Operations failed fast meanwhile.
        failed_fast: u64,
    },
}

#[derive(Clone, Debug)]
enum State {
    Closed {
        failures: u32,
        first_failure: Option<Instant>,
    },
    Open {
        since: Instant,
        retry_at: Instant,
        cooldown: Duration,
        failed_fast: u64,
        cause: String,
    },
    Probing {
        since: Instant,
        probe_started: Instant,
        cooldown: Duration,
        failed_fast: u64,
        cause: String,
    },
}

/// One vault's breaker.
#[derive(Clone, Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: State,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy) -> Breaker {
        Breaker {
            policy,
            state: State::Closed {
                failures: 0,
                first_failure: None,
            },
        }
    }

    /// Whether the circuit is open or probing.
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    /// May a request go now?
    pub fn admit(&mut self, now: Instant) -> (Admit, Option<Transition>) {
        let policy = &self.policy;
        match &mut self.state {
            State::Closed { .. } => (Admit::Go, None),
            State::Open {
                since,
                retry_at,
                cooldown,
                failed_fast,
                cause,
            } => {
                if now < *retry_at {
                    *failed_fast += 1;
                    return (
                        Admit::FailFast {
                            retry_in: *retry_at - now,
                            cause: cause.clone(),
                        },
                        None,
                    );
                }
                let outage = now.saturating_duration_since(*since);
                self.state = State::Probing {
                    since: *since,
                    probe_started: now,
                    cooldown: *cooldown,
                    failed_fast: *failed_fast,
                    cause: cause.clone(),
                };
                (
                    Admit::Probe {
                        timeout: policy.probe_timeout,
                    },
                    Some(Transition::Probing { outage }),
                )
            }
            State::Probing {
                since,
                probe_started,
                failed_fast,
                cause,
                ..
            } => {
                // A probe whose outcome never came back (its caller went away) does not
                // keep the circuit shut: after twice its timeout, another may go.
                if now.saturating_duration_since(*probe_started) >= policy.probe_timeout * 2 {
                    *probe_started = now;
                    let outage = now.saturating_duration_since(*since);
                    return (
                        Admit::Probe {
                            timeout: policy.probe_timeout,
                        },
                        Some(Transition::Probing { outage }),
                    );
                }
                *failed_fast += 1;
                (
                    Admit::FailFast {
                        retry_in: policy.probe_timeout,
                        cause: cause.clone(),
                    },
                    None,
                )
            }
        }
    }

    /// Reports how an exchange that was admitted went.
    pub fn record(&mut self, outcome: Outcome, now: Instant) -> Option<Transition> {
        let policy = self.policy.clone();
        match (&mut self.state, outcome) {
            (
                State::Closed {
                    failures,
                    first_failure,
                },
                Outcome::Reached,
            ) => {
                *failures = 0;
                *first_failure = None;
                None
            }
            (
                State::Closed {
                    failures,
                    first_failure,
                },
                Outcome::Unreachable(cause),
            ) => {
                let in_window = first_failure
                    .is_some_and(|first| now.saturating_duration_since(first) < policy.window);
                if !in_window {
                    *failures = 0;
                    *first_failure = Some(now);
                }
                *failures += 1;
                if *failures < policy.failures_to_open {
                    return None;
                }
                let failures = *failures;
                let cooldown = policy.first_cooldown;
                self.state = State::Open {
                    since: now,
                    retry_at: now + cooldown,
                    cooldown,
                    failed_fast: 0,
                    cause: cause.clone(),
                };
                Some(Transition::Opened {
                    failures,
                    cause,
                    cooldown,
                })
            }
            (
                State::Open {
                    since, failed_fast, ..
                }
                | State::Probing {
                    since, failed_fast, ..
                },
                Outcome::Reached,
            ) => {
                // The probe, or an exchange admitted before the circuit opened, got through.
                let transition = Transition::Closed {
                    outage: now.saturating_duration_since(*since),
                    failed_fast: *failed_fast,
                };
                self.state = State::Closed {
                    failures: 0,
                    first_failure: None,
                };
                Some(transition)
            }
            (
                State::Probing {
                    since,
                    cooldown,
                    failed_fast,
                    ..
                },
                Outcome::Unreachable(cause),
            ) => {
                let cooldown = (*cooldown * 2).min(policy.max_cooldown);
                self.state = State::Open {
                    since: *since,
                    retry_at: now + cooldown,
                    cooldown,
                    failed_fast: *failed_fast,
                    cause: cause.clone(),
                };
                Some(Transition::Reopened { cause, cooldown })
            }
            // A late failure of an exchange admitted before the circuit opened: already known.
            (State::Open { .. }, Outcome::Unreachable(_)) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> Outcome {
        Outcome::Unreachable("timed out: no answer".into())
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn opens_after_repeated_failures_within_the_window() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerPolicy::default());
        assert_eq!(b.admit(t0).0, Admit::Go);
        assert_eq!(b.record(down(), t0), None);
        // Failures far apart do not add up.
        assert_eq!(b.record(down(), t0 + secs(31)), None);
        let opened = b.record(down(), t0 + secs(32));
        assert!(
            matches!(opened, Some(Transition::Opened { failures: 2, .. })),
            "{opened:?}"
        );
        let (admit, _) = b.admit(t0 + secs(33));
        assert!(
            matches!(&admit, Admit::FailFast { retry_in, cause } if *retry_in == secs(1) && cause.contains("timed out")),
            "{admit:?}"
        );
    }

    #[test]
    fn successes_reset_the_count_and_answers_are_not_outages() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerPolicy::default());
        b.record(down(), t0);
        b.record(Outcome::Reached, t0 + secs(1));
        assert_eq!(b.record(down(), t0 + secs(2)), None);
        assert!(!b.is_open());
    }

    #[test]
    fn one_probe_after_the_cooldown_then_closed_or_longer_open() {
        let t0 = Instant::now();
        let policy = BreakerPolicy::default();
        let mut b = Breaker::new(policy.clone());
        b.record(down(), t0);
        b.record(down(), t0);
        // Cool-down: 2 s.
        assert!(matches!(b.admit(t0 + secs(1)).0, Admit::FailFast { .. }));
        let (admit, t) = b.admit(t0 + secs(2));
        assert_eq!(
            admit,
            Admit::Probe {
                timeout: policy.probe_timeout
            }
        );
        assert_eq!(t, Some(Transition::Probing { outage: secs(2) }));
        // While the probe is out, others fail fast.
        assert!(matches!(b.admit(t0 + secs(2)).0, Admit::FailFast { .. }));
        // The probe fails: cool-down doubles.
        let t = b.record(down(), t0 + secs(3));
        assert!(matches!(t, Some(Transition::Reopened { cooldown, .. }) if cooldown == secs(4)));
        assert!(matches!(b.admit(t0 + secs(6)).0, Admit::FailFast { .. }));
        assert!(matches!(b.admit(t0 + secs(7)).0, Admit::Probe { .. }));
        // It succeeds: closed, with the outage and the operations failed fast.
        let t = b.record(Outcome::Reached, t0 + secs(7));
        assert_eq!(
            t,
            Some(Transition::Closed {
                outage: secs(7),
                failed_fast: 3
            })
        );
        assert_eq!(b.admit(t0 + secs(7)).0, Admit::Go);
    }

    #[test]
    fn the_cooldown_stops_growing_and_a_lost_probe_is_replaced() {
        let t0 = Instant::now();
        let policy = BreakerPolicy::default();
        let mut b = Breaker::new(policy.clone());
        b.record(down(), t0);
        b.record(down(), t0);
        let mut now = t0;
        let mut last = Duration::ZERO;
        for _ in 0..10 {
            now += secs(120);
            assert!(matches!(b.admit(now).0, Admit::Probe { .. }));
            match b.record(down(), now) {
                Some(Transition::Reopened { cooldown, .. }) => last = cooldown,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(last, policy.max_cooldown);
        // A probe that never reports back: after twice the probe timeout another goes.
        now += secs(120);
        assert!(matches!(b.admit(now).0, Admit::Probe { .. }));
        assert!(matches!(b.admit(now + secs(1)).0, Admit::FailFast { .. }));
        assert!(matches!(b.admit(now + secs(2)).0, Admit::Probe { .. }));
    }

    #[test]
    fn only_network_failures_count() {
        use crate::driver::{TransportError, TransportErrorKind as K};
        for (kind, counts) in [
            (K::Connect, true),
            (K::Timeout, true),
            (K::Io, false),
            (K::Tls, false),
            (K::BodyTooLarge, false),
            (K::Other, false),
        ] {
            let outcome = TransportError::new(kind, "x").outcome();
            assert_eq!(outcome.is_some(), counts, "{kind:?}");
        }
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever happened before, a vault that answers every exchange is never failed
        /// fast for longer than the cool-down already running: once it is admitted (as a
        /// probe or not) and answers, every later request goes.
        #[test]
        fn a_healthy_vault_is_never_blocked_for_good(
            history in proptest::collection::vec((0u64..5_000, any::<bool>()), 0..60),
        ) {
            let policy = BreakerPolicy::default();
            let t0 = Instant::now();
            let mut now = t0;
            let mut b = Breaker::new(policy.clone());
            // Any history of admissions, answers and failures.
            for (step_ms, answered) in history {
                now += Duration::from_millis(step_ms);
                if !matches!(b.admit(now).0, Admit::FailFast { .. }) {
                    let outcome = if answered { Outcome::Reached } else { down() };
                    b.record(outcome, now);
                }
            }
            // Then the vault answers everything: within the longest cool-down plus a probe,
            // a request is let through, and from then on all are.
            let mut admitted_at = None;
            for step in 0..200u32 {
                now += Duration::from_millis(500);
                match b.admit(now).0 {
                    Admit::FailFast { retry_in, .. } => {
                        prop_assert!(admitted_at.is_none(), "blocked after the vault answered");
                        prop_assert!(retry_in <= policy.max_cooldown);
                    }
                    Admit::Go | Admit::Probe { .. } => {
                        b.record(Outcome::Reached, now);
                        admitted_at.get_or_insert(step);
                    }
                }
            }
            let Some(step) = admitted_at else {
                return Err(TestCaseError::fail("a healthy vault was never let through"));
            };
            let waited = Duration::from_millis(500) * (step + 1);
            prop_assert!(waited <= policy.max_cooldown + policy.probe_timeout * 2, "{waited:?}");
        }

        /// A vault that never answers is still probed again and again: never more than the
        /// longest cool-down (plus a lost probe's grace) between two probes.
        #[test]
        fn a_dead_vault_is_probed_forever(steps in 10u64..400) {
            let policy = BreakerPolicy::default();
            let mut now = Instant::now();
            let mut b = Breaker::new(policy.clone());
            let mut last_probe = now;
            for _ in 0..steps {
                now += Duration::from_millis(700);
                match b.admit(now).0 {
                    Admit::FailFast { .. } => {
                        prop_assert!(now - last_probe <= policy.max_cooldown + policy.probe_timeout * 2 + Duration::from_millis(700));
                    }
                    Admit::Probe { .. } | Admit::Go => {
                        last_probe = now;
                        b.record(down(), now);
                    }
                }
            }
        }
    }
}
