//! The job kinds a worker runs, by name.

use crate::{JobHandler, kinds};
use std::{collections::BTreeMap, sync::Arc};

/// A second handler was registered under a name already taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job kind {0:?} is registered twice")]
pub struct DuplicateKind(pub String);

/// Job handlers by kind name.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<String, Arc<dyn JobHandler>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding the built-in kinds (`echo`, `sleep`, `cpu`, `hash`, `fail`).
    pub fn builtin() -> Self {
        let mut registry = Self::new();
        for handler in kinds::builtin() {
            registry.handlers.insert(handler.kind().to_owned(), handler);
        }
        registry
    }

    /// Adds a job kind. Fails if a handler already has that name.
    pub fn register(&mut self, handler: Arc<dyn JobHandler>) -> Result<(), DuplicateKind> {
        let kind = handler.kind().to_owned();
        if self.handlers.contains_key(&kind) {
            return Err(DuplicateKind(kind));
        }
        self.handlers.insert(kind, handler);
        Ok(())
    }

    /// The handler for `kind`, if registered.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn JobHandler>> {
        self.handlers.get(kind)
    }

    /// Every registered handler, ordered by kind name.
    pub fn handlers(&self) -> impl Iterator<Item = &Arc<dyn JobHandler>> {
        self.handlers.values()
    }

    /// The registered kind names, in order.
    pub fn kinds(&self) -> Vec<&str> {
        self.handlers.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_kinds_are_registered_and_duplicates_refused() {
        let mut registry = Registry::builtin();
        assert_eq!(registry.kinds(), ["cpu", "echo", "fail", "hash", "pipeline", "sleep"]);
        let echo = Arc::clone(registry.get("echo").unwrap());
        assert_eq!(registry.register(echo), Err(DuplicateKind("echo".into())));
    }

    #[test]
    fn every_typed_kind_refuses_a_payload_that_does_not_decode_in_the_same_words() {
        let registry = Registry::builtin();
        for kind in registry.kinds().into_iter().filter(|kind| *kind != "echo") {
            let handler = registry.get(kind).unwrap();
            for payload in ["[1]", "\"text\"", r#"{"no_such_field": 1}"#] {
                let Err(error) = handler.prepare(bytes::Bytes::from(payload)) else { panic!("{kind} took {payload}") };
                assert_eq!(error.kind, kind, "the error names the kind");
                assert!(error.to_string().starts_with(&format!("invalid payload for job kind {kind:?}")), "{error}");
            }
        }
    }
}
