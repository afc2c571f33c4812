//! Client connections of a listener: each one's requests in flight and how long it has been
//! idle, a cap on how many are open at once, and which to close when a new client arrives at the
//! cap. Idle and silent connections are shed before a new one is refused, so sockets that send
//! nothing cannot lock out clients that send requests.

use crate::clock;
use hyper::body::{Body, Frame, SizeHint};
use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How long a connection may live without doing anything, and how many may be open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; at the cap, the longest-idle one makes room, and only when none
    /// is idle is the new one refused.
    pub max_connections: usize,
    /// How long a new connection may take to send its first request's headers, and (HTTP/1.1)
    /// how long a keep-alive connection may wait for its next request.
    pub header_read_timeout: Duration,
    /// How long a connection with no request in flight stays open (HTTP/2, and a backstop for
    /// HTTP/1.1).
    pub idle_timeout: Duration,
    /// Requests (HTTP/2 streams) one connection may have in flight, its share of the budget.
    pub max_streams_per_connection: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_streams_per_connection: 100,
        }
    }
}

impl ConnectionLimits {
    /// These limits for an admin listener: the same timeouts, and room for a few operators and
    /// scrapers, never a crowd.
    pub fn for_admin(self) -> Self {
        Self { max_connections: 256, ..self }
    }
}

/// One client connection as its listener tracks it.
#[derive(Debug)]
pub struct Connection {
    /// Requests whose answer has not been sent in full.
    requests: AtomicU32,
    /// Since when (process clock) no request has been in flight; the accept time at first.
    idle_since: AtomicU64,
    /// Whether the connection ever started a request.
    served: AtomicBool,
    /// Set once by whoever closes it to make room, so it is closed once.
    evicted: AtomicBool,
    /// Set when its listener shuts down: finish what is in flight, then close.
    draining: AtomicBool,
    /// Tells the connection's task to close it now.
    close: Notify,
    /// Its place under the connection cap; taken by the connection that replaces it.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Connection {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        Self {
            requests: AtomicU32::new(0),
            idle_since: AtomicU64::new(clock::now()),
            served: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            close: Notify::new(),
            permit: Mutex::new(Some(permit)),
        }
    }

    /// Counts a request in flight until the returned guard drops (the guard travels with the
    /// answer's body, so a streamed answer keeps the connection busy until it ends).
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::AcqRel);
        if !self.served.load(Ordering::Relaxed) {
            self.served.store(true, Ordering::Relaxed);
        }
        RequestGuard(Arc::clone(self))
    }

    /// Requests in flight now.
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::Acquire)
    }

    /// Whether it has ever started a request.
    pub fn served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// How long until it has been idle too long, `None` while a request is in flight.
    fn idle_left(&self, limits: &ConnectionLimits, now: u64) -> Option<Duration> {
        if self.requests() > 0 {
            return None;
        }
        let allowed = if self.served() { limits.idle_timeout } else { limits.header_read_timeout };
        let since = now.saturating_sub(self.idle_since.load(Ordering::Acquire));
        Some(allowed.saturating_sub(Duration::from_nanos(since)))
    }

    /// Resolves when the listener wants this connection closed: at once if it was evicted,
    /// gracefully if the listener is draining.
    pub async fn close_requested(&self) {
        self.close.notified().await;
    }

    /// Whether the listener is draining (rather than evicting this connection).
    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// A request counted in flight on its connection.
#[derive(Debug)]
pub struct RequestGuard(Arc<Connection>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.requests.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle_since.store(clock::now(), Ordering::Release);
        }
    }
}

/// An answer's body that keeps its request counted in flight until it is sent or dropped.
#[derive(Debug)]
pub struct GuardedBody<B> {
    inner: B,
    _guard: RequestGuard,
}

impl<B> GuardedBody<B> {
    /// `inner`, counted under `guard`.
    pub fn new(inner: B, guard: RequestGuard) -> Self {
        Self { inner, _guard: guard }
    }
}

impl<B: Body + Unpin> Body for GuardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How long a connection must have been idle before it may be closed to make room: one just
/// accepted, or just done with a request, may have its next request waiting to be read.
const EVICTION_GRACE: Duration = Duration::from_millis(250);

/// One serving thread's open connections, by id.
type Shard = Mutex<HashMap<u64, Arc<Connection>>>;

