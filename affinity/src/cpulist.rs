//! Linux CPU and node lists (`"0-3,8-11"`), as sysfs and `/proc` write them.

use std::fmt;

/// Parses a Linux CPU or node list such as `"0-3,8-11"`, `"5"`, `"0-7:2"` or `""`.
///
/// Ranges are inclusive; `a-b:s` takes every `s`-th number of `a-b` (the kernel's
/// stride syntax, also `a-b:used/group`). Whitespace around the list is ignored. The
/// result is ascending and free of duplicates. The work is bounded by the size of the
/// result, whatever the numbers: a hostile file cannot make it slow.
///
/// # Errors
///
/// [`ListParseError`] for anything else (a reversed range, a stray character, a number
/// of 2^22 or more — no kernel has that many CPUs or nodes — or more than 2^20 numbers).
///
/// # Examples
///
/// ```
/// use ldnr_affinity::parse_cpulist;
/// assert_eq!(parse_cpulist("0-3,8-11\n")?, [0, 1, 2, 3, 8, 9, 10, 11]);
/// assert_eq!(parse_cpulist("")?, Vec::<usize>::new());
/// assert_eq!(parse_cpulist("0-9:4")?, [0, 4, 8]);
/// assert_eq!(parse_cpulist("0-7:2/4")?, [0, 1, 4, 5]);
/// assert!(parse_cpulist("3-1").is_err());
/// # Ok::<(), ldnr_affinity::ListParseError>(())
/// ```
pub fn parse_cpulist(text: &str) -> Result<Vec<usize>, ListParseError> {
    /// A list bigger than this is a corrupt file, not a machine.
    const MAX_ITEMS: usize = 1 << 20;
    /// Kernels have at most 8192 CPUs (`NR_CPUS`) and 1024 nodes; larger ids are corrupt
    /// (and would make masks sized by them huge).
    const MAX_ID: usize = 1 << 22;
    let err = || ListParseError {
        text: text.trim().to_owned(),
    };
    let num = |s: &str| {
        s.trim()
            .parse::<usize>()
            .ok()
            .filter(|&v| v < MAX_ID)
            .ok_or_else(err)
    };
    let mut out = Vec::new();
    let text = text.trim();
    if text.is_empty() {
        return Ok(out);
    }
    for part in text.split(',') {
        let (range, stride) = match part.split_once(':') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let v = num(range)?;
                (v, v)
            }
        };
        if lo > hi {
            return Err(err());
        }
        // `used/group`: take the first `used` of every `group` numbers (a plain stride
        // `s` is `1/s`).
        let (used, group) = match stride {
            None => (1, 1),
            Some(s) => match s.split_once('/') {
                Some((u, g)) => (num(u)?, num(g)?),
                None => (1, num(s)?),
            },
        };
        if used == 0 || group == 0 || used > group {
            return Err(err());
        }
        // Counted before anything is made: whole groups, plus the start of the last.
        let count = (hi - lo) / group * used + ((hi - lo) % group + 1).min(used);
        if out.len() + count > MAX_ITEMS {
            return Err(err());
        }
        // Group by group, so the work is the result's size, not the range's.
        let mut start = lo;
        while start <= hi {
            out.extend(start..=hi.min(start + used - 1));
            start = match start.checked_add(group) {
                Some(next) => next,
                None => break,
            };
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A CPU or node list that [`parse_cpulist`] could not read.
///
/// # Examples
///
/// ```
/// let e = ldnr_affinity::parse_cpulist("0-x").unwrap_err();
/// assert_eq!(e.to_string(), "malformed CPU/node list \"0-x\"");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParseError {
    text: String,
}

impl fmt::Display for ListParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed CPU/node list {:?}", self.text)
    }
}

impl std::error::Error for ListParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpulists() {
        assert_eq!(parse_cpulist("0").unwrap(), [0]);
        assert_eq!(parse_cpulist(" 0-1 \n").unwrap(), [0, 1]);
        assert_eq!(
            parse_cpulist("0-3,8-11").unwrap(),
            [0, 1, 2, 3, 8, 9, 10, 11]
        );
        assert_eq!(
            parse_cpulist("8-11,0-3,2").unwrap(),
            [0, 1, 2, 3, 8, 9, 10, 11]
        );
        assert_eq!(parse_cpulist("1,3,5").unwrap(), [1, 3, 5]);
        assert_eq!(parse_cpulist("0-10:5").unwrap(), [0, 5, 10]);
        assert_eq!(parse_cpulist("\n").unwrap(), Vec::<usize>::new());
        for bad in [
            "-",
            "1-",
            "a",
            "3-1",
            "0-3:0",
            "0-3:3/2",
            "0,,1",
            "0-1-2",
            "0-4294967296000",
            "4194304",
        ] {
            assert!(parse_cpulist(bad).is_err(), "{bad:?} parsed");
        }
    }

    /// Strides and huge numbers: each must be answered from the result's size, and a
    /// hang is caught by the watchdog (it aborts the test run).
    #[test]
    fn hostile_cpulists() {
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let dog = std::thread::spawn(move || {
            if wait.recv_timeout(std::time::Duration::from_secs(60))
                == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            {
                eprintln!("watchdog: parse_cpulist did not return in 60 s");
                std::process::abort();
            }
        });
        let max = usize::MAX.to_string();
        for bad in [
            "0-4000000000:4000000000".to_string(),
            format!("0-{max}:{max}"),
            format!("0-{max}"),
            max.clone(),
            "0-4194303:1".to_string(), // 2^22 numbers: more than 2^20
            format!("0-4194303:{max}"),
        ] {
            assert!(parse_cpulist(&bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            parse_cpulist("0-4000000:1000000").unwrap(),
            [0, 1000000, 2000000, 3000000, 4000000]
        );
        assert_eq!(parse_cpulist("0-4194303:4194303").unwrap(), [0, 4194303]);
        assert_eq!(parse_cpulist("0-9:3/4").unwrap(), [0, 1, 2, 4, 5, 6, 8, 9]);
        assert_eq!(parse_cpulist("5-6:3/4").unwrap(), [5, 6]);
        assert_eq!(parse_cpulist("0-1048575").unwrap().len(), 1 << 20);
        assert!(
            parse_cpulist("0-1048575,2000000").is_err(),
            "past 2^20 numbers"
        );
        drop(done);
        dog.join().unwrap();
    }

    /// A stride list is the numbers whose offset from the start, modulo the group, is
    /// below `used`: checked against that definition on every small case.
    #[test]
    fn strides_match_their_definition() {
        for lo in 0..6 {
            for hi in lo..14 {
                for group in 1..6 {
                    for used in 1..=group {
                        let text = format!("{lo}-{hi}:{used}/{group}");
                        let want: Vec<usize> =
                            (lo..=hi).filter(|v| (v - lo) % group < used).collect();
                        assert_eq!(parse_cpulist(&text).unwrap(), want, "{text}");
                    }
                }
            }
        }
    }
}
