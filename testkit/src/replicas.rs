//! Helpers about the replica set: ids, thread counts, and one token per replica.

use ldnr::{Dispatch, NodeReplicated, ReplicaId, ReplicaInfo, ThreadToken};

/// The ids of `infos`, in order.
pub fn ids(infos: &[ReplicaInfo]) -> Vec<ReplicaId> {
    infos.iter().map(|r| r.id).collect()
}

/// The number of threads the replicas of `infos` serve together.
pub fn thread_sum(infos: &[ReplicaInfo]) -> usize {
    infos.iter().map(|r| r.threads).sum()
}

/// Registers tokens (on the calling thread) until one is matched to each live replica,
/// and returns one token per replica. Which replica a token got is read from the change
/// in the replicas' thread counts, so no registration or reconfiguration may run
/// meanwhile. Each registration goes to the replica with the fewest threads on the
/// node, so a bounded number of them reaches every replica.
pub fn tokens_on_every_replica<D>(nr: &NodeReplicated<D>) -> Vec<(ReplicaId, ThreadToken)>
where
    D: Dispatch + Clone + Send + Sync,
{
    let replicas = nr.replicas().len();
    let mut out: Vec<(ReplicaId, ThreadToken)> = Vec::new();
    while out.len() < replicas {
        let before = nr.replicas();
        let tkn = nr
            .register()
            .expect("the thread limit leaves room for one reader per replica");
        let after = nr.replicas();
        assert_eq!(ids(&before), ids(&after), "no reconfiguration runs now");
        let gained: Vec<ReplicaId> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| a.threads == b.threads + 1)
            .map(|(_, a)| a.id)
            .collect();
        assert_eq!(
            gained.len(),
            1,
            "one registration adds one thread to one replica: {before:?} -> {after:?}"
        );
        assert_eq!(thread_sum(&after), thread_sum(&before) + 1);
        if !out.iter().any(|(id, _)| *id == gained[0]) {
            out.push((gained[0], tkn));
        }
    }
    out
}
