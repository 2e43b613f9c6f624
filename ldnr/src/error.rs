//! The one public error type.

use core::fmt;

use crate::affinity::{AffinityError, NodeId};
use crate::replica::ReplicaId;

/// The message of the panic (and of [`Error::Poisoned`]) on a poisoned instance.
pub(crate) const POISONED: &str = "ldnr: this instance is poisoned: a panic escaped while a \
    replica applied the log (without the `std` feature, or from the affinity manager), so \
    replicas may have diverged";

/// Everything that can go wrong in LD-NR, as a value.
///
/// # Examples
///
/// ```
/// use ldnr::{Error, NodeReplicated};
///
/// // A register: reads return the number, writes replace it and return the old one.
/// #[derive(Clone, Default)]
/// struct Register(u64);
///
/// impl ldnr::Dispatch for Register {
///     type ReadOperation = ();
///     type WriteOperation = u64;
///     type Response = u64;
///     fn dispatch(&self, _: ()) -> u64 { self.0 }
///     fn dispatch_mut(&mut self, v: u64) -> u64 { std::mem::replace(&mut self.0, v) }
/// }
///
/// let err = NodeReplicated::builder(Register::default())
///     .log_capacity(1000) // not a power of two
///     .build()
///     .unwrap_err();
/// assert!(matches!(err, Error::InvalidLogCapacity { requested: 1000, .. }));
/// println!("{err}"); // "log capacity 1000 is invalid: ..."
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// `register` was called more often than the thread limit allows.
    TooManyThreads {
        /// The configured limit ([`Builder::max_threads`](crate::Builder::max_threads)).
        limit: usize,
    },
    /// More replicas were asked for than the replica limit allows.
    TooManyReplicas {
        /// The limit ([`MAX_REPLICAS`](crate::MAX_REPLICAS)).
        limit: usize,
    },
    /// The builder was given an empty replica list.
    NoReplicas,
    /// A replica was asked for on a node the affinity manager does not know.
    UnknownNode(NodeId),
    /// The replica id does not name a live replica of this instance.
    UnknownReplica(ReplicaId),
    /// The last replica cannot be removed.
    LastReplica,
    /// The log capacity is not a power of two within the allowed range.
    InvalidLogCapacity {
        /// What was asked for.
        requested: usize,
        /// The smallest allowed capacity ([`MIN_LOG_CAPACITY`](crate::MIN_LOG_CAPACITY)).
        min: usize,
        /// The largest allowed capacity ([`MAX_LOG_CAPACITY`](crate::MAX_LOG_CAPACITY)).
        max: usize,
    },
    /// The thread limit is zero or larger than [`MAX_THREADS`](crate::MAX_THREADS).
    InvalidThreadLimit {
        /// What was asked for.
        requested: usize,
    },
    /// The affinity manager failed.
    Affinity(AffinityError),
    /// The token was deregistered (by [`deregister`](crate::NodeReplicated::deregister),
    /// or because the thread holding a [`thread_token`](crate::NodeReplicated::thread_token)
    /// exited); its thread index may belong to another thread now.
    StaleToken,
    /// [`thread_token`](crate::NodeReplicated::thread_token) was called while the calling
    /// thread was exiting (from a thread-local's destructor), when nothing could give the
    /// registration back; use [`register`](crate::NodeReplicated::register) and
    /// [`deregister`](crate::NodeReplicated::deregister) there.
    ThreadExiting,
    /// A panic escaped while a replica was being brought up to date (see "Panics" in the
    /// crate docs: without `std`, or from an [`AffinityManager`](crate::AffinityManager)
    /// method), so replicas may have diverged; the instance refuses further work.
    Poisoned,
    /// [`Builder::build`](crate::Builder::build): every instance number was handed out.
    /// Numbers are never reused, so that a token kept from a dropped instance can never
    /// pass for a token of a later one; the process has built `usize::MAX - 1` instances
    /// (2^32 - 1 on 32-bit targets; on 64-bit ones, centuries at one per nanosecond).
    InstancesExhausted,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooManyThreads { limit } => {
                write!(f, "too many threads registered: the limit is {limit}")
            }
            Error::TooManyReplicas { limit } => {
                write!(f, "too many replicas: the limit is {limit}")
            }
            Error::NoReplicas => write!(f, "at least one replica is needed"),
            Error::UnknownNode(n) => write!(f, "{n} is not known to the affinity manager"),
            Error::UnknownReplica(id) => write!(f, "{id:?} is not a live replica of this instance"),
            Error::LastReplica => write!(f, "the last replica cannot be removed"),
            Error::InvalidLogCapacity { requested, min, max } => write!(
                f,
                "log capacity {requested} is invalid: it must be a power of two between {min} and {max} entries"
            ),
            Error::InvalidThreadLimit { requested } => write!(
                f,
                "thread limit {requested} is invalid: it must be between 1 and {}",
                crate::MAX_THREADS
            ),
            Error::Affinity(e) => write!(f, "affinity manager failed: {e}"),
            Error::StaleToken => f.write_str(
                "the thread token was deregistered; its thread index may belong to another thread now",
            ),
            Error::ThreadExiting => f.write_str(
                "thread_token was called while the thread was exiting; register and deregister by hand there",
            ),
            Error::Poisoned => f.write_str(POISONED),
            Error::InstancesExhausted => write!(
                f,
                "no instance numbers left: this process built {} instances, and numbers \
                 are never reused",
                usize::MAX - 1
            ),
        }
    }
}

impl From<AffinityError> for Error {
    fn from(e: AffinityError) -> Self {
        Error::Affinity(e)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Affinity(e) => Some(e),
            _ => None,
        }
    }
}
