//! Dynamic replicas: `add_replica` and `remove_replica` while operations run.
//!
//! One test binary, a module per topic:
//!
//! - `churn`: workers run recorded map operations while a controller keeps adding and
//!   removing replicas, and every round's history passes the WGL checker; exactly-once
//!   counters under the same churn, and every live replica ends with the exact counts;
//!   removing the source of a clone right after the clone;
//! - `removal`: removing the replica threads wait on (hammered writes), plus
//!   deterministic single-thread removals between two operations;
//! - `tiny_log`: adding while a tiny log wraps; adding and removing next to idle replicas;
//! - `errors`: the error cases of both calls, with nothing changed on error;
//! - `matching`: thread matching on a four-node test topology when replicas come and go.
//!
//! The churn harness (`Churn`, `Pace`, the map workers) is `ldnr_testkit::churn`.
//!
//! Every concurrent body runs under `ldnr_testkit::watchdog`, so a deadlock fails fast. The
//! assertions depend only on what the protocol guarantees, never on timing; iteration
//! counts are bounded (and smaller in debug builds).

mod churn;
mod errors;
mod matching;
mod removal;
mod tiny_log;

use std::cell::Cell;

use ldnr::{AffinityError, AffinityManager, NodeId, SavedPolicy};

/// Debug builds are roughly 10x slower: scale the operation counts (never the number of
/// replica changes the brief asks for).
const DEBUG: bool = cfg!(debug_assertions);

// The four-node test topology of `matching`, also used by `errors` (a node whose memory
// policy cannot be set).

thread_local! {
    /// The node the test pretends the calling thread runs on.
    static NODE: Cell<usize> = const { Cell::new(0) };
}

/// Four nodes; the calling thread's node is the thread-local `NODE`. Distances (SLIT
/// style): node 2 is equally near to 0 and 1 (so ties go to the fewest threads), node 3
/// is nearer to 1 and 2 than to 0.
#[derive(Debug)]
struct TestNodes {
    /// A node whose memory policy cannot be set (for the error test).
    fail: Option<usize>,
}

/// The distances between the four nodes.
const DISTANCE: [[u32; 4]; 4] = [
    [10, 20, 20, 30],
    [20, 10, 20, 20],
    [20, 20, 10, 20],
    [30, 20, 20, 10],
];

impl AffinityManager for TestNodes {
    fn current_node(&self) -> NodeId {
        NodeId(NODE.with(Cell::get))
    }

    fn nodes(&self) -> Vec<NodeId> {
        (0..4).map(NodeId).collect()
    }

    fn distance(&self, a: NodeId, b: NodeId) -> u32 {
        DISTANCE[a.0][b.0]
    }

    fn set_memory_node(&self, node: NodeId) -> Result<SavedPolicy, AffinityError> {
        if Some(node.0) == self.fail {
            Err(AffinityError::Os(12))
        } else if node.0 < 4 {
            Ok(SavedPolicy::UNCHANGED)
        } else {
            Err(AffinityError::UnknownNode(node))
        }
    }

    fn restore_memory_policy(&self, _saved: SavedPolicy) -> Result<(), AffinityError> {
        Ok(())
    }
}
