//! Outbound ESP sequence numbers that survive a restart.
//!
//! A node restarted with the same keys would start its SAs at sequence number 1 again, and its
//! peers' anti-replay windows, which remember the last number of the previous run, would refuse
//! everything it sends until a key rotation. So the node reserves sequence numbers in steps:
//! before an SA may use numbers up to R, "R" is in this file (written to a temporary file,
//! synced, renamed over the old one); a restarted node resumes each SA after the R it finds.
//! A run starts with a small step (`MIN_STEP`) that doubles with each renewal the traffic
//! calls for, up to `MAX_STEP`: a crash skips at most one step, and a node that crashes
//! again and again without sending skips only `MIN_STEP` each time, far inside the 2^31 that
//! extended sequence numbers tolerate between a sender and its receiver (8192 such crashes).
//! A clean stop stores the exact last number.
//!
//! The receiving side is kept too: each inbound SA's highest received number, stored whenever
//! it moved on by a block and at a clean stop. Extended sequence numbers send only the low 32
//! bits; a receiver infers the rest from its window, so a node whose windows started empty
//! after a restart could not follow a peer that is past 2^31 on that SA. A restored window
//! counts everything up to the stored number as received.
//!
//! The file maps an SA (source, destination, key tag, key digest) to a number, in JSON. An SA
//! under a new key has no entry and starts at 1, as RFC 4303 wants for a new SA.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::dataplane::esp::{key_id, EspTable, Sa};

/// The first reservation of an SA in a run. The node renews a reservation once half of its
/// step is used, checking every 50 ms: 2^17 packets in 50 ms (2.6 million a second) on one SA
/// would be needed to run out before the step has doubled.
pub const MIN_STEP: u64 = 1 << 18;
/// The largest step a reservation grows to.
pub const MAX_STEP: u64 = 1 << 24;
/// How far an inbound SA's highest received number moves on before it is stored again: after
/// a crash, at most this many packets it had received could be accepted again once.
pub const RECEIVED_STEP: u64 = 1 << 20;

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SeqStoreError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path} is not a sequence-number file ({source}); if it was damaged, remove it: peers will then refuse this node's encrypted traffic as replayed until the keys rotate")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: io::Error },
}

/// What the file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    /// Outbound SA -> highest sequence number it may have used.
    sent: BTreeMap<String, u64>,
    /// Inbound SA -> highest sequence number it received (as of the last write).
    received: BTreeMap<String, u64>,
}

/// The sequence numbers of one node's SAs.
#[derive(Debug)]
pub struct SeqStore {
    path: PathBuf,
    /// Everything known in this run, also of SAs that left the tables (a peer or key that
    /// comes back resumes); the file holds the entries of the keys in the keyring.
    stored: Stored,
    /// Outbound SA -> its current reservation step in this run.
    steps: BTreeMap<String, u64>,
}

fn id(sa: &Sa) -> String {
    format!(
        "{}>{} tag {} key {:016x}",
        sa.src, sa.dst, sa.tag, sa.key_id
    )
}

