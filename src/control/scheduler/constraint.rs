//! Placement constraints, as `service create --constraint` takes them: `node.id`, `node.hostname`,
//! `node.role`, `node.labels.KEY` (and `engine.labels.KEY`, swarmnet's nodes having none), with
//! `==` or `!=`.

use std::collections::BTreeMap;

/// What a constraint looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Id,
    Hostname,
    Role,
    NodeLabel(String),
    EngineLabel(String),
}

/// One parsed constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub key: Key,
    pub equal: bool,
    pub value: String,
}

/// The node facts a constraint is checked against.
#[derive(Debug, Clone, Copy)]
pub struct NodeFacts<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    pub role: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// swarmkit's words.
    #[error("invalid constraint: constraint expected one operator from ==, !=: {0:?}")]
    NoOperator(String),
    #[error("invalid constraint {expr:?}: {key:?} is not a node attribute (node.id, node.hostname, node.role, node.labels.KEY, engine.labels.KEY)")]
    UnknownKey { expr: String, key: String },
    #[error("invalid constraint {0:?}: node.role is manager or worker")]
    Role(String),
    #[error("invalid constraint {0:?}: the value is empty")]
    EmptyValue(String),
}

impl Constraint {
    /// Parses `node.role==manager`, `node.labels.zone != east`, ...
    pub fn parse(expr: &str) -> Result<Self, ConstraintError> {
        let (lhs, rhs, equal) = if let Some((l, r)) = expr.split_once("==") {
            (l, r, true)
        } else if let Some((l, r)) = expr.split_once("!=") {
            (l, r, false)
        } else {
            return Err(ConstraintError::NoOperator(expr.to_string()));
        };
        let (lhs, value) = (lhs.trim(), rhs.trim());
        if value.is_empty() {
            return Err(ConstraintError::EmptyValue(expr.to_string()));
        }
        let key = match lhs.to_ascii_lowercase().as_str() {
            "node.id" => Key::Id,
            "node.hostname" => Key::Hostname,
            "node.role" => {
                if !matches!(value, "manager" | "worker") {
                    return Err(ConstraintError::Role(expr.to_string()));
                }
                Key::Role
            }
            _ => {
                if let Some(k) = lhs.strip_prefix("node.labels.").filter(|k| !k.is_empty()) {
                    Key::NodeLabel(k.to_string())
                } else if let Some(k) = lhs.strip_prefix("engine.labels.").filter(|k| !k.is_empty())
                {
                    Key::EngineLabel(k.to_string())
                } else {
                    return Err(ConstraintError::UnknownKey {
                        expr: expr.to_string(),
                        key: lhs.to_string(),
                    });
                }
            }
        };
        Ok(Constraint {
            key,
            equal,
            value: value.to_string(),
        })
    }

    /// True when `node` satisfies the constraint. Hostnames compare without case, as swarmkit.
    pub fn matches(&self, node: &NodeFacts) -> bool {
        let actual: Option<&str> = match &self.key {
            Key::Id => Some(node.id),
            Key::Hostname => Some(node.hostname),
            Key::Role => Some(node.role),
            Key::NodeLabel(k) => node.labels.get(k).map(String::as_str),
            Key::EngineLabel(_) => None,
        };
        let same = match (&self.key, actual) {
            (_, None) => false,
            (Key::Hostname, Some(a)) => a.eq_ignore_ascii_case(&self.value),
            (_, Some(a)) => a == self.value,
        };
        same == self.equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(labels: &BTreeMap<String, String>) -> NodeFacts<'_> {
        NodeFacts {
            id: "abc",
            hostname: "Node-1",
            role: "worker",
            labels,
        }
    }

    #[test]
    fn parses_and_matches() {
        let labels = BTreeMap::from([("zone".to_string(), "east".to_string())]);
        let n = facts(&labels);
        let yes = [
            "node.hostname==node-1",
            "node.role==worker",
            "node.role != manager",
            "node.id==abc",
            "node.labels.zone==east",
            "node.labels.rack!=r1",
        ];
        for e in yes {
            assert!(Constraint::parse(e).unwrap().matches(&n), "{e}");
        }
        let no = [
            "node.hostname==node-2",
            "node.role==manager",
            "node.labels.zone!=east",
            "node.labels.rack==r1",
            "engine.labels.os==linux",
        ];
        for e in no {
            assert!(!Constraint::parse(e).unwrap().matches(&n), "{e}");
        }
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            Constraint::parse("node.role=manager"),
            Err(ConstraintError::NoOperator(_))
        ));
        assert!(matches!(
            Constraint::parse("node.colour==blue"),
            Err(ConstraintError::UnknownKey { .. })
        ));
        assert!(matches!(
            Constraint::parse("node.role==boss"),
            Err(ConstraintError::Role(_))
        ));
        assert!(matches!(
            Constraint::parse("node.hostname=="),
            Err(ConstraintError::EmptyValue(_))
        ));
        assert!(matches!(
            Constraint::parse("node.labels.==x"),
            Err(ConstraintError::UnknownKey { .. })
        ));
    }
}