/// Every open connection of a listener, in one shard per serving thread, under one cap.
#[derive(Debug)]
pub struct Connections {
    listener: &'static str,
    limits: ConnectionLimits,
    permits: Arc<Semaphore>,
    shards: Box<[Shard]>,
    next_id: AtomicU64,
}

/// A connection's place in the registry; leaving it (drop) frees its place under the cap.
#[derive(Debug)]
pub struct Registration {
    connections: Arc<Connections>,
    shard: usize,
    id: u64,
    connection: Arc<Connection>,
}

impl Registration {
    /// The connection.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    /// The limits of its listener.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.connections.limits
    }

    /// Its listener's name, for logs and metrics.
    pub fn listener(&self) -> &'static str {
        self.connections.listener
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.shard(self.shard).remove(&self.id);
        // The permit, unless a newer connection took it, goes back under the cap.
        self.connection.permit.lock().unwrap_or_else(PoisonError::into_inner).take();
        self.connections.record_open();
    }
}

impl Connections {
    /// A registry for `listener` (a metric label: `public`, `admin`) with `shards` shards.
    pub fn new(listener: &'static str, limits: ConnectionLimits, shards: usize) -> Arc<Self> {
        let shards = (0..shards.max(1)).map(|_| Mutex::new(HashMap::new())).collect();
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        Arc::new(Self { listener, limits, permits, shards, next_id: AtomicU64::new(0) })
    }

    /// The limits connections are held to.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.limits.max_connections.saturating_sub(self.permits.available_permits())
    }

    fn shard(&self, index: usize) -> MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.shards[index % self.shards.len()].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record_open(&self) {
        #[allow(clippy::cast_precision_loss)] // connection counts
        metrics::gauge!("rampart_connections_open", "listener" => self.listener).set(self.open() as f64);
    }

    /// Admits a new connection on serving thread `shard`: under the cap at once; at the cap by
    /// closing the connections idle longest (those that never sent a request first), taking the
    /// place of the first; `None` (refused) when every open connection is busy.
    pub fn admit(self: &Arc<Self>, shard: usize) -> Option<Registration> {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match self.evict_for(shard) {
                Some(permit) => permit,
                None => {
                    metrics::counter!("rampart_rejections_total", "reason" => "connection_limit").increment(1);
                    return None;
                }
            },
        };
        let connection = Arc::new(Connection::new(permit));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shard = shard % self.shards.len();
        self.shard(shard).insert(id, Arc::clone(&connection));
        self.record_open();
        Some(Registration { connections: Arc::clone(self), shard, id, connection })
    }

    /// Connections open on serving thread `shard`.
    pub fn open_in(&self, shard: usize) -> usize {
        self.shard(shard).len()
    }

    /// Asks every connection of serving thread `shard` to finish what it has in flight and
    /// close (the listener is shutting down).
    pub fn drain(&self, shard: usize) {
        for connection in self.shard(shard).values() {
            connection.draining.store(true, Ordering::Release);
            connection.close.notify_one();
        }
    }

    /// Waits until serving thread `shard` has no connection left, for at most `limit`; true if
    /// it got there.
    pub async fn drained(&self, shard: usize, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.open_in(shard) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Closes idle connections to make room, returning the place of one of them. A flood of new
    /// connections evicts in batches (a 64th of the cap at a time), so each scan of the
    /// registry pays for many admissions.
    fn evict_for(&self, shard: usize) -> Option<OwnedSemaphorePermit> {
        let batch = (self.limits.max_connections / 64).max(1);
        // A connection just accepted may have its request waiting unread: it is not idle yet.
        let grace = clock::nanos(EVICTION_GRACE.min(self.limits.header_read_timeout / 4));
        let idle_before = clock::now().saturating_sub(grace);
        let mut idle: Vec<(bool, u64, Arc<Connection>)> = Vec::new();
        for offset in 0..self.shards.len() {
            let connections = self.shard(shard + offset);
            idle.extend(
                connections
                    .values()
                    .filter(|connection| {
                        connection.requests() == 0
                            && !connection.evicted.load(Ordering::Relaxed)
                            && connection.idle_since.load(Ordering::Acquire) <= idle_before
                    })
                    .map(|connection| {
                        (connection.served(), connection.idle_since.load(Ordering::Acquire), Arc::clone(connection))
                    }),
            );
        }
        if idle.len() > batch {
            idle.select_nth_unstable_by_key(batch, |(served, since, _)| (*served, *since));
            idle.truncate(batch);
        }
        let mut taken = None;
        for (served, _, victim) in idle {
            if victim.requests() > 0 || victim.evicted.swap(true, Ordering::AcqRel) {
                continue;
            }
            let reason = if served { "idle" } else { "silent" };
            metrics::counter!("rampart_connections_evicted_total", "listener" => self.listener, "reason" => reason)
                .increment(1);
            let permit = victim.permit.lock().unwrap_or_else(PoisonError::into_inner).take();
            victim.close.notify_one();
            if taken.is_none() {
                taken = permit;
            }
        }
        taken
    }
}