impl SeqStore {
    /// Reads `path`; a missing file is an empty store (a first start).
    pub fn open(path: &Path) -> Result<SeqStore, SeqStoreError> {
        let shown = || path.display().to_string();
        let stored = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| SeqStoreError::Parse {
                path: shown(),
                source,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Stored::default(),
            Err(source) => {
                return Err(SeqStoreError::Read {
                    path: shown(),
                    source,
                })
            }
        };
        Ok(SeqStore {
            path: path.to_path_buf(),
            stored,
            steps: BTreeMap::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Resumes every outbound SA of `table` that never carried traffic after its stored
    /// reservation, restores the window of every inbound SA that never received, then renews
    /// what needs it. Call before the table carries traffic (at start, and for the new table of
    /// a reload: SAs it shares with the running one carry on as they are).
    pub fn claim(&mut self, table: &EspTable) -> Result<(), SeqStoreError> {
        for sa in table.local_sas() {
            let fresh = sa.reserved() == u64::MAX && sa.last_seq() == 0;
            if let (true, Some(&r)) = (fresh, self.stored.sent.get(&id(sa))) {
                sa.resume_after(r);
            }
        }
        for sa in table.peer_sas() {
            if let (0, Some(&top)) = (sa.received_top(), self.stored.received.get(&id(sa))) {
                sa.restore_received(top);
            }
        }
        self.renew(table)
    }

    /// Renews the reservation of every outbound SA that has used half of its step (or has
    /// none in this run yet), and stores the receive tops that moved on by `RECEIVED_STEP`:
    /// first on disk, then in the SAs. If the file cannot be written, an SA about to run out
    /// is let go on without a bound (it keeps carrying traffic; a restart loses its numbers)
    /// and the error is returned; the next call tries again and bounds it again.
    pub fn renew(&mut self, table: &EspTable) -> Result<(), SeqStoreError> {
        let mut due = Vec::new();
        for sa in table.local_sas() {
            let id = id(sa);
            let (last, reserved) = (sa.last_seq(), sa.reserved());
            let step = match self.steps.get(&id) {
                None => MIN_STEP,
                Some(&st) if reserved == u64::MAX => st,
                Some(&st) if reserved.saturating_sub(last) < st / 2 => (st * 2).min(MAX_STEP),
                Some(_) => continue,
            };
            due.push((sa, id, last.saturating_add(step), step));
        }
        // Inbound SAs not on record yet, or whose top moved on by a step.
        let mut tops = Vec::new();
        for sa in table.peer_sas() {
            let id = id(sa);
            let top = sa.received_top();
            match self.stored.received.get(&id) {
                None => tops.push((id, if top >= RECEIVED_STEP { top } else { 0 })),
                Some(&stored) if top >= stored.saturating_add(RECEIVED_STEP) => {
                    tops.push((id, top))
                }
                Some(_) => {}
            }
        }
        if due.is_empty() && tops.is_empty() {
            return Ok(());
        }
        let mut next = self.stored.clone();
        next.sent
            .extend(due.iter().map(|(_, id, until, _)| (id.clone(), *until)));
        next.received.extend(tops);
        if let Err(e) = self.write(&next, table) {
            for (sa, _, _, step) in &due {
                if sa.reserved().saturating_sub(sa.last_seq()) < step / 4 {
                    sa.reserve(u64::MAX);
                }
            }
            return Err(e);
        }
        self.stored = next;
        for (sa, id, until, step) in due {
            sa.reserve(until);
            if sa.last_seq() > until {
                // It ran unbounded (after a failed write) past what is now on disk.
                sa.reserve(u64::MAX);
            }
            self.steps.insert(id, step);
        }
        Ok(())
    }

    /// After the last packet: stores each SA's last used and last received number, so the
    /// next start resumes exactly there rather than a step later.
    pub fn close(&mut self, table: &EspTable) -> Result<(), SeqStoreError> {
        let mut last = self.stored.clone();
        for sa in table.local_sas() {
            last.sent.insert(id(sa), sa.last_seq());
        }
        for sa in table.peer_sas() {
            last.received.insert(id(sa), sa.received_top());
        }
        self.write(&last, table)?;
        self.stored = last;
        Ok(())
    }

    /// Writes the entries of `stored` whose key is in `table`'s keyring (keys that left the
    /// ring are dropped from the file, not from this run's memory).
    fn write(&self, stored: &Stored, table: &EspTable) -> Result<(), SeqStoreError> {
        let err = |source| SeqStoreError::Write {
            path: self.path.display().to_string(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let keys: Vec<String> = table
            .keyring
            .keys
            .iter()
            .map(|k| format!(" key {:016x}", key_id(&k.key)))
            .collect();
        let current = |m: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
            m.iter()
                .filter(|(id, _)| keys.iter().any(|k| id.ends_with(k.as_str())))
                .map(|(id, n)| (id.clone(), *n))
                .collect()
        };
        let on_disk = Stored {
            sent: current(&stored.sent),
            received: current(&stored.received),
        };
        let mut json = serde_json::to_vec_pretty(&on_disk).map_err(|e| err(e.into()))?;
        json.push(b'\n');
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&json).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        if let Some(dir) = self.path.parent() {
            // The rename itself must reach the disk before the numbers are used.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::esp::{Key, Keyring, Transport};
    use std::net::Ipv4Addr;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);

    const C: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);

    fn table_with(keys: &[(u32, u8)], primary: u32, peers: &[Ipv4Addr]) -> EspTable {
        let keys = keys
            .iter()
            .map(|&(tag, b)| Key { tag, key: [b; 16] })
            .collect();
        EspTable::new(
            Transport::Udp,
            4500,
            Keyring::new(keys, primary).unwrap(),
            A,
            peers.iter().copied(),
            [4097],
        )
    }

    fn table(keys: &[(u32, u8)], primary: u32) -> EspTable {
        table_with(keys, primary, &[B])
    }

    #[test]
    fn a_restart_resumes_above_what_the_last_run_may_have_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node").join("esp-sequence.json");
        let first = table(&[(1, 1), (2, 2)], 1);
        let mut store = SeqStore::open(&path).unwrap();
        store.claim(&first).unwrap();
        let sa = first.outbound(B).unwrap();
        assert_eq!(sa.reserved(), MIN_STEP, "a start reserves one small step");
        assert_eq!(sa.next_seq(), Ok(1), "and a new SA starts at 1");
        store.renew(&first).unwrap();
        assert_eq!(sa.reserved(), MIN_STEP, "nothing to renew yet");

        // Half a step used: the renewal doubles the step, on disk first.
        sa.resume_after(MIN_STEP / 2 + 10);
        store.renew(&first).unwrap();
        let r1 = MIN_STEP / 2 + 10 + 2 * MIN_STEP;
        assert_eq!(sa.reserved(), r1);
        let on_disk: Stored = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(on_disk.sent.values().any(|&r| r == r1), "{on_disk:?}");

        // A reload's table shares this SA: it carries on, no jump.
        store.claim(&first).unwrap();
        assert_eq!(sa.next_seq(), Ok(MIN_STEP / 2 + 11));

        // The process dies; the next one, same keys, continues above the reservation.
        let again = table(&[(1, 1), (2, 2)], 1);
        let mut store2 = SeqStore::open(&path).unwrap();
        store2.claim(&again).unwrap();
        let sa2 = again.outbound(B).unwrap();
        assert_eq!(sa2.next_seq(), Ok(r1 + 1));

        // A clean stop stores the exact last number: the next start continues right after it.
        store2.close(&again).unwrap();
        let after_stop = table(&[(1, 1), (2, 2)], 1);
        SeqStore::open(&path).unwrap().claim(&after_stop).unwrap();
        assert_eq!(after_stop.outbound(B).unwrap().next_seq(), Ok(r1 + 2));

        // A tag given a new key is a new SA: it starts at 1.
        let rekeyed = table(&[(1, 9), (2, 2)], 1);
        SeqStore::open(&path).unwrap().claim(&rekeyed).unwrap();
        assert_eq!(rekeyed.outbound(B).unwrap().next_seq(), Ok(1));
        // The file keeps only keys of the ring: the replaced key's entries are gone.
        let on_disk: Stored = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let old_key = format!("key {:016x}", key_id(&[1; 16]));
        assert!(
            !on_disk.sent.keys().any(|id| id.ends_with(&old_key)),
            "{on_disk:?}"
        );
        assert!(
            on_disk.sent.len() == 2 && on_disk.received.len() == 2,
            "{on_disk:?}"
        );
    }

    #[test]
    fn a_peer_dropped_and_added_again_by_reloads_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("esp-sequence.json");
        let keys = [(1, 1), (2, 2)];
        let both = table_with(&keys, 1, &[B, C]);
        let mut store = SeqStore::open(&path).unwrap();
        store.claim(&both).unwrap();
        let to_b = both.outbound(B).unwrap();
        for _ in 0..3 {
            to_b.next_seq().unwrap();
        }
        // Reload without B, then with B again: a new SA object under the same key.
        let only_c = both.rotate_to(&table_with(&keys, 1, &[C]));
        store.claim(&only_c).unwrap();
        store.renew(&only_c).unwrap();
        let back = only_c.rotate_to(&table_with(&keys, 1, &[B, C]));
        store.claim(&back).unwrap();
        let seq = back.outbound(B).unwrap().next_seq().unwrap();
        assert!(
            seq > 3,
            "the same key never seals a sequence number twice ({seq})"
        );
        // And a restart after that still knows B, although the file was written without it.
        store.close(&back).unwrap();
        let restarted = table_with(&keys, 1, &[B, C]);
        SeqStore::open(&path).unwrap().claim(&restarted).unwrap();
        assert_eq!(restarted.outbound(B).unwrap().next_seq(), Ok(seq + 1));
    }

    #[test]
    fn starts_without_traffic_skip_only_a_small_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("esp-sequence.json");
        // A crash loop (or failed starts) after claiming, each without a packet sent.
        for _ in 0..100 {
            SeqStore::open(&path)
                .unwrap()
                .claim(&table(&[(1, 1)], 1))
                .unwrap();
        }
        let t = table(&[(1, 1)], 1);
        SeqStore::open(&path).unwrap().claim(&t).unwrap();
        assert_eq!(t.outbound(B).unwrap().next_seq(), Ok(100 * MIN_STEP + 1));
    }

