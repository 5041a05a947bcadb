//! Raft log storage and state machine on the node's redb store.
//!
//! The log lives in `raft_log` (index -> JSON entry) and the vote, committed/purged IDs, applied
//! state and current snapshot in `raft_meta`. The state machine is the cluster tables
//! themselves: applying a batch of entries and recording the applied log ID happen in one redb
//! transaction, so a crash never leaves them out of step. Snapshots are the cluster tables
//! dumped as JSON.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    Vote,
};
use redb::{ReadableTable, WriteTransaction};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::raft::{Applied, Command, TypeConfig};
use super::service::apply;
use super::store::{
    Store, CLUSTER, CLUSTER_TABLES, ENCRYPTION_KEYS, NETWORKS, NODES, RAFT_LOG, RAFT_META,
};

type SE = StorageError<u64>;

fn any(err: impl std::fmt::Display) -> AnyError {
    AnyError::error(err.to_string())
}

fn read_meta<T: DeserializeOwned>(store: &Store, key: &str) -> Result<Option<T>, AnyError> {
    let tx = store.db().begin_read().map_err(any)?;
    let table = tx.open_table(RAFT_META).map_err(any)?;
    let value = table.get(key).map_err(any)?;
    match value {
        Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(any)?)),
        None => Ok(None),
    }
}

fn put_meta<T: Serialize>(tx: &WriteTransaction, key: &str, value: &T) -> Result<(), AnyError> {
    let bytes = serde_json::to_vec(value).map_err(any)?;
    tx.open_table(RAFT_META)
        .map_err(any)?
        .insert(key, bytes.as_slice())
        .map_err(any)?;
    Ok(())
}

fn write_meta<T: Serialize>(store: &Store, key: &str, value: &T) -> Result<(), AnyError> {
    let tx = store.db().begin_write().map_err(any)?;
    put_meta(&tx, key, value)?;
    tx.commit().map_err(any)
}

/// The Raft log.
#[derive(Clone)]
pub struct LogStore {
    store: Arc<Store>,
}

