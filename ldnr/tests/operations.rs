//! `ldnr::operations!` from a user's point of view: visibilities, a user type named like
//! the macro's internals, writes without a return type, one write only, many arguments,
//! doc comments, derives on the enum, and the typed results through `NodeReplicated`.
//! (CI lints this file with clippy `-D warnings`: the generated code must be clean.)

use ldnr::{NodeId, NodeReplicated};

/// A user type that shares a name with what the macro generates inside.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Response(u64);

/// A public structure with a private trait and a public enum.
#[derive(Clone, Default, Debug, PartialEq)]
pub struct Account {
    balance: u64,
    log: Vec<Response>,
    open: bool,
}

ldnr::operations! {
    /// The writes of [`Account`].
    trait AccountWrites for Account,
    /// Account writes, as the log stores them.
    #[derive(Debug, PartialEq)]
    pub enum AccountWrite {
        /// Opens the account (no return type).
        fn open(&mut self) {
            self.open = true;
        }
        /// Deposits `amount`; returns the new balance, or the refusal as a `Response`.
        pub fn deposit(&mut self, amount: u64) -> Result<u64, Response> {
            if !self.open {
                return Err(Response(amount));
            }
            self.balance += amount;
            self.log.push(Response(amount));
            Ok(self.balance)
        }
        /// Many arguments (the generated methods add `self` and a token).
        fn deposit_all(&mut self, a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 {
            for x in [a, b, c, d, e, f] {
                self.balance += x;
            }
            self.balance
        }
    }
}

/// A structure with a single write.
#[derive(Clone, Default)]
struct Flag(bool);

ldnr::operations! {
    trait FlagWrites for Flag, enum FlagWrite {
        fn set(&mut self, to: bool) -> bool {
            std::mem::replace(&mut self.0, to)
        }
    }
}

#[test]
fn typed_writes_answer_their_own_types_on_every_replica() {
    let nr = NodeReplicated::builder(Account::default())
        .replicas(&[NodeId(0), NodeId(0)])
        .build()
        .unwrap();
    let tkn = nr.thread_token().unwrap();
    assert_eq!(nr.deposit(tkn, 5), Err(Response(5)));
    nr.open(tkn);
    assert_eq!(nr.deposit(tkn, 5), Ok(5));
    assert_eq!(nr.deposit_all(tkn, 1, 2, 3, 4, 5, 6), 26);
    // Both replicas hold the same account (a thread on each reads it).
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let t = nr.register().unwrap();
                let seen = nr.read(t, |a| a.clone());
                assert_eq!(seen.balance, 26);
                assert_eq!(seen.log, vec![Response(5)]);
                assert!(seen.open);
                nr.deregister(t).unwrap();
            })
            .join()
            .unwrap();
        }
    });
    let ids: Vec<_> = nr.replicas().iter().map(|r| r.applied).collect();
    assert_eq!(ids, [4, 4], "four writes, applied once by each replica");
}

#[test]
fn the_sequential_methods_and_the_enum_stay_usable() {
    let mut plain = Account::default();
    plain.open();
    assert_eq!(plain.deposit(3), Ok(3));
    let op = AccountWrite::deposit(7);
    assert_eq!(op.clone(), AccountWrite::deposit(7));
    assert_eq!(format!("{op:?}"), "deposit(7)");

    let flag = NodeReplicated::builder(Flag::default()).build().unwrap();
    let tkn = flag.thread_token().unwrap();
    assert!(!flag.set(tkn, true));
    assert!(flag.set(tkn, false));
    assert!(!flag.read(tkn, |f| f.0));
    let _: FlagWrite = FlagWrite::set(true);
}
