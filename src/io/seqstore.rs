//! Outbound ESP sequence numbers that survive a restart.
//!
//! A node restarted with the same keys would start its SAs at sequence number 1 again, and its
//! peers' anti-replay windows, which remember the last number of the previous run, would refuse
//! everything it sends until a key rotation. So the node reserves sequence numbers in blocks:
//! before an SA may use numbers up to R, "R" is in this file (written to a temporary file,
//! synced, renamed over the old one); a restarted node resumes each SA after the R it finds.
//! At most one block per SA is skipped by a restart, far inside the 2^31 that extended
//! sequence numbers tolerate between a sender and its receiver.
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

use crate::dataplane::esp::{EspTable, Sa};

/// Sequence numbers reserved at a time. The node renews a reservation once half of it is
/// used, checking every second: 2^23 (8 million) packets a second per SA would be needed to
/// run out. A crash skips at most one block; a clean stop stores the exact last number.
pub const BLOCK: u64 = 1 << 24;

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

/// The sequence numbers of one node's SAs, as on disk.
#[derive(Debug)]
pub struct SeqStore {
    path: PathBuf,
    stored: Stored,
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

    /// Renews the reservation of every outbound SA that has used half of its block (or has
    /// none yet), and stores the receive tops that moved on by a block: first on disk, then in
    /// the SAs. SAs no longer in `table` are forgotten.
    pub fn renew(&mut self, table: &EspTable) -> Result<(), SeqStoreError> {
        let mut next = Stored::default();
        let mut due = Vec::new();
        for sa in table.local_sas() {
            let stored = self.stored.sent.get(&id(sa)).copied();
            let until = if stored != Some(sa.reserved())
                || sa.last_seq().saturating_add(BLOCK / 2) > sa.reserved()
            {
                let until = sa.last_seq().saturating_add(BLOCK);
                due.push((sa, until));
                until
            } else {
                sa.reserved()
            };
            next.sent.insert(id(sa), until);
        }
        for sa in table.peer_sas() {
            let top = sa.received_top();
            let stored = self.stored.received.get(&id(sa)).copied().unwrap_or(0);
            let keep = if top >= stored.saturating_add(BLOCK) {
                top
            } else {
                stored
            };
            next.received.insert(id(sa), keep);
        }
        if next == self.stored {
            return Ok(());
        }
        self.write(&next)?;
        self.stored = next;
        for (sa, until) in due {
            sa.reserve(until);
        }
        Ok(())
    }

    /// After the last packet: stores each SA's last used and last received number, so the
    /// next start resumes exactly there rather than a block later.
    pub fn close(&mut self, table: &EspTable) -> Result<(), SeqStoreError> {
        let last = Stored {
            sent: table
                .local_sas()
                .map(|sa| (id(sa), sa.last_seq()))
                .collect(),
            received: table
                .peer_sas()
                .map(|sa| (id(sa), sa.received_top()))
                .collect(),
        };
        self.write(&last)?;
        self.stored = last;
        Ok(())
    }

    fn write(&self, stored: &Stored) -> Result<(), SeqStoreError> {
        let err = |source| SeqStoreError::Write {
            path: self.path.display().to_string(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut json = serde_json::to_vec_pretty(stored).map_err(|e| err(e.into()))?;
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

    fn table(keys: &[(u32, u8)], primary: u32) -> EspTable {
        let keys = keys
            .iter()
            .map(|&(tag, b)| Key { tag, key: [b; 16] })
            .collect();
        EspTable::new(
            Transport::Udp,
            4500,
            Keyring::new(keys, primary).unwrap(),
            A,
            [B],
            [4097],
        )
    }

    #[test]
    fn a_restart_resumes_above_what_the_last_run_may_have_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node").join("esp-sequence.json");
        let first = table(&[(1, 1), (2, 2)], 1);
        let mut store = SeqStore::open(&path).unwrap();
        store.claim(&first).unwrap();
        let sa = first.outbound(B).unwrap();
        assert_eq!(
            sa.reserved(),
            BLOCK,
            "a first start reserves one block from 0"
        );
        assert_eq!(sa.next_seq(), Ok(1), "and a new SA starts at 1");

        // Half a block used: the next renewal moves the reservation on, on disk first.
        sa.resume_after(BLOCK / 2 + 10);
        store.renew(&first).unwrap();
        assert_eq!(sa.reserved(), BLOCK / 2 + 10 + BLOCK);
        let on_disk: Stored = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(
            on_disk.sent.values().any(|&r| r == sa.reserved()),
            "{on_disk:?}"
        );

        // A reload's table shares this SA: it carries on, no jump.
        store.claim(&first).unwrap();
        assert_eq!(sa.next_seq(), Ok(BLOCK / 2 + 11));

        // The process dies; the next one, same keys, continues above the reservation.
        let again = table(&[(1, 1), (2, 2)], 1);
        let mut store2 = SeqStore::open(&path).unwrap();
        store2.claim(&again).unwrap();
        let sa2 = again.outbound(B).unwrap();
        assert_eq!(sa2.next_seq(), Ok(BLOCK / 2 + 10 + BLOCK + 1));

        // A clean stop stores the exact last number: the next start continues right after it.
        store2.close(&again).unwrap();
        let after_stop = table(&[(1, 1), (2, 2)], 1);
        SeqStore::open(&path).unwrap().claim(&after_stop).unwrap();
        assert_eq!(
            after_stop.outbound(B).unwrap().next_seq(),
            Ok(BLOCK / 2 + 10 + BLOCK + 2)
        );

        // A tag given a new key is a new SA: it starts at 1.
        let rekeyed = table(&[(1, 9), (2, 2)], 1);
        SeqStore::open(&path).unwrap().claim(&rekeyed).unwrap();
        assert_eq!(rekeyed.outbound(B).unwrap().next_seq(), Ok(1));
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
