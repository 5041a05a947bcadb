//! The node's persisted state, in one redb file in the state dir (`swarmnet.redb`).
//!
//! Cluster tables (what managers agree on): `cluster` (the swarm record: CA, tokens, settings),
//! `nodes`, `networks`, `services`, `tasks` and `encryption_keys`. On managers the cluster tables are
//! the Raft state machine and `raft_log` / `raft_meta` hold the log (see `raft_store`). The `local` table holds what is
//! this node's alone: its identity (key, certificate, role, addresses) and the encryption keys
//! delivered to it. Values are JSON so records can grow fields (`#[serde(default)]`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::ca::{NodeCredentials, RootCa};
use super::network::NetworkRecord;
use super::service::{ServiceRecord, TaskRecord};
use crate::api::types::{Node, Role};

pub(crate) const CLUSTER: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster");
pub(crate) const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
pub(crate) const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
pub(crate) const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");
pub(crate) const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
pub(crate) const ENCRYPTION_KEYS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("encryption_keys");
const LOCAL: TableDefinition<&str, &[u8]> = TableDefinition::new("local");
/// Raft log entries by index (managers only).
pub(crate) const RAFT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Raft vote, committed and purged log IDs, applied state, current snapshot.
pub(crate) const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

/// The replicated tables: the Raft state machine.
pub(crate) const CLUSTER_TABLES: [TableDefinition<&str, &[u8]>; 6] =
    [CLUSTER, NODES, NETWORKS, SERVICES, TASKS, ENCRYPTION_KEYS];

/// File name of the store inside the state dir.
pub const STORE_FILE: &str = "swarmnet.redb";

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {path}: {err}")]
    Dir { path: PathBuf, err: std::io::Error },
    #[error("state store {path}: {err}")]
    Open {
        path: PathBuf,
        err: Box<redb::Error>,
    },
    #[error("state store: {0}")]
    Db(Box<redb::Error>),
    #[error("state store holds a record that does not decode ({0}); was it written by a newer swarmnet?")]
    Decode(serde_json::Error),
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Decode(e)
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The swarm-wide record: settings, CA and token secrets. Managers only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwarmRecord {
    pub id: String,
    pub created_at: String,
    pub updated_at: String,
    pub root_ca: RootCa,
    pub worker_token: String,
    pub manager_token: String,
    pub data_path_port: u16,
    pub default_addr_pool: Vec<String>,
    pub subnet_size: u8,
    pub key_rotation_interval_secs: u64,
}

/// One network encryption key (AES-128-GCM, 16 bytes), as swarmkit's `EncryptionKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkKey {
    /// Increasing tag (swarmkit's Lamport time); part of the SPI.
    pub tag: u32,
    pub key: Vec<u8>,
    /// Unix seconds when the key was made.
    pub created_at: i64,
}

/// Who this node is in its swarm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalIdentity {
    pub node_id: String,
    pub swarm_id: String,
    pub hostname: String,
    /// Role of the current certificate.
    pub role: Role,
    pub credentials: NodeCredentials,
    pub ca_cert_pem: String,
    /// Advertise IP.
    pub advertise_addr: String,
    /// `IP:PORT` the cluster listener binds when this node is a manager.
    pub listen_addr: String,
    pub data_path_addr: String,
    /// Cluster addresses (`IP:PORT`) of the managers, leader first when known.
    pub managers: Vec<String>,
}

