//! The error cases of `add_replica` and `remove_replica`, with nothing changed on error.

use std::sync::Arc;

use ldnr::{AffinityError, Error, NodeId, NodeReplicated, MAX_REPLICAS};
use ldnr_testkit::counters::{Counters, Get, Inc};
use ldnr_testkit::{watchdog, LIMIT};

use crate::TestNodes;

// ---------------------------------------------------------------------------------------
// 7. Errors
// ---------------------------------------------------------------------------------------

#[test]
fn add_and_remove_errors_change_nothing() {
    watchdog("errors", LIMIT, || {
        let nr = NodeReplicated::builder(Counters(vec![0]))
            .log_capacity(8)
            .build()
            .unwrap();
        let tkn = nr.register().unwrap();
        assert_eq!(nr.execute_mut(Inc(0), tkn), 1);

        // Unknown node (NoAffinity knows node 0 only).
        let before = nr.replicas();
        assert_eq!(
            nr.add_replica(NodeId(1)),
            Err(Error::UnknownNode(NodeId(1)))
        );
        assert_eq!(nr.replicas(), before);

        // The last replica cannot go.
        let only = before[0].id;
        assert_eq!(nr.remove_replica(only), Err(Error::LastReplica));
        assert_eq!(nr.replicas(), before);

        // Up to the replica limit, then no more.
        let mut added = Vec::new();
        for _ in 1..MAX_REPLICAS {
            added.push(nr.add_replica(NodeId(0)).unwrap());
        }
        let full = nr.replicas();
        assert_eq!(full.len(), MAX_REPLICAS);
        assert_eq!(
            nr.add_replica(NodeId(0)),
            Err(Error::TooManyReplicas {
                limit: MAX_REPLICAS
            })
        );
        assert_eq!(nr.replicas(), full);
        // Writes still work with 63 idle replicas on a log of 8.
        for i in 2..=20 {
            assert_eq!(nr.execute_mut(Inc(0), tkn), i);
        }

        // Unknown ids: one that never existed here (a bigger instance hands out higher
        // ids), and one that was removed.
        let other = NodeReplicated::builder(Counters(vec![0]))
            .replicas(&[NodeId(0); 3])
            .build()
            .unwrap();
        let stranger = other.replicas()[2].id;
        let before = nr.replicas();
        other.remove_replica(stranger).unwrap();
        let stranger = {
            // Ids are never reused: add to `other` until its ids pass ours.
            let mut id = stranger;
            for _ in 0..80 {
                id = other.add_replica(NodeId(0)).unwrap();
                other.remove_replica(id).unwrap();
            }
            id
        };
        assert!(nr.replicas().iter().all(|r| r.id != stranger));
        assert_eq!(
            nr.remove_replica(stranger),
            Err(Error::UnknownReplica(stranger))
        );
        assert_eq!(nr.replicas(), before);

        let victim = added[10];
        nr.remove_replica(victim).unwrap();
        let before = nr.replicas();
        assert_eq!(
            nr.remove_replica(victim),
            Err(Error::UnknownReplica(victim))
        );
        assert_eq!(nr.replicas(), before);

        // Down to the last replica, then no further.
        for info in nr.replicas().into_iter().skip(1) {
            nr.remove_replica(info.id).unwrap();
        }
        let last = nr.replicas();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].threads, 1);
        assert_eq!(nr.remove_replica(last[0].id), Err(Error::LastReplica));
        assert_eq!(nr.replicas(), last);
        assert_eq!(nr.execute(Get(0), tkn), 20);
        assert_eq!(nr.execute_mut(Inc(0), tkn), 21);

        // A freed slot is reusable after TooManyReplicas.
        let id = nr.add_replica(NodeId(0)).unwrap();
        assert!(!added.contains(&id), "ids are never reused");
    });
}

#[test]
fn add_replica_affinity_failure_changes_nothing() {
    let nodes = Arc::new(TestNodes { fail: Some(3) });
    let nr = NodeReplicated::builder(Counters(vec![0]))
        .replicas(&[NodeId(0)])
        .affinity(nodes)
        .build()
        .unwrap();
    let before = nr.replicas();
    assert_eq!(
        nr.add_replica(NodeId(3)),
        Err(Error::Affinity(AffinityError::Os(12)))
    );
    assert_eq!(nr.replicas(), before);
    assert_eq!(
        nr.add_replica(NodeId(4)),
        Err(Error::UnknownNode(NodeId(4)))
    );
    assert_eq!(nr.replicas(), before);
    // And the instance still works, including adding elsewhere.
    let tkn = nr.register().unwrap();
    assert_eq!(nr.execute_mut(Inc(0), tkn), 1);
    nr.add_replica(NodeId(2)).unwrap();
    assert_eq!(nr.replicas().len(), 2);
}
