//! Reading the topology from sysfs (see the [`topology`](crate::topology) module docs for
//! the layout): [`Topology::from_sysfs`] for any copy, [`Topology::detect`] for this
//! machine as far as this process may use it.

use std::fs;
use std::path::Path;

use ldnr::NodeId;

use crate::cpulist::parse_cpulist;
use crate::topology::{NodeInfo, Topology, TopologyError, SYSFS_NODE_DIR};

impl Topology {
    /// This machine's topology from [`SYSFS_NODE_DIR`] as far as this process may use it
    /// ([`Topology::restrict`]ed to the calling thread's [`allowed_cpus`](crate::allowed_cpus)
    /// and [`allowed_memory_nodes`](crate::allowed_memory_nodes)), or
    /// [`Topology::single_node`] where it cannot be read (see
    /// [`Topology::detect_or_reason`] for why).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!ldnr_affinity::Topology::detect().nodes().is_empty());
    /// ```
    pub fn detect() -> Self {
        Self::detect_or_reason().0
    }

    /// Like [`Topology::detect`], and also says what it could not use (`None` if
    /// nothing): why it fell back to one node, or that the kernel's distance table was
    /// invalid and 10/20 are used instead.
    ///
    /// # Examples
    ///
    /// ```
    /// let (t, why) = ldnr_affinity::Topology::detect_or_reason();
    /// if let Some(why) = why {
    ///     println!("{} node(s): {why}", t.nodes().len());
    /// }
    /// ```
    pub fn detect_or_reason() -> (Self, Option<String>) {
        if !cfg!(target_os = "linux") {
            return (
                Self::single_node(),
                Some("not Linux: NUMA topology not available".into()),
            );
        }
        let (machine, mut why) = match Self::from_sysfs_lenient(SYSFS_NODE_DIR) {
            Ok(found) => found,
            Err(e) => return (Self::single_node(), Some(e.to_string())),
        };
        let cpus = crate::pin::allowed_cpus().ok();
        let mems = crate::process::allowed_memory_nodes().ok();
        match machine.restrict(cpus.as_deref(), mems.as_deref()) {
            Ok(t) => (t, why),
            Err(e) => {
                // The kernel's own lists disagree; use the machine's and say so.
                let note = format!("not restricted to this process's CPUs and memory: {e}");
                why = Some(why.map_or(note.clone(), |w| format!("{w}; {note}")));
                (machine, why)
            }
        }
    }

    /// [`Topology::from_sysfs`], but a distance table it cannot use is replaced by 10/20
    /// and the reason returned.
    pub(crate) fn from_sysfs_lenient(
        dir: impl AsRef<Path>,
    ) -> Result<(Self, Option<String>), TopologyError> {
        let dir = dir.as_ref();
        match Self::parse_sysfs(dir, true) {
            Ok(t) => Ok((t, None)),
            Err(TopologyError::Distances(why)) => Ok((
                Self::parse_sysfs(dir, false)?,
                Some(format!(
                    "distances in {} ignored ({why}); using 10 and 20",
                    dir.display()
                )),
            )),
            Err(e) => Err(e),
        }
    }

