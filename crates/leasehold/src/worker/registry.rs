//! Registered job kinds, type-erased so one worker runs many kinds.

use std::collections::HashMap;
use std::marker::PhantomData;

use futures::future::BoxFuture;

use crate::job::{Job, JobContext, JobResult};

/// A handler ready to run, or the reason the payload cannot become its job.
pub(crate) enum Prepared {
    Run(BoxFuture<'static, JobResult>),
    Undecodable(String),
}

pub(crate) trait Handler<St>: Send + Sync {
    fn prepare(&self, payload: serde_json::Value, ctx: JobContext<St>) -> Prepared;
}

struct Typed<J>(PhantomData<fn() -> J>);

impl<J: Job> Handler<J::State> for Typed<J> {
    fn prepare(&self, payload: serde_json::Value, ctx: JobContext<J::State>) -> Prepared {
        match serde_json::from_value::<J>(payload) {
            Ok(job) => Prepared::Run(Box::pin(job.run(ctx))),
            Err(e) => Prepared::Undecodable(format!("payload does not decode as job kind {:?}: {e}", J::KIND)),
        }
    }
}

pub(crate) struct Registry<St> {
    handlers: HashMap<&'static str, Box<dyn Handler<St>>>,
}

impl<St: Send + Sync + 'static> Registry<St> {
    pub(crate) fn new() -> Self {
        Self { handlers: HashMap::new() }
    }

    /// Adds `J`; answers false if its kind was already registered.
    pub(crate) fn insert<J: Job<State = St>>(&mut self) -> bool {
        self.handlers.insert(J::KIND, Box::new(Typed::<J>(PhantomData))).is_none()
    }

    pub(crate) fn get(&self, kind: &str) -> Option<&dyn Handler<St>> {
        self.get_with_kind(kind).map(|(_, h)| h)
    }

    /// The handler of `kind`, with the kind as registered (so a job's context need not copy it).
    pub(crate) fn get_with_kind(&self, kind: &str) -> Option<(&'static str, &dyn Handler<St>)> {
        self.handlers.get_key_value(kind).map(|(k, h)| (*k, &**h))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}