/// Drives one connection until it ends, closing it when it stays idle too long (at once if it
/// never sent a request, with a graceful shutdown otherwise), when the registry evicts it (at
/// once), or gracefully when its listener drains ([`Connections::drain`]).
///
/// Every wake-up of the connection polls these branches too, so they are kept to one
/// notification and one timer.
pub async fn drive<C, E>(connection: C, graceful: impl Fn(Pin<&mut C>), registration: &Registration)
where
    C: Future<Output = Result<(), E>>,
{
    let tracked = registration.connection();
    let limits = &registration.connections.limits;
    let listener = registration.connections.listener;
    tokio::pin!(connection);
    let mut shutting_down = false;
    loop {
        let wait = match tracked.idle_left(limits, clock::now()) {
            // A request is in flight: look again later (a connection idle again then gets a
            // fresh timeout from when its last request ended).
            None => limits.idle_timeout,
            Some(left) if shutting_down => left.min(Duration::from_secs(1)),
            Some(left) => left,
        };
        tokio::select! {
            biased;
            _ = &mut connection => return,
            () = tracked.close_requested() => {
                if !tracked.is_draining() {
                    return;
                }
                if !shutting_down {
                    shutting_down = true;
                    graceful(connection.as_mut());
                }
            }
            () = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {
                let expired = tracked.idle_left(limits, clock::now()).is_some_and(|left| left.is_zero());
                if !expired {
                    continue;
                }
                if !tracked.served() {
                    metrics::counter!("rampart_connections_closed_total", "listener" => listener, "reason" => "silent")
                        .increment(1);
                    return;
                }
                if shutting_down {
                    return;
                }
                metrics::counter!("rampart_connections_closed_total", "listener" => listener, "reason" => "idle")
                    .increment(1);
                shutting_down = true;
                graceful(connection.as_mut());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize) -> ConnectionLimits {
        ConnectionLimits { max_connections: max, ..ConnectionLimits::default() }
    }

    #[test]
    fn at_the_cap_silent_connections_make_room_first_then_idle_ones_then_none() {
        let connections = Connections::new("test", limits(3), 2);
        let age = || std::thread::sleep(EVICTION_GRACE + Duration::from_millis(10));
        let silent = connections.admit(0).unwrap();
        let idle = connections.admit(1).unwrap();
        drop(idle.connection().begin_request());
        let busy = connections.admit(0).unwrap();
        let _working = busy.connection().begin_request();
        assert!(connections.admit(1).is_none(), "connections just accepted or used are not shed yet");
        age();
        let newcomer = connections.admit(1).expect("the silent connection makes room");
        assert!(silent.connection().evicted.load(Ordering::Relaxed));
        assert!(!idle.connection().evicted.load(Ordering::Relaxed));
        drop(silent);
        let _newcomer_busy = newcomer.connection().begin_request();
        let second = connections.admit(0).expect("the idle connection makes room");
        // (It has been idle since before `age()`.)
        assert!(idle.connection().evicted.load(Ordering::Relaxed));
        drop(idle);
        let _second_busy = second.connection().begin_request();
        assert!(connections.admit(1).is_none(), "every connection is busy");
        assert_eq!(connections.open(), 3);
    }

    #[test]
    fn a_connection_is_idle_from_the_end_of_its_last_request() {
        let connections = Connections::new("test", limits(1), 1);
        let registration = connections.admit(0).unwrap();
        let connection = registration.connection();
        let limits = connections.limits().clone();
        assert!(connection.idle_left(&limits, clock::now()).unwrap() <= limits.header_read_timeout);
        let guard = connection.begin_request();
        assert_eq!(connection.idle_left(&limits, clock::now()), None);
        drop(guard);
        let left = connection.idle_left(&limits, clock::now()).unwrap();
        assert!(left > limits.header_read_timeout, "served connections get the idle timeout: {left:?}");
        drop(registration);
        assert_eq!(connections.open(), 0);
    }
}