    /// Parses a directory laid out like [`SYSFS_NODE_DIR`] (see the module docs).
    ///
    /// Only nodes listed in `online` count, with whatever ids they have (node 0 may be
    /// offline, ids may skip). `has_memory` is optional (all online nodes have memory when
    /// it is missing). A missing `nodeN/cpulist` means no CPUs. Distances: if no node has
    /// a `distance` file, 10/20; otherwise every row must be there, one number per online
    /// node, each node strictly nearest to itself.
    ///
    /// This is the machine as the kernel describes it; [`Topology::detect`] also cuts it
    /// to what the process may use.
    ///
    /// # Errors
    ///
    /// [`TopologyError::Io`] if `online` cannot be read, [`TopologyError::Parse`] for a
    /// malformed node or CPU list, [`TopologyError::Invalid`] if no node is online or an
    /// online node's directory is missing, [`TopologyError::Distances`] for a missing,
    /// short or malformed distance row or a node that is not nearest to itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::fs;
    /// use ldnr::NodeId;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let d = dir.path();
    /// fs::write(d.join("online"), "0-1\n")?;
    /// for (n, cpus, dist) in [(0, "0-3,8-11", "10 21"), (1, "4-7,12-15", "21 10")] {
    ///     fs::create_dir(d.join(format!("node{n}")))?;
    ///     fs::write(d.join(format!("node{n}/cpulist")), cpus)?;
    ///     fs::write(d.join(format!("node{n}/distance")), dist)?;
    /// }
    /// let t = ldnr_affinity::Topology::from_sysfs(d)?;
    /// assert_eq!(t.cpus_of(NodeId(1)), [4, 5, 6, 7, 12, 13, 14, 15]);
    /// assert_eq!(t.distance(NodeId(0), NodeId(1)), 21);
    /// assert_eq!(t.node_of_cpu(9), Some(NodeId(0)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_sysfs(dir: impl AsRef<Path>) -> Result<Self, TopologyError> {
        Self::parse_sysfs(dir.as_ref(), true)
    }

    fn parse_sysfs(dir: &Path, with_distances: bool) -> Result<Self, TopologyError> {
        let online = parse_list(&read(&dir.join("online"))?, &dir.join("online"))?;
        if online.is_empty() {
            return Err(TopologyError::Invalid(format!(
                "no online node in {}",
                dir.display()
            )));
        }
        let with_memory = match fs::read_to_string(dir.join("has_memory")) {
            Ok(text) => Some(parse_list(&text, &dir.join("has_memory"))?),
            Err(_) => None,
        };
        let mut nodes = Vec::with_capacity(online.len());
        let mut rows = Vec::with_capacity(online.len());
        for &n in &online {
            let node_dir = dir.join(format!("node{n}"));
            if !node_dir.is_dir() {
                return Err(TopologyError::Invalid(format!(
                    "node {n} is online but {} is missing",
                    node_dir.display()
                )));
            }
            let cpulist = node_dir.join("cpulist");
            let cpus = match fs::read_to_string(&cpulist) {
                Ok(text) => parse_list(&text, &cpulist)?,
                Err(_) => Vec::new(),
            };
            let has_memory = with_memory.as_ref().is_none_or(|m| m.contains(&n));
            nodes.push(NodeInfo::new(NodeId(n), cpus, has_memory));
            // The kernel writes one distance per online node, in the order of `online`.
            let file = node_dir.join("distance");
            rows.push(
                fs::read_to_string(&file)
                    .ok()
                    .map(|text| parse_distances(&text, online.len(), &file)),
            );
        }
        let distances = if !with_distances || rows.iter().all(Option::is_none) {
            None
        } else {
            let mut matrix = Vec::with_capacity(rows.len());
            for (row, node) in rows.into_iter().zip(&nodes) {
                let row = row.ok_or_else(|| {
                    TopologyError::Distances(format!("{} has no distance row", node.id))
                })?;
                matrix.push(row?);
            }
            Some(matrix)
        };
        Self::new(nodes, distances)
    }
}

fn read(path: &Path) -> Result<String, TopologyError> {
    fs::read_to_string(path).map_err(|source| TopologyError::Io {
        path: path.to_owned(),
        source,
    })
}

fn parse_list(text: &str, path: &Path) -> Result<Vec<usize>, TopologyError> {
    parse_cpulist(text).map_err(|_| TopologyError::Parse {
        path: path.to_owned(),
        text: text.trim().to_owned(),
    })
}

fn parse_distances(text: &str, expected: usize, path: &Path) -> Result<Vec<u32>, TopologyError> {
    let row: Vec<u32> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| {
            TopologyError::Distances(format!(
                "{}: not numbers: {:?}",
                path.display(),
                text.trim()
            ))
        })?;
    if row.len() != expected {
        return Err(TopologyError::Distances(format!(
            "{}: {} distances for {expected} online nodes",
            path.display(),
            row.len()
        )));
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn lenient_parsing_replaces_bad_distances_and_says_why() {
        let (t, why) = Topology::from_sysfs_lenient(fixture("inverted_distances")).unwrap();
        assert_eq!(t.distances(), [[10, 20], [20, 10]]);
        let why = why.expect("a reason");
        assert!(why.contains("not nearest to itself"), "{why}");
        let (t, why) = Topology::from_sysfs_lenient(fixture("four_nodes")).unwrap();
        assert_eq!(why, None);
        assert_eq!(t.distance(NodeId(0), NodeId(1)), 16);
        assert!(Topology::from_sysfs_lenient(fixture("bad_cpulist")).is_err());
    }
}
