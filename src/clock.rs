//! Time as an input. The service reads time only through [`Clock`]: the system clock in
//! production, a [`ManualClock`] in tests and demos, so deadlines can be crossed on purpose.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

#[async_trait]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    /// Returns once `now() >= at`.
    async fn sleep_until(&self, at: DateTime<Utc>);
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
pub async fn sleep_until_if(clock: &dyn Clock, at: Option<DateTime<Utc>>) {
    match at {
        Some(at) => clock.sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

/// Longest single sleep; after it the time is read again (guards against wall-clock jumps).
const SLEEP_SLICE_MAX: std::time::Duration = std::time::Duration::from_secs(60);

#[async_trait]
impl Clock for SystemClock {
    /// Whole milliseconds: event times, deadlines and index keys all count milliseconds.
    fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        loop {
            let left = at - Utc::now();
            let Ok(left) = left.to_std() else { return };
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(SLEEP_SLICE_MAX)).await;
        }
    }
}

/// A clock that moves only when told to.
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
    moved: Arc<Notify>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock { now: Arc::new(Mutex::new(start)), moved: Arc::new(Notify::new()) }
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().expect("manual clock lock is never poisoned") = at;
        self.moved.notify_waiters();
    }

    pub fn advance(&self, by: chrono::Duration) {
        let at = self.now() + by;
        self.set(at);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("manual clock lock is never poisoned")
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        loop {
            let moved = self.moved.notified();
            if self.now() >= at {
                return;
            }
            moved.await;
        }
    }
}
