//! A read-only Casbin adapter: the permission lines come from the embedded `policy.csv`, the
//! role assignments ("g" lines) from an `AssignmentSource`. Assignments are written by the
//! platform's own code (with SQL, in the same transaction as the journal entry), then the guard
//! reloads; the adapter therefore refuses Casbin-side writes.

use std::sync::Arc;

use async_trait::async_trait;
use casbin::{Adapter, Filter, Model, Result};

use crate::subject;
use crate::vocabulary::Assignment;

/// Where role assignments live (the platform schema in production).
#[async_trait]
pub trait AssignmentSource: Send + Sync {
    async fn load(&self) -> std::result::Result<Vec<Assignment>, String>;
}

/// A fixed list of assignments (tests, tools).
pub struct StaticAssignments(pub Vec<Assignment>);

#[async_trait]
impl AssignmentSource for StaticAssignments {
    async fn load(&self) -> std::result::Result<Vec<Assignment>, String> {
        Ok(self.0.clone())
    }
}

pub struct AssignmentAdapter {
    source: Arc<dyn AssignmentSource>,
}

impl AssignmentAdapter {
    pub fn new(source: Arc<dyn AssignmentSource>) -> Self {
        Self { source }
    }
}

fn insert(m: &mut dyn Model, sec: &str, ptype: &str, rule: Vec<String>) {
    if let Some(ast) = m
        .get_mut_model()
        .get_mut(sec)
        .and_then(|s| s.get_mut(ptype))
    {
        ast.get_mut_policy().insert(rule);
    }
}

fn read_only() -> casbin::Error {
    casbin::Error::AdapterError(casbin::error::AdapterError(
        "les attributions de rôles s'écrivent par la plateforme, pas par Casbin".into(),
    ))
}

#[async_trait]
impl Adapter for AssignmentAdapter {
    async fn load_policy(&mut self, m: &mut dyn Model) -> Result<()> {
        for line in crate::POLICY
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let fields: Vec<String> = line.split(',').map(|f| f.trim().to_owned()).collect();
            if let Some((ptype, rule)) = fields.split_first() {
                insert(m, "p", ptype, rule.to_vec());
            }
        }
        let assignments = self.source.load().await.map_err(|e| {
            casbin::Error::AdapterError(casbin::error::AdapterError(
                format!("attributions illisibles : {e}").into(),
            ))
        })?;
        for a in assignments {
            insert(
                m,
                "g",
                "g",
                vec![
                    subject(a.professional),
                    a.role.as_str().to_owned(),
                    a.domain.to_string(),
                ],
            );
        }
        Ok(())
    }

    async fn load_filtered_policy<'a>(&mut self, m: &mut dyn Model, _f: Filter<'a>) -> Result<()> {
        self.load_policy(m).await
    }

    async fn save_policy(&mut self, _m: &mut dyn Model) -> Result<()> {
        Err(read_only())
    }

    async fn clear_policy(&mut self) -> Result<()> {
        Err(read_only())
    }

    fn is_filtered(&self) -> bool {
        false
    }

    async fn add_policy(&mut self, _sec: &str, _ptype: &str, _rule: Vec<String>) -> Result<bool> {
        Err(read_only())
    }

    async fn add_policies(
        &mut self,
        _sec: &str,
        _ptype: &str,
        _rules: Vec<Vec<String>>,
    ) -> Result<bool> {
        Err(read_only())
    }

    async fn remove_policy(
        &mut self,
        _sec: &str,
        _ptype: &str,
        _rule: Vec<String>,
    ) -> Result<bool> {
        Err(read_only())
    }

    async fn remove_policies(
        &mut self,
        _sec: &str,
        _ptype: &str,
        _rules: Vec<Vec<String>>,
    ) -> Result<bool> {
        Err(read_only())
    }

    async fn remove_filtered_policy(
        &mut self,
        _sec: &str,
        _ptype: &str,
        _field_index: usize,
        _field_values: Vec<String>,
    ) -> Result<bool> {
        Err(read_only())
    }
}