/// The redb database of one node.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|err| StoreError::Dir {
            path: state_dir.to_path_buf(),
            err,
        })?;
        // The store holds the CA key and the node's private key: owner only.
        std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |err| StoreError::Dir {
                path: state_dir.to_path_buf(),
                err,
            },
        )?;
        let path = state_dir.join(STORE_FILE);
        let db = Database::create(&path).map_err(|e| StoreError::Open {
            path: path.clone(),
            err: Box::new(e.into()),
        })?;
        let tx = db.begin_write()?;
        for table in CLUSTER_TABLES.into_iter().chain([LOCAL, RAFT_META]) {
            tx.open_table(table)?;
        }
        tx.open_table(RAFT_LOG)?;
        tx.commit()?;
        Ok(Store { db })
    }

    fn get<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(table)?;
        match t.get(key)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value)?;
        let tx = self.db.begin_write()?;
        tx.open_table(table)?.insert(key, bytes.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    fn delete(&self, table: TableDefinition<&str, &[u8]>, key: &str) -> Result<bool, StoreError> {
        let tx = self.db.begin_write()?;
        let existed = tx.open_table(table)?.remove(key)?.is_some();
        tx.commit()?;
        Ok(existed)
    }

    fn list<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(table)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (_, v) = item?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// The database, for the Raft log and state machine (`super::raft_store`).
    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    /// This node's identity, if it is in a swarm.
    pub fn local_identity(&self) -> Result<Option<LocalIdentity>, StoreError> {
        self.get(LOCAL, "identity")
    }

    pub fn set_local_identity(&self, identity: &LocalIdentity) -> Result<(), StoreError> {
        self.put(LOCAL, "identity", identity)
    }

    /// Encryption keys delivered to this node by a manager.
    pub fn local_keys(&self) -> Result<Vec<NetworkKey>, StoreError> {
        Ok(self.get(LOCAL, "encryption_keys")?.unwrap_or_default())
    }

    pub fn set_local_keys(&self, keys: &[NetworkKey]) -> Result<(), StoreError> {
        self.put(LOCAL, "encryption_keys", &keys)
    }

    /// The swarm record (managers only).
    pub fn swarm(&self) -> Result<Option<SwarmRecord>, StoreError> {
        self.get(CLUSTER, "swarm")
    }

    pub fn put_swarm(&self, swarm: &SwarmRecord) -> Result<(), StoreError> {
        self.put(CLUSTER, "swarm", swarm)
    }

    pub fn nodes(&self) -> Result<Vec<Node>, StoreError> {
        self.list(NODES)
    }

    pub fn node(&self, id: &str) -> Result<Option<Node>, StoreError> {
        self.get(NODES, id)
    }

    pub fn put_node(&self, node: &Node) -> Result<(), StoreError> {
        self.put(NODES, &node.id, node)
    }

    pub fn remove_node(&self, id: &str) -> Result<bool, StoreError> {
        self.delete(NODES, id)
    }

    /// Swarm-scope networks (managers only), in ID order.
    pub fn networks(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        self.list(NETWORKS)
    }

    /// Services (managers only), in ID order.
    pub fn services(&self) -> Result<Vec<ServiceRecord>, StoreError> {
        self.list(SERVICES)
    }

    pub fn service(&self, id: &str) -> Result<Option<ServiceRecord>, StoreError> {
        self.get(SERVICES, id)
    }

    /// Tasks (managers only), in ID order.
    pub fn tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.list(TASKS)
    }

    /// The node's local-scope networks (its docker_gwbridge).
    pub fn local_networks(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        Ok(self.get(LOCAL, "networks")?.unwrap_or_default())
    }

    pub fn set_local_networks(&self, networks: &[NetworkRecord]) -> Result<(), StoreError> {
        self.put(LOCAL, "networks", &networks)
    }

    /// The swarm's network encryption keys, oldest first.
    pub fn encryption_keys(&self) -> Result<Vec<NetworkKey>, StoreError> {
        let mut keys: Vec<NetworkKey> = self.list(ENCRYPTION_KEYS)?;
        keys.sort_by_key(|k| k.tag);
        Ok(keys)
    }

    /// Replaces the swarm's network encryption keys in one transaction.
    pub fn set_encryption_keys(&self, keys: &[NetworkKey]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(ENCRYPTION_KEYS)?;
            t.retain(|_, _| false)?;
            for key in keys {
                let bytes = serde_json::to_vec(key)?;
                t.insert(format!("{:010}", key.tag).as_str(), bytes.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets the swarm: every cluster table and this node's identity and keys. Local-scope
    /// networks stay, as Docker keeps docker_gwbridge when a node leaves.
    pub fn clear(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        for table in CLUSTER_TABLES.into_iter().chain([RAFT_META]) {
            tx.open_table(table)?.retain(|_, _| false)?;
        }
        tx.open_table(LOCAL)?.retain(|k, _| k == "networks")?;
        tx.open_table(RAFT_LOG)?.retain(|_, _| false)?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{Availability, NodeState, NodeStatus};

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

    #[test]
    fn survives_reopen_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_node(&node("a")).unwrap();
            store.put_node(&node("b")).unwrap();
            store
                .set_encryption_keys(&[NetworkKey {
                    tag: 2,
                    key: vec![1; 16],
                    created_at: 0,
                }])
                .unwrap();
            assert!(store.remove_node("b").unwrap());
            assert!(!store.remove_node("b").unwrap());
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.nodes().unwrap(), vec![node("a")]);
        assert_eq!(store.encryption_keys().unwrap()[0].tag, 2);
        store.clear().unwrap();
        assert!(store.nodes().unwrap().is_empty());
        assert!(store.encryption_keys().unwrap().is_empty());
        assert!(store.local_identity().unwrap().is_none());
    }

    #[test]
    fn key_set_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let k = |tag| NetworkKey {
            tag,
            key: vec![tag as u8; 16],
            created_at: 0,
        };
        store.set_encryption_keys(&[k(1), k(2), k(3)]).unwrap();
        store.set_encryption_keys(&[k(2), k(3), k(4)]).unwrap();
        let tags: Vec<u32> = store
            .encryption_keys()
            .unwrap()
            .iter()
            .map(|k| k.tag)
            .collect();
        assert_eq!(tags, [2, 3, 4]);
    }
}
