//! `Serialize` / `Deserialize` (feature `serde`): the map's entries, as a `HashMap`'s.
//! Run with `cargo test -p ldnr-hashmap --features serde`.
#![cfg(feature = "serde")]

use std::collections::HashMap;

use ldnr::NodeId;
use ldnr_hashmap::ReplicatedHashMap;
use ldnr_testkit::{watchdog, LIMIT};

#[test]
fn serializes_as_its_entries_and_round_trips() {
    watchdog("serde", LIMIT, || {
        let map = ReplicatedHashMap::<String, Vec<u32>>::builder()
            .replicas(&[NodeId(0), NodeId(0)])
            .build()
            .expect("a valid configuration");
        assert_eq!(serde_json::to_string(&map).unwrap(), "{}");
        map.insert("a".into(), vec![1, 2]);
        assert_eq!(serde_json::to_string(&map).unwrap(), r#"{"a":[1,2]}"#);
        map.extend((0..100).map(|i| (format!("k{i}"), vec![i])));

        // The same JSON as the std map holding the same entries.
        let json = serde_json::to_string(&map).unwrap();
        let as_std: HashMap<String, Vec<u32>> = serde_json::from_str(&json).unwrap();
        assert_eq!(as_std, map.read(|m| m.clone().into_iter().collect()));

        let back: ReplicatedHashMap<String, Vec<u32>> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.len(), 101);
        assert_eq!(back.replicas().len(), 1, "a new map with the defaults");
        assert_eq!(back.get("a"), Some(vec![1, 2]));
        assert_eq!(back.get("k99"), Some(vec![99]));
        assert_eq!(
            back.read(|m| m.clone().into_iter().collect::<HashMap<_, _>>()),
            as_std
        );

        let bad = serde_json::from_str::<ReplicatedHashMap<String, u32>>(r#"{"a":"x"}"#);
        assert!(bad.is_err());
    });
}
