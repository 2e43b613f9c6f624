//! The trait a sequential data structure implements to be replicated.

/// A sequential data structure that LD-NR can replicate.
///
/// Reads go to one replica through [`dispatch`](Dispatch::dispatch); writes are appended
/// to the shared log and applied to **every** replica through
/// [`dispatch_mut`](Dispatch::dispatch_mut).
///
/// # The determinism contract
///
/// `dispatch_mut` must be deterministic: given equal states and equal operations, every
/// replica must reach an equal state and return an equal response. It must not depend on
/// time, randomness, addresses, thread identity or the iteration order of a randomly
/// seeded hasher where that order is observable. Replicas that diverge break
/// linearizability, and LD-NR cannot detect it.
///
/// A `dispatch_mut` that panics must do so deterministically too (the same operation on
/// the same state panics at the same point): every replica keeps the partial effect it
/// had, and the submitting thread gets the panic (crate docs, "Panics").
///
/// `dispatch` must not mutate observable state (interior mutability such as statistics
/// counters is fine if it is thread-safe: readers run concurrently on one replica).
///
/// # Examples
///
/// ```
/// use ldnr::Dispatch;
///
/// #[derive(Clone, Default)]
/// struct Counter(u64);
///
/// #[derive(Clone)]
/// enum Add { By(u64) }
///
/// impl Dispatch for Counter {
///     type ReadOperation = ();
///     type WriteOperation = Add;
///     type Response = u64;
///
///     fn dispatch(&self, _op: ()) -> u64 {
///         self.0
///     }
///
///     fn dispatch_mut(&mut self, op: Add) -> u64 {
///         let Add::By(n) = op;
///         self.0 += n;
///         self.0
///     }
/// }
///
/// let mut c = Counter::default();
/// assert_eq!(c.dispatch_mut(Add::By(2)), 2);
/// assert_eq!(c.dispatch(()), 2);
/// ```
pub trait Dispatch {
    /// An operation that only reads the structure.
    type ReadOperation;
    /// An operation that may modify the structure. It is stored in the shared log and
    /// every replica applies its own clone of it.
    type WriteOperation: Clone + Send;
    /// What an operation returns to its caller.
    type Response: Send;

    /// Executes a read-only operation.
    fn dispatch(&self, op: Self::ReadOperation) -> Self::Response;

    /// Executes a mutating operation. Must be deterministic (see the trait docs).
    fn dispatch_mut(&mut self, op: Self::WriteOperation) -> Self::Response;
}
