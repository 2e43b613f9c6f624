//! The replication policy's hand-over (`policy::run_rounds`): one run at a time, and no
//! thread event lost between a run that finishes and an event raised meanwhile.

use super::*;
use crate::poison::Poison;
use crate::policy::run_rounds;
use crate::sync::AtomicBool;
use loom::sync::Mutex;

/// Two threads each count an event, raise the policy flag and run the policy (`wait`
/// says whether each waits for a run by the other, as the event's own thread does, or
/// leaves it to the running one, as an operation's entry does). Every round records how
/// many events had happened when it started.
///
/// Asserts: rounds never overlap; when both waited, some round started after both events
/// and the flag is down; when one did not wait, either that holds or the flag is still
/// raised (left for the next operation's entry), never both down and unseen.
fn hand_over(waits: [bool; 2]) {
    check(Some(3), move || {
        let poison = Arc::new(Poison::new(false));
        let running = Arc::new(AtomicBool::new(false));
        let events = Arc::new(crate::sync::AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new((0usize, false)));
        let threads: Vec<_> = waits
            .iter()
            .map(|&wait| {
                let (poison, running, events, seen) = (
                    poison.clone(),
                    running.clone(),
                    events.clone(),
                    seen.clone(),
                );
                thread::spawn(move || {
                    events.fetch_add(1, Ordering::SeqCst);
                    // A thread that does not wait stands for an operation's entry
                    // acting on another thread's exit (an orphan event).
                    poison.request_policy(!wait);
                    run_rounds(&poison, &running, wait, || {
                        let mut s = seen.lock().unwrap();
                        assert!(!s.1, "two rounds at once");
                        s.1 = true;
                        s.0 = s.0.max(events.load(Ordering::SeqCst));
                        drop(s);
                        thread::yield_now();
                        seen.lock().unwrap().1 = false;
                    });
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (max_seen, _) = *seen.lock().unwrap();
        let raised = poison.policy_raised();
        if waits == [true, true] {
            assert_eq!(max_seen, 2, "a round saw both events");
            assert!(!raised, "nothing left over");
        } else {
            assert!(
                max_seen == 2 || raised,
                "an event lost: seen {max_seen}, flag down"
            );
        }
        assert!(!poison.is_set(), "the policy flag never reads as poison");
    });
}

/// The policy flag and the poison flag share a word: taking the policy flag while
/// another thread poisons the instance never clears the poison (nor the other way).
#[test]
fn policy_flag_never_hides_poison() {
    check(Some(3), || {
        let poison = Arc::new(Poison::new(false));
        let running = Arc::new(AtomicBool::new(false));
        let poisoner = {
            let poison = poison.clone();
            thread::spawn(move || drop(poison.on_unwind()))
        };
        poison.request_policy(false);
        let mut rounds = 0;
        run_rounds(&poison, &running, true, || rounds += 1);
        poisoner.join().unwrap();
        assert!(poison.is_set(), "the poison survived the policy flag");
        assert!(rounds <= 1);
    });
}

#[test]
fn policy_events_waiting_threads() {
    hand_over([true, true]);
}

#[test]
fn policy_events_one_thread_leaves_its_event() {
    hand_over([true, false]);
}