    #[test]
    fn a_failed_write_lets_traffic_go_on_and_the_next_one_bounds_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("esp-sequence.json");
        let t = table(&[(1, 1)], 1);
        let sa = t.outbound(B).unwrap();
        let mut store = SeqStore::open(&good).unwrap();
        store.claim(&t).unwrap();
        // The disk goes away (a directory stands where the temporary file must go).
        let bad = dir.path().join("gone").join("esp-sequence.json");
        std::fs::create_dir_all(bad.with_extension("json.tmp")).unwrap();
        store.path = bad;
        sa.resume_after(MIN_STEP - 5);
        assert!(store.renew(&t).is_err());
        assert_eq!(
            sa.reserved(),
            u64::MAX,
            "nearly out: let go on rather than dropped"
        );
        for _ in 0..10 {
            sa.next_seq().unwrap();
        }
        // The disk is back: bound again, above everything used meanwhile, on disk.
        store.path = good.clone();
        store.renew(&t).unwrap();
        assert_eq!(sa.reserved(), MIN_STEP + 5 + MIN_STEP);
        let on_disk: Stored = serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
        assert!(on_disk.sent.values().any(|&r| r == sa.reserved()));
    }

    #[test]
    fn a_restarted_receiver_follows_a_peer_far_past_two_to_the_31() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("esp-sequence.json");
        // Host A (192.0.2.10) receives from B on the SA B -> A; B is at 3 * 2^32 + 5.
        let key = [1u8; 16];
        let tx = crate::dataplane::esp::Sa::new(B, A, 1, &key);
        tx.resume_after(3 << 32);
        let seal = |seq: u64| {
            let mut p = vec![0u8; 8];
            p.extend_from_slice(&[0u8; 40]);
            tx.seal(&mut p, 0, seq, 17).unwrap();
            p
        };
        let a = table(&[(1, 1)], 1);
        let rx = a.peer_sas().next().unwrap();
        rx.restore_received(3 << 32);
        for _ in 0..5 {
            let seq = tx.next_seq().unwrap();
            rx.check_and_open(&mut seal(seq)).unwrap();
        }
        let mut store = SeqStore::open(&path).unwrap();
        store.claim(&a).unwrap();
        store.close(&a).unwrap();

        // Host A restarts: without the stored top its empty window would take the next packet
        // for one of the first 2^32 and refuse it.
        let fresh = table(&[(1, 1)], 1);
        let next = tx.next_seq().unwrap();
        assert!(fresh
            .peer_sas()
            .next()
            .unwrap()
            .check_and_open(&mut seal(next))
            .is_err());
        let restarted = table(&[(1, 1)], 1);
        SeqStore::open(&path).unwrap().claim(&restarted).unwrap();
        let rx2 = restarted.peer_sas().next().unwrap();
        let next = tx.next_seq().unwrap();
        assert!(rx2.check_and_open(&mut seal(next)).is_ok());
        assert_eq!(rx2.received_top(), (3 << 32) + 7);
    }

    #[test]
    fn a_damaged_file_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("esp-sequence.json");
        std::fs::write(&path, "{ not json").unwrap();
        let err = SeqStore::open(&path).unwrap_err().to_string();
        assert!(err.contains("is not a sequence-number file"), "{err}");
        assert!(err.contains("remove it"), "{err}");
    }

    #[test]
    fn an_unwritable_file_leaves_the_reservation_where_it_was() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: the rename fails.
        let path = dir.path().join("esp-sequence.json");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("x"), "").unwrap();
        let t = table(&[(1, 1)], 1);
        let mut store = SeqStore::open(&dir.path().join("other.json")).unwrap();
        store.path = path;
        assert!(store.claim(&t).is_err());
        assert_eq!(
            t.outbound(B).unwrap().reserved(),
            u64::MAX,
            "nothing reserved that is not on disk (the runtime decides what to do)"
        );
    }
}