impl LogStore {
    pub fn new(store: Arc<Store>) -> Self {
        LogStore { store }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SE> {
        let read = || -> Result<Vec<Entry<TypeConfig>>, AnyError> {
            let tx = self.store.db().begin_read().map_err(any)?;
            let table = tx.open_table(RAFT_LOG).map_err(any)?;
            let mut out = Vec::new();
            for item in table.range(range.clone()).map_err(any)? {
                let (_, v) = item.map_err(any)?;
                out.push(serde_json::from_slice(v.value()).map_err(any)?);
            }
            Ok(out)
        };
        read().map_err(|e| StorageIOError::read_logs(e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SE> {
        let read = || -> Result<LogState<TypeConfig>, AnyError> {
            let last_purged: Option<LogId<u64>> = read_meta(&self.store, "last_purged")?;
            let tx = self.store.db().begin_read().map_err(any)?;
            let table = tx.open_table(RAFT_LOG).map_err(any)?;
            let last = match table.last().map_err(any)? {
                Some((_, v)) => {
                    let entry: Entry<TypeConfig> =
                        serde_json::from_slice(v.value()).map_err(any)?;
                    Some(entry.log_id)
                }
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        };
        read().map_err(|e| StorageIOError::read_logs(e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), SE> {
        write_meta(&self.store, "vote", vote).map_err(|e| StorageIOError::write_vote(e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, SE> {
        read_meta(&self.store, "vote").map_err(|e| StorageIOError::read_vote(e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), SE> {
        write_meta(&self.store, "committed", &committed)
            .map_err(|e| StorageIOError::write(e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, SE> {
        read_meta::<Option<LogId<u64>>>(&self.store, "committed")
            .map(Option::flatten)
            .map_err(|e| StorageIOError::read(e).into())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SE>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let write = || -> Result<(), AnyError> {
            let tx = self.store.db().begin_write().map_err(any)?;
            {
                let mut table = tx.open_table(RAFT_LOG).map_err(any)?;
                for entry in entries {
                    let bytes = serde_json::to_vec(&entry).map_err(any)?;
                    table
                        .insert(entry.log_id.index, bytes.as_slice())
                        .map_err(any)?;
                }
            }
            tx.commit().map_err(any)
        };
        let result = write();
        // redb commits durably, so the entries are on disk once `commit` returned.
        callback.log_io_completed(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        result.map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), SE> {
        let write = || -> Result<(), AnyError> {
            let tx = self.store.db().begin_write().map_err(any)?;
            tx.open_table(RAFT_LOG)
                .map_err(any)?
                .retain_in(log_id.index.., |_, _| false)
                .map_err(any)?;
            tx.commit().map_err(any)
        };
        write().map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), SE> {
        let write = || -> Result<(), AnyError> {
            let tx = self.store.db().begin_write().map_err(any)?;
            put_meta(&tx, "last_purged", &log_id)?;
            tx.open_table(RAFT_LOG)
                .map_err(any)?
                .retain_in(..=log_id.index, |_, _| false)
                .map_err(any)?;
            tx.commit().map_err(any)
        };
        write().map_err(|e| StorageIOError::write_logs(e).into())
    }
}

/// Voters of the last membership the state machine applied (so committed). During a change
/// (a joint membership, old configuration first) that is still the old configuration: an
/// added manager counts once the change is done, and so does a removed one's absence. 0
/// before any membership was applied or when the store cannot be read.
pub fn applied_voter_count(store: &Store) -> usize {
    let Ok(Some(state)) = read_meta::<AppliedState>(store, "applied") else {
        return 0;
    };
    state
        .membership
        .membership()
        .get_joint_config()
        .first()
        .map_or(0, |old| old.len())
}

/// The index of the last log entry this manager knows committed (as the Raft node last saved
/// it), if any.
pub fn committed_index(store: &Store) -> Option<u64> {
    read_meta::<Option<LogId<u64>>>(store, "committed")
        .ok()
        .flatten()
        .flatten()
        .map(|l| l.index)
}

/// `swarm init --force-new-cluster`, with the Raft node stopped: appends to this manager's log
/// a configuration whose only voter (and member) is `id` at `addr`, under a term above any it
/// has seen, and votes for itself in it. On start the node is the sole voter, elects itself at
/// once, and its first entry as leader commits the whole log it holds: the cluster tables,
/// CA, keys and tokens are kept, and new managers replicate them from it.
pub fn force_single_member(store: &Store, id: u64, addr: &str) -> Result<(), AnyError> {
    let vote: Vote<u64> = read_meta(store, "vote")?.unwrap_or_default();
    let tx = store.db().begin_read().map_err(any)?;
    let last: Option<Entry<TypeConfig>> = {
        let table = tx.open_table(RAFT_LOG).map_err(any)?;
        let last = table.last().map_err(any)?;
        match last {
            Some((_, v)) => Some(serde_json::from_slice(v.value()).map_err(any)?),
            None => None,
        }
    };
    drop(tx);
    let purged: Option<LogId<u64>> = read_meta(store, "last_purged")?;
    let last_id = last.map(|e| e.log_id).or(purged);
    let term = vote
        .leader_id
        .term
        .max(last_id.map_or(0, |l| l.leader_id.term))
        + 1;
    let index = last_id.map_or(0, |l| l.index + 1);
    let membership = openraft::Membership::new(
        vec![std::collections::BTreeSet::from([id])],
        std::collections::BTreeMap::from([(id, BasicNode::new(addr))]),
    );
    let entry: Entry<TypeConfig> = Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(term, id), index),
        payload: EntryPayload::Membership(membership),
    };
    let tx = store.db().begin_write().map_err(any)?;
    {
        let bytes = serde_json::to_vec(&entry).map_err(any)?;
        tx.open_table(RAFT_LOG)
            .map_err(any)?
            .insert(index, bytes.as_slice())
            .map_err(any)?;
    }
    put_meta(&tx, "vote", &Vote::new(term, id))?;
    tx.commit().map_err(any)
}

/// Raft IDs of the voters of the last membership the state machine applied (the old
/// configuration during a change); empty before any was applied.
pub fn applied_voters(store: &Store) -> std::collections::BTreeSet<u64> {
    let Ok(Some(state)) = read_meta::<AppliedState>(store, "applied") else {
        return Default::default();
    };
    state
        .membership
        .membership()
        .get_joint_config()
        .first()
        .cloned()
        .unwrap_or_default()
}

/// Where the state machine stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
}

/// A snapshot as stored: its metadata and the dumped tables.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, BasicNode>,
    data: Vec<u8>,
}

/// The cluster tables, dumped: table name -> (key, value) pairs.
type Dump = Vec<(String, Vec<(String, Vec<u8>)>)>;

/// The state machine: the cluster tables in redb.
#[derive(Clone)]
pub struct StateMachine {
    store: Arc<Store>,
}

impl StateMachine {
    pub fn new(store: Arc<Store>) -> Self {
        StateMachine { store }
    }

    fn applied(&self) -> Result<AppliedState, AnyError> {
        Ok(read_meta(&self.store, "applied")?.unwrap_or_default())
    }

    fn dump(&self) -> Result<Dump, AnyError> {
        let tx = self.store.db().begin_read().map_err(any)?;
        let mut out = Vec::new();
        for def in CLUSTER_TABLES {
            let table = tx.open_table(def).map_err(any)?;
            let mut rows = Vec::new();
            for item in table.iter().map_err(any)? {
                let (k, v) = item.map_err(any)?;
                rows.push((k.value().to_string(), v.value().to_vec()));
            }
            out.push((redb::TableHandle::name(&def).to_string(), rows));
        }
        Ok(out)
    }
}

/// Applies one command; `Ok(Some(why))` when the command is refused (deterministically, on
/// every manager alike).
fn apply_command(tx: &WriteTransaction, command: &Command) -> Result<Option<String>, AnyError> {
    match command {
        Command::PutSwarm(swarm) => {
            let bytes = serde_json::to_vec(swarm).map_err(any)?;
            tx.open_table(CLUSTER)
                .map_err(any)?
                .insert("swarm", bytes.as_slice())
                .map_err(any)?;
        }
        Command::PutNode(node) => {
            let bytes = serde_json::to_vec(node).map_err(any)?;
            tx.open_table(NODES)
                .map_err(any)?
                .insert(node.id.as_str(), bytes.as_slice())
                .map_err(any)?;
        }
        Command::RemoveNode(id) => {
            tx.open_table(NODES)
                .map_err(any)?
                .remove(id.as_str())
                .map_err(any)?;
        }
        Command::SetEncryptionKeys(keys) => {
            let mut table = tx.open_table(ENCRYPTION_KEYS).map_err(any)?;
            table.retain(|_, _| false).map_err(any)?;
            for key in keys {
                let bytes = serde_json::to_vec(key).map_err(any)?;
                table
                    .insert(format!("{:010}", key.tag).as_str(), bytes.as_slice())
                    .map_err(any)?;
            }
        }
        Command::CreateNetwork(net) => {
            return super::network::apply_create(tx, net).map_err(any);
        }
        Command::RemoveNetwork(id) => {
            tx.open_table(NETWORKS)
                .map_err(any)?
                .remove(id.as_str())
                .map_err(any)?;
        }
        Command::CreateService(s) => return apply::create_service(tx, s).map_err(any),
        Command::UpdateService(s) => return apply::update_service(tx, s).map_err(any),
        Command::RemoveService(id) => return apply::remove_service(tx, id).map_err(any),
        Command::PutTasks(tasks) => return apply::put_tasks(tx, tasks).map_err(any),
        Command::SetTaskDesired { ids, desired } => {
            return apply::set_desired(tx, ids, *desired).map_err(any)
        }
        Command::TaskStatuses { node_id, statuses } => {
            return apply::task_statuses(tx, node_id, statuses).map_err(any)
        }
        Command::RemoveTasks(ids) => return apply::remove_tasks(tx, ids).map_err(any),
        Command::SetLbAddresses(changes) => {
            let mut table = tx.open_table(NETWORKS).map_err(any)?;
            for (net_id, node_id, addr) in changes {
                let Some(bytes) = table
                    .get(net_id.as_str())
                    .map_err(any)?
                    .map(|v| v.value().to_vec())
                else {
                    continue;
                };
                let mut net: crate::control::network::NetworkRecord =
                    serde_json::from_slice(&bytes).map_err(any)?;
                match addr {
                    Some(a) => net.lb.insert(node_id.clone(), *a),
                    None => net.lb.remove(node_id),
                };
                let bytes = serde_json::to_vec(&net).map_err(any)?;
                table
                    .insert(net_id.as_str(), bytes.as_slice())
                    .map_err(any)?;
            }
        }
    }
    Ok(None)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SE> {
        let build = || -> Result<Snapshot<TypeConfig>, AnyError> {
            let applied = self.applied()?;
            let data = serde_json::to_vec(&self.dump()?).map_err(any)?;
            let snapshot_id = match applied.last_applied {
                Some(id) => format!("{}-{}-{}", id.leader_id, id.index, data.len()),
                None => format!("empty-{}", data.len()),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership,
                snapshot_id,
            };
            write_meta(
                &self.store,
                "snapshot",
                &StoredSnapshot {
                    meta: meta.clone(),
                    data: data.clone(),
                },
            )?;
            Ok(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            })
        };
        build().map_err(|e| StorageIOError::write_snapshot(None, e).into())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), SE> {
        let applied = self
            .applied()
            .map_err(|e| SE::from(StorageIOError::read_state_machine(e)))?;
        Ok((applied.last_applied, applied.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, SE>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let apply = || -> Result<Vec<Applied>, AnyError> {
            let mut state = self.applied()?;
            let tx = self.store.db().begin_write().map_err(any)?;
            let mut results = Vec::new();
            for entry in entries {
                state.last_applied = Some(entry.log_id);
                let mut applied = Applied::default();
                match entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(command) => {
                        applied.refused = apply_command(&tx, &command)?
                    }
                    EntryPayload::Membership(m) => {
                        state.membership = StoredMembership::new(Some(entry.log_id), m);
                    }
                }
                results.push(applied);
            }
            put_meta(&tx, "applied", &state)?;
            tx.commit().map_err(any)?;
            Ok(results)
        };
        apply().map_err(|e| StorageIOError::write_state_machine(e).into())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SE> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SE> {
        let data = snapshot.into_inner();
        let install = || -> Result<(), AnyError> {
            let dump: Dump = serde_json::from_slice(&data).map_err(any)?;
            let tx = self.store.db().begin_write().map_err(any)?;
            for def in CLUSTER_TABLES {
                let name = redb::TableHandle::name(&def).to_string();
                let mut table = tx.open_table(def).map_err(any)?;
                table.retain(|_, _| false).map_err(any)?;
                if let Some((_, rows)) = dump.iter().find(|(n, _)| *n == name) {
                    for (k, v) in rows {
                        table.insert(k.as_str(), v.as_slice()).map_err(any)?;
                    }
                }
            }
            put_meta(
                &tx,
                "applied",
                &AppliedState {
                    last_applied: meta.last_log_id,
                    membership: meta.last_membership.clone(),
                },
            )?;
            put_meta(
                &tx,
                "snapshot",
                &StoredSnapshot {
                    meta: meta.clone(),
                    data: data.clone(),
                },
            )?;
            tx.commit().map_err(any)
        };
        install().map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e).into())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SE> {
        let stored: Option<StoredSnapshot> = read_meta(&self.store, "snapshot")
            .map_err(|e| SE::from(StorageIOError::read_snapshot(None, e)))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Availability, Node, NodeState, NodeStatus, Role};
    use openraft::testing::{StoreBuilder, Suite};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), SE> {
            let dir = tempfile::tempdir().map_err(|e| SE::from(StorageIOError::write(any(e))))?;
            let store = Arc::new(
                Store::open(dir.path()).map_err(|e| SE::from(StorageIOError::write(any(e))))?,
            );
            Ok((dir, LogStore::new(store.clone()), StateMachine::new(store)))
        }
    }

    /// openraft's own conformance suite for log stores and state machines.
    #[test]
    fn passes_the_openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    fn node(id: &str) -> Node {
        Node {
            id: id.into(),
            hostname: "h".into(),
            role: Role::Worker,
            availability: Availability::Active,
            status: NodeStatus {
                state: NodeState::Ready,
                addr: "127.0.0.1".into(),
            },
            manager_status: None,
            data_path_addr: "127.0.0.1".into(),
            cluster_addr: "127.0.0.1:2377".into(),
            gossip_addr: String::new(),
            created_at: "t".into(),
            updated_at: "t".into(),
        }
    }

    /// --force-new-cluster's log surgery: the new configuration follows the last entry, under a
    /// term above the vote and every entry, and names only this node; nothing before it changes.
    #[tokio::test]
    async fn a_forced_single_member_config_follows_the_log_under_a_higher_term() {
        let (_dir, mut log, _sm) = Builder.build().await.unwrap();
        let store = log.store.clone();
        // An empty log: the configuration is the first entry.
        force_single_member(&store, 7, "127.0.0.7:2377").unwrap();
        let entries = log.try_get_log_entries(0..).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].log_id.index, 0);
        assert_eq!(entries[0].log_id.leader_id.term, 1);

        // A log up to index 5 in term 4, a vote for term 6.
        let (_dir, mut log, _sm) = Builder.build().await.unwrap();
        let store = log.store.clone();
        let tx = store.db().begin_write().unwrap();
        {
            let mut table = tx.open_table(RAFT_LOG).unwrap();
            for index in 0..=5u64 {
                let entry = Entry::<TypeConfig> {
                    log_id: LogId::new(openraft::CommittedLeaderId::new(4, 1), index),
                    payload: EntryPayload::Blank,
                };
                let bytes = serde_json::to_vec(&entry).unwrap();
                table.insert(index, bytes.as_slice()).unwrap();
            }
        }
        put_meta(&tx, "vote", &Vote::new(6, 2u64)).unwrap();
        tx.commit().unwrap();
        force_single_member(&store, 7, "127.0.0.7:2377").unwrap();
        let entries = log.try_get_log_entries(0..).await.unwrap();
        assert_eq!(entries.len(), 7);
        let last = entries.last().unwrap();
        assert_eq!(last.log_id.index, 6);
        assert_eq!(last.log_id.leader_id.term, 7);
        let EntryPayload::Membership(m) = &last.payload else {
            panic!("not a membership entry: {last:?}");
        };
        assert_eq!(m.voter_ids().collect::<Vec<_>>(), [7]);
        assert_eq!(m.get_node(&7).unwrap().addr, "127.0.0.7:2377");
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(7, 7)));
        assert!(entries[..6].iter().all(|e| e.log_id.leader_id.term == 4));
    }

    #[tokio::test]
    async fn voters_count_only_once_a_membership_change_is_done() {
        let (_dir, _log, mut sm) = Builder.build().await.unwrap();
        let leader = openraft::CommittedLeaderId::new(1, 0);
        let set = |ids: &[u64]| {
            ids.iter()
                .copied()
                .collect::<std::collections::BTreeSet<u64>>()
        };
        let membership = |index, configs: Vec<std::collections::BTreeSet<u64>>| {
            let nodes: std::collections::BTreeMap<u64, BasicNode> = (1..=4)
                .map(|i| (i, BasicNode::new(format!("127.0.0.{i}:2377"))))
                .collect();
            Entry::<TypeConfig> {
                log_id: LogId::new(leader, index),
                payload: EntryPayload::Membership(openraft::Membership::new(configs, nodes)),
            }
        };
        let count = |sm: &StateMachine| applied_voter_count(&sm.store);
        assert_eq!(count(&sm), 0, "nothing applied yet");
        sm.apply([membership(1, vec![set(&[1, 2, 3])])])
            .await
            .unwrap();
        assert_eq!(count(&sm), 3);
        // Adding 4: joint {1,2,3} + {1,2,3,4}, then {1,2,3,4}.
        sm.apply([membership(2, vec![set(&[1, 2, 3]), set(&[1, 2, 3, 4])])])
            .await
            .unwrap();
        assert_eq!(count(&sm), 3, "an addition in flight is not counted");
        sm.apply([membership(3, vec![set(&[1, 2, 3, 4])])])
            .await
            .unwrap();
        assert_eq!(count(&sm), 4);
        // Removing 4 and 3: the old four still vote until the change is done.
        sm.apply([membership(4, vec![set(&[1, 2, 3, 4]), set(&[1, 2])])])
            .await
            .unwrap();
        assert_eq!(count(&sm), 4, "a removal in flight is not counted");
        sm.apply([membership(5, vec![set(&[1, 2])])]).await.unwrap();
        assert_eq!(count(&sm), 2);
    }

    #[tokio::test]
    async fn commands_apply_and_a_snapshot_carries_the_tables() {
        let (_d1, _log1, mut sm1) = Builder.build().await.unwrap();
        let leader = openraft::CommittedLeaderId::new(1, 0);
        let entry = |index, command| Entry::<TypeConfig> {
            log_id: LogId::new(leader, index),
            payload: EntryPayload::Normal(command),
        };
        sm1.apply([
            entry(1, Command::PutNode(Box::new(node("a")))),
            entry(2, Command::PutNode(Box::new(node("b")))),
            entry(3, Command::RemoveNode("a".into())),
        ])
        .await
        .unwrap();
        assert_eq!(sm1.store.nodes().unwrap(), vec![node("b")]);
        let (applied, _) = sm1.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(3));

        let snapshot = sm1.build_snapshot().await.unwrap();
        let (_d2, _log2, mut sm2) = Builder.build().await.unwrap();
        sm2.store.put_node(&node("stale")).unwrap();
        sm2.install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        assert_eq!(sm2.store.nodes().unwrap(), vec![node("b")]);
        let (applied, _) = sm2.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(3));
        assert!(sm2.get_current_snapshot().await.unwrap().is_some());
    }
}
