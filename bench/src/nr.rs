//! The baseline: the same `u64 → u64` map under node-replication 0.1.1 (NR), the static
//! replica implementation LD-NR is measured against.

use ldnr_hashmap::{MapRead, MapWrite, U64Map};

/// [`U64Map`] behind node-replication 0.1.1's `Dispatch`: the same map, hasher and
/// operation enums as LD-NR's, and the same `match` (delegated to `U64Map`'s
/// [`ldnr::Dispatch`], so the code each system runs per operation is identical).
#[derive(Debug, Clone, Default)]
pub struct NrMap(pub U64Map);

impl node_replication::Dispatch for NrMap {
    type ReadOperation = MapRead;
    type WriteOperation = MapWrite;
    type Response = Option<u64>;

    #[inline]
    fn dispatch(&self, op: MapRead) -> Option<u64> {
        ldnr::Dispatch::dispatch(&self.0, op)
    }

    #[inline]
    fn dispatch_mut(&mut self, op: MapWrite) -> Option<u64> {
        ldnr::Dispatch::dispatch_mut(&mut self.0, op)
    }
}
